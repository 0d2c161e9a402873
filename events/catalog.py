"""The playbook catalog: published versions on `pb.catalog.<name>.PlaybookPublished` (stream PB_CATALOG),
their texts and parsed forms in the object store PB_PLAYBOOKS, addressed by digest.

A version is immutable: `name@version` names one text forever. Runs pin the text's digest
(and the digest of the parsed playbook they follow) instead of carrying the playbook.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from events.json_limits import stored_decoder

# Catalog names are subject tokens; versions are free of '@' and '/', which separate them in references.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
VERSION_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}"
DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"


class PlaybookPin(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which playbook a run follows, stored by digest in the object store PB_PLAYBOOKS."""

    name: str
    version: str
    digest: str                 # sha256:<hex> of the YAML text: what `playbook publish` stored, or the text sent
    parsed: str                 # sha256:<hex> of the parsed playbook and plan the run follows (JSON)
    steps: int
    published: bool = False     # started from the catalog by name[@version]


class Validation(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What validation found when a version was published (errors here are security ones, waivable per run)."""

    errors: int = 0
    warnings: int = 0
    infos: int = 0
    codes: list[str] = []       # the distinct codes found, sorted


class CatalogEvent(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    name: str
    at: datetime


class PlaybookPublished(CatalogEvent, frozen=True):
    """A version of a playbook entered the catalog; its text and parsed form are in PB_PLAYBOOKS by digest."""

    version: str
    digest: str
    parsed: str
    actor: str
    bytes: int
    steps: int
    description: str = ""
    source: str = ""            # the file it was published from, as the publisher named it
    validation: Validation = Validation()
    on_behalf_of: str | None = None   # the person an admin published for; `actor` is the admin

    @property
    def author(self) -> str:
        """Whom the version is credited to: the person an admin published for, else the publisher."""
        return self.on_behalf_of or self.actor


AnyCatalogEvent = PlaybookPublished
CATALOG_EVENT_TYPES: tuple[type[CatalogEvent], ...] = (PlaybookPublished,)
decode_catalog_event: Callable[[bytes], PlaybookPublished] = stored_decoder(AnyCatalogEvent)
