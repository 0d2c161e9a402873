"""Whether and when a failed attempt runs again: the step's `retry` policy and error handlers, pure.

Backoff is `base_delay * 2^(attempt-1)` (or flat), capped at `max_delay`, with jitter
(`full` by default, as in the well-known AWS analysis; `equal`; `none`). A Retry-After
from a 429/503 is respected within `max_delay`. The random draw arrives as `draw` in
[0, 1), so the decision itself stays pure and testable.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.playbook import ErrorHandler, RetryPolicy
from events.run import StepFailed
from services.domain.classify import Classification
from services.domain.run.commands import RecordRetryVerdict
from services.playbook.regexes import BadRegex, searches

DEFAULT_RETRY_ON = ("network", "timeout", "temporary", "dependency")


def backoff(policy: RetryPolicy, attempt: int, draw: float, retry_after: float | None = None) -> float:
    # 2 ** 1024 no longer converts to a float; a capped float power (times the base, perhaps inf) min() caps below.
    delay = policy.base_delay * (2.0 ** min(attempt - 1, 1023) if policy.exponential_backoff else 1)
    delay = min(delay, policy.max_delay)
    if policy.jitter == "full":
        delay *= draw
    elif policy.jitter == "equal":
        delay = delay / 2 + delay / 2 * draw
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    return round(delay, 3)


def retry_verdict(step_id: str, attempt: int, policy: RetryPolicy, found: Classification,
                  outputs: Mapping[str, Any], draw: float, first: int = 1) -> RecordRetryVerdict:
    """`first` is the attempt the policy counts from (a retried run's next attempt): attempts go on, tries restart."""
    status = outputs.get("status_code") if isinstance(outputs, Mapping) else None
    why = f"{found.category} error ({found.signal})"
    common: dict[str, Any] = dict(step_id=step_id, attempt=attempt, category=found.category, pattern=found.pattern)
    tries = attempt - first + 1
    since = "" if first == 1 else " since the run was retried"
    if tries >= policy.max_attempts:
        return RecordRetryVerdict(**common, retry=False, exhausted=True,
                                  reason=f"{why}; all {policy.max_attempts} attempts{since} used")
    if policy.retry_on_status is not None and isinstance(status, int):
        retryable = status in policy.retry_on_status
        rule = f"status {status} {'is' if retryable else 'is not'} in retry_on_status"
    else:
        allowed = policy.retry_on_errors if policy.retry_on_errors is not None else DEFAULT_RETRY_ON
        retryable = found.category in allowed
        rule = f"{found.category} {'is' if retryable else 'is not'} in retry_on_errors ({', '.join(allowed)})"
    if not retryable:
        return RecordRetryVerdict(**common, retry=False, reason=f"{why}; not retried: {rule}")
    retry_after = outputs.get("retry_after") if isinstance(outputs, Mapping) else None
    delay = backoff(policy, tries, draw, retry_after if isinstance(retry_after, (int, float)) else None)
    count = (f"{attempt + 1} of {policy.max_attempts}" if first == 1 else
             f"{attempt + 1} (try {tries + 1} of {policy.max_attempts}{since})")
    return RecordRetryVerdict(**common, retry=True, delay_seconds=delay,
                              reason=f"{why}; attempt {count} in {delay:g}s ({rule})")


def matching_handler(handlers: list[ErrorHandler], found: Classification, failed: StepFailed) -> int | None:
    """The first error handler for this failure's category or text, by index."""
    text = " ".join(str(part) for part in (failed.error, failed.outputs.get("stderr", ""),
                                           failed.outputs.get("stdout", "")))
    for index, handler in enumerate(handlers):
        if handler.category and handler.category == found.category:
            return index
        if handler.pattern and _searches(handler.pattern, text):
            return index
    return None


def _searches(pattern: str, text: str) -> bool:
    """A pattern RE2 cannot run (refused by validation since; an engine handler's stops its service) matches
    nothing, rather than failing the resilience service's decision."""
    try:
        return searches(pattern, text, ignore_case=True)
    except BadRegex:
        return False


def handler_name(index: int, own: int) -> str:
    """How a handler is named in reasons: the playbook's own come first, then the engine's."""
    return f"error handler {index + 1}" if index < own else f"engine error handler {index - own + 1}"


def without_policy(step_id: str, attempt: int, found: Classification) -> RecordRetryVerdict:
    """A failure with neither a retry policy nor an error handler for it stands."""
    why = f"{found.category} error ({found.signal}); no retry policy and no error handler for it"
    return RecordRetryVerdict(step_id=step_id, attempt=attempt, retry=False, category=found.category,
                              pattern=found.pattern, reason=why)


def after_remediation(step_id: str, attempt: int, policy: RetryPolicy | None, handler: ErrorHandler,
                      found: Classification, why: str, remediated: bool, first: int = 1) -> RecordRetryVerdict:
    """Retry at once after a successful remediation, unless the handler or the attempts say no."""
    limit = policy.max_attempts if policy else 2
    common: dict[str, Any] = dict(step_id=step_id, attempt=attempt, category=found.category, pattern=found.pattern)
    if not remediated:
        return RecordRetryVerdict(**common, retry=False, reason=f"{why}: the remediation failed")
    if handler.then == "fail":
        return RecordRetryVerdict(**common, retry=False,
                                  reason=f"{why}: remediated; the handler lets the failure stand")
    if attempt - first + 1 >= limit:   # tries since `first`, as retry_verdict counts them
        return RecordRetryVerdict(**common, retry=False, exhausted=True,
                                  reason=f"{why}: remediated, but all {limit} attempts used")
    return RecordRetryVerdict(**common, retry=True, delay_seconds=0.0, reason=f"{why}: remediated; retrying at once")
