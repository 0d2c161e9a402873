"""docs/events.md: every event and command of the contract (`events/`), with its fields, from the Structs."""
from __future__ import annotations

from collections.abc import Sequence

from app.docs.markdown import GENERATED, doc, struct_table
from events.circuit import CIRCUIT_EVENT_TYPES
from events.commands import COMMAND_TYPES, Rejection, Reply
from events.identity import IDENTITY_COMMAND_TYPES, IDENTITY_EVENT_TYPES, Grant, IdentityReply, TokenInfo
from events.playbook import Plan
from events.output import OUTPUT_TYPES
from events.run import ENDINGS, REOPENING_EVENTS, RUN_EVENT_TYPES, TERMINAL_EVENTS
from services.executor.live_output import MAX_LIVE_BYTES
from services.logs import MAX_AGE_SECONDS, MAX_LINES_PER_ATTEMPT
from services.settings import LOGS_MAX_BYTES

PLAYBOOK_TYPES = frozenset({"Playbook", "Step", "Parameter", "Condition", "ErrorHandler", "RollbackAction",
                            "RetryPolicy", "CircuitSpec", "ApprovalGate", "OutputSpec", "HttpStatus", "PortOpen",
                            "FileExists", "DiskSpace", "MemoryUsage", "CommandSucceeds"})


def link(name: str) -> str:
    """Playbook Structs are described in the language reference, the rest here."""
    return f"language.md#{name.lower()}" if name in PLAYBOOK_TYPES else f"#{name.lower()}"


def render() -> str:
    terminal = ", ".join(f"`{kind.__name__}`" for kind in TERMINAL_EVENTS)
    lines = [
        "# The event contract", "", GENERATED, "",
        "Everything the engine records is an event, and everything it is asked to do is a command. Both are "
        "JSON, tagged with their class name in `type`; the class name is also the last token of the subject and "
        "the name every interface shows. Events are past tense and never change meaning once published; fields "
        "are only added, with defaults. `playbook schema` prints the same contract as JSON Schema. An event a "
        "reader cannot decode (a newer engine's type, after a downgrade) is never skipped unseen: every view of "
        "the run shows it as `Unreadable` (its stored type and why), quarantined, and the run goes on without it; "
        "a token with such a record is refused. Upgrading and downgrading: [operations.md](operations.md).",
        "",
        "Run events live on JetStream stream `PB_RUNS`, one stream per run on `pb.run.<run_id>.<Type>`. Each "
        "carries `run_id` and `at` (when it happened, RFC 3339); the tables below leave those two out. A run "
        f"ends with one terminal event ({terminal}); a rollback or a retry reopens it, and it ends again with "
        "one more.", "",
        "Contents: [how a run ends](#how-a-run-ends), [the feed](#the-feed), [run events](#run-events), "
        "[what a run pins](#what-a-run-pins), [output lines](#output-lines), "
        "[circuit breaker events](#circuit-breaker-events), "
        "[identity events](#identity-events), [commands](#commands), [replies](#replies).", "",
    ]
    lines += _endings() + _feed()
    lines += _section("Run events", "On `pb.run.<run_id>.<Type>`.", RUN_EVENT_TYPES, skip=("run_id", "at"))
    lines += _section("What a run pins", "Beside the playbook itself ([language.md](language.md)).", (Plan,))
    lines += _section("Output lines", _OUTPUT, OUTPUT_TYPES)
    lines += _section("Circuit breaker events", "On `pb.circuit.<token>.<Type>`, where the token is a hash of the "
                      "breaker's key (keys hold dots). Each carries `key` and `at`.", CIRCUIT_EVENT_TYPES,
                      skip=("key", "at"))
    lines += _section("Identity events", "Tokens and refused access, recorded by the identity service.",
                      IDENTITY_EVENT_TYPES)
    lines += _section("Commands", "NATS requests on `pb.cmd.<Command>` with the command's JSON as the body (the "
                      "`type` may be left out: the subject says it). Each names its `actor`. The answer is a "
                      "[Reply](#reply). A field the engine does not know is refused (`bad_request`, naming it), "
                      "never ignored: an option of a newer client is not dropped by an older engine in silence.",
                      COMMAND_TYPES)
    lines += _section("Identity commands", "Requests to the identity service, answered with an "
                      "[IdentityReply](#identityreply).", IDENTITY_COMMAND_TYPES)
    lines += _section("Replies", "What a command is answered with.", (Reply, Rejection, IdentityReply, TokenInfo,
                                                                       Grant))
    return "\n".join(lines).rstrip() + "\n"


def _section(title: str, intro: str, kinds: Sequence[type], skip: Sequence[str] = ()) -> list[str]:
    lines = [f"## {title}", "", intro, ""]
    for kind in kinds:
        lines += [f"### {kind.__name__}", ""]
        if text := doc(kind):
            lines += [text, ""]
        rows = struct_table(kind, skip=skip, link=link)
        lines += (rows if len(rows) > 2 else ["No fields beyond those above."]) + [""]
    return lines


def _endings() -> list[str]:
    reopening = ", ".join(f"`{kind.__name__}`" for kind in REOPENING_EVENTS)
    return ["## How a run ends", "",
            "Every path to a run's end writes exactly one terminal event, and it names the status the run ends in "
            "(`ENDINGS` in `events/run.py`; `tests/unit/test_run_endings.py` walks every path):", "",
            "| terminal event | the run is |", "| --- | --- |",
            *(f"| `{kind.__name__}` | `{status}` |" for kind, status in ENDINGS.items()), "",
            "A run rolled back by `on_failure: rollback` ends with `RollbackCompleted` or `RollbackFailed` alone "
            f"(no `RunFailed` before it). Written after an ending, {reopening} reopen the run (a rollback asked for "
            "by hand, a retry), which then ends again with one new terminal event; anything else stored after an "
            "ending (a gate's deadline firing late, a refused approval, the end of an error handler's remediation that "
            "was running when the run was cancelled) is a record and does not reopen it. A "
            "follower has seen the end when it has read a terminal event with no reopening event after it and "
            "nothing more of the run is stored (`ended_after`).", ""]


def _feed() -> list[str]:
    return ["## The feed", "",
            "`PB_RUNS` republishes each run event as it stores it, in stream order, on "
            "`pb.feed.run.<run_id>.<Type>`: the stored JSON as the body, with the headers `Nats-Stream` "
            "(`PB_RUNS`), `Nats-Subject` (the stored subject), `Nats-Sequence` (its stream sequence: increasing, "
            "not contiguous), `Nats-Time-Stamp` and `Nats-Last-Sequence`. Events a message schedule stores (a "
            "retry's `StepScheduled`, a gate's `ApprovalDeadlinePassed`) are on it too. Nobody publishes there but "
            "the server, the engine included. Core NATS delivers at most once: for every event exactly once, with "
            "catch-up, read `PB_RUNS` with a JetStream consumer of your own (README, \"For agents\"; "
            "`examples/feed_agent.py`).", ""]


_OUTPUT = (
    "Not run events: the attempt's `StepSucceeded` or `StepFailed` keeps (the head of) its output for good. Stream "
    "`PB_LOGS` keeps what watching an attempt run shows, so that whoever joins late reads from the first line: on "
    "`pb.output.<run_id>.<step_id>.<attempt>`, the attempt's `OutputLine`s (redacted like its event) in order, "
    "then one `OutputEnded`, stored before the event that finishes the attempt. Kept "
    f"{MAX_AGE_SECONDS // 86400} days, at most {LOGS_MAX_BYTES >> 30} GiB in all ($PLAYBOOK_LOGS_MAX_BYTES), and "
    "per attempt "
    f"{MAX_LINES_PER_ATTEMPT:,} lines and {MAX_LIVE_BYTES >> 20} MiB (then a line saying the live view stops "
    "there). Read them with `playbook logs RUN [STEP] [--attempt N] [--follow]`, `/api/runs/{id}/logs/stream`, "
    "`EngineClient.logs` or `examples/feed_agent.py logs`; only the engine publishes them.")
