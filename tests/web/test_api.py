"""The JSON API against a real engine: every refusal is JSON with a stable code and a message
that names the problem; every action is recorded with the verified caller as actor."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events import subjects
from services.playbook import MAX_BYTES
from services.read import digest_of
from events.circuit import CircuitCallFailed
from services.aggregates import breaker_repository
from services.store import EventStore
from tests.helpers import BesideTheLoop, noop, person, playbook_yaml, refusals, until, wait_for_end

pytestmark = pytest.mark.integration

QUICK = playbook_yaml([noop("build", name="Build"),
                       {"id": "say", "name": "Say", "action": "shell", "timeout_seconds": 10,
                        "args": {"command": "echo hello; echo oops >&2"}}], name="api-quick")
GATED = playbook_yaml([noop("prepare", name="Prepare"),
                       noop("deploy", name="Deploy", approval_gate={"required_approvers": ["bob"]})], name="api-gated")
SLOW = playbook_yaml([{"id": "nap", "name": "Nap", "action": "wait", "args": {"seconds": 60}}], name="api-slow")
WITH_ENVIRONMENTS = """\
name: api-env
parameters:
  - name: replicas
    type: integer
    default: 1
environments:
  staging: {replicas: 1}
  production: {replicas: 3}
steps:
  - id: scale
    name: Scale
    action: noop
    args: {outputs: {replicas: "${replicas}"}}
"""
BROKEN = "name: broken\nsteps:\n  - id: a\n    name: A\n    action: nope\n"


@dataclass
class Answer:
    status: int
    body: Any
    content_type: str

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        return self.body["error"]


class Api:
    """The API as a client sees it: method, path, body, and who is asking (each person with a token of their own:
    operator and approver everywhere; `admin` is the local admin)."""

    def __init__(self, http: aiohttp.ClientSession, base: str, engine) -> None:
        self.http, self.base, self.engine = http, base, engine
        self.tokens: dict[str, str] = {"admin": engine.caller.credential}

    async def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = (await person(self.engine, user)).caller.credential
        return self.tokens[user]

    async def call(self, method: str, path: str, body: Any = None, *, user: str | None = "admin",
                   raw: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        sent = {"Authorization": f"Bearer {await self.token(user)}"} if user is not None else {}
        if raw is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        if body is None and raw is None and method != "GET":
            body = {}                   # a change is always JSON, even an empty one
        async with self.http.request(method, self.base + path, json=body if raw is None else None, data=raw,
                                     headers=sent) as response:
            parsed = await response.json() if response.content_type == "application/json" else await response.text()
            return Answer(response.status, parsed, response.content_type)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, body, **kw)

    async def start(self, playbook: str = QUICK, user: str = "alice", **fields: Any) -> str:
        answer = await self.post("/api/runs", {"playbook": playbook, **fields}, user=user)
        assert answer.status == 201, answer.body
        return answer.body["run_id"]


@pytest.fixture
async def api(web_server, engine) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, web_server.url, engine)


async def projected(web_server, seq: int) -> None:
    """Until the web server's views have applied the stream up to `seq`."""
    projector = web_server.backend.projector
    reached = asyncio.Event()
    stop = projector.listen(lambda change: reached.set() if change.seq >= seq else None)
    try:
        if projector.position < seq:
            await asyncio.wait_for(reached.wait(), 10)
    finally:
        stop()


async def runs_projected(web_server, engine, *run_ids: str) -> None:
    """Until the web server's views hold every event these runs have stored so far."""
    last = [(await engine.events(run_id))[-1][0] for run_id in run_ids]
    await projected(web_server, max(last))


async def until_event(engine, run_id: str, kind: str) -> None:
    """Until the run has stored an event of this kind."""
    async def follow() -> None:
        async for _, event in engine.follow(run_id):
            if type(event).__name__ == kind:
                return
        raise AssertionError(f"run {run_id} ended without {kind}")
    await asyncio.wait_for(follow(), 10)


# -- refusals ------------------------------------------------------------------------------

FORGED = {"X-Playbook-User": "eve"}
REFUSALS = [
    # (what, method, path, body, raw body, headers, status, code, words the message must hold)
    ("body not JSON", "POST", "/api/runs", None, b"{playbook: nope", None, 400, "bad_request", "malformed"),
    ("playbook of the wrong type", "POST", "/api/runs", {"playbook": 5}, None, None, 400, "bad_request",
     "$.playbook"),
    ("unknown field", "POST", "/api/runs", {"playbook": QUICK, "colour": "red"}, None, None, 400, "bad_request",
     "colour"),
    ("neither playbook nor playbook_id", "POST", "/api/runs", {}, None, None, 400, "bad_request",
     "exactly one of 'playbook'"),
    ("both playbook and playbook_id", "POST", "/api/runs", {"playbook": QUICK, "playbook_id": "hello"}, None, None,
     400, "bad_request", "exactly one of 'playbook'"),
    ("run id that is no subject token", "POST", "/api/runs", {"playbook": QUICK, "run_id": "a.b"}, None, None, 400,
     "bad_request", "$.run_id"),
    ("dry_run of the wrong type", "POST", "/api/runs", {"playbook": QUICK, "dry_run": "yes"}, None, None, 400,
     "bad_request", "$.dry_run"),
    ("body nested past all reason", "POST", "/api/validate", None,
     b'{"playbook": "x", "parameters": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001, None, 400, "bad_request",
     "nested deeper than 64 levels"),
    ("validate without playbook", "POST", "/api/validate", {}, None, None, 400, "bad_request", "playbook"),
    ("reset without key", "POST", "/api/circuits/reset", {}, None, None, 400, "bad_request", "key"),
    ("unknown field in a control body", "POST", "/api/runs/r1/pause", {"why": "x"}, None, None, 400, "bad_request",
     "why"),
    ("a query parameter twice", "GET", "/api/runs?status=running&status=completed", None, None, None, 400,
     "bad_request", "give status once in the query; several values are written comma-separated"),
    ("unknown status", "GET", "/api/runs?status=running,bogus", None, None, None, 400, "bad_request",
     "no run status bogus; a run is running, waiting_approval"),
    ("limit 0", "GET", "/api/runs?limit=0", None, None, None, 400, "bad_request", "'limit' must be between 1 and 1000"),
    ("limit 1001", "GET", "/api/runs?limit=1001", None, None, None, 400, "bad_request", "'limit'"),
    ("limit not a number", "GET", "/api/audit?limit=many", None, None, None, 400, "bad_request", "'limit'"),
    ("since not a time", "GET", "/api/runs?since=notatime", None, None, None, 400, "bad_request",
     "'since' must be an ISO 8601 time"),
    ("until without a zone", "GET", "/api/audit?until=2026-01-01T00:00:00", None, None, None, 400, "bad_request",
     "time zone"),
    ("active neither true nor false", "GET", "/api/runs?active=maybe", None, None, None, 400, "bad_request",
     "'active' must be true or false"),
    ("events after a negative sequence", "GET", "/api/runs/r1/events?after=-1", None, None, None, 400,
     "bad_request", "'after'"),
    ("logs of attempt 0", "GET", "/api/runs/r1/logs?attempt=0", None, None, None, 400, "bad_request", "'attempt'"),
    ("a name in X-Playbook-User that is not the caller", "POST", "/api/runs", {"playbook": QUICK}, None, FORGED, 403,
     "forged_actor", "names 'eve', but the credential is admin's"),
    ("a forged name on a control", "POST", "/api/runs/r1/cancel", None, None, {"X-Playbook-User": "<script>"}, 403,
     "forged_actor", "who acts is always the caller"),
    ("a change sent as text/plain", "POST", "/api/runs", None, b'{"playbook": "x"}',
     {"Content-Type": "text/plain"}, 415, "unsupported_media_type", "takes a JSON body"),
    ("a change from another origin", "POST", "/api/runs", {"playbook": QUICK}, None,
     {"Origin": "https://evil.example"}, 403, "cross_origin", "https://evil.example may not change anything"),
    ("a host this server does not answer to", "GET", "/api/runs", None, None, {"Host": "rebound.example"}, 421,
     "unknown_host", "PLAYBOOK_WEB_HOSTS"),
    ("no credential", "GET", "/api/runs", None, None, {"Authorization": ""}, 401, "unauthenticated", "sign in first"),
    ("a sign-in larger than any token, from anyone", "POST", "/api/session", {"token": "x" * 1_000_000}, None,
     {"Authorization": ""}, 413, "request_entity_too_large", "Maximum request body size 4096 exceeded"),
    ("a token that is no token", "GET", "/api/audit", None, None, {"Authorization": "Bearer pbt_nope"}, 401,
     "unauthenticated", "not a Playbook token"),
    ("unknown run", "GET", "/api/runs/nosuchrun", None, None, None, 404, "unknown_run", "nosuchrun"),
    ("events of an unknown run", "GET", "/api/runs/nosuchrun/events", None, None, None, 404, "unknown_run",
     "nosuchrun"),
    ("logs of an unknown run", "GET", "/api/runs/nosuchrun/logs", None, None, None, 404, "unknown_run", "nosuchrun"),
    *[(f"{verb} an unknown run", "POST", f"/api/runs/nosuchrun/{verb}", {}, None, None, 404, "unknown_run",
       "nosuchrun") for verb in ("pause", "resume", "cancel", "rollback", "steps/deploy/approve",
                                 "steps/deploy/reject")],
    ("unknown stored playbook", "GET", "/api/playbooks/nosuch", None, None, None, 404, "unknown_playbook", "nosuch"),
    ("start an unknown stored playbook", "POST", "/api/runs", {"playbook_id": "nosuch"}, None, None, 404,
     "unknown_playbook", "nosuch"),
    ("invalid playbook", "POST", "/api/runs", {"playbook": BROKEN}, None, None, 422, "invalid_playbook",
     "unknown action 'nope'"),
    ("unknown /api path", "GET", "/api/nowhere", None, None, None, 404, "not_found", "/api/nowhere"),
    ("run id outside the pattern", "GET", "/api/runs/a.b", None, None, None, 404, "not_found", "/api/runs/a.b"),
    ("a wildcard for a run id", "POST", "/api/runs/*/pause", {}, None, None, 404, "not_found", "/api/runs/*/pause"),
    ("a step id that is no subject token", "POST", "/api/runs/r1/steps/a.b/approve", {}, None, None, 400,
     "bad_request", "$.step_id"),
    ("wrong method", "DELETE", "/api/runs", None, None, None, 405, "method_not_allowed", "DELETE /api/runs"),
    ("GET of a POST-only path", "GET", "/api/validate", None, None, None, 405, "method_not_allowed",
     "GET /api/validate"),
]


@pytest.mark.parametrize("what, method, path, body, raw, headers, status, code, words", REFUSALS,
                         ids=[case[0] for case in REFUSALS])
async def test_a_refusal_is_json_naming_the_problem(api: Api, what, method, path, body, raw, headers, status, code,
                                                    words) -> None:
    answer = await api.call(method, path, body, raw=raw, headers=headers)
    assert (answer.status, answer.content_type) == (status, "application/json"), answer.body
    assert answer.error["code"] == code
    assert words in answer.error["message"]
    assert isinstance(answer.error["details"], list)


async def test_an_invalid_playbook_says_where_each_problem_is(api: Api) -> None:
    answer = await api.post("/api/runs", {"playbook": BROKEN})
    (problem,) = [d for d in answer.error["details"] if d["severity"] == "error"]
    assert (problem["line"], problem["column"], problem["step_id"]) == (5, 13, "a")


async def test_a_playbook_larger_than_a_nats_message_runs_by_reference_and_one_past_the_limit_is_413(
        api: Api, engine, web_server) -> None:
    """5 MB of playbook (non-ASCII text grows further when the command is encoded for NATS): uploaded and
    run by reference; past the 32 MiB a playbook may be, a 413 that says so, and nothing started."""
    text = QUICK + "# " + "é" * (5 * 2**20 // 2) + "\n"
    assert len(text.encode()) > 5 * web_server.backend.nc.max_payload
    answer = await api.post("/api/runs", raw=json.dumps({"playbook": text}, ensure_ascii=False).encode())
    assert answer.status == 201, answer.body
    run_id = answer.body["run_id"]
    assert type((await wait_for_end(engine, run_id))[-1]).__name__ == "RunCompleted"
    (_, started), *_ = await engine.events(run_id)
    assert started.playbook is None and started.pin.digest == digest_of(text.encode())

    too_large = QUICK + "# " + "x" * (MAX_BYTES + 1) + "\n"
    answer = await api.post("/api/runs", {"playbook": too_large})
    assert (answer.status, answer.error["code"]) == (413, "request_entity_too_large")
    assert f"{MAX_BYTES:,} bytes one playbook may be" in answer.error["message"]


# -- starting runs -------------------------------------------------------------------------

async def test_start_by_yaml_and_by_stored_id(api: Api, engine, library) -> None:
    refused = await api.post("/api/playbooks", {"playbook": QUICK, "version": "1.0"}, user="carol")
    assert (refused.status, refused.error["code"]) == (403, "forbidden")     # an operator runs, an admin publishes
    published = await api.post("/api/playbooks", {"playbook": QUICK, "version": "1.0"}, user="admin")
    assert (published.status, published.body["id"], published.body["author"]) == (201, "api-quick@1.0", "admin")

    (listed,) = (await api.get("/api/playbooks")).body
    assert (listed["id"], listed["versions"], listed["description"]) == ("api-quick@1.0", ["1.0"], "")
    assert (await api.get("/api/playbooks/api-quick")).body["yaml"] == QUICK
    by_id = await api.post("/api/runs", {"playbook_id": "api-quick"}, user="alice")
    by_yaml = await api.post("/api/runs", {"playbook": QUICK, "run_id": "api-run-1", "dry_run": True}, user="bob")
    assert (by_id.status, by_yaml.status) == (201, 201)
    assert by_yaml.body["run_id"] == "api-run-1" and by_yaml.body["events"][0]["type"] == "RunStarted"
    again = await api.post("/api/runs", {"playbook": QUICK, "run_id": "api-run-1"})
    assert (again.status, again.error["code"]) == (409, "run_exists") and "api-run-1" in again.error["message"]

    for run_id in (by_id.body["run_id"], "api-run-1"):
        await wait_for_end(engine, run_id)
    view = (await api.get(f"/api/runs/{by_id.body['run_id']}")).body
    assert (view["status"], view["actor"], view["playbook"]) == ("completed", "alice", "api-quick")
    assert [s["id"] for s in view["steps"]] == ["build", "say"]
    assert [line["kind"] for line in view["timeline"]][0] == "RunStarted"
    dry = (await api.get("/api/runs/api-run-1")).body
    assert dry["dry_run"] is True and dry["actor"] == "bob"


async def test_a_start_may_choose_what_a_failed_step_does_and_the_view_and_audit_say_so(api: Api, engine) -> None:
    failing = playbook_yaml([{"id": "first", "action": "shell", "args": {"command": "exit 1"}}, noop("second")],
                            name="api-patch")
    started = await api.post("/api/runs", {"playbook": failing, "on_failure": "continue"}, user="alice")
    assert started.status == 201, started.body
    await wait_for_end(engine, started.body["run_id"])
    view = (await api.get(f"/api/runs/{started.body['run_id']}")).body
    assert (view["status"], view["on_failure_chosen"]) == ("failed", "continue")
    assert [s["status"] for s in view["steps"]] == ["failed", "succeeded"]
    assert "on failure: continue" in view["timeline"][0]["detail"]
    wrong = await api.post("/api/runs", {"playbook": failing, "on_failure": "ignore"})
    assert (wrong.status, wrong.error["code"]) == (400, "bad_request")


async def test_a_start_may_ask_that_every_step_wait_for_an_approval(api: Api, engine, web_server) -> None:
    started = await api.post("/api/runs", {"playbook": QUICK, "approval_required": True}, user="alice")
    assert started.status == 201, started.body
    run_id = started.body["run_id"]

    async def gate_asked() -> dict | None:
        view = (await api.get(f"/api/runs/{run_id}")).body
        return view if view["steps"][0]["approval_gate"]["status"] == "requested" else None
    view = await until(gate_asked, what="the first step's gate")
    assert (view["status"], view["approval_required"]) == ("waiting_approval", True)
    assert view["steps"][1]["approval_gate"]["status"] == "not_requested"     # asked when its turn comes
    assert "every step waits for an approval" in view["timeline"][0]["detail"]


async def test_the_bundled_examples_start_by_id_and_their_logs_read_by_step(api: Api, engine) -> None:
    assert "hello" in {p["name"] for p in (await api.get("/api/playbooks")).body}
    run_id = (await api.post("/api/runs", {"playbook_id": "hello", "parameters": {"who": "api"}})).body["run_id"]
    assert (await wait_for_end(engine, run_id))[-1].__class__.__name__ == "RunCompleted"
    greet = (await api.get(f"/api/runs/{run_id}/logs?step=greet")).body
    assert [(e["step_id"], e["stream"], e["text"].strip()) for e in greet] == [("greet", "stdout", "hello api")]
    count = (await api.get(f"/api/runs/{run_id}/logs?step=count&attempt=1")).body
    assert count[0]["text"].split() == ["1", "2", "3"]
    assert (await api.get(f"/api/runs/{run_id}/logs?step=count&attempt=2")).body == []


async def test_events_after_a_sequence_and_logs_by_step(api: Api, engine) -> None:
    run_id = await api.start()
    await wait_for_end(engine, run_id)
    events = (await api.get(f"/api/runs/{run_id}/events")).body
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and events[0]["type"] == "RunStarted" and events[-1]["type"] == "RunCompleted"
    later = (await api.get(f"/api/runs/{run_id}/events?after={seqs[2]}")).body
    assert [e["seq"] for e in later] == seqs[3:]
    say = (await api.get(f"/api/runs/{run_id}/logs?step=say")).body
    assert {(e["stream"], e["text"].strip()) for e in say} == {("stdout", "hello"), ("stderr", "oops")}
    assert (await api.get(f"/api/runs/{run_id}/logs?step=build")).body == []


async def test_the_run_list_filters(api: Api, engine, web_server) -> None:
    staging = await api.start(WITH_ENVIRONMENTS, environment="staging")
    await wait_for_end(engine, staging)
    production = await api.start(WITH_ENVIRONMENTS, environment="production")
    await wait_for_end(engine, production)
    gated = await api.start(GATED)
    await until_event(engine, gated, "ApprovalRequested")
    await runs_projected(web_server, engine, staging, production, gated)

    async def listed(query: str = "") -> list[str]:
        answer = await api.get(f"/api/runs{query}")
        assert answer.status == 200, answer.body
        return [r["run_id"] for r in answer.body["runs"]]

    assert await listed() == [gated, production, staging]                       # newest first
    assert await listed("?status=completed") == [production, staging]
    assert await listed("?status=waiting_approval,paused") == [gated]
    assert await listed("?playbook=api-env") == [production, staging]
    assert await listed("?environment=production") == [production]
    assert await listed("?active=true") == [gated]
    assert await listed("?active=false") == [production, staging]
    started = {r["run_id"]: r["started_at"] for r in (await api.get("/api/runs")).body["runs"]}
    assert await listed(f"?since={started[production]}") == [gated, production]
    assert await listed(f"?until={started[production]}") == [production, staging]
    limited = (await api.get("/api/runs?limit=1")).body
    assert [r["run_id"] for r in limited["runs"]] == [gated] and limited["total"] == 3


async def test_validate_answers_valid_or_every_problem_with_line_and_column(api: Api) -> None:
    valid = (await api.post("/api/validate", {"playbook": WITH_ENVIRONMENTS, "environment": "production"})).body
    assert (valid["valid"], valid["errors"]) == (True, 0)
    invalid = (await api.post("/api/validate", {"playbook": BROKEN})).body
    assert (invalid["valid"], invalid["errors"]) == (False, 1)
    (problem,) = invalid["diagnostics"]
    assert (problem["line"], problem["column"], problem["step_id"], problem["code"]) == (5, 13, "a", "PB206")
    unknown_env = (await api.post("/api/validate", {"playbook": WITH_ENVIRONMENTS, "environment": "moon"})).body
    assert unknown_env["valid"] is False and "moon" in unknown_env["diagnostics"][0]["message"]


async def test_validate_checks_beside_the_event_loop_not_on_it(api: Api, monkeypatch) -> None:
    """Every request and stream of the replica (and under `playbook up`, every service) waited while a large
    playbook was checked. The check below returns only once the loop has run meanwhile."""
    from ui.web import api as web_api
    beside = BesideTheLoop(monkeypatch, web_api, "validate_playbook")
    validating = asyncio.create_task(api.post("/api/validate", {"playbook": BROKEN}))
    await beside.let_the_loop_run()
    assert (await asyncio.wait_for(validating, 15)).body["errors"] == 1
    assert beside.waited == [True], "the loop stood still while the playbook was checked"


# -- changing runs -------------------------------------------------------------------------

async def test_pause_resume_cancel_are_recorded_with_the_actor(api: Api, engine, web_server) -> None:
    run_id = await api.start(SLOW, user="alice")
    await until_event(engine, run_id, "StepStarted")

    resume_running = await api.post(f"/api/runs/{run_id}/resume", user="bob")    # accepted: it runs already
    assert (resume_running.status, resume_running.body["events"]) == (200, [])

    paused = await api.post(f"/api/runs/{run_id}/pause", {"reason": "lunch"}, user="alice")
    assert paused.status == 200 and [e["type"] for e in paused.body["events"]] == ["RunPaused"]
    assert (await api.post(f"/api/runs/{run_id}/pause", user="alice")).body["events"] == []   # paused already
    assert (await api.get(f"/api/runs/{run_id}")).body["paused_by"] == "alice"
    resumed = await api.post(f"/api/runs/{run_id}/resume", user="bob")
    assert resumed.status == 200 and resumed.body["events"][0]["type"] == "RunResumed"
    cancelled = await api.post(f"/api/runs/{run_id}/cancel", {"reason": "enough"}, user="carol")
    assert cancelled.body["events"][0]["type"] == "RunCancelRequested"
    twice = await api.post(f"/api/runs/{run_id}/cancel", user="carol")    # accepted: it took effect already
    assert (twice.status, twice.body["events"]) == (200, [])
    await wait_for_end(engine, run_id)

    pause_cancelled = await api.post(f"/api/runs/{run_id}/pause", user="alice")
    assert (pause_cancelled.status, pause_cancelled.error["code"]) == (409, "illegal_transition")
    assert "cancelled" in pause_cancelled.error["message"]

    await runs_projected(web_server, engine, run_id)
    trail = (await api.get(f"/api/audit?run_id={run_id}")).body
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("cancel", "carol"), ("resume", "bob"), ("pause", "alice"), ("start", "alice")]
    assert trail[0]["detail"] == "enough" and trail[2]["detail"] == "lunch"
    assert [e["run_id"] for e in (await api.get("/api/audit?actor=bob&action=resume")).body] == [run_id]
    assert (await api.get(f"/api/audit?run_id={run_id}&limit=1")).body[0]["action"] == "cancel"


async def test_commands_that_contradict_the_run_are_409(api: Api, engine) -> None:
    done = await api.start()
    await wait_for_end(engine, done)
    running = await api.start(SLOW)
    await until_event(engine, running, "StepStarted")
    refusals = [
        (f"/api/runs/{done}/pause", "only a running run can be paused"),
        (f"/api/runs/{done}/resume", "only a paused run can be resumed"),
        (f"/api/runs/{done}/cancel", "nothing to cancel"),
        (f"/api/runs/{running}/rollback", "cancel it or let it finish"),
    ]
    for path, words in refusals:
        answer = await api.post(path)
        assert (answer.status, answer.error["code"]) == (409, "illegal_transition"), path
        assert words in answer.error["message"]
    await api.post(f"/api/runs/{running}/cancel")
    await wait_for_end(engine, running)


async def test_a_failed_run_is_retried_with_a_corrected_value_recorded_in_the_audit(api: Api, engine,
                                                                                    web_server) -> None:
    checking = playbook_yaml([noop("prepare"), {"id": "check", "action": "shell", "timeout_seconds": 10,
                                                "args": {"command": "test ${replicas} -gt 2"}}], name="api-retry",
                             parameters=[{"name": "replicas", "type": "integer", "default": 1}])
    run_id = await api.start(checking)
    await wait_for_end(engine, run_id)
    api.tokens["vic"] = (await person(engine, "vic", "viewer")).caller.credential
    looking = await api.post(f"/api/runs/{run_id}/retry", user="vic")
    assert (looking.status, looking.error["code"]) == (403, "forbidden")
    assert f"vic may not retry run {run_id} of api-retry" in looking.error["message"]
    from_nowhere = await api.post(f"/api/runs/{run_id}/retry", {"from_step": "chek"}, user="olga")
    assert (from_nowhere.status, from_nowhere.error["code"]) == (404, "unknown_step")
    assert "did you mean 'check'" in from_nowhere.error["message"]
    ill_typed = await api.post(f"/api/runs/{run_id}/retry", {"parameters": {"replicas": "many"}}, user="olga")
    assert (ill_typed.status, ill_typed.error["code"]) == (422, "invalid_playbook")

    retried = await api.post(f"/api/runs/{run_id}/retry", {"parameters": {"replicas": "3"}, "reason": "scale up"},
                             user="olga")
    assert retried.status == 200, retried.body
    assert retried.body["events"][0]["parameters"] == {"replicas": 3}
    await wait_for_end(engine, run_id, after_retry=True)
    view = (await api.get(f"/api/runs/{run_id}")).body
    assert view["status"] == "completed" and view["parameters"] == {"replicas": 3}
    assert [s["attempt"] for s in view["steps"]] == [1, 2]
    again = await api.post(f"/api/runs/{run_id}/retry", user="olga")
    assert (again.status, again.error["code"]) == (409, "illegal_transition")

    await runs_projected(web_server, engine, run_id)
    (entry,) = (await api.get(f"/api/audit?run_id={run_id}&action=retry")).body
    assert entry["actor"] == "olga" and entry["detail"] == "check run again; corrected replicas=3; scale up"
    assert (await api.get("/api/runs?status=completed&playbook=api-retry")).body["total"] == 1


async def test_only_a_required_approver_opens_a_gate(api: Api, engine, web_server) -> None:
    run_id = await api.start(GATED, user="alice")
    await until_event(engine, run_id, "ApprovalRequested")

    refused = await api.post(f"/api/runs/{run_id}/steps/deploy/approve", {"comment": "lgtm"}, user="mallory")
    assert (refused.status, refused.error["code"]) == (403, "forbidden")
    assert "mallory may not approve this gate: it names bob" in refused.error["message"]
    no_step = await api.post(f"/api/runs/{run_id}/steps/nope/reject", user="bob")
    assert no_step.status == 403 and "no step 'nope'" in no_step.error["message"]

    approved = await api.post(f"/api/runs/{run_id}/steps/deploy/approve", {"comment": "ship it"}, user="bob")
    assert approved.status == 200 and approved.body["events"][0]["type"] == "ApprovalGiven"
    await wait_for_end(engine, run_id)
    late = await api.post(f"/api/runs/{run_id}/steps/deploy/approve", user="bob")
    assert late.status == 403 and "not waiting for approval" in late.error["message"]

    await runs_projected(web_server, engine, run_id)
    trail = (await api.get(f"/api/audit?run_id={run_id}")).body
    assert [e["detail"] for e in trail if e["action"] == "approve"] == ["ship it"]
    (mallory,) = (await api.get("/api/audit?action=refused&actor=mallory")).body     # the admin reads refusals
    assert mallory["door"] == "http" and f"approve run {run_id} of api-gated" in mallory["detail"]
    assert (await api.get("/api/audit?action=refused", user="mallory")).body == []   # a person does not


# -- views, circuits, health ---------------------------------------------------------------

async def finished_and_waiting(api: Api, engine, web_server) -> tuple[list[str], str]:
    """Two completed runs of api-quick and one api-gated run waiting for bob, all in the views."""
    done = [await api.start() for _ in range(2)]
    for run_id in done:
        await wait_for_end(engine, run_id)
    gated = await api.start(GATED)
    await until_event(engine, gated, "ApprovalRequested")
    await runs_projected(web_server, engine, *done, gated)
    return done, gated


async def reset_circuit(api: Api, web_server, key: str) -> None:
    """A breaker that saw a failed call is reset by hand; a breaker that saw nothing cannot be reset."""
    nowhere = await api.post("/api/circuits/reset", {"key": key})
    assert (nowhere.status, nowhere.error["code"]) == (404, "unknown_circuit")
    breakers = breaker_repository(EventStore(web_server.backend.nc))
    failed = CircuitCallFailed(key=key, at=datetime.now(timezone.utc), run_id="r", step_id="s", error="refused")
    await breakers.change(key, lambda _breaker: [failed])
    answer = await api.post("/api/circuits/reset", {"key": key})
    assert answer.status == 200 and answer.body["events"][0]["type"] == "CircuitReset"
    info = await web_server.backend.nc.jetstream().stream_info(subjects.RUNS_STREAM)
    await projected(web_server, info.state.last_seq)


async def test_metrics_circuits_rebuild_and_readiness(api: Api, engine, web_server) -> None:
    done, _ = await finished_and_waiting(api, engine, web_server)
    metrics = (await api.get("/api/metrics")).body
    assert metrics["runs"]["api-quick"] == {"completed": 2} and metrics["runs"]["api-gated"] == {"waiting_approval": 1}
    assert metrics["approvals_waiting"] == 1
    build = next(s for s in metrics["steps"] if (s["playbook"], s["step"]) == ("api-quick", "build"))
    assert (build["count"], build["succeeded"], build["buckets"][-1]["count"]) == (2, 2, 2)

    await reset_circuit(api, web_server, "payments:443")
    circuits = (await api.get("/api/circuits")).body
    assert [(c["key"], c["state"], c["failures_in_a_row"]) for c in circuits] == [("payments:443", "closed", 0)]
    (reset,) = (await api.get("/api/audit?action=circuit_reset")).body
    assert (reset["actor"], reset["circuit"]) == ("admin", "payments:443")

    position = web_server.backend.projector.position
    rebuilt = await api.post("/api/projections/rebuild")
    assert rebuilt.status == 200 and (rebuilt.body["runs"], rebuilt.body["position"]) == (3, position)
    assert rebuilt.body["events"] > 0
    assert (await api.get("/api/metrics")).body["runs"]["api-quick"] == {"completed": 2}   # the same, refolded

    ready = await api.get("/readyz")
    assert ready.status == 200 and ready.body["ready"] is True and ready.body["projection_lag"] == 0
    assert (await api.get("/healthz")).body["status"] == "ok"


async def test_prometheus_metrics_match_the_runs(api: Api, engine, web_server) -> None:
    await finished_and_waiting(api, engine, web_server)
    await reset_circuit(api, web_server, "payments:443")
    answer = await api.get("/metrics")
    assert answer.status == 200 and answer.content_type == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(answer.body)}

    def value(family: str, sample: str | None = None, **labels: str) -> float:
        (found,) = [s.value for s in families[family].samples
                    if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())]
        return found

    assert value("playbook_runs", playbook="api-quick", status="completed") == 2
    assert value("playbook_runs", playbook="api-gated", status="waiting_approval") == 1
    assert value("playbook_runs", playbook="api-gated", status="running") == 0
    assert value("playbook_runs_started", "playbook_runs_started_total", playbook="api-quick", dry_run="false") == 2
    assert value("playbook_run_outcomes", "playbook_run_outcomes_total", playbook="api-quick", outcome="completed") == 2
    assert value("playbook_run_success_ratio", playbook="api-quick") == 1
    assert value("playbook_completed_run_duration_seconds", "playbook_completed_run_duration_seconds_count",
                 playbook="api-quick") == 2
    step = {"playbook": "api-quick", "step": "say"}
    assert value("playbook_step_duration_seconds", "playbook_step_duration_seconds_count", **step) == 2
    assert value("playbook_step_duration_seconds", "playbook_step_duration_seconds_bucket", le="+Inf", **step) == 2
    assert value("playbook_step_duration_seconds", "playbook_step_duration_seconds_bucket", le="300.0", **step) == 2
    assert value("playbook_step_attempts", "playbook_step_attempts_total", outcome="succeeded", **step) == 2
    assert value("playbook_step_retries", "playbook_step_retries_total", **step) == 0
    assert value("playbook_approvals_waiting") == 1
    assert value("playbook_circuit_state", key="payments:443", state="closed") == 1
    assert value("playbook_circuit_state", key="payments:443", state="open") == 0
    assert value("playbook_projector_lag_events") == 0
    assert value("playbook_projector_position") == web_server.backend.projector.position
    assert value("playbook_projector_events_applied", "playbook_projector_events_applied_total") > 0
    assert value("playbook_projector_caught_up") == 1
    assert "process_cpu_seconds" in families

    scrape = await api.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert scrape.content_type == "application/openmetrics-text" and scrape.body.endswith("# EOF\n")
    assert (await api.get("/metrics", user=None)).status == 401       # a viewer's, unless PLAYBOOK_METRICS=open


@pytest.fixture
def odd_library(library):
    """A library folder as an operator leaves it, in place before the engine starts."""
    (library / "deploy.yaml").write_text(
        "name: deploy\nparameters:\n  - {name: version, required: true}\n  - {name: since, default: 2026-01-01}\n"
        "environments:\n  staging: {}\n  production: {}\nsteps:\n  - {id: a, action: noop}\n")
    (library / "latin1.yaml").write_bytes("name: caf\xe9\nsteps: []\n".encode("latin-1"))
    (library / "broken.yaml").write_text(BROKEN)
    return library


async def test_the_library_is_published_at_start_and_odd_files_do_not_break_it(odd_library, web_server,
                                                                                   engine) -> None:
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/playbooks/deploy") as response:
            stored = await response.json()
        assert stored["parameters"] == [{"name": "version", "required": True}, {"name": "since",
                                                                                "default": "2026-01-01"}]
        assert stored["environments"] == ["staging", "production"]
        assert (stored["id"], stored["author"]) == ("deploy@1", "system")
        assert stored["source"] == str(odd_library / "deploy.yaml")
        async with http.get(f"{web_server.url}/api/playbooks") as response:
            assert [p["id"] for p in await response.json()] == ["deploy@1"]
        async with http.post(f"{web_server.url}/api/runs", json={"playbook_id": "latin1"}) as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "unknown_playbook"


async def test_signing_out_needs_no_body(api: Api) -> None:
    """`curl -X DELETE` with the session's cookie: there is nothing to send, so nothing to type."""
    async with api.http.post(api.base + "/api/session", json={"token": await api.token("sam")}) as signed_in:
        assert signed_in.status == 201
        cookie = {"pb_session": signed_in.cookies["pb_session"].value}
    async with aiohttp.ClientSession(cookies=cookie) as browser:
        async with browser.delete(api.base + "/api/session", headers={"Origin": api.base}) as answer:
            assert (answer.status, await answer.json()) == (200, {"signed_out": True})
        async with browser.get(api.base + "/api/session") as answer:
            assert answer.status == 401


async def test_a_sign_in_link_works_once_and_a_spent_or_made_up_one_is_recorded_as_refused(api: Api, web_server,
                                                                                          engine) -> None:
    code = web_server.sign_in_link(await api.token("sam")).rpartition("#code=")[2]
    before = len(await refusals(engine.nc))
    answers = []
    for tried in (code, code, "made-up"):
        async with api.http.post(api.base + "/api/session", json={"code": tried}) as answer:
            answers.append((answer.status, (await answer.json()).get("name")))
    assert answers == [(201, "sam"), (401, None), (401, None)]

    async def both_recorded() -> bool:
        return len(await refusals(engine.nc)) - before >= 2
    await until(both_recorded, what="the two refused sign-ins, recorded")
    recorded = (await refusals(engine.nc))[before:]
    assert [(r.action, r.door, r.principal, r.code) for r in recorded] == [("sign_in", "dashboard", "anonymous",
                                                                            "unauthenticated")] * 2
    assert "unknown or was already used" in recorded[0].reason


async def test_a_method_a_path_does_not_take_is_405_naming_those_it_does(api: Api) -> None:
    """RFC 9110: a 405 says which methods the path takes (`Allow`), and it is a 405 however the request is shaped,
    not a 415 for a body that no handler would read."""
    token = {"Authorization": f"Bearer {await api.token('admin')}"}
    asked = [("TRACE", "/api/runs/r1", "GET,HEAD"), ("OPTIONS", "/api/runs", "GET,HEAD,POST"),
             ("GET", "/api/validate", "POST"), ("PUT", "/api/runs/r1/pause", "POST"),
             ("HEAD", "/api/runs/stream", "GET")]
    for method, path, allowed in asked:
        async with api.http.request(method, api.base + path, headers=token) as response:
            assert response.status == 405, (method, path, response.status, await response.text())
            assert sorted(response.headers.get("Allow", "").split(",")) == allowed.split(","), (method, path)
            if method != "HEAD":
                assert (await response.json())["error"]["code"] == "method_not_allowed"
