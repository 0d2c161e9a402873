"""The playbook catalog as every door uses it (CLI, web, MCP): publish, list, get, resolve and diff versions.

Publishing is a command (the engine validates, stores and records it with the caller as
author); reading goes straight to JetStream, as reading runs does.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import msgspec

from events.catalog import PlaybookPublished
from events.commands import PublishPlaybook, Reply
from events.identity import Caller
from services.errors import UnknownPlaybook
from services.read import Catalog, ParsedPlaybook, is_digest
from ui.client import EngineClient


@dataclass(frozen=True, slots=True)
class Published:
    """The answer to a publish: the version as the catalog holds it, and whether this publish recorded it."""

    version: PlaybookPublished
    new: bool


class CatalogClient:
    def __init__(self, engine: EngineClient) -> None:
        self.engine = engine
        self.catalog = Catalog(engine.nc, engine.playbooks)

    async def publish(self, text: str, *, version: str = "", source: str = "",
                      caller: Caller | None = None) -> Published | Reply:
        """Publish a version as the client's caller (or `caller`); the refusal's Reply when the engine refuses
        (not allowed, invalid, version taken, ...)."""
        reply = await self.engine.send(PublishPlaybook(text=text, version=version, source=source),
                                       timeout=120.0, caller=caller)
        if not reply.accepted:
            return reply
        if reply.events:
            return Published(_published(reply.events[0]), new=True)
        if reply.found:      # this text is that version already
            return Published(_published(reply.found[0]), new=False)
        raise UnknownPlaybook("the engine accepted the publish but named no version: is it older than this client?")

    async def versions(self, name: str | None = None) -> list[PlaybookPublished]:
        """Every version (of one name, or of every name by name), oldest first within a name."""
        if name is not None:
            return await self.catalog.versions(name)
        return [v for versions in (await self.catalog.everything()).values() for v in versions]

    async def latest(self) -> list[tuple[PlaybookPublished, list[str]]]:
        """Each name's latest version and every version it has (newest first), by name: what a start form lists."""
        return [(versions[-1], [v.version for v in reversed(versions)])
                for versions in (await self.catalog.everything()).values()]

    async def resolve(self, reference: str) -> PlaybookPublished:
        """`name` (the latest version) or `name@version`; UnknownPlaybook saying what there is otherwise."""
        return await self.catalog.find(reference)

    async def text(self, reference: str) -> str:
        """The YAML of `name[@version]`, or of a stored text's `sha256:` digest."""
        if is_digest(reference):
            return await self.engine.playbooks.text(reference)
        return await self.engine.playbooks.text((await self.resolve(reference)).digest)

    async def parsed(self, version: PlaybookPublished) -> ParsedPlaybook:
        """The version's playbook as validation produced it: parameters, environments, steps."""
        return await self.engine.playbooks.parsed(version.parsed)

    async def diff(self, name: str, old: str, new: str) -> str:
        """A unified diff of two versions' texts ("" when they are the same text)."""
        before, after = await self.resolve(f"{name}@{old}"), await self.resolve(f"{name}@{new}")
        if before.digest == after.digest:
            return ""
        lines = difflib.unified_diff(
            (await self.engine.playbooks.text(before.digest)).splitlines(keepends=True),
            (await self.engine.playbooks.text(after.digest)).splitlines(keepends=True),
            fromfile=f"{name}@{old}", tofile=f"{name}@{new}")
        return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


def _published(event: dict[str, Any]) -> PlaybookPublished:
    return msgspec.convert(event, PlaybookPublished)


def version_json(version: PlaybookPublished) -> dict[str, Any]:
    """One version as the API and `--json` show it."""
    return {"id": f"{version.name}@{version.version}", "name": version.name, "version": version.version,
            "digest": version.digest, "author": version.author, "published_at": version.at.isoformat(),
            "bytes": version.bytes, "steps": version.steps, "description": version.description,
            "source": version.source, "validation": msgspec.to_builtins(version.validation)}
