"""Seal a secret for the one caller who sent the key: a reply on an inbox others might read.

The caller sends 32 random bytes with its request (requests on `pb.cmd.>` reach only the
engine); the reply carries the secret XORed with a SHAKE-256 stream of that key. One key
per request, never reused, so the stream is a one-time pad; no one but the engine can
publish on inboxes, so a reply cannot be forged either.
"""
from __future__ import annotations

import hashlib
import secrets

_DOMAIN = b"playbook-engine sealed reply\x00"


def new_seal() -> str:
    return secrets.token_hex(32)


def _xor(key_hex: str, data: bytes) -> bytes:
    stream = hashlib.shake_256(_DOMAIN + bytes.fromhex(key_hex)).digest(len(data))
    return bytes(a ^ b for a, b in zip(data, stream))


def seal(key_hex: str, secret: str) -> str:
    return _xor(key_hex, secret.encode()).hex()


def unseal(key_hex: str, sealed_hex: str) -> str:
    return _xor(key_hex, bytes.fromhex(sealed_hex)).decode(errors="replace")
