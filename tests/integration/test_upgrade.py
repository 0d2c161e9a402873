"""Runs an older engine left in flight are read and steered by this one (docs/events.md: events never change
meaning; docs/operations.md, Upgrading).

The fixtures are messages as older engines stored them, not made by hand: `playbook up` of that commit (its own
worktree and venv), runs started with `--run-id`, paused or cancelled or left at a gate, then Ctrl-C, and every
message of those runs read back out of the stopped engine's streams (subject and data):

- round_one_0da00fa.jsonl: commit 0da00fa, the last of round one: playbooks embedded in RunStarted, no leases (an
  attempt running at the stop was not recorded interrupted), no tokens;
- round_two_a203b19.jsonl: commit a203b19, the end of round two: playbooks pinned by digest in PB_PLAYBOOKS (their
  objects are in the fixture), fenced leases, and PB_IDENTITY's records of carol's token and of frank's, revoked.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from events.commands import ApproveStep, CancelRun, RetryRun, RollbackRun
from events.run import RollbackCompleted, RunCancelled, RunCompleted
from services.identity.store import IdentityStore
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.e2e.conftest import playbook_cli
from tests.helpers import person, running_engine, wait_for_end
from ui.client import EngineClient

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "fixtures" / "upgrade"
# Issued by a203b19's engine to the fixture's carol (operator, approver) and frank (viewer, then revoked): only
# their hashes are in the fixture; they open nothing but a test's engine.
CAROL = "pbt_4b974bedd1473619_iCGd8Tb8yoqsHUSNIiHxDX4Lik5mTyc5xCtiOj5Vi70"
FRANK = "pbt_4abc3eea072a7916_JNVFACW_bgkmV3fwP7jMxRt4yCakahStKio5FfMZ0CE"


# The times in a stored event: the fixture's are moved so its last event is now, as if the upgrade followed the
# stop at once; as written, a gate's hour-long window would have closed an hour after the fixture was made.
_TIME = re.compile(r'"(at|deadline|due|expires_at)":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[^"]+)"')


async def stored_as_the_old_engine_left_it(nc, name: str) -> None:
    """The engine's streams made as this version makes them, then the old messages put back in order."""
    await EventStore(nc).ensure_stream()
    await PlaybookStore(nc).ensure()
    await IdentityStore(nc).ensure_streams()
    js = nc.jetstream()
    rows = [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]
    last = max(datetime.fromisoformat(when) for row in rows for key, when in _TIME.findall(row["data"]) if key == "at")
    moved = datetime.now(timezone.utc) - last

    def now_as_then(found: re.Match[str]) -> str:
        when = (datetime.fromisoformat(found[2]) + moved).isoformat().replace("+00:00", "Z")
        return f'"{found[1]}":"{when}"'

    for row in rows:
        data = row["data"] if row["stream"].startswith("OBJ_") else _TIME.sub(now_as_then, row["data"])
        await js.publish(row["subject"], data.encode(), stream=row["stream"])


async def test_runs_in_flight_under_round_ones_engine_finish_under_this_one(nc, settings, engine_env) -> None:
    await stored_as_the_old_engine_left_it(nc, "round_one_0da00fa.jsonl")
    async with running_engine(settings) as engine:
        assert {r.run_id: r.status for r in await engine.list_runs()} == {
            "r1-ok": "completed", "r1-fail": "failed", "r1-gate": "waiting_approval", "r1-pause": "paused"}

        carol = await person(engine, "carol")    # the gate names carol; round one knew no tokens
        assert (await carol.send(ApproveStep(run_id="r1-gate", step_id="ship"))).accepted
        assert isinstance((await wait_for_end(engine, "r1-gate"))[-1], RunCompleted)

        assert (await engine.send(RetryRun(run_id="r1-fail", parameters={"code": "0"}))).accepted
        assert isinstance((await wait_for_end(engine, "r1-fail", after_retry=True))[-1], RunCompleted)

        # Round one streamed output lines on core NATS, kept none: what they printed is on their events.
        logs = playbook_cli("logs", "r1-ok", env=engine_env)
        assert (logs.returncode, logs.stdout) == (0, "")
        assert "no output lines kept of run r1-ok" in logs.stderr and "`playbook status r1-ok --output`" in logs.stderr
        assert "| a" in playbook_cli("status", "r1-ok", "--output", env=engine_env).stdout

        assert (await engine.send(RollbackRun(run_id="r1-ok"))).accepted
        assert isinstance((await wait_for_end(engine, "r1-ok", after_rollback_start=True))[-1], RollbackCompleted)

        # Paused while its step ran; round one's stop left the attempt running, held by an executor long gone.
        assert (await engine.send(CancelRun(run_id="r1-pause"))).accepted
        assert isinstance((await wait_for_end(engine, "r1-pause"))[-1], RunCancelled)
        assert (await engine.send(RetryRun(run_id="r1-pause", parameters={"secs": "0"}))).accepted
        assert isinstance((await wait_for_end(engine, "r1-pause", after_retry=True))[-1], RunCompleted)


async def test_runs_and_tokens_of_round_twos_engine_are_honoured_by_this_one(nc, settings) -> None:
    await stored_as_the_old_engine_left_it(nc, "round_two_a203b19.jsonl")
    async with running_engine(settings) as engine:
        assert {r.run_id: r.status for r in await engine.list_runs()} == {
            "r-fail": "failed", "r-gate": "waiting_approval", "r-pause": "paused"}

        frank = await EngineClient(engine.nc, FRANK).send(CancelRun(run_id="r-pause"))
        assert (frank.accepted, frank.error.code) == (False, "unauthenticated")
        assert "revoked" in frank.error.message

        carol = EngineClient(engine.nc, CAROL)
        assert (await carol.send(ApproveStep(run_id="r-gate", step_id="ship"))).accepted
        assert isinstance((await wait_for_end(engine, "r-gate"))[-1], RunCompleted)

        assert (await carol.send(RetryRun(run_id="r-fail", parameters={"code": "0"}))).accepted
        assert isinstance((await wait_for_end(engine, "r-fail", after_retry=True))[-1], RunCompleted)

        # Paused by carol while its step ran; the old engine's stop recorded the attempt interrupted.
        assert (await carol.send(CancelRun(run_id="r-pause"))).accepted
        assert isinstance((await wait_for_end(engine, "r-pause"))[-1], RunCancelled)
        assert (await carol.send(RetryRun(run_id="r-pause", parameters={"secs": "0"}))).accepted
        assert isinstance((await wait_for_end(engine, "r-pause", after_retry=True))[-1], RunCompleted)
