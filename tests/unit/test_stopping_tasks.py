"""A reader cancelled just as its message arrives swallows the cancellation on Python 3.11
(`asyncio.wait_for`, which nats-py's `next_msg` uses); `stop` cancels until it is done."""
from __future__ import annotations

import asyncio
import sys

from services.tasks import stop


async def test_a_reader_that_swallows_a_cancellation_is_stopped_all_the_same() -> None:
    messages: asyncio.Queue[int] = asyncio.Queue()
    waiting = asyncio.Event()

    async def reader() -> None:
        while True:
            waiting.set()
            await asyncio.wait_for(messages.get(), 10)

    task = asyncio.create_task(reader())
    await waiting.wait()
    messages.put_nowait(1)                  # the message and the cancellation meet
    task.cancel()
    swallowed, _ = await asyncio.wait({task}, timeout=0.5)
    if sys.version_info < (3, 12):
        assert not swallowed                # one cancel is not enough there: why `stop` exists
    await asyncio.wait_for(stop(task), 5)
    assert task.cancelled()


async def test_stopping_keeps_quiet_about_finished_and_failed_tasks() -> None:
    async def fails() -> None:
        raise RuntimeError("already over")

    done, failed = asyncio.create_task(asyncio.sleep(0)), asyncio.create_task(fails())
    await asyncio.wait({done, failed})
    await stop(done, failed)
    assert done.result() is None and isinstance(failed.exception(), RuntimeError)
