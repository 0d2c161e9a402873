"""The playbook catalog in JetStream: PB_CATALOG keeps one `PlaybookPublished` per version on its
name's subject (`pb.catalog.<name>.PlaybookPublished`), PB_PLAYBOOKS their texts and parsed forms.

Publishing is an event with its actor, appended with optimistic concurrency on the name, so
two replicas publishing at once record one version once. The stream refuses deletes and
purges: a published version stays what it was.
"""
from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import PlaybookPublished, decode_catalog_event
from services.aggregates import CatalogRepository, catalog_repository
from services.domain.catalog import (
    PlaybookVersions, check_name, parse_reference, publish, validation_of, version_to_publish)
from services.errors import PlaybookError, TooLarge, UnknownPlaybook
from services.jetstream import ensure_stream
from services.playbook import MAX_BYTES, too_large
from services.playbook_pins import digest_of, encode_parsed
from services.playbook_store import PlaybookStore
from services.settings import UPLOADS_MAX_BYTES
from services.store import EventStore

log = logging.getLogger(__name__)

LIBRARY_ACTOR = "system"        # the engine itself publishes the library folders at start
DESCRIPTION_KEPT = 1000         # characters of a description the catalog event keeps


class Catalog:
    def __init__(self, nc: NATS, playbooks: PlaybookStore) -> None:
        self.nc, self.playbooks = nc, playbooks
        self.store = EventStore(nc, subjects.CATALOG_STREAM)
        self.entries: CatalogRepository = catalog_repository(self.store)

    async def ensure(self, replicas: int = 1, uploads_max_bytes: int = UPLOADS_MAX_BYTES) -> None:
        """PB_CATALOG (no deletes, no purges) and the playbook buckets; the engine's processes call it at start."""
        await ensure_stream(self.nc, {
            "name": subjects.CATALOG_STREAM, "subjects": [subjects.CATALOG_SUBJECTS], "storage": "file",
            "num_replicas": replicas, "allow_direct": True, "deny_delete": True, "deny_purge": True,
            "duplicate_window": 120 * 10**9,
        })
        await self.playbooks.ensure(replicas, uploads_max_bytes)

    # -- reading ---------------------------------------------------------------------------

    async def versions(self, name: str) -> list[PlaybookPublished]:
        """One name's versions, oldest first; [] for a name never published."""
        name, version = parse_reference(name)     # a name is a subject token: no wildcards reach NATS
        if version is not None:
            raise UnknownPlaybook(f"{name}@{version} is a version; give the playbook's name alone")
        return (await self.entries.get(name)).published

    async def everything(self) -> dict[str, list[PlaybookPublished]]:
        """Every name with its versions, oldest first."""
        envelopes, _ = await self.store.load_aggregate(subjects.CATALOG_SUBJECTS, decode_catalog_event)
        names: dict[str, list[PlaybookPublished]] = {}
        for _, event in envelopes:
            names.setdefault(event.name, []).append(event)
        return dict(sorted(names.items()))

    async def find(self, reference: str) -> PlaybookPublished:
        """`name` (its latest version) or `name@version`; UnknownPlaybook with what there is otherwise."""
        name, version = parse_reference(reference)
        versions = await self.entries.get(name)
        found = versions.find(version)
        if found is None:
            known = ", ".join(p.version for p in versions.published)
            raise UnknownPlaybook(f"no playbook {reference!r} in the catalog" + (
                f": {name} has versions {known}" if known else "; `playbook playbooks` lists what there is"))
        return found

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, text: str, *, actor: str, at: datetime, version: str = "", source: str = "",
                      on_behalf_of: str | None = None) -> tuple[PlaybookPublished, bool]:
        """Validate and record a version: the version as the catalog holds it, and whether this publish recorded it
        (False: this text is that version already). Raises what a user can act on: PlaybookInvalid (errors other
        than security ones), TooLarge, CommandRejected (bad name or version, a version already published with
        other text)."""
        data = text.encode()
        if len(data) > MAX_BYTES:
            raise TooLarge(too_large(len(data)))
        from services.playbook import load_playbook   # the language's checks, loaded by those who publish only
        loaded = await asyncio.to_thread(load_playbook, text, source or "<publish>", allow_unsafe_shell=True)
        name = check_name(loaded.playbook.name)
        event = PlaybookPublished(
            name=name, at=at, version=version_to_publish(loaded.playbook.version, version), digest=digest_of(data),
            parsed=digest_of(encode_parsed(loaded.playbook, loaded.plan)), actor=actor, on_behalf_of=on_behalf_of,
            bytes=len(data), steps=len(loaded.playbook.steps),
            description=loaded.playbook.description[:DESCRIPTION_KEPT], source=source,
            validation=validation_of(loaded.warnings))
        versions = await self.entries.get(name)
        if not publish(versions, event):      # checked before storing anything: republishing costs no write
            return _holding(versions, event), False
        await self.playbooks.store_text(text)
        await self.playbooks.store_parsed(loaded.playbook, loaded.plan)
        versions, appended = await self.entries.change(name, lambda versions: publish(versions, event))
        return (appended[0], True) if appended else (_holding(versions, event), False)   # a race's loser: no news

    async def publish_library(self, folders: Sequence[Path], at: datetime) -> list[PlaybookPublished]:
        """Publish every `*.yaml` of the library folders not in the catalog yet (the first folder holding a file
        name wins); what cannot be published is logged, never fatal."""
        known = {p.digest for versions in (await self.everything()).values() for p in versions}
        seen: set[str] = set()
        published: list[PlaybookPublished] = []
        for path in (p for folder in folders if folder.is_dir() for p in sorted(folder.glob("*.yaml"))):
            if path.name in seen:
                continue
            seen.add(path.name)
            try:
                text = await asyncio.to_thread(_library_text, path)
                if digest_of(text.encode()) in known:
                    continue
                version, new = await self.publish(text, actor=LIBRARY_ACTOR, at=at, source=str(path))
                if new:
                    published.append(version)
            except (OSError, UnicodeDecodeError) as err:
                log.warning("library: cannot read %s: %s", path, err)
            except PlaybookError as err:     # an invalid playbook says its first error, and how many more
                log.warning("library: %s not published: %s", path, err)
        return published


def _holding(versions: PlaybookVersions, event: PlaybookPublished) -> PlaybookPublished:
    """The published version `event` found already there, with the same text."""
    found = versions.find(event.version)
    assert found is not None
    return found


def _library_text(path: Path) -> str:
    """A library file's text. Opened without blocking and read only if it is a regular file, no further than a
    playbook may be: a FIFO would hold the run service's start, a link to /dev/zero would read for ever."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as file:
        if status.st_size > MAX_BYTES:
            raise TooLarge(too_large(status.st_size))
        data = file.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:       # it grew while read
        raise TooLarge(too_large(len(data)))
    return data.decode()

