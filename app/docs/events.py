"""docs/events.md: every event and command of the contract (`events/`), with its fields, from the Structs."""
from __future__ import annotations

from collections.abc import Sequence

from app.docs.markdown import GENERATED, doc, struct_table
from events.circuit import CIRCUIT_EVENT_TYPES
from events.commands import COMMAND_TYPES, Rejection, Reply
from events.identity import IDENTITY_COMMAND_TYPES, IDENTITY_EVENT_TYPES, Grant, IdentityReply, TokenInfo
from events.playbook import Plan
from events.run import RUN_EVENT_TYPES, TERMINAL_EVENTS

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
        "are only added, with defaults. `playbook schema` prints the same contract as JSON Schema.",
        "",
        "Run events live on JetStream stream `PB_RUNS`, one stream per run on `pb.run.<run_id>.<Type>`. Each "
        "carries `run_id` and `at` (when it happened, RFC 3339); the tables below leave those two out. A run "
        f"ends with one terminal event ({terminal}); a rollback or a retry reopens it, and it ends again with "
        "one more.", "",
        "Contents: [run events](#run-events), [what a run pins](#what-a-run-pins), "
        "[circuit breaker events](#circuit-breaker-events), "
        "[identity events](#identity-events), [commands](#commands), [replies](#replies).", "",
    ]
    lines += _section("Run events", "On `pb.run.<run_id>.<Type>`.", RUN_EVENT_TYPES, skip=("run_id", "at"))
    lines += _section("What a run pins", "Beside the playbook itself ([language.md](language.md)).", (Plan,))
    lines += _section("Circuit breaker events", "On `pb.circuit.<token>.<Type>`, where the token is a hash of the "
                      "breaker's key (keys hold dots). Each carries `key` and `at`.", CIRCUIT_EVENT_TYPES,
                      skip=("key", "at"))
    lines += _section("Identity events", "Tokens and refused access, recorded by the identity service.",
                      IDENTITY_EVENT_TYPES)
    lines += _section("Commands", "NATS requests on `pb.cmd.<Command>` with the command's JSON as the body (the "
                      "`type` may be left out: the subject says it). Each names its `actor`. The answer is a "
                      "[Reply](#reply).", COMMAND_TYPES)
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
