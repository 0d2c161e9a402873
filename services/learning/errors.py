"""The learning service's refusals, apart from the service, so that every door can raise them cheaply."""
from __future__ import annotations

from services.errors import PlaybookError


class LearningRefused(PlaybookError):
    """A request the learning service cannot answer now; the code says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
