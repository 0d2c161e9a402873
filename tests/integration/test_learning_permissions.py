"""The learning service's answers under NATS users and tokens: a viewer asks; an admin may ask for a rebuild
(NATS lets the client login send it, the token decides); an agent's login may only ask."""
from __future__ import annotations

import pytest

from events import subjects
from events.commands import StartRun
from events.run import RunCompleted
from services.errors import EngineUnavailable
from services.learning.errors import LearningRefused
from tests.helpers import noop, person, playbook_yaml
from tests.integration.test_nats_users import (  # noqa: F401 - fixture
    Secured, engine_as_its_user, follow_with_named_consumer, secured,
)
from ui.client import EngineClient
from ui.insights import LearningClient

pytestmark = pytest.mark.integration


async def test_a_client_asks_and_rebuilds_an_agent_only_asks(secured: Secured, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PLAYBOOK_HOME", str(tmp_path / "engine-home"))
    async with engine_as_its_user(secured) as admin, secured.connect("client") as client, \
            secured.connect("agent") as agent:
        engine = EngineClient(client.nc, admin)
        reply = await engine.send(StartRun(playbook=playbook_yaml([noop("a")], name="tiny")))
        await follow_with_named_consumer(client.nc, reply.run_id, RunCompleted)
        last = (await client.nc.jetstream().stream_info(subjects.RUNS_STREAM)).state.last_seq
        viewer = (await person(engine, "watcher", "viewer", agent=True)).headers()
        asked = await LearningClient(client.nc, viewer).insights(after=last, wait=30)
        assert [(p.playbook, p.runs) for p in asked.playbooks] == [("tiny", 1)]
        with pytest.raises(LearningRefused, match="watcher may not rebuild projections") as refused:
            await LearningClient(client.nc, viewer).rebuild()
        assert refused.value.code == "forbidden"
        with pytest.raises(LearningRefused, match="sign in first"):
            await LearningClient(client.nc).insights()
        assert (await LearningClient(client.nc, engine.headers()).rebuild()).position == last
        assert (await LearningClient(agent.nc, viewer).insights()).playbooks == asked.playbooks
        assert (await LearningClient(agent.nc, viewer).status()).lag == 0
        with pytest.raises(EngineUnavailable):
            await LearningClient(agent.nc, engine.headers()).rebuild(timeout=1)
        assert "permissions violation" in (await agent.violation(subjects.LEARNING_REBUILD)).lower()
        assert client.errors == []
