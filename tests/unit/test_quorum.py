"""Quorum: every required entry satisfied by a distinct person."""
from __future__ import annotations

from services.domain.run.quorum import eligible_entries, quorum

DIRECTORY = {"alice": ["ops-team"], "bob": ["ops-team", "tech-lead"], "carol": ["tech-lead"], "dave": []}


def approvals(*names: str) -> list[tuple[str, list[str]]]:
    return [(name, DIRECTORY[name]) for name in names]


def test_two_groups_need_two_distinct_people() -> None:
    entries = ["ops-team", "tech-lead"]
    assert quorum(entries, approvals("bob"), 2) is None            # bob is in both, but counts once
    assert quorum(entries, approvals("bob", "alice"), 2) == ["alice", "bob"]   # bob moves to tech-lead
    assert quorum(entries, approvals("alice", "carol"), 2) == ["alice", "carol"]


def test_a_named_user_entry_is_satisfied_only_by_that_user() -> None:
    assert quorum(["dave", "ops-team"], approvals("alice", "bob"), 2) is None
    assert quorum(["dave", "ops-team"], approvals("alice", "dave"), 2) == ["dave", "alice"]


def test_any_n_of() -> None:
    entries = ["ops-team", "tech-lead", "dave"]
    assert quorum(entries, approvals("carol"), 2) is None
    assert quorum(entries, approvals("carol", "dave"), 2) is not None


def test_who_can_satisfy_what() -> None:
    assert eligible_entries(["ops-team", "tech-lead", "dave"], "bob", DIRECTORY["bob"]) == ["ops-team", "tech-lead"]
    assert eligible_entries(["ops-team"], "dave", []) == []
