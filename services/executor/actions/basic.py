"""noop and wait: steps with no side effect, for tests, examples and deliberate pauses."""
from __future__ import annotations

import asyncio
from typing import Any

from services.playbook.actions import ACTION_SPECS

from .base import Action, ActionResult, arg


async def run_noop(args: dict[str, Any]) -> ActionResult:
    """Succeed with the given outputs, so playbooks and tests can fake a step's results."""
    outputs = dict(arg(args, "outputs", {}))
    message = arg(args, "message")
    if message is not None:
        outputs.setdefault("message", message)
    return ActionResult(ok=True, outputs=outputs)


async def run_wait(args: dict[str, Any]) -> ActionResult:
    """Sleep for a while, e.g. to let a deployment settle before checking it."""
    seconds = args["seconds"]
    await asyncio.sleep(seconds)
    return ActionResult(ok=True, outputs={"waited_seconds": seconds})


NOOP = Action(run=run_noop, spec=ACTION_SPECS["noop"])
WAIT = Action(run=run_wait, spec=ACTION_SPECS["wait"])
