"""What a careless or hostile user types, as the CLI and a service process see it: a clear refusal, exit 2,
and a log whose lines are all the engine's own."""
from __future__ import annotations

from pathlib import Path

import nats
import pytest

from events.commands import StartRun
from tests.e2e.conftest import Processes, playbook_cli
from tests.helpers import noop, playbook_yaml, until
from ui.client import EngineClient

pytestmark = pytest.mark.e2e

FORGED = "2026-01-01 00:00:00,000 INFO services.run.service: StartRun by root on run everything"


def test_a_playbook_of_five_megabytes_is_refused_with_the_limit_and_exit_2(tmp_path: Path,
                                                                          engine_env: dict[str, str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(playbook_yaml([noop("a")]) + ("# " + "x" * 98 + "\n") * 50_000)
    result = playbook_cli("run", str(big), env=engine_env)
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


async def test_a_newline_in_an_actor_cannot_forge_a_line_in_a_service_log(nats_server, engine_env: dict[str, str],
                                                                         processes: Processes) -> None:
    processes.start("run", ["-m", "services.run"], engine_env)
    log = next(processes.logs.glob("run-*.log"))
    nc = await nats.connect(nats_server.url)
    try:
        client = EngineClient(nc)

        async def answered() -> bool:
            try:
                return (await client.send(StartRun(actor=f"mallory\n{FORGED}\r", playbook=playbook_yaml(
                    [noop("a")])), timeout=2)).accepted
            except Exception:  # noqa: BLE001 - the service is still starting
                return False
        await until(answered, timeout=20, what="the run service answering", every=0.2)
        await until(lambda: "StartRun by mallory" in log.read_text(), what="the start logged")
    finally:
        await nc.close()
    lines = log.read_text().splitlines()
    assert not any(line.startswith(FORGED[:23]) for line in lines), lines
    (logged,) = [line for line in lines if "StartRun by mallory" in line]
    assert f"mallory\\n{FORGED}\\r on run" in logged
