"""Subject and stream names: the one place they are spelled."""
from __future__ import annotations

PREFIX = "pb"
# A run id is a subject token and a URL path part: ASCII letters, digits, - and _ (the one spelling).
RUN_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
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
