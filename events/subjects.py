"""Subject and stream names: the one place they are spelled."""
from __future__ import annotations

import re
from typing import Annotated

import msgspec

PREFIX = "pb"
# A run id is a subject token and a URL path part: ASCII letters, digits, - and _ (the one spelling).
RUN_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
# A step id reaches subjects too (timers, live output): a letter or _, then letters, digits, - and _.
STEP_ID_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
# A token id is the id part of `pbt_<id>_<secret>`, and a subject token of PB_IDENTITY.
TOKEN_ID_PATTERN = r"[0-9a-f]{16}"
_RUN_ID, _STEP_ID = re.compile(RUN_ID_PATTERN), re.compile(STEP_ID_PATTERN)

# What every door decodes run and step ids as: a wildcard (`*`, `>`) or a dot never reaches a subject.
RunId = Annotated[str, msgspec.Meta(pattern=f"^{RUN_ID_PATTERN}$")]
StepId = Annotated[str, msgspec.Meta(pattern=f"^{STEP_ID_PATTERN}$")]
TokenId = Annotated[str, msgspec.Meta(pattern=f"^{TOKEN_ID_PATTERN}$")]


def valid_run_id(text: str) -> bool:
    return bool(_RUN_ID.fullmatch(text))


def valid_step_id(text: str) -> bool:
    return bool(_STEP_ID.fullmatch(text))


def check_run_id(text: str) -> str:
    """The run id, if it is one; else ValueError with the rule (argparse shows it as is)."""
    if not valid_run_id(text):
        raise ValueError(f"run id {text!r} may hold only letters, digits, '-' and '_' (at most 64)")
    return text
RUNS_STREAM = "PB_RUNS"
RUN_SUBJECTS = f"{PREFIX}.run.>"
TIMER_SUBJECTS = f"{PREFIX}.timer.>"
COMMAND_SUBJECTS = f"{PREFIX}.cmd.>"
CIRCUIT_SUBJECTS = f"{PREFIX}.circuit.>"


def run_event(run_id: str, event_type: str) -> str:
    return f"{PREFIX}.run.{run_id}.{event_type}"


def run(run_id: str) -> str:
    """One run's aggregate prefix."""
    return f"{PREFIX}.run.{run_id}"


def run_all(run_id: str) -> str:
    """Every subject of one run: the aggregate boundary for optimistic concurrency."""
    return f"{run(run_id)}.>"


def events_of_type(event_type: str) -> str:
    return f"{PREFIX}.run.*.{event_type}"


def command(name: str) -> str:
    return f"{PREFIX}.cmd.{name}"


def run_id_of(subject: str) -> str:
    """`pb.run.<id>.<Type>` -> `<id>`."""
    return subject.split(".", 3)[2]


def approval_timer(run_id: str, step_id: str) -> str:
    """The message schedule that fires a gate's deadline."""
    return f"{PREFIX}.timer.{run_id}.approval.{step_id}"


def retry_timer(run_id: str, step_id: str) -> str:
    """The message schedule that re-schedules a failed step after its backoff."""
    return f"{PREFIX}.timer.{run_id}.retry.{step_id}"


def circuit(token: str) -> str:
    """A circuit breaker's aggregate prefix; `token` is a hash of its key (keys hold dots)."""
    return f"{PREFIX}.circuit.{token}"


# Where readiness checks that JetStream takes a write: a stream of one tiny message, replicated as PB_RUNS.
PROBE_STREAM = "PB_PROBE"
PROBE_SUBJECT = f"{PREFIX}.probe"

# A request every web server answers by refolding its views from the first event.
PROJECTIONS_REBUILD = f"{PREFIX}.projections.rebuild"
# A request one web server answers from its audit view (what `playbook audit` asks).
AUDIT = f"{PREFIX}.audit"


def live_output(run_id: str, step_id: str, attempt: int) -> str:
    """A running attempt's output lines, on core NATS only (the attempt's event stores it)."""
    return f"{PREFIX}.output.{run_id}.{step_id}.{attempt}"


def live_output_of_run(run_id: str) -> str:
    return f"{PREFIX}.output.{run_id}.>"


# -- identity: tokens (stream PB_IDENTITY) and refused access (stream PB_ACCESS) ----------------

IDENTITY_STREAM = "PB_IDENTITY"
ACCESS_STREAM = "PB_ACCESS"
IDENTITY_SUBJECTS = f"{PREFIX}.identity.>"
TOKEN_SUBJECTS = f"{PREFIX}.identity.token.>"
REFUSAL_SUBJECTS = f"{PREFIX}.identity.refused.>"
IDENTITY_COMMAND_SUBJECTS = f"{PREFIX}.cmd.identity.*"


def token(token_id: str) -> str:
    """One token's aggregate prefix: `pb.identity.token.<id>`."""
    return f"{PREFIX}.identity.token.{token_id}"


def token_id_of(subject: str) -> str:
    """`pb.identity.token.<id>.<Type>` -> `<id>`."""
    return subject.split(".", 4)[3]


def access_refused(door: str) -> str:
    return f"{PREFIX}.identity.refused.{door}.AccessRefused"


def identity_command(name: str) -> str:
    """Identity commands sit one token deeper than `pb.cmd.*`, which the run service answers."""
    return f"{PREFIX}.cmd.identity.{name}"


# The learning service answers these requests (see events/insights.py).
LEARNING_INSIGHTS = f"{PREFIX}.learning.insights"
LEARNING_REBUILD = f"{PREFIX}.learning.rebuild"
LEARNING_STATUS = f"{PREFIX}.learning.status"
