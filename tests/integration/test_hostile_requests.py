"""Requests an attacker or a broken script sends over NATS: each is answered with a clear refusal, at once.

A wildcard where a run id belongs never reaches a subject (it would read every run),
JSON nested past reason is refused by depth (it raised RecursionError and got no reply),
and a command NATS cannot carry is refused before it is sent, naming the limit.
"""
from __future__ import annotations

import asyncio
import json

import msgspec
import pytest

from events import subjects
from events.codec import decode_command
from events.commands import PauseRun, Reply, StartRun
from events.identity import AnyIdentityCommand
from events.json_limits import MAX_REQUEST_DEPTH
from services.aggregates import breaker_repository, run_repository
from services.errors import TooLarge
from services.identity.setup import Identity
from services.run.service import RunService
from services.store import EventStore
from tests.helpers import noop, playbook_yaml

pytestmark = pytest.mark.integration

DEEP = b'{"run_id": "r1", "reason": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


async def ask(engine, subject: str, body: bytes) -> Reply:
    msg = await engine.nc.request(subject, body, timeout=5)
    return msgspec.json.decode(msg.data, type=Reply)


@pytest.mark.parametrize("run_id", ["*", ">", "a.b", "a b", "", "x" * 65])
async def test_a_run_id_that_is_no_subject_token_is_refused_by_the_run_service(engine, run_id: str) -> None:
    for command in ("PauseRun", "CancelRun", "ResumeRun", "RollbackRun"):
        reply = await ask(engine, subjects.command(command), json.dumps({"run_id": run_id}).encode())
        assert not reply.accepted and reply.error.code == "bad_request", reply
        assert "$.run_id" in reply.error.message
    reply = await ask(engine, subjects.command("ApproveStep"), json.dumps({"run_id": "r1", "step_id": "*"}).encode())
    assert reply.error.code == "bad_request" and "$.step_id" in reply.error.message


async def test_an_in_process_caller_cannot_slip_a_wildcard_past_the_run_service(engine, settings) -> None:
    """Decoded commands are checked by their type; one built in code is checked again where it is carried out."""
    store, identity = EventStore(engine.nc), await Identity.start(engine.nc, lambda _name: [])
    try:
        service = RunService(engine.nc, run_repository(store), breaker_repository(store), settings, identity.guard)
        reply = await service.handle(PauseRun(run_id="*"), engine.caller)
    finally:
        await identity.stop()
    assert reply.error.code == "bad_request" and "'*'" in reply.error.message


async def test_a_command_nested_a_hundred_thousand_deep_gets_an_answer_that_says_so(engine) -> None:
    reply = await ask(engine, subjects.command("PauseRun"), DEEP)
    assert reply.error.code == "bad_request"
    assert f"nested deeper than {MAX_REQUEST_DEPTH} levels" in reply.error.message
    started = await engine.send(StartRun(playbook=playbook_yaml([noop("a")])))
    assert started.accepted                      # and the service answers the next caller as before


async def test_a_question_to_the_learning_service_nested_too_deep_is_answered_with_a_refusal(engine) -> None:
    msg = await engine.nc.request(subjects.LEARNING_INSIGHTS, b'{"playbook": ' + b"[" * 100_000 + b"]" * 100_000
                                  + b"}", timeout=5)
    error = json.loads(msg.data)["error"]
    assert error["code"] == "bad_request" and "nested deeper" in error["message"]


def test_an_identity_command_nested_too_deep_is_refused_by_the_one_decoder() -> None:
    with pytest.raises(msgspec.DecodeError, match=f"nested deeper than {MAX_REQUEST_DEPTH} levels"):
        decode_command("RevokeToken", b'{"token_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", AnyIdentityCommand)
    with pytest.raises(msgspec.ValidationError, match="token_id"):
        decode_command("RevokeToken", b'{"token_id": "*"}', AnyIdentityCommand)


async def test_a_playbook_larger_than_nats_carries_is_refused_before_sending_naming_the_limit(engine) -> None:
    text = playbook_yaml([noop("a")]) + "#" * (engine.nc.max_payload + 1) + "\n"
    with pytest.raises(TooLarge, match=f"at most {engine.nc.max_payload:,}"):
        await engine.send(StartRun(playbook=text))
    assert (await asyncio.wait_for(engine.send(StartRun(playbook=playbook_yaml([noop("a")]))),
                                   10)).accepted


async def test_a_run_whose_first_event_would_not_fit_is_refused_as_too_large_not_left_half_started(engine) -> None:
    """The command fits; the playbook as stored (text, parsed steps and plan) does not."""
    text = playbook_yaml([noop(f"s{i}") for i in range(25_000)])
    assert len(text) < engine.nc.max_payload
    reply = await engine.send(StartRun(playbook=text, run_id="too-big"))
    assert not reply.accepted and reply.error.code == "too_large", reply.error
    assert "RunStarted" in reply.error.message and f"{engine.nc.max_payload - 1024:,}" in reply.error.message
    assert await engine.events("too-big") == []
