"""From run events to facts: each run's context (its playbook, the backoff waited so far), folded
as events arrive, turns one event into what it teaches.

A pure fold of the run's own events: after a restart, a run met mid-way is brought up to
date from its earlier events in the stream (`replay`), and teaches the same as it would
have without the restart. Contexts are kept for the runs still going, and for ended ones a retry may
reopen, a bounded number of each.
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from events.circuit import CircuitCallFailed, CircuitCallSucceeded, CircuitEvent, CircuitOpened
from events.playbook import ErrorHandler, Step, circuit_of
from events.run import (
    ENDINGS, TERMINAL_EVENTS, ApprovalGranted, ApprovalRejected, ApprovalRequested, ApprovalTimedOut, RunEvent,
    RunPaused, RunResumed, RunRetried, RunStarted, StepFailed, StepNotRetried, StepRemediated, StepRemediationFailed,
    StepRetryScheduled, StepSucceeded,
)
from services.errors import PlaybookError
from services.learning.facts import (
    ApprovalDecided, AttemptFailed, AttemptPassed, BreakerOpened, Check, Fact, RemediationEnded, RetryShape, RunBegan,
    RunEnded, RunReopened, StepConfigured, StepShape,
)
from services.playbook.actions import ACTION_SPECS
from services.playbook.interpolate import Context, resolve
from services.domain.breaker import circuit_key
from services.domain.run.state import playbook_of, variables_of

# What events teach, as this module reads them: raised whenever that changes, so that knowledge an earlier
# version learned (a retried run counted as failed, say) is learned again from the first event.
INTERPRETATION = 4
RUNS_KEPT = 10_000           # contexts of runs still going; an evicted one is replayed from the stream if needed
ENDED_KEPT = 1_000           # contexts of ended runs a retry may reopen (older ones are replayed if one is)
SHAPES_KEPT = 10_000         # step shapes last taught, so an unchanged playbook teaches its shape once
PLAYBOOKS_KEPT = 100         # playbooks (with their parameters) whose step shapes are at hand
# Events whose meaning depends on the run's earlier events.
CONTEXTUAL = (StepSucceeded, StepFailed, StepRetryScheduled, StepNotRetried, StepRemediated, StepRemediationFailed,
              ApprovalRequested, ApprovalGranted, ApprovalRejected, ApprovalTimedOut, RunRetried, *TERMINAL_EVENTS)
# The engine stopped the attempt (or could not run it: `engine`); the step did not fail.
ENGINE_STOPS = frozenset({"cancelled", "interrupted", "engine"})


@dataclass(slots=True)
class StepContext:
    shape: StepShape
    target: str | None                   # the breaker's key seen at run time, if the args could not tell
    after: str = ""                      # category of the failure the next attempt retries
    delay_ms: float = 0.0
    waited_ms: float = 0.0
    failed: StepFailed | None = None     # the failure whose classification is still to come
    approval_at: datetime | None = None
    first: int = 1                       # the attempt its tries count from; 0: the next one (after a run retry)


@dataclass(slots=True)
class RunContext:
    playbook: str
    environment: str                                 # "": none
    started: datetime
    steps: dict[str, StepContext]
    handlers: list[str] = field(default_factory=list)
    gave_up: set[str] = field(default_factory=set)   # steps that failed for good, until a retry runs them again
    outcome: str = ""                                # how it ended, until a retry reopens it
    ended: datetime | None = None
    idle_ms: float = 0.0                             # paused, or ended until a retry: not part of its duration
    paused: datetime | None = None
    starter: str = ""                                # who started it
    text: bool = False                               # from a text of their own, not a catalog version
    definition: str = ""                             # the playbook as it follows it (its pin's parsed digest)


class Interpreter:
    def __init__(self) -> None:
        self.runs: OrderedDict[str, RunContext] = OrderedDict()
        self.finished: OrderedDict[str, None] = OrderedDict()   # ended or dry runs: nothing more to learn
        self.ended: OrderedDict[str, RunContext] = OrderedDict()  # the newest ended ones, for a retry to reopen
        self.shapes: OrderedDict[tuple[str, str, str], StepShape] = OrderedDict()
        self.playbooks: OrderedDict[bytes, dict[str, StepShape]] = OrderedDict()

    def needs_history(self, event: RunEvent | CircuitEvent) -> bool:
        """True when the event's meaning depends on earlier events of a run not in memory."""
        if not isinstance(event, CONTEXTUAL) or event.run_id in self.runs:
            return False
        reopens = isinstance(event, RunRetried) and event.run_id not in self.ended
        return reopens or event.run_id not in self.finished

    def replay(self, run_id: str, earlier: list[RunEvent]) -> None:
        """Bring a run met mid-way up to date from its earlier events, learning nothing from them."""
        self.finished.pop(run_id, None)
        self.ended.pop(run_id, None)
        for event in earlier:
            self.facts(event, learn=False)
        if run_id not in self.runs:
            _remember(self.finished, run_id, None)

    def facts(self, event: RunEvent | CircuitEvent, learn: bool = True) -> list[Fact]:
        if isinstance(event, CircuitEvent):
            return self._circuit(event)
        if isinstance(event, RunStarted):
            return self._started(event, learn)
        if isinstance(event, RunRetried):
            return self._reopened(event)
        run = self.runs.get(event.run_id)
        if run is None:
            return []
        self.runs.move_to_end(event.run_id)
        if type(event) in ENDINGS:
            return self._ended(run, event)
        if isinstance(event, RunPaused):
            run.paused = run.paused or event.at
            return []
        if isinstance(event, RunResumed) and run.paused is not None:
            run.idle_ms += _ms(event.at, run.paused)
            run.paused = None
            return []
        step = run.steps.get(getattr(event, "step_id", ""))
        if step is None:
            return []
        return _step_facts(run, step, event)

    def _started(self, event: RunStarted, learn: bool) -> list[Fact]:
        if event.dry_run:
            _remember(self.finished, event.run_id, None)
            return []
        playbook, _ = playbook_of(event)
        handlers = [*playbook.error_handlers, *event.engine_error_handlers]
        steps = {step_id: StepContext(shape=shape, target=None) for step_id, shape in self._shapes_of(event).items()}
        where = event.environment or ""
        run = RunContext(playbook.name, where, event.at, steps, [_label(h) for h in handlers],
                         starter=event.on_behalf_of or event.actor, text=not _version(event),
                         definition=event.pin.parsed if event.pin is not None else "")
        _remember(self.runs, event.run_id, run, RUNS_KEPT)
        if not learn:
            return []
        facts: list[Fact] = [RunBegan(at=event.at, environment=where, playbook=playbook.name, steps=list(steps),
                                      starter=run.starter, text=run.text, version=_version(event),
                                      definition=run.definition)]
        for step_id, step in steps.items():
            if self.shapes.get((playbook.name, where, step_id)) != step.shape:
                _remember(self.shapes, (playbook.name, where, step_id), step.shape, SHAPES_KEPT)
                facts.append(StepConfigured(at=event.at, environment=where, playbook=playbook.name, step=step_id,
                                            shape=step.shape, version=_version(event)))
        return facts

    def _shapes_of(self, event: RunStarted) -> dict[str, StepShape]:
        """Each step's shape; runs of one playbook with the same parameters share them."""
        pinned = event.pin.parsed if event.pin is not None else event.playbook
        key = msgspec.json.encode((pinned, event.parameters, event.variables, event.engine_error_handlers))
        shapes = self.playbooks.get(key)
        if shapes is None:
            shapes = _shapes(event)
            _remember(self.playbooks, key, shapes, PLAYBOOKS_KEPT)
        return shapes

    def _ended(self, run: RunContext, event: RunEvent) -> list[Fact]:
        # A failure never classified (no retry policy, no handler) stood until the run ended.
        facts: list[Fact] = [_failure(run, step, step.failed.category, gave_up=step.failed.category not in ENGINE_STOPS)
                             for step in run.steps.values() if step.failed]
        run.outcome, run.ended = ENDINGS[type(event)], event.at
        if run.paused is not None:            # cancelled while paused
            run.idle_ms += _ms(event.at, run.paused)
            run.paused = None
        facts.append(RunEnded(at=event.at, environment=run.environment, playbook=run.playbook, outcome=run.outcome,
                              duration_ms=max(0.0, _ms(event.at, run.started) - run.idle_ms),
                              definition=run.definition))
        del self.runs[event.run_id]
        _remember(self.finished, event.run_id, None)
        _remember(self.ended, event.run_id, run, ENDED_KEPT)
        return facts

    def _reopened(self, event: RunRetried) -> list[Fact]:
        """The run goes on: its ending is undone, and the steps that run again start their tries afresh."""
        run = self.ended.pop(event.run_id, None)
        if run is None or not run.outcome:
            return []
        self.finished.pop(event.run_id, None)
        _remember(self.runs, event.run_id, run, RUNS_KEPT)
        for step_id in event.steps:
            if (step := run.steps.get(step_id)) is not None:
                step.after, step.delay_ms, step.waited_ms, step.failed, step.first = "", 0.0, 0.0, None, 0
        mended = sorted(run.gave_up.intersection(event.steps))
        run.gave_up.difference_update(mended)
        outcome, run.outcome = run.outcome, ""
        if run.ended is not None:             # the time it lay ended until someone retried it
            run.idle_ms += _ms(event.at, run.ended)
        return [RunReopened(at=event.at, environment=run.environment, playbook=run.playbook, outcome=outcome,
                            steps=mended, definition=run.definition)]

    def _circuit(self, event: CircuitEvent) -> list[Fact]:
        if isinstance(event, CircuitOpened):
            return [BreakerOpened(at=event.at, target=event.key)]
        if isinstance(event, (CircuitCallFailed, CircuitCallSucceeded)):
            run = self.runs.get(event.run_id)
            if run is not None and (step := run.steps.get(event.step_id)) is not None:
                step.target = event.key
        return []


def _step_facts(run: RunContext, step: StepContext, event: RunEvent) -> list[Fact]:
    """What one step event teaches; a failure waits for its classification (retried or not)."""
    facts: list[Fact] = []
    if isinstance(event, (StepSucceeded, StepFailed)) and step.failed is not None:
        facts.append(_failure(run, step, step.failed.category))   # never classified (the executor died, say)
    if isinstance(event, (StepSucceeded, StepFailed)) and not step.first:
        step.first = event.attempt
    match event:
        case StepSucceeded():
            facts.append(AttemptPassed(at=event.at, environment=run.environment, playbook=run.playbook,
                                       step=event.step_id,
                                       attempt=event.attempt - step.first + 1,
                                       duration_ms=event.duration_ms, target=step.shape.target or step.target,
                                       after=step.after, delay_ms=step.delay_ms, waited_ms=step.waited_ms,
                                       definition=step.shape.definition))
            step.after, step.delay_ms = "", 0.0
        case StepFailed():
            step.failed = event
        case StepRetryScheduled() if step.failed is not None:
            facts.append(_failure(run, step, event.category, retried=True))
            step.after, step.delay_ms = event.category, event.delay_seconds * 1000
            step.waited_ms += step.delay_ms
        case StepNotRetried() if step.failed is not None:
            facts.append(_failure(run, step, event.category, gave_up=True, exhausted=event.exhausted))
        case StepRemediated() | StepRemediationFailed() if 0 <= event.handler < len(run.handlers):
            facts.append(RemediationEnded(at=event.at, environment=run.environment, playbook=run.playbook,
                                          step=event.step_id,
                                          handler=run.handlers[event.handler],
                                          succeeded=isinstance(event, StepRemediated)))
        case ApprovalRequested():
            step.approval_at = event.at
        case ApprovalGranted() | ApprovalRejected() | ApprovalTimedOut() if step.approval_at is not None:
            facts.append(ApprovalDecided(at=event.at, environment=run.environment, playbook=run.playbook,
                                         step=event.step_id,
                                         waited_ms=_ms(event.at, step.approval_at), outcome=_approval(event)))
            step.approval_at = None
    return facts


def _failure(run: RunContext, step: StepContext, category: str, *, retried: bool = False, gave_up: bool = False,
             exhausted: bool = False) -> AttemptFailed:
    failed = step.failed
    assert failed is not None
    step.failed = None
    status = failed.outputs.get("status_code")
    if gave_up:
        run.gave_up.add(failed.step_id)
    fact = AttemptFailed(at=failed.at, environment=run.environment, playbook=run.playbook, step=failed.step_id,
                         attempt=failed.attempt - step.first + 1,
                         category=category, duration_ms=failed.duration_ms, target=step.shape.target or step.target,
                         status=status if isinstance(status, int) and not isinstance(status, bool) else None,
                         after=step.after, delay_ms=step.delay_ms, retried=retried, gave_up=gave_up,
                         exhausted=exhausted, definition=step.shape.definition, starter=run.starter,
                         text=run.text)
    step.after, step.delay_ms = "", 0.0
    return fact


def _approval(event: RunEvent) -> str:
    if isinstance(event, ApprovalGranted):
        return "auto_approved" if event.by_timeout else "granted"
    return "rejected" if isinstance(event, ApprovalRejected) else "timed_out"


def _shapes(event: RunStarted) -> dict[str, StepShape]:
    playbook, _ = playbook_of(event)
    handlers = [*playbook.error_handlers, *event.engine_error_handlers]
    handled = sorted({h.category for h in handlers if h.category})
    context = Context(parameters=event.parameters, variables=variables_of(event))
    # Steps whose outputs another step reads: those are more than checks.
    read = set(re.findall(rb"steps\.([A-Za-z0-9_-]+)\.", msgspec.json.encode(playbook.steps)))
    return {step.id: _shape(playbook.name, step, context, handled, step.id.encode() in read) for step in playbook.steps}


def _shape(playbook: str, step: Step, context: Context, handled: list[str], outputs_read: bool) -> StepShape:
    spec = circuit_of(step)
    retry = step.retry
    action = ACTION_SPECS.get(step.action)
    return StepShape(
        action=step.action, timeout_seconds=step.timeout_seconds,
        default_timeout=action.default_timeout if action else None,
        retry=RetryShape(max_attempts=retry.max_attempts, base_delay=retry.base_delay,
                         retry_on_errors=retry.retry_on_errors) if retry else None,
        breaker_threshold=spec.failure_threshold if spec else None,
        target=_target(playbook, step, context), check=None if outputs_read else _check(step), handled=handled,
        definition=hashlib.sha256(msgspec.json.encode(step)).hexdigest()[:16])


def _target(playbook: str, step: Step, context: Context) -> str | None:
    """The HTTP origin a step calls, or its breaker's key; None when only run time can tell."""
    spec = circuit_of(step)
    if step.action != "http_request":
        return circuit_key(playbook, step, step.args) if spec else None
    try:
        url = resolve(step.args.get("url"), context)
    except PlaybookError:
        return None         # the URL needs a step's output or a secret: the breaker's events will say
    return circuit_key(playbook, step, {"url": url}) if isinstance(url, str) else None


def _check(step: Step) -> Check | None:
    """An HTTP GET that exports nothing and undoes nothing: a validator could do it."""
    args = step.args
    method = str(args.get("method", "GET")).upper()
    if step.action != "http_request" or method not in ("GET", "HEAD") or step.outputs or step.rollback:
        return None
    if args.get("json") is not None or args.get("data") is not None or not isinstance(args.get("url"), str):
        return None
    validator: dict[str, object] = {"type": "http_status", "url": args["url"]}
    if args.get("expect_status") is not None:
        validator["expected_status"] = args["expect_status"]
    return Check(validator=validator)


def _label(handler: ErrorHandler) -> str:
    return handler.category or f"pattern {handler.pattern}"


def _ms(end: datetime, start: datetime) -> float:
    return max(0.0, (end - start).total_seconds() * 1000)


def _remember(kept: OrderedDict, key, value, limit: int = RUNS_KEPT) -> None:  # type: ignore[no-untyped-def]
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > limit:
        kept.popitem(last=False)


def _version(event: RunStarted) -> str:
    """The catalog version the run follows; "" for a text sent (its pin numbers texts, not published versions)."""
    return event.pin.version if event.pin is not None and event.pin.published else ""
