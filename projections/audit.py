"""The audit trail: who did what to which run or breaker, and when.

People's actions, plus what the system did in their place when a gate's time ran out.
Refused approval attempts are here too, and access refused at any door (PB_ACCESS):
auditors ask about those as well, and so do they about a message the engine gave up on,
and about who was given a token, whose was revoked, who signed in (PB_IDENTITY).
An admin's act for someone names both.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import msgspec

from events.circuit import CircuitEvent, CircuitReset
from events.identity import AccessRefused, BackupTaken, Grant, TokenCreated, TokenRevoked
from events.run import (
    ApprovalAttemptRefused, ApprovalGiven, ApprovalGranted, ApprovalRejected, ApprovalTimedOut, MessageAbandoned,
    RollbackStarted, RunCancelRequested, RunEvent, RunPaused, RunResumed, RunRetried, RunStarted,
)
from projections.sentences import abandoned_sentence, retry_detail

SYSTEM = "system"
# Every action an audit entry can name, in the order the dashboard offers them as a filter.
AUDIT_ACTIONS = ("start", "pause", "resume", "cancel", "retry", "approve", "reject", "approval_refused",
                 "auto_approve", "timeout", "rollback", "circuit_reset", "refused", "abandoned",
                 "token_create", "token_revoke", "sign_in", "sign_out", "backup")
# Admins' to read.
IDENTITY_ACTIONS = frozenset({"refused", "token_create", "token_revoke", "sign_in", "sign_out", "backup"})
SIGNED_OUT = "signed out"     # the reason a session's own sign-out gives


class AuditEntry(msgspec.Struct, kw_only=True):
    seq: int                            # the event's sequence in its stream (PB_RUNS, PB_ACCESS or PB_IDENTITY)
    at: datetime
    actor: str
    action: str
    run_id: str | None = None
    step_id: str | None = None
    circuit: str | None = None
    detail: str = ""
    on_behalf_of: str | None = None
    door: str | None = None             # where access was refused


def audit_entry(seq: int, event: RunEvent | CircuitEvent) -> AuditEntry | None:
    """The audit entry of this event, or None when nobody acted."""
    if isinstance(event, CircuitReset):
        return AuditEntry(seq=seq, at=event.at, actor=event.actor, action="circuit_reset", circuit=event.key,
                          detail=f"reset breaker {event.key} by hand", on_behalf_of=event.on_behalf_of)
    if not isinstance(event, RunEvent):
        return None
    found = _run_action(event)
    if found is None:
        return None
    actor, action, detail = found
    return AuditEntry(seq=seq, at=event.at, actor=actor, action=action, run_id=event.run_id,
                      step_id=getattr(event, "step_id", None), detail=detail,
                      on_behalf_of=getattr(event, "on_behalf_of", None))


def refusal_entry(seq: int, refused: AccessRefused) -> AuditEntry:
    """A refused attempt at a door: who, what, on what, and why."""
    target = f" {refused.target}" if refused.target else ""
    source = f" from {refused.source}" if refused.source else ""
    return AuditEntry(seq=seq, at=refused.at, actor=refused.principal, action="refused", door=refused.door,
                      on_behalf_of=refused.on_behalf_of,
                      detail=f"{refused.action}{target} at {refused.door}{source} ({refused.code}): {refused.reason}")


def backup_entry(seq: int, taken: BackupTaken) -> AuditEntry:
    """A copy of every record, credentials and secrets included: who made it, and where."""
    messages = sum(taken.streams.values())
    return AuditEntry(seq=seq, at=taken.at, actor=taken.actor, action="backup",
                      detail=f"backed up the engine to {taken.target}: {len(taken.streams)} streams, {messages:,} "
                             f"messages; files: {', '.join(taken.files) or 'none'}")


def token_entry(seq: int, event: TokenCreated | TokenRevoked, created: TokenCreated | None) -> AuditEntry:
    """A token issued or revoked (`created`: its issue, if known): a dashboard session's are sign-ins and -outs.
    Never its secret: the record holds only a hash, and the entry not even that."""
    behalf = event.on_behalf_of
    if isinstance(event, TokenCreated):
        if event.parent is not None:
            return AuditEntry(seq=seq, at=event.at, actor=event.actor, action="sign_in", on_behalf_of=behalf,
                              detail=f"opened dashboard session {event.token_id} with token {event.parent}")
        expiry = f"until {event.expires_at:%Y-%m-%d %H:%M}Z" if event.expires_at else "never expires"
        grants = ", ".join(_grant(g) for g in event.grants) or "no grants"
        kind = "agent " if event.kind == "agent" else ""
        return AuditEntry(seq=seq, at=event.at, actor=event.actor, action="token_create", on_behalf_of=behalf,
                          detail=f"issued {kind}token {event.token_id} {event.name!r} to {event.owner}: {grants}; "
                                 f"{expiry}")
    whose = f" {created.name!r} of {created.owner}" if created is not None else ""
    reason = f": {event.reason}" if event.reason else ""
    if created is not None and created.parent is not None:
        action = "sign_out" if event.reason == SIGNED_OUT else "token_revoke"
        return AuditEntry(seq=seq, at=event.at, actor=event.actor, action=action, on_behalf_of=behalf,
                          detail=f"ended dashboard session {event.token_id} of {created.owner}{reason}")
    return AuditEntry(seq=seq, at=event.at, actor=event.actor, action="token_revoke", on_behalf_of=behalf,
                      detail=f"revoked token {event.token_id}{whose}{reason}")


def _grant(grant: Grant) -> str:
    """As `--grant` takes it: role[:playbooks][@environments]."""
    playbooks = "" if grant.playbooks == ("*",) else ":" + ",".join(grant.playbooks)
    environments = "" if grant.environments == ("*",) else "@" + ",".join(grant.environments)
    return f"{grant.role}{playbooks}{environments}"


def _run_action(event: RunEvent) -> tuple[str, str, str] | None:
    """(actor, action, detail) of a run event someone caused."""
    match event:
        case RunStarted():
            return event.actor, "start", _start_detail(event)
        case RunPaused():
            return event.actor, "pause", event.reason
        case RunResumed():
            return event.actor, "resume", ""
        case RunCancelRequested():
            return event.actor, "cancel", event.reason
        case RunRetried():
            return event.actor, "retry", retry_detail(event)
        case ApprovalGiven():
            groups = f"as {', '.join(event.groups)}" if event.groups else ""
            return event.actor, "approve", _join(groups, event.comment)
        case ApprovalRejected():
            return event.actor, "reject", event.comment
        case ApprovalAttemptRefused():
            return event.actor, "approval_refused", f"tried to {event.decision}; refused: {event.reason}"
        case ApprovalGranted(by_timeout=True):
            return event.actor or SYSTEM, "auto_approve", "approved automatically when the approval window closed"
        case ApprovalTimedOut():
            return SYSTEM, "timeout", "approval window closed without enough approvals; the step failed"
        case RollbackStarted():
            order = " then ".join("+".join(wave) for wave in event.waves) or "nothing to undo"
            return event.actor or SYSTEM, "rollback", _join(event.reason, f"waves: {order}")
        case MessageAbandoned():
            return SYSTEM, "abandoned", abandoned_sentence(event)
    return None


def _start_detail(event: RunStarted) -> str:
    parts = [f"playbook {event.playbook_name}"]
    if event.pin is not None:
        parts.append(f"version {event.pin.version} ({event.pin.digest})")
    if event.environment:
        parts.append(f"environment {event.environment}")
    if event.dry_run:
        parts.append("dry run")
    if event.allow_unsafe_shell:
        parts.append("allow_unsafe_shell")
    if event.on_failure:
        parts.append(f"on failure: {event.on_failure}")
    if event.approval_required:
        parts.append("approval required for every step")
    return "; ".join(parts)


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


class AuditTrail(msgspec.Struct):
    """Every audit entry seen, in stream order (the order `apply` is called in); snapshots with msgpack."""

    entries: list[AuditEntry] = []

    def apply(self, seq: int, event: RunEvent | CircuitEvent) -> AuditEntry | None:
        if self.entries and 0 < seq <= self.entries[-1].seq:
            return None   # seen already: redelivered, or replayed over a snapshot
        entry = audit_entry(seq, event)
        if entry is not None:
            self.entries.append(entry)
        return entry

    def select(self, actor: str | None = None, run_id: str | None = None, action: str | None = None,
               since: datetime | None = None, until: datetime | None = None, limit: int = 500,
               keep: Callable[[AuditEntry], bool] | None = None) -> list[AuditEntry]:
        """Matching entries newest first (by stream sequence); `since` is inclusive, `until` exclusive; `keep`
        says which the reader may see."""
        return select(reversed(self.entries), actor=actor, run_id=run_id, action=action, since=since, until=until,
                      limit=limit, keep=keep)


def select(entries: Iterable[AuditEntry], *, actor: str | None = None, run_id: str | None = None,
           action: str | None = None, since: datetime | None = None, until: datetime | None = None, limit: int = 500,
           keep: Callable[[AuditEntry], bool] | None = None) -> list[AuditEntry]:
    """The first `limit` entries that match, in the order given."""
    found: list[AuditEntry] = []
    for e in entries:
        if len(found) >= limit:
            break
        if ((actor is None or e.actor == actor or e.on_behalf_of == actor) and (run_id is None or e.run_id == run_id)
                and (action is None or e.action == action)
                and (since is None or e.at >= since) and (until is None or e.at < until)
                and (keep is None or keep(e))):
            found.append(e)
    return found
