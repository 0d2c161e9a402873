"""How much of the server's storage the capped streams reserve: the settings, or sizes that fit.

JetStream reserves a capped stream's max_bytes of the server's storage when it makes the stream.
Where a size is not set (`PLAYBOOK_LOGS_MAX_BYTES` and the two others), a stream that exists keeps
the size it has, so that a process started without the setting does not undo the operator's choice.
A new stream takes its default; when `playbook up` started the server and so knows its storage, no
more than the stream's share of what is not reserved yet. The defaults reserve 1.5 GiB, and the
embedded server has 75% of the disk's free space: on a small disk `up` would fail at its first start.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from events import subjects
from services.errors import PlaybookError
from services.jetstream import STREAM_NOT_FOUND, api_request
from services.playbook.limits import MAX_BYTES as PLAYBOOK_MAX_BYTES
from services.settings import ACCESS_MAX_BYTES, LOGS_MAX_BYTES, UPLOADS_MAX_BYTES, Settings

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

log = logging.getLogger(__name__)
MIB = 2**20


class Capped(NamedTuple):
    stream: str
    variable: str
    field: str        # its Settings attribute
    default: int
    share: float      # of the storage not reserved yet, the most a new stream takes when its size is not set
    least: int


# A quarter of the room for the logs, a sixteenth each for the others: the events keep most of it.
CAPPED = (Capped(subjects.LOGS_STREAM, "PLAYBOOK_LOGS_MAX_BYTES", "logs_max_bytes", LOGS_MAX_BYTES, 1 / 4, MIB),
          Capped(subjects.ACCESS_STREAM, "PLAYBOOK_ACCESS_MAX_BYTES", "access_max_bytes", ACCESS_MAX_BYTES,
                 1 / 16, MIB),
          Capped(subjects.object_stream(subjects.UPLOADS_BUCKET), "PLAYBOOK_UPLOADS_MAX_BYTES", "uploads_max_bytes",
                 UPLOADS_MAX_BYTES, 1 / 16, PLAYBOOK_MAX_BYTES))


async def decide_sizes(nc: NATS, settings: Settings, storage: int | None = None) -> Settings:
    """`settings` with every capped stream's size decided, and written into its environment (which `up` hands
    to its child processes): the setting's; else the stream's own, if it exists; else its default or, on a
    server whose JetStream `storage` is known, its share of what is not reserved yet, whichever is less."""
    room = None if storage is None else max(storage - await _reserved(nc), 0)
    environ, sizes = dict(settings.environ), dict[str, Any]()
    for capped in CAPPED:
        if (environ.get(capped.variable) or "").strip():
            continue
        size = await _max_bytes(nc, capped.stream) or _new_size(capped, room)
        environ[capped.variable] = str(size)
        sizes[capped.field] = size
    return dataclasses.replace(settings, environ=environ, **sizes)


def _new_size(capped: Capped, room: int | None) -> int:
    if room is None:
        return capped.default
    fits = max(int(room * capped.share) // MIB * MIB, capped.least)
    if fits >= capped.default:
        return capped.default
    log.warning("%s keeps at most %d MiB (its default is %d MiB): the server has %d MiB of JetStream storage "
                "left; set %s to choose, or give the server more room (PLAYBOOK_NATS_MAX_STORE)",
                capped.stream, fits // MIB, capped.default // MIB, room // MIB, capped.variable)
    return fits


async def _reserved(nc: NATS) -> int:
    """The storage the account's capped streams have reserved already."""
    return int((await api_request(nc, "$JS.API.INFO", b"")).get("reserved_storage") or 0)


async def _max_bytes(nc: NATS, stream: str) -> int:
    """The stream's size limit; 0 when there is no such stream, or it has none."""
    reply = await api_request(nc, f"$JS.API.STREAM.INFO.{stream}", b"")
    error = reply.get("error") or {}
    if error.get("err_code") == STREAM_NOT_FOUND:
        return 0
    if error:
        raise PlaybookError(f"cannot read the size of stream {stream}: {error.get('description')}")
    return max(int((reply.get("config") or {}).get("max_bytes") or 0), 0)
