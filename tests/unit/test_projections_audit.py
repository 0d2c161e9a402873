"""The audit trail: who did what, folded from run and breaker events."""
from __future__ import annotations

import msgspec
import pytest

from events.circuit import CircuitCallFailed, CircuitOpened, CircuitReset
from events.run import (
    ApprovalAttemptRefused, ApprovalGiven, ApprovalGranted, ApprovalRejected, ApprovalRequested, ApprovalTimedOut,
    RollbackStarted, RunCancelRequested, RunCompleted, RunPaused, RunResumed, StepFailed, StepStarted,
)
from events.identity import Grant, TokenCreated, TokenRevoked
from projections.audit import AuditEntry, AuditTrail, audit_entry, token_entry
from tests.helpers import at, noop, started

R = "run1"


def history() -> list[tuple[int, object]]:
    """A run someone started, paused, resumed and got approved, then a breaker reset and a second run."""
    first = msgspec.structs.replace(started(R, [noop("build"), noop("deploy")], actor="alice", environment=None),
                                    allow_unsafe_shell=True)
    return [
        (1, first),
        (2, RunPaused(run_id=R, at=at(10), actor="bob", reason="change freeze")),
        (3, StepStarted(run_id=R, at=at(11), step_id="build", attempt=1, executor="ex1")),
        (4, RunResumed(run_id=R, at=at(20), actor="bob")),
        (5, ApprovalRequested(run_id=R, at=at(30), step_id="deploy", message="Deploy?",
                              required_approvers=["ops-team"], min_approvals=1)),
        (6, ApprovalAttemptRefused(run_id=R, at=at(31), step_id="deploy", actor="alice", decision="approve",
                                   reason="alice started this run and cannot approve it")),
        (7, ApprovalGiven(run_id=R, at=at(40), step_id="deploy", actor="carol", groups=["ops-team"], comment="go")),
        (8, ApprovalGranted(run_id=R, at=at(40), step_id="deploy", approvers=["carol"], actor="carol")),
        (9, CircuitReset(key="https://api.example.com:443", at=at(50), actor="dave")),
        (10, started("run2", [noop("a")], actor="erin", dry_run=True)),
        (11, RunCancelRequested(run_id="run2", at=at(60), actor="erin", reason="wrong target")),
    ]


def trail_of(envelopes) -> AuditTrail:
    trail = AuditTrail(entries=[])
    for seq, event in envelopes:
        trail.apply(seq, event)
    return trail


def test_people_actions_become_entries_with_actor_action_and_detail() -> None:
    trail = trail_of(history())
    assert [(e.seq, e.actor, e.action, e.run_id, e.step_id, e.circuit, e.detail) for e in trail.entries] == [
        (1, "alice", "start", R, None, None, "playbook test; allow_unsafe_shell"),
        (2, "bob", "pause", R, None, None, "change freeze"),
        (4, "bob", "resume", R, None, None, ""),
        (6, "alice", "approval_refused", R, "deploy", None,
         "tried to approve; refused: alice started this run and cannot approve it"),
        (7, "carol", "approve", R, "deploy", None, "as ops-team; go"),
        (9, "dave", "circuit_reset", None, None, "https://api.example.com:443",
         "reset breaker https://api.example.com:443 by hand"),
        (10, "erin", "start", "run2", None, None, "playbook test; dry run"),
        (11, "erin", "cancel", "run2", None, None, "wrong target"),
    ]
    assert trail.entries[0].at == at(0) and trail.entries[-1].at == at(60)


def test_the_start_detail_names_the_environment() -> None:
    event = started(R, [noop("a")], environment="production", environments={"production": {}})
    entry = audit_entry(1, event)
    assert entry is not None and entry.detail == "playbook test; environment production"


def test_a_rejection_is_the_rejecters_and_a_timeout_is_the_systems() -> None:
    rejected = audit_entry(3, ApprovalRejected(run_id=R, at=at(5), step_id="deploy", actor="bob", comment="not today"))
    timed_out = audit_entry(4, ApprovalTimedOut(run_id=R, at=at(6), step_id="deploy"))
    auto = audit_entry(5, ApprovalGranted(run_id=R, at=at(7), step_id="deploy", actor="system", by_timeout=True))
    assert (rejected.actor, rejected.action, rejected.step_id, rejected.detail) == ("bob", "reject", "deploy",
                                                                                    "not today")
    assert (timed_out.actor, timed_out.action, timed_out.step_id) == ("system", "timeout", "deploy")
    assert (auto.actor, auto.action) == ("system", "auto_approve")


def test_a_rollback_is_credited_to_whoever_started_it_with_its_reason_and_order() -> None:
    by_hand = audit_entry(8, RollbackStarted(run_id=R, at=at(9), waves=[["deploy"], ["a", "b"]],
                                             reason="bad release", actor="ops"))
    automatic = audit_entry(9, RollbackStarted(run_id=R, at=at(9), waves=[], reason="step health failed: 503"))
    assert (by_hand.actor, by_hand.action, by_hand.detail) == ("ops", "rollback", "bad release; waves: deploy then a+b")
    assert (automatic.actor, automatic.detail) == ("system", "step health failed: 503; waves: nothing to undo")


@pytest.mark.parametrize("event", [
    StepStarted(run_id=R, at=at(), step_id="a", attempt=1, executor="ex1"),
    StepFailed(run_id=R, at=at(), step_id="a", attempt=1, error="boom"),
    ApprovalGranted(run_id=R, at=at(), step_id="a", approvers=["bob"], actor="bob"),   # the quorum, not a person
    ApprovalRequested(run_id=R, at=at(), step_id="a", message="?", required_approvers=[], min_approvals=1),
    RunCompleted(run_id=R, at=at()),
    CircuitOpened(key="k", at=at(), reason="5 failures", until=at(30)),
    CircuitCallFailed(key="k", at=at(), run_id=R, step_id="a", error="503"),
])
def test_what_nobody_decided_is_not_audited(event) -> None:
    assert audit_entry(1, event) is None
    trail = AuditTrail(entries=[])
    assert trail.apply(1, event) is None and trail.entries == []


def test_select_is_newest_first_and_filters() -> None:
    trail = trail_of(history())
    assert [e.seq for e in trail.select()] == [11, 10, 9, 7, 6, 4, 2, 1]
    assert [e.seq for e in trail.select(actor="bob")] == [4, 2]
    assert [e.seq for e in trail.select(run_id="run2")] == [11, 10]
    assert [e.seq for e in trail.select(action="start")] == [10, 1]
    assert [e.seq for e in trail.select(since=at(20), until=at(50))] == [7, 6, 4]   # since inclusive, until exclusive
    assert [e.seq for e in trail.select(run_id=R, limit=2)] == [7, 6]
    assert trail.select(actor="nobody") == [] and trail.select(limit=0) == []


def test_a_redelivered_event_is_not_audited_twice() -> None:
    trail = trail_of(history())
    assert trail.apply(7, history()[6][1]) is None
    assert trail.apply(2, RunPaused(run_id=R, at=at(10), actor="bob")) is None
    assert len(trail.entries) == 8


def test_the_trail_round_trips_through_msgpack_and_goes_on() -> None:
    trail = trail_of(history())
    restored = msgspec.msgpack.decode(msgspec.msgpack.encode(trail), type=AuditTrail)
    assert restored == trail
    assert restored.entries[0].at == at(0)
    entry = restored.apply(12, RunResumed(run_id="run2", at=at(70), actor="erin"))
    assert entry == AuditEntry(seq=12, at=at(70), actor="erin", action="resume", run_id="run2")
    assert restored.select(limit=1) == [entry]


def test_entries_encode_as_json_for_the_api() -> None:
    entry = audit_entry(9, CircuitReset(key="db", at=at(1), actor="dave"))
    assert msgspec.json.decode(msgspec.json.encode(entry)) == {
        "seq": 9, "at": "2026-01-01T12:00:01Z", "actor": "dave", "action": "circuit_reset", "run_id": None,
        "step_id": None, "circuit": "db", "detail": "reset breaker db by hand", "door": None,
        "on_behalf_of": None}


def test_token_records_read_as_who_issued_what_to_whom_and_sessions_as_sign_ins_never_with_a_hash() -> None:
    agent = TokenCreated(at=at(1), token_id="a1", name="deploy bot", owner="bot", secret_hash="f00d" * 16,
                         actor="ada", kind="agent", grants=(Grant(role="operator", playbooks=("deploy-*",)),))
    session = TokenCreated(at=at(2), token_id="s1", name="dashboard session", owner="sam", secret_hash="beef" * 16,
                           actor="sam", parent="p1", expires_at=at(3600))
    entries = [token_entry(1, agent, None), token_entry(2, session, None),
               token_entry(3, TokenRevoked(at=at(3), token_id="s1", actor="ada", reason="lost laptop"), session),
               token_entry(4, TokenRevoked(at=at(4), token_id="zz", actor="ada"), None)]
    assert [(e.action, e.actor, e.detail) for e in entries] == [
        ("token_create", "ada", "issued agent token a1 'deploy bot' to bot: operator:deploy-*; never expires"),
        ("sign_in", "sam", "opened dashboard session s1 with token p1"),
        ("token_revoke", "ada", "ended dashboard session s1 of sam: lost laptop"),     # not sam's own sign-out
        ("token_revoke", "ada", "revoked token zz")]
    assert "f00d" not in repr(entries) and "beef" not in repr(entries)
