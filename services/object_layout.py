"""Where a JetStream object store keeps an object, and the check that what was read is whole.

The object store's own layout (chunks on `$O.<bucket>.C.<nuid>`, the description on
`$O.<bucket>.M.<base64 name>`), apart from any client: the engine reads it with nats-py
(`services.objects`), the CLI over its plain connection (`ui.cli.wire`).
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any

from services.errors import UnknownPlaybook


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


def object_digest(data: bytes) -> str:
    """The digest an object's description carries."""
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


def whole(bucket: str, name: str, description: dict[str, Any], data: bytes) -> bytes:
    """`data` read from the chunks `description` names, if it is all of them unchanged; else UnknownPlaybook."""
    if len(data) != description.get("size") or object_digest(data) != description.get("digest"):
        raise UnknownPlaybook(f"{name} in the object store {bucket} is incomplete or damaged "
                              f"({len(data)} of {description.get('size')} bytes read)")
    return data
