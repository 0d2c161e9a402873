"""Secrets: where their values come from, where they may go, and how they are kept out of every record."""
from services.secrets.attempt import AttemptSecrets
from services.secrets.redaction import MASK, Redactor, redact, redactor_for
from services.secrets.source import (MIN_SECRET_LENGTH, Secret, SecretRefused, SecretSource,
                                     allowed_environment)

__all__ = ["MASK", "MIN_SECRET_LENGTH", "AttemptSecrets", "Redactor", "Secret", "SecretRefused", "SecretSource",
           "allowed_environment", "redact", "redactor_for"]
