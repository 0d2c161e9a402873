"""One JetStream stream to a file and back, through the server's own snapshot API.

`$JS.API.STREAM.SNAPSHOT.<stream>` makes the server write a consistent copy of the stream (its
messages, its configuration, its consumers) while it keeps serving; the copy arrives in chunks on
an inbox, each acknowledged so that the server sends on. `$JS.API.STREAM.RESTORE.<stream>` takes
the same bytes back, chunk by chunk, each answered, then an empty message that ends it. The bytes
are the server's own format: this module stores them as they come and never reads them.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from services.errors import PlaybookError

CHUNK = 128 * 1024          # the server's default chunk; below NATS's 1 MiB message limit
QUIET_SECONDS = 30.0        # a snapshot that sends nothing for this long has stopped
API_SECONDS = 10.0          # the JetStream API answers at once; a request it drops is never answered


async def snapshot(nc: NATS, stream: str, target: Path) -> dict[str, Any]:
    """Write the stream's snapshot to `target` (mode 0600); returns its configuration and state at that moment."""
    inbox = nc.new_inbox()
    chunks: asyncio.Queue[Any] = asyncio.Queue()
    sub = await nc.subscribe(inbox, cb=chunks.put)
    try:
        request = {"deliver_subject": inbox, "no_consumers": True, "chunk_size": CHUNK}
        answer = await _api(nc, f"$JS.API.STREAM.SNAPSHOT.{stream}", request, f"snapshot of {stream}")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            while True:
                try:
                    msg = await asyncio.wait_for(chunks.get(), QUIET_SECONDS)
                except TimeoutError:
                    raise PlaybookError(f"the snapshot of {stream} stopped arriving") from None
                if not msg.data:
                    # The end: an empty message, with a status; anything but 204 says why it failed.
                    status = (msg.headers or {}).get("Status", "204")
                    if status != "204":
                        reason = (msg.headers or {}).get("Description", status)
                        raise PlaybookError(f"the snapshot of {stream} failed: {reason}")
                    break
                file.write(msg.data)
                if msg.reply:
                    await nc.publish(msg.reply, b"")     # flow control: the server sends on
            file.flush()
            os.fsync(file.fileno())
        return {"config": answer["config"], "state": answer["state"]}
    finally:
        await sub.unsubscribe()


async def restore(nc: NATS, stream: str, source: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Make the stream again from its snapshot file; the server refuses if a stream of that name exists."""
    answer = await _api(nc, f"$JS.API.STREAM.RESTORE.{stream}", {"config": meta["config"], "state": meta["state"]},
                        f"restore of {stream}")
    deliver = answer["deliver_subject"]
    fd = os.open(source, os.O_RDONLY)
    try:
        while chunk := os.read(fd, CHUNK):
            reply = await nc.request(deliver, chunk, timeout=QUIET_SECONDS)
            if reply.data:
                _raise_on_error(json.loads(reply.data), f"restore of {stream}")
    finally:
        os.close(fd)
    done = await nc.request(deliver, b"", timeout=300)
    return _raise_on_error(json.loads(done.data), f"restore of {stream}")


async def streams(nc: NATS) -> list[str]:
    """Every stream's name the account holds."""
    answer = await _api(nc, "$JS.API.STREAM.NAMES", {}, "listing the streams")
    return list(answer.get("streams") or [])


async def delete(nc: NATS, stream: str) -> None:
    await _api(nc, f"$JS.API.STREAM.DELETE.{stream}", None, f"deleting {stream}")


async def _api(nc: NATS, subject: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
    import nats.errors
    try:
        reply = await nc.request(subject, b"" if body is None else json.dumps(body).encode(), timeout=API_SECONDS)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
        # A login without the JetStream API (the CLI's, an agent's) is not answered at all: NATS drops the request.
        raise PlaybookError(f"NATS did not answer the {what} ({subject}): it needs the engine's own login, "
                            "$PLAYBOOK_HOME/credentials/nats-engine.json (or one in NATS_URL with the JetStream API)"
                            ) from None
    return _raise_on_error(json.loads(reply.data), what)


def _raise_on_error(answer: dict[str, Any], what: str) -> dict[str, Any]:
    if error := answer.get("error"):
        raise PlaybookError(f"the {what} was refused by NATS: {error.get('description', error)}")
    return answer
