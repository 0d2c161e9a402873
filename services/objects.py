"""JetStream object store buckets: written chunk by chunk, read back with batched direct gets.

The layout is the object store's own (chunks on `$O.<bucket>.C.<nuid>`, the description on
`$O.<bucket>.M.<base64 name>`), so `nats object` tools read what the engine writes. Reading
goes through direct gets instead of nats-py's ordered consumer: a reader then needs no
consumer of its own (docs/security.md), and a 2 MB playbook arrives in one round trip.
Objects are written once under a new name and never replaced, so no bucket takes rollup headers: a
client may write to PB_UPLOADS, and one `Nats-Rollup: all` there would purge everyone's uploads.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js.errors import APIError

from events import subjects
from services.errors import EngineUnavailable, TooLarge
from services.jetstream import ensure_stream, last_message
from services.object_layout import chunk_subject, meta_subject, object_digest, whole
from services.store import EventStore

CHUNK_TIMEOUT = 5.0     # seconds for one chunk's publish or read

CHUNK_BYTES = 128 * 1024          # the object store's usual chunk: far below any NATS max payload
CHUNKS_PER_READ = 64              # chunks per direct-get round trip: 8 MiB


class ObjectBucket:
    def __init__(self, nc: NATS, bucket: str) -> None:
        self.nc, self.bucket = nc, bucket
        self.stream = subjects.object_stream(bucket)
        self.js = nc.jetstream(timeout=CHUNK_TIMEOUT)
        self._chunks = EventStore(nc, self.stream)     # its batched direct gets read chunks too

    async def ensure(self, *, max_age: float = 0, max_bytes: int = -1, replicas: int = 1, sized_by: str = "") -> None:
        """Create the bucket's stream, or bring its limits up to date (the engine does, at start)."""
        await ensure_stream(self.nc, {
            "name": self.stream, "subjects": [f"$O.{self.bucket}.C.>", f"$O.{self.bucket}.M.>"], "storage": "file",
            "num_replicas": replicas, "max_age": int(max_age * 1e9), "max_bytes": max_bytes, "discard": "new",
            "allow_rollup_hdrs": False, "allow_direct": True,
        }, sized_by=sized_by)

    async def put(self, name: str, data: bytes) -> None:
        """Store `data` under a name not used before; EngineUnavailable when the bucket cannot take it."""
        nuid = os.urandom(12).hex()
        chunks = chunk_subject(self.bucket, nuid)
        try:
            for offset in range(0, len(data), CHUNK_BYTES):
                await self.js.publish(chunks, data[offset:offset + CHUNK_BYTES])
            description = {
                "name": name, "bucket": self.bucket, "nuid": nuid, "size": len(data),
                "chunks": -(-len(data) // CHUNK_BYTES), "mtime": datetime.now(timezone.utc).isoformat(),
                "digest": object_digest(data),
                "options": {"max_chunk_size": CHUNK_BYTES},
            }
            await self.js.publish(self._meta(name), json.dumps(description).encode())
        except APIError as err:
            raise EngineUnavailable(f"the object store {self.bucket} did not take {name} ({len(data)} bytes): "
                                    f"{err.description or err}") from None
        except (TimeoutError, nats.errors.NoRespondersError) as err:
            raise EngineUnavailable(f"the object store {self.bucket} did not answer ({type(err).__name__}): "
                                    "is the engine up?") from None
        except nats.errors.MaxPayloadError as err:
            raise TooLarge(f"a chunk of {name} is larger than NATS accepts: {err}") from None

    async def get(self, name: str) -> bytes | None:
        """The object's bytes, checked against the digest it was stored with; None if there is none."""
        description = await self._description(name)
        if description is None:
            return None
        envelopes, _ = await self._chunks.load_aggregate(chunk_subject(self.bucket, description['nuid']), bytes,
                                                         batch=CHUNKS_PER_READ)
        return whole(self.bucket, name, description, b"".join(chunk for _, chunk in envelopes))

    async def has(self, name: str) -> bool:
        return await self._description(name) is not None

    async def delete(self, name: str) -> None:
        """Remove the object's chunks and description (the engine's cleanup of uploads it has read)."""
        description = await self._description(name)
        if description is not None:
            await self.js.purge_stream(self.stream, subject=chunk_subject(self.bucket, description['nuid']))
        await self.js.purge_stream(self.stream, subject=self._meta(name))

    def _meta(self, name: str) -> str:
        return meta_subject(self.bucket, name)

    async def _description(self, name: str) -> dict[str, Any] | None:
        msg = await last_message(self.nc, self.stream, self._meta(name), f"reading {name} in {self.bucket}")
        status = (msg.headers or {}).get("Status")
        if status == "404":
            return None
        if status:
            raise EngineUnavailable(f"the object store {self.bucket} cannot be read: {status} "
                                    f"{(msg.headers or {}).get('Description', '')}".rstrip())
        description: dict[str, Any] = json.loads(msg.data)
        return None if description.get("deleted") else description
