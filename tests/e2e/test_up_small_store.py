"""`playbook up` where the disk has little room: the capped streams whose sizes are not set fit the embedded
server's storage, so the first start works, and the next keeps the same sizes; the learning process, started
beside the engine with what `up` decided, agrees."""
from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import nats
import pytest

from events import subjects
from services.embedded import free_port
from services.identity.credentials import nats_login
from tests.e2e.conftest import Processes, playbook_cli
from tests.helpers import until

pytestmark = pytest.mark.e2e

MIB = 2**20


async def capped_sizes(home: Path) -> dict[str, int]:
    login = nats_login("engine", home)
    assert login is not None
    nc = await nats.connect((home / "nats.url").read_text().strip(), **login.connect_options())
    try:
        js = nc.jetstream()
        names = (subjects.LOGS_STREAM, subjects.ACCESS_STREAM, subjects.object_stream(subjects.UPLOADS_BUCKET))
        return {name: (await js.stream_info(name)).config.max_bytes or 0 for name in names}
    finally:
        await nc.close()


async def test_up_fits_the_capped_streams_to_a_small_store_and_starts_again(tmp_path: Path,
                                                                            processes: Processes) -> None:
    home = tmp_path / ".playbook"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "PLAYBOOK_"))}
    env.update(PYTHONUNBUFFERED="1", PLAYBOOK_NATS_PORT=str(free_port()), PLAYBOOK_HOME=str(home),
               PLAYBOOK_NATS_MAX_STORE="600MiB", PLAYBOOK_STEP_USER=os.environ.get("PLAYBOOK_STEP_USER", ""))
    seen = []
    for start in range(2):
        up = processes.start("up", ["-m", "ui.cli.main", "up", "--http-port", "0"], env)
        log = processes.logs / f"up-{start}.log"
        await until(lambda: "engine ready" in log.read_text(), timeout=60, what="playbook up ready")   # noqa: B023
        ran = await asyncio.to_thread(playbook_cli, "run", "examples/hello.yaml", "-p", "who=x", env=env)
        assert ran.returncode == 0 and "run completed" in ran.stdout, ran.stderr
        seen.append(await capped_sizes(home))
        os.killpg(up.pid, signal.SIGTERM)
        assert await asyncio.to_thread(up.wait, 30) == 0
        text = log.read_text()
        assert "learning service exited" not in text and "not serving yet" not in text, text

    assert re.search(r"Max Storage:\s+600.00 MB", (home / "nats-server.log").read_text())   # the server's own
    first_log = (processes.logs / "up-0.log").read_text()
    assert "PB_LOGS keeps at most 150 MiB (its default is 1024 MiB)" in first_log
    assert seen[0] == seen[1] == {subjects.LOGS_STREAM: 150 * MIB, subjects.ACCESS_STREAM: 37 * MIB,
                                  subjects.object_stream(subjects.UPLOADS_BUCKET): 37 * MIB}
    assert "keeps at most" not in (processes.logs / "up-1.log").read_text()    # the streams kept their sizes
