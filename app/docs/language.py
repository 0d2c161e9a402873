"""docs/language.md: the playbook language, every key of every Struct in `events/playbook.py`, written from them.

The keys, their types, defaults and allowed values come from the Structs; what each means
is said in `MEANINGS` below, and a key without a meaning stops the writing, so a new key
cannot go undocumented.
"""
from __future__ import annotations

from typing import get_args

import msgspec.inspect as mi

from app.docs.markdown import GENERATED, default_text, doc, fields_of, table, type_text
from events.playbook import Playbook
from events.run import ErrorCategory
from services.playbook import CODES
from services.playbook.actions import ACTION_SPECS
from services.playbook.conditions import CONDITION_TYPES
from services.playbook.diagnostics import severity_of
from services.playbook.spellings import ANSWERS, READ_AS

MEANINGS: dict[str, dict[str, str]] = {
    "Playbook": {
        "name": "what the playbook is called; runs, metrics and insights are grouped by it",
        "steps": "what the playbook does, in order unless depends_on or parallel_group say otherwise",
        "description": "what the playbook is for, shown where it is offered",
        "version": "the playbook's own version, recorded with every run",
        "parameters": "the values a caller gives (`-p key=value`), typed and checked before the run starts",
        "environments": "per environment (chosen with `--env`), values for parameters and variables of its own: "
                        "`production: {replicas: 3, tier: production}`",
        "variables": "named values `${name}` reads; a value may use other values",
        "on_failure": "what a failed step does to the run: `stop` it, `rollback` what ran, or `continue` and fail "
                      "at the end (every other step still runs, those that depend on the failed one too: guard "
                      "them with a `when` on its outputs); whoever starts a run may choose otherwise for it "
                      "(`playbook run --on-failure`, `on_failure` of StartRun and `POST /api/runs`, MCP's "
                      "`continue_on_failure`), recorded on its RunStarted",
        "on_rollback_failure": "whether a failed rollback action stops the rollback or lets it go on",
        "error_handlers": "remediations run when a step fails in a way they match, before it is retried",
        "sandbox": "`bubblewrap` runs every process of this playbook's steps in a sandbox",
    },
    "Step": {
        "id": "the step's name in `${steps.<id>...}`, depends_on, events and the CLI: letters, digits, `_`, `-`, "
              "starting with a letter or `_`, at most 128",
        "action": "what the step does (see Actions)",
        "name": "what people read in logs and the dashboard",
        "args": "the action's arguments; `${...}` inside them is resolved when the step runs",
        "depends_on": "steps that must be finished first (a DAG instead of the written order)",
        "parallel_group": "steps sharing a group run together; the step after the group waits for all of them",
        "when": "run the step only if this holds, else skip it (skipped is never failed); a list must all hold; "
                "one that reads the outputs of a step that was skipped skips too",
        "timeout_seconds": "the attempt is killed after this long and fails as `timeout`, keeping what a shell "
                           "command printed until then (above 0, at most 366 days)",
        "continue_on_failure": "a failure of this step lets the run go on, and the steps after it run (its "
                               "outputs, `${steps.<id>.returncode}`, are in reach of their `when`)",
        "outputs": "fields of the step's outputs exported as `${steps.<id>.<name>}`",
        "validators": "checks before the action runs; one that fails fails the step as `validation` without "
                      "running it",
        "validations": "conditions on the step's outputs after it ran; one that fails fails the step",
        "retry": "how a failed attempt is tried again",
        "circuit": "the breaker the step calls through: `false` turns off an http_request's, `true` or settings "
                   "give any step one",
        "approval_gate": "people who must approve before the step runs (a run started with `approval_required` "
                         "gives every step without one a gate any approver but the starter may open)",
        "rollback": "actions that undo the step, with its outputs in reach (`${stdout}`)",
    },
    "Parameter": {
        "name": "the parameter's name in `${name}` and `-p name=value`",
        "required": "a run must give a value (or an environment or default must)",
        "default": "the value when none is given",
        "description": "what the value is for, shown where it is asked",
        "type": "the value's type; text from `-p` is converted to it. Without one, any value is taken as it "
                "comes (a list reaches a shell command as one quoted JSON word). Only `host` and `url` may set a "
                "URL's scheme or host",
        "choices": "the values allowed",
        "pattern": "a regular expression (RE2) the whole value must match (text, host and url)",
        "allowed_hosts": "hosts (`*.corp` patterns) a host or url value may name",
    },
    "Condition": {
        "type": "the comparison (see Conditions)",
        "left": "the value compared, usually a `${...}`",
        "right": "what it is compared with",
        "message": "said when the condition, as a validation, does not hold",
        "all": "conditions that must all hold",
        "any": "conditions of which one must hold",
        "not": "a condition that must not hold",
    },
    "OutputSpec": {
        "name": "the name it is exported under: `${steps.<id>.<name>}`",
        "from": "where in the outputs: `stdout`, `json.items[0].id`, ...",
    },
    "RetryPolicy": {
        "max_attempts": "attempts in all, the first included (1 or more)",
        "base_delay": "seconds before the second attempt (0 to 366 days)",
        "max_delay": "the longest wait between attempts, in seconds (0 to 366 days)",
        "exponential_backoff": "double the wait after each attempt",
        "jitter": "how much of the wait is random: `full`, `equal` (half) or `none`",
        "retry_on_errors": "the failure categories retried (default: network, timeout, temporary, dependency)",
        "retry_on_status": "HTTP statuses retried, instead of categories, when the step got a response",
    },
    "CircuitSpec": {
        "key": "the breaker's name, shared by every step and run that uses it (default: the http origin, or "
               "playbook:step)",
        "failure_threshold": "target failures in a row that open the breaker",
        "failure_rate": "the share of failed calls, over the last `window`, that opens it",
        "window": "calls remembered for the failure rate",
        "minimum_calls": "calls needed before the failure rate counts",
        "open_seconds": "how long an open breaker fails calls fast",
        "half_open_trials": "calls let through to test the target after that",
        "on_open": "`fail` at once while open, or `wait`: the retry policy waits for the half-open",
    },
    "ApprovalGate": {
        "message": "the question approvers see; `${...}` is resolved when asked",
        "required_approvers": "users or directory groups, each entry satisfied by a distinct person",
        "min_approvals": "how many entries must be satisfied, at most as many as there are (default: all); "
                         "without required_approvers, how many distinct people must approve (default: 1)",
        "timeout_seconds": "how long the gate waits (above 0, at most 366 days)",
        "auto_approve_after_timeout": "approve when the time is up, instead of failing the step",
        "allow_self_approval": "let the person who started or retried the run approve it",
    },
    "RollbackAction": {
        "action": "what undoes (see Actions)",
        "args": "its arguments; the step's outputs are in reach",
        "description": "what it undoes, for people",
        "timeout_seconds": "the action is killed after this long",
    },
    "ErrorHandler": {
        "run": "the remediation: an action and its args",
        "category": "the failure category it handles",
        "pattern": "a regular expression (RE2) the failure's text matches, case ignored",
        "then": "`retry` at once after the remediation, or `fail`: let the failure stand",
    },
    "HttpStatus": {
        "type": "`http_status`", "message": "added to the failure when the check fails",
        "url": "the URL asked", "expected_status": "the status (or statuses) that pass",
        "method": "the HTTP method", "headers": "request headers", "timeout_seconds": "how long to wait",
    },
    "PortOpen": {
        "type": "`port_open`", "message": "added to the failure when the check fails",
        "host": "the host", "port": "the TCP port that must accept a connection", "timeout_seconds": "how long to wait",
    },
    "FileExists": {
        "type": "`file_exists`", "message": "added to the failure when the check fails",
        "path": "the path that must exist", "kind": "what it must be: `file`, `directory` or `any`",
    },
    "DiskSpace": {
        "type": "`disk_space`", "message": "added to the failure when the check fails",
        "path": "a path on the file system checked", "min_free_gb": "free space needed, in GB",
        "min_free_percent": "free space needed, in percent",
    },
    "MemoryUsage": {
        "type": "`memory_usage`", "message": "added to the failure when the check fails",
        "max_used_percent": "the most memory that may be in use, in percent",
    },
    "CommandSucceeds": {
        "type": "`command_succeeds`", "message": "added to the failure when the check fails",
        "command": "a command line run by /bin/sh", "argv": "or a program and its arguments",
        "timeout_seconds": "how long it may run", "expected_returncode": "the exit code that passes",
    },
}


def structs() -> list[type]:
    """Every Struct a playbook is written with, from Playbook down, in the order met."""
    found: list[type] = []
    todo: list[mi.Type] = [mi.type_info(Playbook)]
    while todo:
        t = todo.pop(0)
        match t:
            case mi.StructType() if t.cls not in found:
                found.append(t.cls)
                todo += [field.type for field in t.fields]
            case mi.ListType():
                todo.append(t.item_type)
            case mi.DictType():
                todo.append(t.value_type)
            case mi.UnionType():
                todo += list(t.types)
    return found


def keys_of(kind: type) -> list[str]:
    """The keys a playbook writes for this Struct (a validator's `type` tag too)."""
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    return ([str(info.tag_field)] if info.tag is not None else []) + [f.encode_name for f in info.fields]


def render() -> str:
    lines = [
        "# The playbook language", "", GENERATED, "",
        "A playbook is a YAML file: a mapping with a `name` and a list of `steps`. Every key is listed here, with "
        "its type, its default and what it does; unknown keys are errors (PB101), other tools' spellings are "
        "read or answered (see [Other tools' spellings](#other-tools-spellings)). Every `timeout_seconds` is more "
        "than 0, a delay 0 or more, a port 1 to 65535, an HTTP status 100 to 599, a percent 0 to 100, a "
        "failure category one of [those listed](#failure-categories), and a name (the playbook's, a step's) one "
        "line of at most 200 characters with no control characters (PB104). Values are what JSON holds, as a "
        "run keeps them: every key is text (`'200': ok`, PB103), an integer fits in 64 bits, a number is finite, "
        "a date is the text written (`2024-01-01`), and tags other than plain ones (`!!binary`, `!!timestamp`, "
        "`!!python/...`, `!custom`) are refused (PB001). `playbook validate FILE` "
        "checks a playbook without running it. How a run uses a playbook: [design.md](design.md).", "",
        "Contents: " + ", ".join(f"[{kind.__name__}](#{kind.__name__.lower()})" for kind in structs())
        + ", [Values](#values), [Conditions](#conditions), [Actions](#actions), "
          "[Failure categories](#failure-categories), [Findings](#findings).", "",
    ]
    for kind in structs():
        lines += _struct(kind)
    lines += _values() + _conditions() + _actions() + _categories() + _spellings() + _findings()
    return "\n".join(lines).rstrip() + "\n"


def _struct(kind: type) -> list[str]:
    name = kind.__name__
    meanings = MEANINGS.get(name, {})
    missing = [key for key in keys_of(kind) if key not in meanings]
    if missing:
        raise LookupError(f"app/docs/language.py: say what {name}'s key(s) {', '.join(missing)} mean in MEANINGS")
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    rows = [(f"`{info.tag_field}`", f"`{info.tag}`", "required", meanings[str(info.tag_field)])] if info.tag else []
    rows += [(f"`{f.encode_name}`", type_text(f.type), default_text(f), meanings[f.encode_name])
             for f in fields_of(kind)]
    lines = [f"## {name}", ""]
    if text := doc(kind):
        lines += [text, ""]
    return lines + table(("key", "type", "default", "what it does"), rows) + [""]


def _values() -> list[str]:
    return ["## Values", "",
            "Text anywhere in `args`, `when`, validators, validations, approval messages and rollback args may hold "
            "`${...}`, resolved when the step runs (a whole-value reference keeps its type). In a shell `command` "
            "(and a `command_succeeds` validator) a value is never shell syntax: it becomes exactly its text, one "
            "quoted word where a word may start, and inside the playbook's own quotes (`'${p}'`, `\"${p} more\"`), "
            "backquotes, comments and here-documents too (a value holding the line that ends its here-document "
            "fails the step):", ""] + table(
        ("written", "is"), [
            ("`${name}`, `${name.field}`, `${name[0]}`", "a parameter, else a variable (the environment's over the "
             "playbook's); a list's item as `[0]` or `.0`"),
            ("`${steps.<id>.<output>}`", "an output of a step that finished before, a failed one's too: what its "
             "action returns (" + "; ".join(f"{name}: " + ", ".join(f"`{key}`" for key in spec.outputs)
                                             for name, spec in ACTION_SPECS.items() if spec.outputs)
             + "; noop: the keys of its `outputs` and `message`; `json.items[0].id` reads into one) and what it "
             "exports (`outputs: [{name, from}]`); an output the step never has is refused before the run (PB213)"),
            ("`${stdout}`, `${status_code}`", "in validations and rollback: this step's own outputs (checked as "
             "above)"),
            ("`${secret:NAME}`", "a secret, redacted as `***` everywhere it would show (see security.md)"),
            ("`${env.NAME}`", "an engine environment variable listed in `PLAYBOOK_ENV_ALLOW`"),
            ("`${raw:...}`", "in a shell command: inserted as written, not as one quoted word"),
            ("`$${`", "a literal `${`"),
        ]) + [""]


def _conditions() -> list[str]:
    return ["## Conditions", "",
            "`when` and `validations` take a condition: a comparison `{type, left, right}`; `all:`, `any:` or "
            "`not:` combining conditions (nested as deep as needed); text, true unless empty or false (`no`, `0`, "
            "...); or `true`/`false`. A `when` list must all hold, as in Ansible. Text that compares "
            "(`env == prod`) is refused (PB106): as text it would always be true.", "",
            "Comparison types: " + ", ".join(f"`{t}`" for t in sorted(CONDITION_TYPES)) + ". Numbers compare as "
            "numbers, whether written as text or not.", "",
            "A regular expression (of `matches`, a parameter's `pattern`, an error handler's `pattern`) is RE2's "
            "syntax (github.com/google/re2/wiki/Syntax), matched in time linear in the text: no pattern holds the "
            "engine's processes, however long the output. `matches` finds it anywhere in the text, a parameter's "
            "`pattern` must match the whole value, an error handler's ignores case (`(?i)` does elsewhere). RE2 has "
            "no backreferences (`\\1`), lookahead or lookbehind (`(?=`, `(?<!`), atomic groups, possessive repeats "
            "or verbose mode; it writes the end of the text `\\z`, a character by its code `\\x{e9}`, repeats at most "
            "1000 times, and `{,3}` is text (write `{0,3}`). Unlike Python's `re`: `\\d`, `\\w`, `\\s` and `\\b` "
            "are ASCII (`\\pL`, `\\p{Greek}` are Unicode classes), and `$` is the very end of the text, not also "
            "before a final newline (`(?m)$` is any line's end). A pattern RE2 cannot run is PB104 naming what to "
            "write instead, or the step fails as `configuration` when it comes from `${...}`.", "",
            "```yaml", "when:", "  - {type: equals, left: \"${environment}\", right: production}",
            "  - any:", "      - {type: greater_than, left: \"${replicas}\", right: 2}",
            "      - not: {type: equals, left: \"${region}\", right: eu}", "```", ""]


def _actions() -> list[str]:
    lines = ["## Actions", "", "What a step (or a rollback action, or an error handler) does, and its `args`:", ""]
    for name, action in ACTION_SPECS.items():
        timeout = f" (default timeout {action.default_timeout:g} s)" if action.default_timeout else ""
        lines += [f"### {name}{timeout}", ""] + table(
            ("arg", "required", "what it is"),
            [(f"`{arg_name}`", "yes" if arg.required else "no", arg.meaning)
             for arg_name, arg in action.args.items()])
        lines.append("")
    return lines


def _categories() -> list[str]:
    return ["## Failure categories", "",
            "A failed attempt is classified (HTTP status, exit code, then error-text patterns) into one of: "
            + ", ".join(f"`{c}`" for c in get_args(ErrorCategory)) + ". `retry_on_errors`, error handlers and "
            "circuit breakers act on these; `cancelled`, `interrupted` and `engine` (a service gave up on the step: "
            "docs/execution.md) are the engine's own.", ""]


def _spellings() -> list[str]:
    read = [(f"`{theirs}`", where, f"read as `{ours}` (PB504, an info)")
            for where, table_ in READ_AS.items() for theirs, ours in table_.items()]
    answered = [(f"`{theirs}`", where, answer) for where, table_ in ANSWERS.items() for theirs, answer in
                table_.items()]
    return ["## Other tools' spellings", "",
            "Keys as Ansible, GitHub Actions or the original design spell them are read as ours when they mean "
            "the same, or refused (PB101) with what to write instead:", ""] + table(
        ("key", "in", "what happens"), read + answered) + [""]


def _findings() -> list[str]:
    return ["## Findings", "", "What `playbook validate` reports, by stable code; errors stop a run (security "
            "errors unless `--allow-unsafe-shell`):", ""] + table(
        ("code", "severity", "meaning"), [(f"`{code}`", severity_of(code), meaning) for code, meaning in CODES.items()])
