"""A big playbook being started does not hold up the engine's other commands."""
from __future__ import annotations

import asyncio

import pytest

from events import subjects
from events.commands import PauseRun, StartRun

pytestmark = pytest.mark.integration


async def test_other_commands_are_answered_while_a_big_playbook_is_validated(engine) -> None:
    # 20,000 named steps (no advice to send back) fit in one NATS message; the last one is wrong,
    # so the whole text is read first.
    text = "name: big\nsteps:\n" + "".join(f"  - {{id: s{i:05d}, name: n, action: noop}}\n" for i in range(20_000))
    text += "  - {id: last, action: shel}\n"
    answered: list[str] = []
    arrived = asyncio.Event()

    async def seen(_msg) -> None:
        arrived.set()

    watch = await engine.nc.subscribe(subjects.command("StartRun"), cb=seen)

    async def send(name: str, command) -> object:
        reply = await engine.send(command, timeout=120)
        answered.append(name)
        return reply

    try:
        starting = asyncio.create_task(send("start", StartRun(playbook=text)))
        await asyncio.wait_for(arrived.wait(), 30)  # the run service has it too: now ask something else
        paused = await send("pause", PauseRun(run_id="no-such-run"))
        started = await starting
    finally:
        await watch.unsubscribe()
    assert answered == ["pause", "start"]
    assert not paused.accepted
    assert (started.accepted, started.error.code) == (False, "invalid_playbook")
    assert [d["step_id"] for d in started.error.details if d["code"] == "PB206"] == ["last"]
