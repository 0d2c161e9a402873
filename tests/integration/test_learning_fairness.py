"""What one person's runs teach does not crowd out or mislead what everyone else's do: a flood of playbook
names makes room among its sender's own, a playbook's figures are of the version that runs now, and a shared
target's breaker advice does not rest on one person's own texts. On SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from events.catalog import PlaybookPin
from events.insights import Insights
from events.run import RunStarted
from services.learning import knowledge
from services.learning.config import LearningConfig
from services.learning.service import LearningService
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.helpers import T0
from tests.learning import Run, admin_headers, identity, learning_config, record  # noqa: F401 - fixtures
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from ui.insights import LearningClient

pytestmark = pytest.mark.integration

Learn = Callable[[list[Run]], Awaitable[Insights]]


def step(command: str = "true", url: str = "") -> list[dict[str, Any]]:
    if url:
        return [{"id": "call", "action": "http_request", "timeout_seconds": 5, "args": {"url": url}}]
    return [{"id": "call", "action": "shell", "timeout_seconds": 5, "args": {"command": command}}]


def passing(run_id: str, name: str, minute: float, actor: str, steps: list[dict[str, Any]] | None = None) -> Run:
    run = Run(run_id, steps or step(), name, T0 + timedelta(minutes=minute), actor=actor)
    run.attempt("call", 1, 10)
    run.complete()
    return run


def failing(run_id: str, name: str, at_seconds: float, actor: str, steps: list[dict[str, Any]]) -> Run:
    run = Run(run_id, steps, name, T0 + timedelta(seconds=at_seconds), actor=actor)
    run.attempt("call", 1, 3, "connection refused", "network")
    run.give_up("call", 1, "network")
    return run


async def published(playbooks: PlaybookStore, run: Run, version: str) -> Run:
    """The run as one started from the catalog's `version` of its playbook: pinned by digest, published."""
    began = run.events[0]
    assert isinstance(began, RunStarted) and began.playbook is not None and began.plan is not None
    parsed = await playbooks.store_parsed(began.playbook, began.plan)
    pin = PlaybookPin(name=began.playbook.name, version=version, digest=parsed, parsed=parsed,
                      steps=len(began.playbook.steps), published=True)
    run.events[0] = msgspec.structs.replace(began, pin=pin, playbook=None, plan=None)
    return run


@pytest.fixture
async def engine(nc) -> tuple[EventStore, PlaybookStore]:
    store, playbooks = EventStore(nc), PlaybookStore(nc)
    await store.ensure_stream()
    await playbooks.ensure()
    return store, playbooks


@pytest.fixture
async def service(nc, engine, learning_config: LearningConfig, identity) -> AsyncIterator[LearningService]:
    store, playbooks = engine
    learning = LearningService(nc, store, learning_config, playbooks, identity.guard)
    await learning.start()
    try:
        yield learning
    finally:
        await learning.stop()


@pytest.fixture
def learn(nc, engine, service, admin_headers) -> Learn:
    """Record these runs and answer what the service learned once it has learned all of them."""
    async def recorded(runs: list[Run]) -> Insights:
        last = await record(engine[0], runs)
        return await LearningClient(nc, admin_headers).insights(after=last, wait=30)
    return recorded


async def test_one_persons_flood_of_playbook_texts_makes_room_among_their_own(
        nc, engine, learn, admin_headers, monkeypatch) -> None:
    for bound, value in (("MAX_PROFILES", 7), ("MAX_TEXTS", 5), ("MAX_TEXTS_PER_STARTER", 3)):
        monkeypatch.setattr(knowledge, bound, value, raising=False)
    playbooks = engine[1]
    runs = [await published(playbooks, passing("deploy-1", "deploy", 1, "alice"), "1"),
            await published(playbooks, passing("backup-1", "backup", 2, "bob"), "1"),
            passing("bob-1", "bob-tool", 3, "bob"), passing("alice-1", "alice-tool", 4, "alice")]
    runs += [passing(f"flood-{n}", f"flood-{n}", 10 + n, "mallory") for n in range(10)]
    runs += [passing("carol-1", "carol-tool", 30, "carol"), passing("flood-0-again", "flood-0", 31, "mallory"),
             await published(playbooks, passing("restore-1", "restore", 32, "alice"), "1")]
    insights = await learn(runs)
    # mallory's names made room among her own three; carol's text, her first one again and a catalog playbook
    # made room among texts, each from whoever sent most: never from a catalog playbook or anyone else's text
    assert [p.playbook for p in insights.playbooks] == sorted(
        ["deploy", "backup", "bob-tool", "alice-tool", "carol-tool", "flood-0", "restore"])
    flood, = (p for p in insights.playbooks if p.playbook == "flood-0")
    assert flood.runs == 2                  # evicted, its knowledge was kept: listed again, it came back whole
    client = LearningClient(nc, admin_headers)
    status = await client.status()
    assert (status.playbooks, status.evicted, status.left_out) == (7, {"texts": 10}, {})

    rebuilt = await client.rebuild()        # other batches, the same events: the same knowledge, the same room made
    after = await client.insights(after=rebuilt.position)
    assert msgspec.json.encode(after.playbooks) == msgspec.json.encode(insights.playbooks)
    assert (await client.status()).evicted == {"texts": 10}


async def test_a_playbooks_success_rate_is_of_the_version_that_runs_now(engine, learn) -> None:
    playbooks = engine[1]
    broken, fixed = step("migrate --broken"), step("migrate")
    runs = []
    for n in range(12):
        run = Run(f"v1-{n}", broken, "deploy", T0 + timedelta(minutes=n), actor="alice")
        run.attempt("call", 1, 10, "exit 1", "permanent")
        run.give_up("call", 1, "permanent")
        runs.append(await published(playbooks, run, "1"))
    runs += [await published(playbooks, passing(f"v2-{n}", "deploy", 60 + n, "alice", fixed), "2")
             for n in range(13)]
    deploy, = (await learn(runs)).playbooks
    assert (deploy.runs, deploy.outcomes, deploy.success_rate) == (13, {"completed": 13}, 1.0)   # not 52%
    assert deploy.version == "2" and deploy.changed == T0 + timedelta(minutes=60)
    assert (deploy.version_before, deploy.runs_before, deploy.outcomes_before, deploy.success_rate_before) == (
        "1", 12, {"failed": 12}, 0.0)


async def test_bursts_against_a_shared_target_from_one_persons_texts_advise_no_one(learn) -> None:
    shared = step(url="http://db.internal/q")
    runs = [passing(f"probe-ok-{n}", f"probe-{n}", n, "mallory", shared) for n in range(2)]
    for burst in range(3):                  # three bursts of four failures, seconds apart, from four texts of hers
        runs += [failing(f"probe-{burst}-{n}", f"probe-{n}", 3600 * (burst + 1) + 5 * n, "mallory", shared)
                 for n in range(4)]
    insights = await learn(runs)
    db, = insights.targets
    assert (db.bursts, db.failures) == (3, 12)
    assert db.recommendations == []          # the breaker it would advise guards everyone's calls, on her word
