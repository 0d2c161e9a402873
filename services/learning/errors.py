"""The learning service's refusals, apart from the service, so that every door can raise them cheaply."""
from __future__ import annotations

from services.errors import CommandRejected


class LearningRefused(CommandRejected):
    """A request the learning service cannot answer now, or not for this caller; the code says why (as every
    refusal's, so that the CLI exits as its table says: 5 for a token that is not valid)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code)
