"""The catalog's rules, pure: one name's published versions, what a publish decides, what a reference means."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from events.catalog import DIGEST_PATTERN, NAME_PATTERN, VERSION_PATTERN, PlaybookPublished, Validation
from services.errors import CommandRejected, UnknownPlaybook
from services.playbook import Diagnostic

_NAME, _VERSION, _DIGEST = re.compile(NAME_PATTERN), re.compile(VERSION_PATTERN), re.compile(DIGEST_PATTERN)
DEFAULT_VERSION = "1"      # a playbook that says no `version:` is version 1


@dataclass(slots=True)
class PlaybookVersions:
    """One name in the catalog: its versions in the order they were published."""

    name: str
    version: int = 0                     # the repository's: stream sequence of the last event applied
    published: list[PlaybookPublished] = field(default_factory=list)

    def find(self, version: str | None = None) -> PlaybookPublished | None:
        """That version, or the latest published when `version` is None."""
        if version is None:
            return self.published[-1] if self.published else None
        return next((p for p in self.published if p.version == version), None)


def evolve(versions: PlaybookVersions, event: PlaybookPublished, seq: int = 0) -> PlaybookVersions:
    versions.published.append(event)
    versions.version = max(versions.version, seq)
    return versions


def publish(versions: PlaybookVersions, published: PlaybookPublished) -> list[PlaybookPublished]:
    """A new version is recorded; the same text again is nothing new; other text under a used version is refused."""
    existing = versions.find(published.version)
    if existing is None:
        return [published]
    if existing.digest == published.digest:
        return []
    by = existing.author + (f" (published by {existing.actor})" if existing.on_behalf_of else "")
    raise CommandRejected(
        f"{published.name}@{published.version} is already published with other content ({existing.digest}, by "
        f"{by} at {existing.at:%Y-%m-%d %H:%M:%S}Z); a version never changes: publish the change "
        "as a new version (--version, or the playbook's `version:`)", "version_exists")


def version_to_publish(written: str | int | float, given: str) -> str:
    """The version a publish records: `given` (--version) if any, else what the playbook says."""
    said = str(written)
    if given and said not in (DEFAULT_VERSION, given):
        raise CommandRejected(f"the playbook says `version: {said}` but the publish asks for {given}: "
                              "change one so they agree", "bad_request")
    version = given or said
    if not _VERSION.fullmatch(version):
        raise CommandRejected(f"version {version[:80]!r} may hold letters, digits, '.', '_', '+' and '-' "
                              "(at most 64, starting with a letter or digit)", "bad_request")
    return version


def check_name(name: str) -> str:
    """A playbook's name as the catalog keys it; refused if it could not be one."""
    if not _NAME.fullmatch(name):
        raise CommandRejected(f"the playbook's name {name[:80]!r} cannot be published: a catalog name holds letters, "
                              "digits, '-' and '_' (at most 64, starting with a letter or digit)", "bad_request")
    return name


def parse_reference(reference: str) -> tuple[str, str | None]:
    """`name` (the latest version) or `name@version`, as `playbook run` and the API take them."""
    name, at, version = reference.partition("@")
    if not _NAME.fullmatch(name) or (at and not _VERSION.fullmatch(version)):
        raise UnknownPlaybook(f"{reference[:100]!r} names no playbook: write NAME or NAME@VERSION "
                              "(`playbook playbooks` lists them)")
    return name, version if at else None


def is_digest(reference: str) -> bool:
    return bool(_DIGEST.fullmatch(reference))


def validation_of(diagnostics: Sequence[Diagnostic]) -> Validation:
    """What a publish records of its validation: counts by severity and the codes found."""
    counts = {severity: sum(d.severity == severity for d in diagnostics) for severity in ("error", "warning", "info")}
    return Validation(errors=counts["error"], warnings=counts["warning"], infos=counts["info"],
                      codes=sorted({d.code for d in diagnostics}))
