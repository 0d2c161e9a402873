"""Requests an attacker or a broken script sends over NATS: each is answered with a clear refusal, at once.

A wildcard where a run id belongs never reaches a subject (it would read every run),
JSON nested past reason is refused by depth (it raised RecursionError and got no reply),
and a command NATS cannot carry is refused before it is sent, naming the limit.
"""
from __future__ import annotations

import json

import msgspec
import pytest

from events import subjects
from events.codec import decode_command
from events.commands import PauseRun, Reply, StartRun
from events.identity import AnyIdentityCommand
from events.json_limits import MAX_REQUEST_DEPTH
from services.aggregates import breaker_repository, run_repository
from services.catalog import Catalog
from services.identity.setup import Identity
from services.playbook_store import PlaybookStore
from services.run.service import RunService
from services.store import EventStore
from tests.helpers import noop, playbook_yaml

pytestmark = pytest.mark.integration

DEEP = b'{"run_id": "r1", "reason": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


async def ask(engine, subject: str, body: bytes, *, signed: bool = False) -> Reply:
    """The engine's answer to a raw request; `signed`: as the local admin."""
    msg = await engine.nc.request(subject, body, timeout=5, headers=engine.headers() if signed else None)
    return msgspec.json.decode(msg.data, type=Reply)


@pytest.mark.parametrize("run_id", ["*", ">", "a.b", "a b", "", "x" * 65])
async def test_a_run_id_that_is_no_subject_token_is_refused_by_the_run_service(engine, run_id: str) -> None:
    for command in ("PauseRun", "CancelRun", "ResumeRun", "RollbackRun"):
        reply = await ask(engine, subjects.command(command), json.dumps({"run_id": run_id}).encode())
        assert not reply.accepted and reply.error.code == "bad_request", reply
        assert "$.run_id" in reply.error.message
    reply = await ask(engine, subjects.command("ApproveStep"), json.dumps({"run_id": "r1", "step_id": "*"}).encode())
    assert reply.error.code == "bad_request" and "$.step_id" in reply.error.message


async def test_words_on_a_command_are_a_few_sentences_not_a_megabyte(engine) -> None:
    """A reason or a comment is recorded in the run's events: 2,000 characters at most, at every door."""
    for command, body in (("PauseRun", {"run_id": "r1", "reason": "x" * 2001}),
                          ("CancelRun", {"run_id": "r1", "reason": "x" * 900_000}),
                          ("RollbackRun", {"run_id": "r1", "reason": "x" * 2001}),
                          ("RetryRun", {"run_id": "r1", "reason": "x" * 2001}),
                          ("RejectStep", {"run_id": "r1", "step_id": "a", "comment": "x" * 2001})):
        reply = await ask(engine, subjects.command(command), json.dumps(body).encode())
        assert reply.error.code == "bad_request" and "length <= 2000" in reply.error.message, (command, reply)
    reply = await ask(engine, subjects.command("RetryRun"), json.dumps({"run_id": "*"}).encode())
    assert reply.error.code == "bad_request" and "$.run_id" in reply.error.message


@pytest.mark.parametrize("command", ["StartRun", "PublishPlaybook"])
async def test_an_upload_name_is_one_the_engine_could_have_given(engine, command: str) -> None:
    """An upload is named by the engine (32 hex digits, unguessable): any other name is refused before the store is
    asked."""
    for name in ("x" * 5000, "../../etc", "PB_UPLOADS.>"):
        reply = await ask(engine, subjects.command(command), json.dumps({"upload": name}).encode(), signed=True)
        assert reply.error.code == "bad_request" and "$.upload" in reply.error.message, reply
    answered = await ask(engine, subjects.command("PauseRun"), json.dumps({"run_id": "nosuch"}).encode(),
                         signed=True)
    assert answered.error.code == "unknown_run"                      # the engine is still there


async def test_an_in_process_caller_cannot_slip_a_wildcard_past_the_run_service(engine, settings) -> None:
    """Decoded commands are checked by their type; one built in code is checked again where it is carried out."""
    store, identity = EventStore(engine.nc), await Identity.start(engine.nc, lambda _name: [])
    try:
        playbooks = PlaybookStore(engine.nc)
        service = RunService(engine.nc, run_repository(store, playbooks), breaker_repository(store),
                             Catalog(engine.nc, playbooks), settings, identity.guard)
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
