"""Playbooks stored by digest: the YAML texts (as published or sent) and the parsed forms runs pin.

A run's `RunStarted` carries a pin instead of its playbook, so no event grows with the
playbook. Every reader that folds a run resolves the pin here before folding: once per
digest per process (the cache), after which a pinned run costs what an embedded one did.
Only the engine writes to PB_PLAYBOOKS; clients stage texts too large for one NATS message
in PB_UPLOADS and name the upload in their command.
"""
from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

from nats.aio.client import Client as NATS

from events import subjects
from events.playbook import Plan, Playbook
from events.run import RunEvent, RunRetried, RunStarted
from services.errors import TooLarge, UnknownPlaybook
from services.objects import ObjectBucket
from services.playbook import MAX_BYTES, too_large
from services.playbook_pins import (
    ParsedPlaybook, decode_parsed, digest_of, encode_parsed, object_name, with_playbook,
)
from services.settings import UPLOADS_MAX_BYTES

UPLOAD_MAX_AGE = 3600.0                  # an upload is read within seconds; the rest expire after an hour
PARSED_KEPT = 64                         # parsed playbooks a process keeps (runs hold theirs anyway)
TEXTS_KEPT = 8
V = TypeVar("V")


class PlaybookStore:
    def __init__(self, nc: NATS) -> None:
        self.bucket = ObjectBucket(nc, subjects.PLAYBOOKS_BUCKET)
        self.uploads = ObjectBucket(nc, subjects.UPLOADS_BUCKET)
        self._parsed: OrderedDict[str, ParsedPlaybook] = OrderedDict()
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._loading: dict[str, asyncio.Future[ParsedPlaybook]] = {}
        self._stored: OrderedDict[str, None] = OrderedDict()     # names known to be in the bucket

    async def ensure(self, replicas: int = 1, uploads_max_bytes: int = UPLOADS_MAX_BYTES) -> None:
        """The engine's buckets: playbooks kept for good, uploads for an hour."""
        await self.bucket.ensure(replicas=replicas)
        await self.uploads.ensure(max_age=UPLOAD_MAX_AGE, max_bytes=uploads_max_bytes, replicas=replicas,
                                  sized_by="PLAYBOOK_UPLOADS_MAX_BYTES")

    # -- the engine's writes -------------------------------------------------------------------

    async def store_text(self, text: str) -> str:
        """Keep the text by its digest (once); returns the digest."""
        data = text.encode()
        digest = digest_of(data)
        await self._store(object_name(digest, "yaml"), data)
        _remember(self._texts, digest, text, TEXTS_KEPT)
        return digest

    async def store_parsed(self, playbook: Playbook, plan: Plan) -> str:
        """Keep the parsed playbook by its digest (once), and in the cache; returns the digest."""
        data = encode_parsed(playbook, plan)
        digest = digest_of(data)
        await self._store(object_name(digest, "json"), data)
        _remember(self._parsed, digest, ParsedPlaybook(playbook=playbook, plan=plan), PARSED_KEPT)
        return digest

    async def _store(self, name: str, data: bytes) -> None:
        if name in self._stored:
            return
        if not await self.bucket.has(name):
            await self.bucket.put(name, data)
        _remember(self._stored, name, None, 4096)

    async def take_upload(self, upload: str) -> str:
        """The text a client staged in PB_UPLOADS, removed once read (it expires anyway)."""
        data = await self.uploads.get(upload)
        if data is None:
            raise UnknownPlaybook(f"no upload {upload!r} in {subjects.UPLOADS_BUCKET} (uploads expire after "
                                  f"{UPLOAD_MAX_AGE / 60:.0f} minutes, and each is read once): send the playbook again")
        await self.uploads.delete(upload)
        return _text(data, upload)

    # -- a client's write --------------------------------------------------------------------

    async def upload(self, text: str) -> str:
        """Stage a text too large for one message; returns the name a command gives as `upload`."""
        data = text.encode()
        if len(data) > MAX_BYTES:
            raise TooLarge(too_large(len(data)))
        name = os.urandom(16).hex()      # unguessable: no one else can replace or read it by name
        await self.uploads.put(name, data)
        return name

    # -- everyone's reads ----------------------------------------------------------------------

    async def text(self, digest: str) -> str:
        """The YAML text with this digest; UnknownPlaybook if it was never stored."""
        if (text := self._texts.get(digest)) is not None:
            return text
        data = await self.bucket.get(object_name(digest, "yaml"))
        if data is None:
            raise UnknownPlaybook(f"no playbook text {digest} in {subjects.PLAYBOOKS_BUCKET}")
        if digest_of(data) != digest:
            raise UnknownPlaybook(f"the playbook text stored as {digest} does not match its digest")
        text = _text(data, digest)
        _remember(self._texts, digest, text, TEXTS_KEPT)
        return text

    async def parsed(self, digest: str) -> ParsedPlaybook:
        """The parsed playbook with this digest, from the cache or the bucket (one fetch per digest at a time)."""
        if (found := self._parsed.get(digest)) is not None:
            self._parsed.move_to_end(digest)
            return found
        loading = self._loading.get(digest)
        if loading is None:
            loading = self._loading[digest] = asyncio.get_running_loop().create_future()
            try:
                parsed = await self._fetch_parsed(digest)
                loading.set_result(parsed)
                _remember(self._parsed, digest, parsed, PARSED_KEPT)
            except BaseException as err:
                loading.set_exception(err)
                loading.exception()      # read here: a fetch no one else waited for is not "never retrieved"
                raise
            finally:
                del self._loading[digest]
        return await asyncio.shield(loading)

    async def _fetch_parsed(self, digest: str) -> ParsedPlaybook:
        return decode_parsed(digest, await self.bucket.get(object_name(digest, "json")), subjects.PLAYBOOKS_BUCKET)

    async def resolve(self, event: RunEvent) -> RunEvent:
        """The event ready to fold: a pinned RunStarted (or retry) gets its playbook and plan; anything else is as
        it is."""
        if not isinstance(event, RunStarted | RunRetried) or event.resolved or event.pin is None:
            return event
        try:
            parsed = await self.parsed(event.pin.parsed)
        except UnknownPlaybook as err:
            raise UnknownPlaybook(f"run {event.run_id} cannot be read: {err}") from None
        return with_playbook(event, parsed)

    async def resolved(self, envelopes: Sequence[tuple[int, RunEvent]]) -> list[tuple[int, RunEvent]]:
        """Envelopes ready to fold: each pinned RunStarted resolved, the rest untouched."""
        return [(seq, await self.resolve(event)) if isinstance(event, RunStarted | RunRetried) else (seq, event)
                for seq, event in envelopes]


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UnknownPlaybook(f"{what} is not UTF-8 text") from None


def _remember(cache: OrderedDict[str, V], key: str, value: V, kept: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > kept:
        cache.popitem(last=False)
