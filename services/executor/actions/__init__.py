"""Step actions: the side effects the executor runs once `StepStarted` is recorded.

Args arrive interpolated. `run_action` turns every step-level failure into a failed
`ActionResult`; only cancellation propagates, after the action has cleaned up. What it
returns (and logs) is redacted of the secrets the current attempt holds.
"""
from __future__ import annotations

import asyncio
import difflib
import logging
import traceback
from collections.abc import Iterable
from typing import Any

from services.errors import PlaybookError
from services.executor.scope import current_scope, redacted
from services.playbook.actions import arg_problems

from .base import Action, ActionArgsError, ActionResult, cut_off_outputs
from .basic import NOOP, WAIT
from .http import HTTP_REQUEST, close_http_session
from .shell import SHELL

__all__ = ["ACTIONS", "Action", "ActionArgsError", "ActionResult", "close_http_session",
           "run_action", "validate_args"]

log = logging.getLogger(__name__)

ACTIONS: dict[str, Action] = {
    "noop": NOOP,
    "wait": WAIT,
    "shell": SHELL,
    "http_request": HTTP_REQUEST,
}


def validate_args(action: str, args: dict[str, Any]) -> list[str]:
    """Problems with the resolved args, by the language's rules (validation ran them on what it could see)."""
    entry = ACTIONS.get(action)
    if entry is None:
        return [f"unknown action {action!r}{_did_you_mean(action, ACTIONS)}"]
    if not isinstance(args, dict):
        return [f"{action}: args must be a mapping, got {type(args).__name__}"]
    return [f"{action}: {problem}" for _, problem in arg_problems(entry.spec, args, resolved=True)]


async def run_action(action: str, args: dict[str, Any], *, timeout: float | None = None) -> ActionResult:
    """Run one step attempt, bounded by `timeout` seconds (the step's), or the action's default."""
    result = await _run(action, args, timeout)
    scope = current_scope()
    if scope is None or not (redactor := scope.secrets.redactor):
        return result
    return ActionResult(ok=result.ok, outputs=redactor(result.outputs), error=redactor.text(result.error),
                        category=result.category)


async def _run(action: str, args: dict[str, Any], timeout: float | None) -> ActionResult:
    if problems := validate_args(action, args):
        return ActionResult(ok=False, error="; ".join(problems), category="configuration")
    entry = ACTIONS[action]
    seconds = timeout if timeout is not None else entry.spec.default_timeout
    deadline = asyncio.timeout(seconds)
    cut_off: dict[str, Any] = {}
    leaving = cut_off_outputs.set(cut_off)
    try:
        async with deadline:
            return await entry.run(args)
    except (ActionArgsError, PlaybookError) as err:
        return ActionResult(ok=False, error=f"{action}: {err}", category="configuration")
    except TimeoutError as err:
        error = f"timed out after {seconds:g}s" if deadline.expired() else f"{action} timed out: {err}"
        return ActionResult(ok=False, outputs=cut_off, error=error, category="timeout")
    except Exception as err:  # noqa: BLE001 - logged, redacted, and the step fails
        log.error("action %s failed unexpectedly\n%s", action, redacted(traceback.format_exc()))
        return ActionResult(ok=False, error=f"{action} failed unexpectedly: {type(err).__name__}: {err}",
                            category="unknown")
    finally:
        cut_off_outputs.reset(leaving)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
