"""What one environment teaches stays with it: a step that always fails in staging is no advice for production,
and a reader scoped to some environments reads what was learned there and nothing else."""
from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from events.identity import CreateToken, caller_headers
from events.insights import Insights
from services.identity.authority import parse_grant
from services.identity.bootstrap import SYSTEM
from services.identity.setup import Identity
from services.identity.tokens import create, credential, hash_secret, new_secret, new_token_id
from services.learning.config import LearningConfig
from services.learning.errors import LearningRefused
from services.learning.service import LearningService
from services.playbook_store import PlaybookStore
from services.store import EventStore
from tests.helpers import T0
from tests.learning import Run, admin_headers, identity, learning_config, record  # noqa: F401 - fixtures
from tests.postgres import postgres_cluster, postgres_url  # noqa: F401 - fixtures
from ui.insights import LearningClient

pytestmark = pytest.mark.integration

RUNS = 20
NOTIFY = [{"id": "notify", "action": "http_request", "timeout_seconds": 5,
           "args": {"url": "http://hooks.internal/notify", "method": "POST", "json": {"text": "deployed"}}}]


def notify_run(i: int, environment: str) -> Run:
    """In staging the hook refuses the credential (401, no retry); in production it answers."""
    run = Run(f"{environment}-{i:03d}", NOTIFY, "deploy", T0 + timedelta(minutes=10 * i), environment=environment)
    if environment == "staging":
        run.attempt("notify", 1, 30, "HTTP 401", "authentication", 401)
        run.give_up("notify", 1, "authentication")
    else:
        run.attempt("notify", 1, 30)
        run.complete()
    return run


@pytest.fixture
async def service(nc, learning_config: LearningConfig, identity) -> AsyncIterator[tuple[LearningService, int]]:
    store = EventStore(nc)
    await store.ensure_stream()
    last = await record(store, [notify_run(i, env) for i in range(RUNS) for env in ("staging", "production")])
    learning = LearningService(nc, store, learning_config, PlaybookStore(nc), identity.guard)
    await learning.start()
    try:
        yield learning, last
    finally:
        await learning.stop()


async def reader(identity: Identity, name: str, grant: str) -> LearningClient:
    """A client holding one token with this grant, made as an admin would."""
    token_id, secret = new_token_id(), new_secret()
    request = CreateToken(name=f"{name}'s token", owner=name, grants=[parse_grant(grant)], expires_in_seconds=None)
    _, last = await identity.store.change(token_id, lambda existing: create(
        existing, request, token_id=token_id, secret_hash=hash_secret(secret), by=SYSTEM,
        at=datetime.now(timezone.utc)))
    await identity.registry.caught_up(last)
    return LearningClient(identity.store.nc, caller_headers(credential(token_id, secret)))


def by_environment(insights: Insights) -> dict[str | None, list[tuple[str, str | None]]]:
    return {p.environment: sorted((r.kind, r.step) for r in p.recommendations) for p in insights.playbooks}


async def test_a_step_failing_in_one_environment_is_learned_and_advised_there_only(
        nc, service, admin_headers) -> None:
    _, last = service
    insights = await LearningClient(nc, admin_headers).insights("deploy", after=last, wait=30)
    learned = {p.environment: p for p in insights.playbooks}
    assert set(learned) == {"staging", "production"}
    assert (learned["staging"].runs, learned["staging"].outcomes) == (RUNS, {"failed": RUNS})
    assert (learned["production"].runs, learned["production"].outcomes) == (RUNS, {"completed": RUNS})
    assert by_environment(insights) == {"staging": [("error_handler", "notify")], "production": []}
    staging, = learned["staging"].recommendations
    assert staging.message.startswith("step `notify` in staging failed for good 20 times with `authentication`")
    assert staging.environment == "staging"


async def test_a_reader_scoped_to_an_environment_reads_what_was_learned_there_only(
        nc, service, identity) -> None:
    _, last = service
    production = await reader(identity, "pat", "viewer:deploy@production")
    insights = await production.insights("deploy", after=last, wait=30)
    assert [(p.playbook, p.environment, p.runs) for p in insights.playbooks] == [("deploy", "production", RUNS)]
    assert insights.targets == [] and insights.correlations == []     # they span every environment
    assert [p.environment for p in (await production.insights()).playbooks] == ["production"]
    assert [p.environment for p in (await production.insights(environment="production")).playbooks] == ["production"]
    assert (await production.insights(environment="staging")).playbooks == []
    with pytest.raises(LearningRefused, match="pat may not read deploy in staging") as refused:
        await production.insights("deploy", environment="staging")
    assert refused.value.code == "forbidden"
    stranger = await reader(identity, "sam", "viewer:other@*")
    with pytest.raises(LearningRefused, match="sam may not read deploy"):
        await stranger.insights("deploy")
