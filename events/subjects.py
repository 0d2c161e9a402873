"""Subject and stream names: the one place they are spelled."""
from __future__ import annotations

import re
from typing import Annotated

import msgspec

PREFIX = "pb"
# A run id is a subject token and a URL path part: ASCII letters, digits, - and _ (the one spelling).
RUN_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
# A step id reaches subjects too (timers, output lines, leases): a letter or _, then letters, digits, - and _;
# at most 128, so that a subject stays far inside the server's control line (4 KiB: past it, the server
# closes the connection that sent it).
STEP_ID_MAX = 128
STEP_ID_PATTERN = rf"[A-Za-z_][A-Za-z0-9_-]{{0,{STEP_ID_MAX - 1}}}"
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
# The feed: the server republishes every event stored on a run's subjects (those a message
# schedule stores included, timers not) on core NATS, in stream order, as `pb.feed.run.<id>.<Type>`
# with the headers Nats-Stream, Nats-Subject, Nats-Sequence, Nats-Time-Stamp, Nats-Last-Sequence.
# Only the server publishes there.
FEED_SUBJECTS = f"{PREFIX}.feed.>"
RUN_FEED_SUBJECTS = f"{PREFIX}.feed.run.>"


def run_event(run_id: str, event_type: str) -> str:
    return f"{run(run_id)}.{event_type}"


def run(run_id: str) -> str:
    """One run's aggregate prefix. A run id that is no subject token is refused here too, whatever door it came by:
    `*` would read, and load, every run."""
    return f"{PREFIX}.run.{check_run_id(run_id)}"


def run_all(run_id: str) -> str:
    """Every subject of one run: the aggregate boundary for optimistic concurrency."""
    return f"{run(run_id)}.>"


def run_feed(run_id: str) -> str:
    """One run's events on the feed (plain NATS, at most once)."""
    return f"{PREFIX}.feed.run.{check_run_id(run_id)}.>"


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


# -- the playbook catalog: versions on PB_CATALOG, texts and parsed forms in object store buckets ----------

CATALOG_STREAM = "PB_CATALOG"
CATALOG_SUBJECTS = f"{PREFIX}.catalog.>"
PLAYBOOKS_BUCKET = "PB_PLAYBOOKS"   # texts and parsed playbooks by digest; only the engine writes
UPLOADS_BUCKET = "PB_UPLOADS"       # texts too large for one message, staged by clients for a command


def catalog_entry(name: str) -> str:
    """One playbook name's aggregate prefix: `pb.catalog.<name>`."""
    return f"{PREFIX}.catalog.{name}"


def object_stream(bucket: str) -> str:
    """The stream behind a JetStream object store bucket."""
    return f"OBJ_{bucket}"


def object_subjects(bucket: str) -> str:
    """Every subject of a bucket: `$O.<bucket>.>` (chunks under C, descriptions under M)."""
    return f"$O.{bucket}.>"


# A request every web server answers by refolding its views from the first event.
PROJECTIONS_REBUILD = f"{PREFIX}.projections.rebuild"
# A request one web server answers from its audit view (what `playbook audit` asks).
AUDIT = f"{PREFIX}.audit"


# Output lines of running attempts (events/output.py), kept for a while in their own stream.
LOGS_STREAM = "PB_LOGS"
OUTPUT_SUBJECTS = f"{PREFIX}.output.>"


def live_output(run_id: str, step_id: str, attempt: int) -> str:
    """A running attempt's output lines, then its OutputEnded."""
    return f"{PREFIX}.output.{run_id}.{step_id}.{attempt}"


def live_output_of_run(run_id: str, step_id: str | None = None, attempt: int | None = None) -> str:
    """The output of a run, of one of its steps (every attempt), or of one attempt."""
    if step_id is None:
        return f"{PREFIX}.output.{run_id}.>"
    return f"{PREFIX}.output.{run_id}.{step_id}.{'*' if attempt is None else attempt}"


# -- identity: tokens (stream PB_IDENTITY) and refused access (stream PB_ACCESS) ----------------

IDENTITY_STREAM = "PB_IDENTITY"
ACCESS_STREAM = "PB_ACCESS"
IDENTITY_SUBJECTS = f"{PREFIX}.identity.>"
TOKEN_SUBJECTS = f"{PREFIX}.identity.token.>"
REFUSAL_SUBJECTS = f"{PREFIX}.identity.refused.>"
BACKUP_SUBJECTS = f"{PREFIX}.identity.backup.>"      # in PB_ACCESS: who copied every record, and where to
IDENTITY_COMMAND_SUBJECTS = f"{PREFIX}.cmd.identity.*"


def token(token_id: str) -> str:
    """One token's aggregate prefix: `pb.identity.token.<id>`."""
    return f"{PREFIX}.identity.token.{token_id}"


def token_id_of(subject: str) -> str:
    """`pb.identity.token.<id>.<Type>` -> `<id>`."""
    return subject.split(".", 4)[3]


def backup_taken() -> str:
    return f"{PREFIX}.identity.backup.BackupTaken"


def access_refused(door: str) -> str:
    return f"{PREFIX}.identity.refused.{door}.AccessRefused"


def identity_command(name: str) -> str:
    """Identity commands sit one token deeper than `pb.cmd.*`, which the run service answers."""
    return f"{PREFIX}.cmd.identity.{name}"


# The learning service answers these requests (see events/insights.py).
LEARNING_INSIGHTS = f"{PREFIX}.learning.insights"
LEARNING_REBUILD = f"{PREFIX}.learning.rebuild"
LEARNING_STATUS = f"{PREFIX}.learning.status"
