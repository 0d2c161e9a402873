"""The actions a step may name and the arguments each takes: one definition, read by validation, the executor
and the docs.

Validation checks the values it can already see; a value that holds a `${...}` is known only when the step
runs, and the executor checks it then, with the same rules.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from services.playbook import arg_checks as check
from services.playbook.arg_checks import Check
from services.playbook.diagnostics import Issue, Path, did_you_mean

HTTP_TIMEOUT = 30.0
MAX_BODY_BYTES = 1 << 20
MAX_OUTPUT_BYTES = 65536


class Arg(NamedTuple):   # not a dataclass: the CLI imports this, and a NamedTuple is made 10x faster
    required: bool
    meaning: str
    check: Check = check.anything


def _no_rules(args: Mapping[str, Any]) -> list[str]:
    return []


class ActionSpec(NamedTuple):
    """An action's arguments; `rules` checks what involves several at once (one of, not both)."""

    args: dict[str, Arg]
    rules: Callable[[Mapping[str, Any]], list[str]] = _no_rules
    default_timeout: float | None = None
    outputs: tuple[str, ...] = ()  # the keys its outputs may hold (a noop's also those of its `outputs` arg)


def _exactly_one_program(args: Mapping[str, Any]) -> list[str]:
    if args.get("command") is None and args.get("argv") is None:
        return ["'command' or 'argv' is required"]
    if args.get("command") is not None and args.get("argv") is not None:
        return ["'command' and 'argv' exclude each other; give one"]
    return []


def _json_or_data(args: Mapping[str, Any]) -> list[str]:
    if args.get("json") is not None and args.get("data") is not None:
        return ["'json' and 'data' exclude each other; give one"]
    return []


ACTION_SPECS: dict[str, ActionSpec] = {
    "noop": ActionSpec(args={
        "outputs": Arg(False, "mapping returned as the step's outputs", check.A_MAPPING),
        "message": Arg(False, "text returned as the `message` output", check.A_STRING),
    }),
    "wait": ActionSpec(outputs=("waited_seconds",), args={
        "seconds": Arg(True, "how long to wait, >= 0", check.SECONDS),
    }),
    "shell": ActionSpec(rules=_exactly_one_program, outputs=("returncode", "stdout", "stderr"), args={
        "command": Arg(False, "command line run by /bin/sh -c", check.COMMAND),
        "argv": Arg(False, "program and its arguments, run without a shell", check.ARGV),
        "cwd": Arg(False, "working directory", check.A_STRING),
        "env": Arg(False, "the command's environment, beyond PATH, HOME, TMPDIR, LANG, USER (never the engine's)",
                   check.TEXT_MAPPING),
        "stdin": Arg(False, "text written to the command's standard input", check.A_STRING),
        "max_output_bytes": Arg(False, f"bytes kept of stdout and of stderr (head; default {MAX_OUTPUT_BYTES})",
                                check.COUNT),
        "ok_returncodes": Arg(False, "return codes that count as success (default [0])", check.RETURN_CODES),
    }),
    "http_request": ActionSpec(rules=_json_or_data, default_timeout=HTTP_TIMEOUT, args={
        "url": Arg(True, "http:// or https:// URL", check.HTTP_URL),
        "method": Arg(False, "HTTP method (default GET)", check.HTTP_METHOD),
        "headers": Arg(False, "request headers; never echoed in outputs or errors", check.HEADERS),
        "json": Arg(False, "value sent as a JSON body", check.as_json),
        "data": Arg(False, "text sent as the body", check.A_STRING),
        "params": Arg(False, "query parameters", check.TEXT_MAPPING),
        "expect_status": Arg(False, "status code(s) that count as success (default: any below 400)",
                             check.STATUS_CODES),
        "max_body_bytes": Arg(False, f"bytes kept of the response body (head; default {MAX_BODY_BYTES})",
                              check.COUNT),
        "verify_tls": Arg(False, "verify the server's certificate (default true)", check.TRUE_OR_FALSE),
        "follow_redirects": Arg(False, "follow redirects (default true)", check.TRUE_OR_FALSE),
    }, outputs=("status_code", "headers", "body", "json", "retry_after", "elapsed_ms")),
}


def arg_problems(spec: ActionSpec, args: Mapping[str, Any], *, resolved: bool) -> list[tuple[str | None, str]]:
    """(the argument, what is wrong with it) for each problem; the argument is None for one of several.

    Not `resolved`: a value holding a `${...}` is not checked, its value being known only when the step runs.
    """
    problems: list[tuple[str | None, str]] = [
        (name, f"unknown arg {name!r}{did_you_mean(str(name), spec.args)}") for name in args if name not in spec.args]
    problems += [(name, f"{name!r} is required") for name, arg in spec.args.items()
                 if arg.required and args.get(name) is None]
    problems += [(None, problem) for problem in spec.rules(args)]
    for name, value in args.items():
        arg = spec.args.get(name)
        if arg is None or value is None or (not resolved and holds_reference(value)):
            continue
        if problem := arg.check(name, value):
            problems.append((name, problem))
    return problems


def arg_issues(action: str, args: Mapping[str, Any], at: Path) -> list[Issue]:
    """PB107 for each problem a step's (or rollback action's) args show before the run, at the arg it names."""
    spec = ACTION_SPECS.get(action)
    if spec is None:
        return []
    return [Issue("PB107", f"{action}: {problem}", at if name is None else at + (name,),
                  on_key=name is not None and name not in spec.args)
            for name, problem in arg_problems(spec, args, resolved=False)]


def holds_reference(value: Any) -> bool:
    """Whether a `${` stands anywhere in the value, keys included."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(holds_reference(key) or holds_reference(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_reference(item) for item in value)
    return False
