"""Facts: what one run event teaches, once the run's context is known. The knowledge folds these.

A fact carries everything its fold needs (the playbook, the step's target, the backoff
waited before the attempt), so the fold never looks anything up and replays the same.
"""
from __future__ import annotations

from datetime import datetime

import msgspec


class _Fact(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    at: datetime
    environment: str = ""                   # the run's ("": none); what one environment teaches stays with it


class RetryShape(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    max_attempts: int
    base_delay: float
    retry_on_errors: list[str] | None = None


class Check(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A step that only looks (an HTTP GET, say): the validator it could be instead."""

    validator: dict[str, object]


class StepShape(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How a step is written in the playbook now, as far as recommendations care."""

    action: str
    timeout_seconds: float | None = None    # as written
    default_timeout: float | None = None    # the action's, when none is written (None: no limit)
    retry: RetryShape | None = None
    breaker_threshold: int | None = None    # None: calls go through no breaker
    target: str | None = None
    check: Check | None = None
    handled: list[str] = []                 # categories the run's error handlers cover
    definition: str = ""                    # a digest of the step as written: it changed when this did


class StepConfigured(_Fact):
    playbook: str
    step: str
    shape: StepShape
    version: str = ""                       # the playbook's published version that ran it so ("": a text sent)


class RunBegan(_Fact):
    playbook: str
    steps: list[str]
    starter: str = ""                       # who started it (the person an admin acted for, else the actor)
    text: bool = False                      # a text sent, not a catalog version: its name is the starter's to choose
    version: str = ""                       # the catalog version it follows ("": a text)
    definition: str = ""                    # a digest of the playbook as the run follows it ("": unknown)


class AttemptPassed(_Fact):
    playbook: str
    step: str
    attempt: int
    duration_ms: float
    target: str | None = None
    after: str = ""                         # category of the failure this attempt retried
    delay_ms: float = 0.0                   # the backoff just before it
    waited_ms: float = 0.0                  # every backoff of the step in this run
    definition: str = ""                    # the step as its run had it (StepShape.definition)


class AttemptFailed(_Fact):
    """A failed attempt, with its category as the resilience service classified it."""

    playbook: str
    step: str
    attempt: int
    category: str
    duration_ms: float
    target: str | None = None
    status: int | None = None               # the HTTP status, when there was one
    after: str = ""
    delay_ms: float = 0.0
    definition: str = ""                    # the step as its run had it (StepShape.definition)
    retried: bool = False                   # another attempt was scheduled
    starter: str = ""                       # who started the run (RunBegan.starter)
    text: bool = False                      # ... from a text of their own, not a catalog version
    gave_up: bool = False                   # the step failed for good in this run
    exhausted: bool = False                 # ... because every attempt was used


class RemediationEnded(_Fact):
    playbook: str
    step: str
    handler: str                            # "authentication", or the handler's pattern
    succeeded: bool


class ApprovalDecided(_Fact):
    playbook: str
    step: str
    waited_ms: float
    outcome: str                            # granted, rejected, timed_out, auto_approved


class RunEnded(_Fact):
    playbook: str
    outcome: str                            # how the run ended: a status of ENDINGS (events/run.py)
    duration_ms: float
    definition: str = ""                    # the playbook as its run had it (RunBegan.definition)


class RunReopened(_Fact):
    """A retry reopened an ended run: its ending no longer stands, nor did the steps that run again give up."""

    playbook: str
    outcome: str                            # the ending undone
    steps: list[str] = []                   # steps that had given up in it and run again
    definition: str = ""                    # the playbook as its run had it (RunBegan.definition)


class BreakerOpened(_Fact):
    target: str


Fact = (StepConfigured | RunBegan | AttemptPassed | AttemptFailed | RemediationEnded | ApprovalDecided | RunEnded
        | RunReopened | BreakerOpened)

encode_facts = msgspec.json.Encoder().encode
decode_facts = msgspec.json.Decoder(list[Fact]).decode
