"""What the engine learned from past runs, and what it recommends: the learning service's answers.

Asked over NATS (`pb.learning.insights`, `.rebuild`, `.status`) with a JSON body; every
door (CLI, HTTP API, dashboard, MCP, `validate --insights`) shows these Structs as they are.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from events.commands import Rejection

RecommendationKind = Literal[
    "timeout", "retry", "do_not_retry", "error_handler", "fix_error_handler", "validator", "circuit_breaker",
    "slower",
]


class _Answer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every answer: encoded without the defaults, so the JSON stays short."""


class Evidence(_Answer, frozen=True):
    """What a recommendation rests on: how many observations, over which time, how sure."""

    count: int
    confidence: float                    # 0..1, grows with `count`
    since: datetime | None = None        # the first and last observation
    until: datetime | None = None
    window_seconds: float | None = None  # for bursts and correlations: what "together" means
    figures: dict[str, Any] = {}         # the numbers behind the sentence (p99_ms, tries, recovered, ...)


class Recommendation(_Answer, frozen=True):
    kind: RecommendationKind
    message: str                         # a sentence a user can act on
    evidence: Evidence
    playbook: str | None = None
    environment: str | None = None       # the runs it rests on ran there (None: runs without an environment)
    step: str | None = None
    target: str | None = None
    suggestion: dict[str, Any] = {}      # what to write in the playbook, as YAML keys of the step


class Distribution(_Answer, frozen=True):
    """Percentiles from a bounded log histogram (within 10% of the true value), max exact."""

    count: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


class Outcome(_Answer, frozen=True):
    """Tries of something (a retry after a category, a remediation) and how many of them worked."""

    tries: int
    worked: int


class StepInsights(_Answer, frozen=True):
    step: str
    action: str = ""
    target: str | None = None
    attempts: int = 0
    passed: int = 0                      # runs in which the step succeeded (at any attempt)
    gave_up: int = 0                     # runs in which it failed for good
    success_rate: float | None = None    # passed / (passed + gave_up)
    first_attempt_rate: float | None = None
    durations: Distribution | None = None     # passing attempts of the step as it is written now
    version: str | None = None                # the playbook version it is written so since (None: a text, or unknown)
    changed: datetime | None = None           # when it was last written differently
    durations_before: Distribution | None = None   # ... and its passing attempts as it was before
    version_before: str | None = None
    failures_by_category: dict[str, int] = {}
    recovered_at_attempt: dict[int, int] = {}
    retries_after: dict[str, Outcome] = {}    # category of the failure -> retries, and those that then passed
    remediations: dict[str, Outcome] = {}     # error handler -> runs, and those that remediated
    approval_waits: Distribution | None = None
    approvals: dict[str, int] = {}            # granted, rejected, timed_out, auto_approved
    since: datetime | None = None
    until: datetime | None = None


class PlaybookInsights(_Answer, frozen=True):
    """One playbook as its runs in one environment taught it: environments are learned apart."""

    playbook: str
    environment: str | None = None       # None: its runs without an environment
    runs: int = 0                        # runs of the playbook as it is written now (since `changed`, if it did)
    outcomes: dict[str, int] = {}        # completed, failed, cancelled
    success_rate: float | None = None
    durations: Distribution | None = None     # completed runs, without the time they were paused or lay ended
    steps: list[StepInsights] = []
    recommendations: list[Recommendation] = []
    since: datetime | None = None
    until: datetime | None = None
    version: str | None = None           # the catalog version the figures above are of (None: a text, or unknown)
    changed: datetime | None = None      # when runs of it written differently began: the figures count runs since
    version_before: str | None = None    # ... and the way it was written before, with its figures
    runs_before: int = 0
    outcomes_before: dict[str, int] = {}
    success_rate_before: float | None = None


class TargetInsights(_Answer, frozen=True):
    """An HTTP origin (or a breaker's key) that steps call, as every run saw it."""

    target: str
    calls: int = 0
    failures: int = 0
    failures_by_category: dict[str, int] = {}
    bursts: int = 0                      # runs of target failures close together
    largest_burst: int = 0
    breaker_openings: int = 0
    steps: list[str] = []                # "playbook/step" calling it
    recommendations: list[Recommendation] = []
    since: datetime | None = None
    until: datetime | None = None


class Correlation(_Answer, frozen=True):
    """Steps that failed together within a window: likely one piece of infrastructure behind both."""

    steps: list[str]                     # "playbook/step", two of them
    together: int                        # separate windows in which both failed
    window_seconds: float
    targets: list[str] = []
    last: datetime | None = None


class Insights(_Answer, frozen=True):
    """What the asker may read: playbooks in the environments their grants cover; targets and correlations
    (across every playbook and environment) only with read on everything."""

    position: int                        # the last stream sequence learned
    playbooks: list[PlaybookInsights] = []
    targets: list[TargetInsights] = []
    correlations: list[Correlation] = []


class LearningStatus(_Answer, frozen=True):
    position: int                        # the last stream sequence read
    stream_last_seq: int
    lag: int                             # events stored but not learned yet
    generation: str = ""                 # which store answers (a rebuild makes a new one)
    backend: str = ""
    rebuilding: bool = False
    error: str = ""                      # why the service is not learning, while it retries
    playbooks: int = 0                   # playbooks listed (insights show these), and targets
    targets: int = 0
    evicted: dict[str, int] = {}         # listed once, then made room for: texts, environments, targets
    left_out: dict[str, int] = {}        # since the service started: runs whose playbook found no room to be listed


class Rebuilt(_Answer, frozen=True):
    events: int                          # events learned from the first one
    position: int
    generation: str
    seconds: float


class InsightsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    playbook: str | None = None          # one playbook, or all
    environment: str | None = None       # one environment's runs ("": those without one), or every one readable
    after: int = 0                       # answer once the service has learned up to this stream sequence
    wait: float = 10.0                   # ... waiting at most this many seconds (at most 30) for it


class LearningReply(_Answer, frozen=True):
    """The one reply of the learning service: one of the answers, or an error."""

    insights: Insights | None = None
    status: LearningStatus | None = None
    rebuilt: Rebuilt | None = None
    error: Rejection | None = None
