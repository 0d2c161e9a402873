"""noop and wait: steps with no side effect, for tests, examples and deliberate pauses."""
from __future__ import annotations

import asyncio
import math
from typing import Any

from .base import Action, ActionArgsError, ActionResult, arg


async def run_noop(args: dict[str, Any]) -> ActionResult:
    """Succeed with the given outputs, so playbooks and tests can fake a step's results."""
    outputs = dict(arg(args, "outputs", (dict,), "a mapping", {}))
    message = arg(args, "message", (str,), "a string")
    if message is not None:
        outputs.setdefault("message", message)
    return ActionResult(ok=True, outputs=outputs)


async def run_wait(args: dict[str, Any]) -> ActionResult:
    """Sleep for a while, e.g. to let a deployment settle before checking it."""
    seconds = arg(args, "seconds", (int, float), "a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ActionArgsError(f"'seconds' must be a number >= 0, got {seconds}")
    await asyncio.sleep(seconds)
    return ActionResult(ok=True, outputs={"waited_seconds": seconds})


NOOP = Action(run=run_noop, args={
    "outputs": (False, "mapping returned as the step's outputs"),
    "message": (False, "text returned as the `message` output"),
})

WAIT = Action(run=run_wait, args={
    "seconds": (True, "how long to wait, >= 0"),
})
