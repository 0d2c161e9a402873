"""What a careless or hostile user types, as the CLI and a service process see it: a clear refusal, exit 2,
and a log whose lines are all the engine's own."""
from __future__ import annotations

from pathlib import Path

import nats
import pytest

from events.commands import Reply, StartRun
from tests.e2e.conftest import Processes, playbook_cli, the_local_admin
from tests.helpers import noop, playbook_yaml, until
from ui.client import EngineClient

pytestmark = pytest.mark.e2e

FORGED = "2026-01-01 00:00:00,000 INFO services.run.service: StartRun by root on run everything"


def test_a_playbook_of_five_megabytes_is_refused_with_the_limit_and_exit_2(tmp_path: Path,
                                                                          engine_env: dict[str, str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(playbook_yaml([noop("a")]) + ("# " + "x" * 98 + "\n") * 50_000)
    unsent = "pbt_0123456789abcdef_" + "x" * 43        # refused before it is sent: no token is checked
    result = playbook_cli("run", str(big), env={**engine_env, "PLAYBOOK_TOKEN": unsent})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "MaxPayloadError" not in result.stderr
    assert "NATS carries at most 1,048,576" in result.stderr and "StartRun" in result.stderr


@pytest.mark.parametrize("args", [("pause", "*"), ("cancel", ">"), ("status", "a.b"), ("events", "run.>"),
                                  ("approve", "r1", "*"), ("run", "x.yaml", "--run-id", "a*b")])
def test_a_wildcard_where_an_id_belongs_is_refused_before_anything_is_sent(args: tuple[str, ...],
                                                                          engine_env: dict[str, str]) -> None:
    result = playbook_cli(*args, env=engine_env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "may hold only letters, digits" in result.stderr or "must start with a letter" in result.stderr


async def test_a_newline_in_a_claimed_actor_is_refused_and_cannot_forge_a_line_in_a_service_log(
        nats_server, engine_env: dict[str, str], processes: Processes) -> None:
    processes.start("identity", ["-m", "services.identity"], engine_env)
    processes.start("run", ["-m", "services.run"], engine_env)
    log = next(processes.logs.glob("run-*.log"))
    nc = await nats.connect(nats_server.url)
    try:
        client = EngineClient(nc, await the_local_admin(engine_env))

        async def answer() -> Reply | None:
            try:
                return await client.send(StartRun(actor=f"mallory\n{FORGED}\r", playbook=playbook_yaml(
                    [noop("a")])), timeout=2)
            except Exception:  # noqa: BLE001 - the service is still starting
                return None
        reply = await until(answer, timeout=30, what="the run service answering", every=0.2)
        started = await client.send(StartRun(playbook=playbook_yaml([noop("a")])))
        await until(lambda: f"on run {started.run_id}" in log.read_text(), what="the next start logged")
    finally:
        await nc.close()
    assert not reply.accepted and reply.error is not None and reply.error.code == "forged_actor"
    assert f"mallory\\n{FORGED[:40]}" in reply.error.message          # shown escaped in the refusal
    lines = log.read_text().splitlines()
    assert not any(line.startswith(FORGED[:23]) for line in lines), lines
