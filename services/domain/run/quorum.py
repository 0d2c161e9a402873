"""Is a gate satisfied? Each required entry (a user or a group) needs a distinct person.

A person may belong to several groups, so who covers which entry is a matching
problem: the gate opens when the largest matching of approvers to entries reaches the
number needed (all entries, or `min_approvals` of them).
"""
from __future__ import annotations

from collections.abc import Sequence


def can_satisfy(entry: str, actor: str, groups: Sequence[str]) -> bool:
    return entry == actor or entry in groups


def eligible_entries(entries: Sequence[str], actor: str, groups: Sequence[str]) -> list[str]:
    return [entry for entry in entries if can_satisfy(entry, actor, groups)]


def matching(entries: Sequence[str], approvers: Sequence[tuple[str, Sequence[str]]]) -> dict[int, str]:
    """The largest assignment of entry index -> approver, each approver used once."""
    holder: dict[int, str] = {}

    def place(actor: str, groups: Sequence[str], seen: set[int]) -> bool:
        for index, entry in enumerate(entries):
            if index in seen or not can_satisfy(entry, actor, groups):
                continue
            seen.add(index)
            current = holder.get(index)
            if current is None or place(current, dict(approvers)[current], seen):
                holder[index] = actor
                return True
        return False

    for actor, groups in approvers:
        place(actor, groups, set())
    return holder


def quorum(entries: Sequence[str], approvers: Sequence[tuple[str, Sequence[str]]], needed: int) -> list[str] | None:
    """The approvers who open the gate, in entry order, or None while it stays shut."""
    held = matching(entries, approvers)
    if len(held) < needed:
        return None
    return [held[index] for index in sorted(held)]
