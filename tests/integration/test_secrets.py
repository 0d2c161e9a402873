"""A `${secret:...}` value is used by the step and recorded nowhere: events, logs, views."""
from __future__ import annotations

import json
import logging

import msgspec
import pytest
from aiohttp import web

from events import subjects
from events.commands import StartRun
from events.run import StepFailed
from projections.run_view import run_view
from tests.helpers import local_http, playbook_yaml, wait_for_end

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-Value-9f2c"


@pytest.fixture
async def echo_server():
    """Answers with the Authorization header it received, so we know the secret was sent."""
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"you_sent": request.headers.get("Authorization", "")})

    async with local_http([web.get("/echo", echo)]) as url:
        yield f"{url}/echo", seen


async def test_a_secret_reaches_the_step_and_no_record(engine, echo_server, monkeypatch, caplog, tmp_path) -> None:
    url, seen = echo_server
    monkeypatch.setenv("PLAYBOOK_SECRET_API_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    marker = tmp_path / "got"
    text = playbook_yaml([
        {"id": "shell_use", "action": "shell", "timeout_seconds": 5,
         "args": {"command": f"echo ${{secret:api_token}} > {marker} && echo ${{secret:api_token}}"}},
        {"id": "http_use", "action": "http_request", "timeout_seconds": 5,
         "args": {"url": url, "headers": {"Authorization": "Bearer ${secret:api_token}"}}},
        {"id": "leaky_failure", "action": "shell", "timeout_seconds": 5,
         "args": {"command": "echo token ${secret:api_token} rejected >&2; exit 1"}},
    ])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)

    assert marker.read_text().strip() == SECRET                 # the step really had it
    assert seen == [f"Bearer {SECRET}"]                          # and so did the HTTP call
    assert type(events[-1]).__name__ == "RunFailed"

    raw = await _every_stored_message(engine)
    assert raw and [p for p in raw if SECRET.encode() in p] == []
    assert b"***" in b"".join(raw)                               # redacted, not silently dropped
    view = json.dumps(run_view(await engine.run(reply.run_id)), default=str)
    assert SECRET not in view and "***" in view
    assert SECRET not in caplog.text


async def test_a_missing_secret_fails_the_step_as_configuration(engine) -> None:
    text = playbook_yaml([{"id": "a", "action": "shell", "timeout_seconds": 5,
                           "args": {"command": "echo ${secret:nope}"}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    failed = [e for e in events if type(e).__name__ == "StepFailed"]
    assert [(f.category, "no secret named 'nope'" in f.error) for f in failed] == [("configuration", True)]


async def _every_stored_message(client) -> list[bytes]:
    js = client.nc.jetstream()
    sub = await js.subscribe(subjects.RUN_SUBJECTS, ordered_consumer=True)
    info = await js.stream_info(subjects.RUNS_STREAM)
    payloads = []
    for _ in range(info.state.messages):
        msg = await sub.next_msg(timeout=5)
        payloads.append(msg.data + json.dumps(msg.headers or {}).encode())
    await sub.unsubscribe()
    return payloads


async def test_a_secret_too_short_to_redact_fails_the_step_as_configuration(engine, monkeypatch) -> None:
    monkeypatch.setenv("PLAYBOOK_SECRET_PIN", "4711")
    text = playbook_yaml([{"id": "a", "action": "shell", "timeout_seconds": 5,
                           "args": {"command": "echo ${secret:pin}"}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert failed.category == "configuration"
    assert "secret 'pin' is shorter than 8 characters" in failed.error and "4711" not in repr(events)


async def test_a_step_cut_off_by_its_timeout_keeps_what_it_printed_redacted(engine, monkeypatch) -> None:
    """A hung step's failure now keeps the head of its output, as every other failure does: redacted like it."""
    monkeypatch.setenv("PLAYBOOK_SECRET_API_TOKEN", SECRET)
    text = playbook_yaml([{"id": "hangs", "action": "shell", "timeout_seconds": 1,
                           "args": {"command": "echo logging in as ${secret:api_token}; echo 'waiting for lock' >&2; "
                                               "exec sleep 60"}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert (failed.category, failed.error) == ("timeout", "timed out after 1s")
    assert (failed.outputs["stdout"], failed.outputs["stderr"]) == ("logging in as ***", "waiting for lock")
    assert SECRET.encode() not in msgspec.json.encode(events)


async def test_a_url_whose_port_is_not_a_number_fails_its_step_and_keeps_the_secret(engine, monkeypatch,
                                                                                       caplog) -> None:
    """A `/` in a password ends the authority early: what follows the user's `:` reads as a port. The
    circuit breaker's key was made from that URL before the request was checked, and its ValueError
    (naming the would-be port: the secret) escaped the attempt, which then stayed running forever."""
    monkeypatch.setenv("PLAYBOOK_SECRET_DB_PASSWORD", "s3cr3t-half/other-half")
    caplog.set_level(logging.DEBUG)
    text = playbook_yaml([{"id": "userinfo", "action": "http_request", "timeout_seconds": 5,
                           "args": {"url": "https://user:${secret:db_password}@127.0.0.1:1/"}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id, timeout=20)
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert (failed.category, failed.error) == (
        "configuration", "http_request: 'url' must be an absolute http:// or https:// URL")
    assert b"s3cr3t-half" not in msgspec.json.encode(events) and "s3cr3t-half" not in caplog.text


async def test_a_secret_percent_encoded_or_unicode_escaped_character_by_character_is_redacted(engine,
                                                                                               monkeypatch) -> None:
    """Encoders that escape every character, not only the special ones (`xxd -p | sed 's/../%&/g'`, a JSON
    writer escaping all it writes), printed forms the docs promise to catch; only partly-escaped ones were."""
    monkeypatch.setenv("PLAYBOOK_SECRET_API_TOKEN", SECRET)
    escapes = [f"%{b:02X}" for b in SECRET.encode()], [f"%{b:02x}" for b in SECRET.encode()], \
        [f"\\u{ord(c):04x}" for c in SECRET], [f"\\u{ord(c):04X}" for c in SECRET]
    printed = ["".join(escaped) for escaped in escapes]
    text = playbook_yaml([{"id": "print", "action": "shell", "timeout_seconds": 5,
                           "args": {"command": "printf '%s\\n' " + " ".join(f"'{p}'" for p in printed),
                                    "env": {"TOKEN": "${secret:api_token}"}}}])
    reply = await engine.send(StartRun(playbook=text))
    events = await wait_for_end(engine, reply.run_id)
    [done] = [e for e in events if type(e).__name__ == "StepSucceeded"]
    assert done.outputs["stdout"] == "***"   # four masked lines next to each other: one mask (breaks are ignored)
