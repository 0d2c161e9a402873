"""Circuit breakers, pure: a breaker's state from its events, and what a call may do.

closed: calls go through; `failure_threshold` target failures in a row open it, and so
does a `failure_rate` over the last `window` calls (counted once `minimum_calls` were made).
open: calls fail fast (category `dependency`) until `open_seconds` have passed.
half-open: `half_open_trials` calls test the target; a success closes it, a failure
opens it again. Only failures that speak of the target count (network, timeout,
temporary, dependency): a bad argument says nothing about the service behind it.
"""
from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from events.circuit import (
    CircuitCallFailed, CircuitCallSucceeded, CircuitClosed, CircuitEvent, CircuitHalfOpened, CircuitOpened,
    CircuitReset, CircuitTrialStarted,
)
from events.playbook import MAX_CIRCUIT_WINDOW, CircuitSpec, Step, circuit_of
from services.errors import CommandRejected

TARGET_FAILURES = frozenset({"network", "timeout", "temporary", "dependency"})


def circuit_key(playbook: str, step: Step, args: dict[str, Any]) -> str:
    """The target a step calls: its circuit's `key`, an http origin, or the playbook step."""
    spec = circuit_of(step)
    if spec is not None and spec.key:
        return spec.key
    if step.action == "http_request" and isinstance(args.get("url"), str):
        try:
            url = urlsplit(args["url"])
            port = url.port or (443 if url.scheme == "https" else 80)
        except ValueError:   # no port to read (a `/` in a password ends the authority early): the request
            return f"{playbook}:{step.id}"   # itself is refused as configuration; its text may hold a secret
        return f"{url.scheme}://{url.hostname}:{port}"
    return f"{playbook}:{step.id}"


def token(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(slots=True)
class Breaker:
    key: str
    version: int = 0
    state: Literal["closed", "open", "half_open"] = "closed"
    failures: int = 0                 # target failures in a row
    until: datetime | None = None
    trials: int = 0
    trial_steps: list[tuple[str, str]] = field(default_factory=list)   # (run, step) of each trial under way
    last_change: datetime | None = None
    reason: str = ""                  # why it last opened
    # Outcomes of the latest calls since the last change of state, True = failed.
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=MAX_CIRCUIT_WINDOW))


def evolve(breaker: Breaker, event: CircuitEvent, seq: int = 0) -> Breaker:
    if seq:
        if seq <= breaker.version:    # already applied (two loads of a cached breaker crossed)
            return breaker
        breaker.version = seq
    match event:
        case CircuitCallFailed():
            breaker.failures += 1
            breaker.recent.append(True)
        case CircuitCallSucceeded():
            breaker.failures = 0
            breaker.recent.append(False)
        case CircuitOpened(until=until, at=at, reason=reason):
            breaker.state, breaker.until, breaker.trials, breaker.last_change = "open", until, 0, at
            breaker.trial_steps = []
            breaker.reason = reason
            breaker.recent.clear()
        case CircuitHalfOpened(at=at):
            breaker.state, breaker.trials, breaker.last_change, breaker.trial_steps = "half_open", 0, at, []
        case CircuitTrialStarted(run_id=run_id, step_id=step_id):
            breaker.trials += 1
            breaker.trial_steps.append((run_id, step_id))
        case CircuitClosed(at=at) | CircuitReset(at=at):
            breaker.state, breaker.failures, breaker.until, breaker.last_change = "closed", 0, None, at
            breaker.trial_steps = []
            breaker.recent.clear()
    return breaker


def reset(breaker: Breaker, actor: str, on_behalf_of: str | None, at: datetime) -> list[CircuitEvent]:
    """Close a breaker by hand; one that has recorded nothing does not exist, and is not made by a reset."""
    if not breaker.version:
        raise CommandRejected(f"no circuit breaker {breaker.key!r}; `playbook circuits` lists them", "unknown_circuit")
    return [CircuitReset(key=breaker.key, at=at, actor=actor, on_behalf_of=on_behalf_of)]


def before_call(breaker: Breaker, spec: CircuitSpec, run_id: str, step_id: str,
                at: datetime) -> tuple[list[CircuitEvent], str | None]:
    """Events to record before calling, and the reason to fail fast instead (None: call)."""
    key = breaker.key
    if breaker.state == "closed":
        return [], None
    if breaker.state == "open" and breaker.until is not None and at < breaker.until:
        return [], (f"circuit {key} is open until {breaker.until:%H:%M:%S}Z ({breaker.reason}); "
                    "the target was not called")
    trial = CircuitTrialStarted(key=key, at=at, run_id=run_id, step_id=step_id)
    if breaker.state == "open":
        return [CircuitHalfOpened(key=key, at=at), trial], None
    if breaker.trials < spec.half_open_trials:
        return [trial], None
    if (run_id, step_id) in breaker.trial_steps:
        # Its own trial ended with no outcome: its executor died mid-call, and the step runs again. Without a fresh
        # start the trial's place stayed taken, and every call was refused until someone reset the breaker.
        return [CircuitHalfOpened(key=key, at=at, trial_lost=f"{run_id}/{step_id}"), trial], None
    return [], f"circuit {key} is half-open and its {spec.half_open_trials} trial call(s) are under way; not calling"


def trial_abandoned(breaker: Breaker, run_id: str, step_id: str, at: datetime) -> list[CircuitEvent]:
    """A trial call that ended without an outcome (its step was cancelled) tested nothing: the breaker
    half-opens afresh so that the next call tests the target, or it would refuse every call for ever."""
    if breaker.state != "half_open" or not breaker.trials:
        return []
    return [CircuitHalfOpened(key=breaker.key, at=at, trial_lost=f"{run_id}/{step_id}")]


def after_call(breaker: Breaker, spec: CircuitSpec, run_id: str, step_id: str, at: datetime,
               category: str | None, error: str = "") -> list[CircuitEvent]:
    """What the call's outcome does to the breaker; `category` None means it succeeded."""
    key = breaker.key
    succeeded = CircuitCallSucceeded(key=key, at=at, run_id=run_id, step_id=step_id)
    if category is None:
        if breaker.state == "half_open":
            return [succeeded, CircuitClosed(key=key, at=at, reason=f"trial call by {run_id}/{step_id} succeeded")]
        # Successes matter only to end a run of failures, or to a failure rate.
        return [succeeded] if breaker.failures or spec.failure_rate is not None else []
    if category not in TARGET_FAILURES:
        return []
    failed = CircuitCallFailed(key=key, at=at, run_id=run_id, step_id=step_id, error=error[:300])
    until = at + timedelta(seconds=spec.open_seconds)
    if breaker.state == "half_open":
        return [failed, CircuitOpened(key=key, at=at, until=until, reason=f"trial call failed: {error[:200]}")]
    if breaker.state == "closed" and (why := _tripped(breaker, spec)):
        return [failed, CircuitOpened(key=key, at=at, until=until, reason=f"{why}, last: {error[:200]}")]
    return [failed]


def _tripped(breaker: Breaker, spec: CircuitSpec) -> str:
    """Why one more failure opens a closed breaker, or "" if it does not."""
    in_a_row = breaker.failures + 1
    if in_a_row >= spec.failure_threshold:
        return f"{in_a_row} failure{'s' if in_a_row > 1 else ''} in a row"
    if spec.failure_rate is None:
        return ""
    window = [*breaker.recent, True][-spec.window:]
    failed = sum(window)
    if len(window) >= min(spec.minimum_calls, spec.window) and failed / len(window) >= spec.failure_rate:
        rate = failed / len(window)
        return f"{failed} of the last {len(window)} calls failed (rate {rate:.0%} >= {spec.failure_rate:.0%})"
    return ""
