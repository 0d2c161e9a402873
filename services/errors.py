"""The engine's errors: one root, a few meaningful kinds, raised where they happen."""
from __future__ import annotations


class PlaybookError(Exception):
    """Root of every error the engine raises on purpose."""


class CommandRejected(PlaybookError):
    """A command contradicts the run's state; the message tells the user what to do."""

    def __init__(self, message: str, code: str = "rejected") -> None:
        super().__init__(message)
        self.code = code


class UnknownRun(CommandRejected):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}", code="unknown_run")
        self.run_id = run_id


class UnknownPlaybook(CommandRejected):
    """No catalog version, stored text or upload answers to this reference (or its content is not what it says)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unknown_playbook")


class TooLarge(CommandRejected):
    """Beyond a documented limit (playbook bytes or steps, a NATS message; the message names the size and the
    limit); exit 2 on the CLI, 413 over HTTP."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="too_large")


class ConcurrencyConflict(PlaybookError):
    """Someone appended to the run since we loaded it: reload, decide again."""

    def __init__(self, run_id: str, last: int = 0) -> None:
        super().__init__(f"run {run_id} changed while we were deciding")
        self.run_id = run_id
        self.last = last     # the run's last sequence, when the store said it: read at least that far


class UnresolvedReference(PlaybookError):
    """A `${...}` reference could not be resolved at run time (category `configuration`)."""


class EngineUnavailable(PlaybookError):
    """NATS or the engine's stream or services are not there to answer, or the store is full: try again later."""

    code = "unavailable"


class AccessDenied(CommandRejected):
    """The caller may not do this; every door answers it the same way and records it."""

    http_status = 403

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, code)


class Unauthenticated(AccessDenied):
    """No credential, or one that is malformed, unknown, wrong, expired or revoked. `owner`: whose it was, when its
    secret matched a token that is no longer valid (the refusal is then recorded under that name)."""

    http_status = 401

    def __init__(self, message: str, owner: str | None = None) -> None:
        super().__init__(message, "unauthenticated")
        self.owner = owner


class Forbidden(AccessDenied):
    """A verified principal whose grants do not allow the action (`forged_actor`: who names someone else)."""

    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(message, code)


class TooManyFailures(AccessDenied):
    """This source failed to authenticate too often; it may try again after `retry_after` seconds."""

    http_status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, "too_many_failures")
        self.retry_after = retry_after
