"""Whether and when a failed attempt runs again: the step's `retry` policy, pure.

Backoff is `base_delay * 2^(attempt-1)` (or flat), capped at `max_delay`, with jitter
(`full` by default, as in the well-known AWS analysis; `equal`; `none`). A Retry-After
from a 429/503 is respected within `max_delay`. The random draw arrives as `draw` in
[0, 1), so the decision itself stays pure and testable.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.playbook import RetryPolicy
from services.resilience.classify import Classification
from services.run.decider import DecideRetry

DEFAULT_RETRY_ON = ("network", "timeout", "temporary", "dependency")


def backoff(policy: RetryPolicy, attempt: int, draw: float, retry_after: float | None = None) -> float:
    delay = policy.base_delay * (2 ** (attempt - 1) if policy.exponential_backoff else 1)
    delay = min(delay, policy.max_delay)
    if policy.jitter == "full":
        delay *= draw
    elif policy.jitter == "equal":
        delay = delay / 2 + delay / 2 * draw
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    return round(delay, 3)


def decide_retry(step_id: str, attempt: int, policy: RetryPolicy, found: Classification,
                 outputs: Mapping[str, Any], draw: float) -> DecideRetry:
    status = outputs.get("status_code") if isinstance(outputs, Mapping) else None
    why = f"{found.category} error ({found.signal})"
    common = dict(step_id=step_id, attempt=attempt, category=found.category, pattern=found.pattern)
    if attempt >= policy.max_attempts:
        return DecideRetry(**common, retry=False, exhausted=True,
                           reason=f"{why}; all {policy.max_attempts} attempts used")
    if policy.retry_on_status is not None and isinstance(status, int):
        retryable = status in policy.retry_on_status
        rule = f"status {status} {'is' if retryable else 'is not'} in retry_on_status"
    else:
        allowed = policy.retry_on_errors if policy.retry_on_errors is not None else DEFAULT_RETRY_ON
        retryable = found.category in allowed
        rule = f"{found.category} {'is' if retryable else 'is not'} in retry_on_errors ({', '.join(allowed)})"
    if not retryable:
        return DecideRetry(**common, retry=False, reason=f"{why}; not retried: {rule}")
    retry_after = outputs.get("retry_after") if isinstance(outputs, Mapping) else None
    delay = backoff(policy, attempt, draw, retry_after if isinstance(retry_after, (int, float)) else None)
    return DecideRetry(**common, retry=True, delay_seconds=delay,
                       reason=f"{why}; attempt {attempt + 1} of {policy.max_attempts} in {delay:g}s ({rule})")
