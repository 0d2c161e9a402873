"""Stopping tasks for good.

On Python 3.11, `asyncio.wait_for` returns the result instead of raising when a cancellation
meets a result that is ready at the same moment (nats-py's `Subscription.next_msg` waits that
way), so one `cancel()` can be lost and a reader goes on reading for nobody. Stopping a task
here means cancelling it until it is done.
"""
from __future__ import annotations

import asyncio
from typing import Any

RETRY_EVERY = 0.05            # seconds between cancellations of a task that swallowed one


async def stop(*tasks: asyncio.Future[Any]) -> None:
    """Cancel the tasks until every one is done; their results and errors are dropped."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RETRY_EVERY)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
