"""Secrets: where their values come from, where they may go, and how they are kept out of every record.

Each name loads its module when first asked for: the settings hold a secret source, and the CLI, which
reads its settings, need not load redaction and the attempt's secrets that only the executor uses.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from services.lazy_names import lazy_names

if TYPE_CHECKING:
    from services.secrets.attempt import AttemptSecrets
    from services.secrets.redaction import MASK, Redactor, redact, redactor_for
    from services.secrets.source import (MIN_SECRET_LENGTH, Secret, SecretRefused, SecretSource,
                                         allowed_environment)

_MODULES = {
    "AttemptSecrets": "attempt",
    "MASK": "redaction", "Redactor": "redaction", "redact": "redaction", "redactor_for": "redaction",
    "MIN_SECRET_LENGTH": "source", "Secret": "source", "SecretRefused": "source", "SecretSource": "source",
    "allowed_environment": "source",
}

__all__ = ["MASK", "MIN_SECRET_LENGTH", "AttemptSecrets", "Redactor", "Secret", "SecretRefused", "SecretSource",
           "allowed_environment", "redact", "redactor_for"]


__getattr__ = lazy_names(__name__, _MODULES, globals())
