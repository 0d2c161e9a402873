"""The OpenAPI document: it describes every route the app serves, it is valid OpenAPI 3.1,
and whatever a client sends that fits (or does not fit) it, the server never answers 5xx."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)
from schemathesis.generation import GenerationMode

from events import subjects
from events.commands import StartRun
from tests.helpers import noop, playbook_yaml, wait_for_end
from ui.web.bodies import BODIES

pytestmark = pytest.mark.integration

EXAMPLES_PER_MODE = 10
REQUEST_TIMEOUT = 10
# No 5xx; and every answer is one the document promises, so the document cannot drift either.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ_TIMEOUT = 120
GATED = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]})])
FAILING = playbook_yaml([{"id": "boom", "action": "shell", "timeout_seconds": 10,
                          "args": {"command": "echo out; echo err >&2; exit 3"}}])


async def fetch_document(base_url: str) -> dict:
    async with aiohttp.ClientSession() as http:      # open to all: a client reads it before it has a token
        async with http.get(f"{base_url}/api/openapi.json") as response:
            assert response.status == 200 and response.content_type == "application/json"
            return await response.json()


def documented(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}


async def test_every_api_route_of_the_app_is_documented(web_server) -> None:
    document = await fetch_document(web_server.url)
    served = {(route.method, route.resource.canonical) for route in web_server.runner.app.router.routes()
              if route.resource is not None and route.resource.canonical.startswith("/api/")
              and route.method != "HEAD" and route.resource.canonical != "/api/openapi.json"}
    assert served and served == {(m, p) for m, p in documented(document) if p.startswith("/api/")}
    assert {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")} <= documented(document)


async def test_the_document_is_valid_openapi_whose_bodies_are_the_structs(web_server) -> None:
    document = await fetch_document(web_server.url)
    assert document["openapi"].startswith("3.1")
    schemathesis.openapi.from_dict(document).validate()      # against the OpenAPI 3.1 meta-schema
    used = {op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for operations in document["paths"].values() for op in operations.values() if "requestBody" in op}
    assert used == {body.__name__ for body in BODIES}
    start = document["components"]["schemas"]["StartBody"]
    assert start["additionalProperties"] is False and "playbook_id" in start["properties"]
    run_id = document["paths"]["/api/runs/{run_id}"]["get"]["parameters"][0]
    assert run_id["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    limit = next(p for p in document["paths"]["/api/runs"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
    not_found = document["paths"]["/api/runs/{run_id}/pause"]["post"]["responses"]["404"]
    assert "unknown_run" in not_found["description"]


async def test_the_document_asks_for_what_the_server_needs(web_server, engine) -> None:
    """A client that sends only what the document asks for is not refused for leaving something out: every change
    is JSON (a POST without a body is a 415), a diff needs both versions, a step id is a subject token."""
    document = await fetch_document(web_server.url)
    posts = {path: ops["post"] for path, ops in document["paths"].items() if "post" in ops}
    assert posts and {path for path, op in posts.items() if not op.get("requestBody", {}).get("required")} == set()
    headers = engine.headers()
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{web_server.url}/api/projections/rebuild") as bare:
            assert bare.status == 415
        async with http.post(f"{web_server.url}/api/projections/rebuild", json={}) as with_json:
            assert with_json.status == 200
        async with http.get(f"{web_server.url}/api/playbooks/hello/diff?to=1") as half:
            assert half.status == 400
    diff = document["paths"]["/api/playbooks/{name}/diff"]["get"]["parameters"]
    assert {p["name"] for p in diff if p["in"] == "query" and p["required"]} == {"from", "to"}
    approve = document["paths"]["/api/runs/{run_id}/steps/{step_id}/approve"]["post"]["parameters"]
    assert next(p for p in approve if p["name"] == "step_id")["schema"]["pattern"] == f"^{subjects.STEP_ID_PATTERN}$"
    with_body = {(method, path): op["responses"] for path, ops in document["paths"].items()
                 for method, op in ops.items() if "requestBody" in op}
    assert {key for key, responses in with_body.items() if not {"400", "413"} <= set(responses)} == set()
    from_step = document["components"]["schemas"]["RetryBody"]["properties"]["from_step"]["anyOf"]
    assert {"type": "string", "pattern": f"^{subjects.STEP_ID_PATTERN}$"} in from_step


async def test_nothing_a_client_sends_makes_the_server_fail(web_server, engine) -> None:
    """Schemathesis, positive and negative data, every operation except the endless streams;
    the run operations also on a run waiting at a gate and on one that failed, not only on
    run ids nobody started."""
    waiting = await engine.send(StartRun(playbook=GATED))
    failed = await engine.send(StartRun(playbook=FAILING))
    await wait_for_end(engine, failed.run_id)
    schema = schemathesis.openapi.from_dict(await fetch_document(web_server.url))
    operations = [result.ok() for result in schema.get_all_operations()]
    finite = [op for op in operations if not op.path.endswith("/stream")]
    assert len(finite) < len(operations)
    # requests is blocking: it runs in a thread while this loop serves it.
    failures = await asyncio.wait_for(
        asyncio.to_thread(fuzz, finite, web_server.url, [waiting.run_id, failed.run_id], engine.headers()),
        FUZZ_TIMEOUT)
    assert failures == []


def fuzz(operations: list, base_url: str, run_ids: list[str], headers: dict[str, str]) -> list[str]:
    """Every operation in both modes (and on each given run), as the local admin; the failures, each described."""
    failures: list[str] = []
    for operation in operations:
        for run_id in [None, *run_ids] if "{run_id}" in operation.path else [None]:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    fuzz_one(operation, base_url, mode, run_id, headers)
                except Unsatisfiable:
                    continue   # nothing to send that breaks the schema: the operation takes no input
                except Exception as err:  # noqa: BLE001 - gather every failure, not only the first
                    failures.append(f"{operation.label} ({mode}, run {run_id}): {err}")
    return failures


def fuzz_one(operation, base_url: str, mode: GenerationMode, run_id: str | None, headers: dict[str, str]) -> None:
    fixed = {"path_parameters": {"run_id": run_id}} if run_id else {}

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def call(case) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=REQUEST_TIMEOUT, headers=headers)

    call()
