"""Who may do what, where: roles, scoped grants and one pure `authorize` table.

Roles are the names users know from AWX, Argo CD and Kubernetes: `viewer` reads,
`operator` steers runs, `approver` decides at gates that name them, `admin` manages the
engine. A grant scopes a role to playbooks and environments by glob pattern; a run without
an environment, and an action on no playbook at all, are covered only by `*`. Starting a
run with `allow_unsafe_shell`, or retrying one, needs an `unsafe_shell` grant as well,
which no role implies.
"""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

import msgspec

from events.identity import Grant, Role
from services.domain.run.quorum import eligible_entries
from services.errors import PlaybookError
from services.identity.principal import Principal

Action = Literal[
    "read", "start", "pause", "resume", "cancel", "rollback", "retry", "approve", "reject",
    "create_token", "list_tokens", "revoke_token", "manage_directory", "reset_circuit", "rebuild_projections",
    "publish_playbook", "act_on_behalf", "read_refusals",
]
READ = frozenset({"read"})
OPERATE = READ | {"start", "pause", "resume", "cancel", "rollback", "retry"}
DECIDE = READ | {"approve", "reject"}
ADMINISTER = frozenset({"create_token", "list_tokens", "revoke_token", "manage_directory", "reset_circuit",
                        "rebuild_projections", "publish_playbook", "act_on_behalf", "read_refusals"})
ROLE_ACTIONS: dict[Role, frozenset[str]] = {
    "viewer": READ,
    "operator": OPERATE,
    "approver": DECIDE,
    "admin": OPERATE | DECIDE | ADMINISTER,
    "unsafe_shell": frozenset(),
}
# Every command (by name) and request (by subject after `pb.`) a door sends, and the action it needs. A new
# command gets its line here (tests/unit/test_identity_authority.py checks every command of the contract has one).
# A retry is authorised like a start: it runs steps again, maybe with corrected values or a replacement playbook.
COMMAND_ACTIONS: dict[str, Action] = {
    "StartRun": "start", "PauseRun": "pause", "ResumeRun": "resume", "CancelRun": "cancel",
    "RollbackRun": "rollback", "RetryRun": "retry", "ApproveStep": "approve", "RejectStep": "reject",
    "ResetCircuit": "reset_circuit", "PublishPlaybook": "publish_playbook",
    "CreateToken": "create_token", "ListTokens": "list_tokens", "RevokeToken": "revoke_token",
    "learning.insights": "read", "learning.status": "read", "learning.rebuild": "rebuild_projections",
    "projections.rebuild": "rebuild_projections", "audit": "read",
}
# Identity requests that need a verified token and no grant: a person's own dashboard session, opened and closed
# with their token, and the record of its use (services/identity/service.py).
SIGNED_IN_ONLY = frozenset({"OpenSession", "CloseSession", "RecordUse"})
# The engine as a whole, not one playbook's runs: only a grant on every playbook and environment covers them.
GLOBAL_ACTIONS = ADMINISTER
OWN_TOKEN_ACTIONS = frozenset({"list_tokens", "revoke_token"})   # anyone may see and revoke their own


@dataclass(frozen=True, slots=True)
class Resource:
    """What an action is about; fields that do not apply stay empty."""

    playbook: str | None = None
    environment: str | None = None
    unsafe_shell: bool = False
    text_sent: bool = False            # a start or retry runs the caller's own text, not a catalog version
    approvers: tuple[str, ...] = ()    # the gate's required approvers, for approve and reject
    owner: str | None = None           # a token's owner, for token actions
    run_id: str | None = None

    def describe(self) -> str:
        """The target, as AccessRefused records it."""
        if self.playbook is None:
            return f"tokens of {self.owner}" if self.owner else "the engine"
        where = f" in {self.environment}" if self.environment else " (no environment)"
        run = f"run {self.run_id} of " if self.run_id else ""
        return f"{run}{self.playbook}{where}"


ENGINE_ACTION_WORDS = {
    "create_token": "create tokens", "list_tokens": "list tokens", "revoke_token": "revoke tokens",
    "manage_directory": "change the directory", "reset_circuit": "reset circuit breakers",
    "rebuild_projections": "rebuild projections", "publish_playbook": "publish playbooks",
    "act_on_behalf": "act on behalf of others",
    "read_refusals": "read who was refused access, and who was issued or lost a token",
}


def what(action: str, resource: Resource) -> str:
    """`start deploy-web in staging`, `list tokens of bob`, `reset circuit breakers`."""
    if action in ENGINE_ACTION_WORDS:
        words = ENGINE_ACTION_WORDS[action]
        if action == "create_token":
            return f"{words} for {resource.owner or 'anyone'}"
        if action in OWN_TOKEN_ACTIONS:
            return f"{words} of {resource.owner or 'everyone'}"
        return words
    return f"{action} {resource.describe()}"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    grant: Grant | None = None


def describe_grant(grant: Grant) -> str:
    if grant.playbooks == ("*",) and grant.environments == ("*",):
        return f"{grant.role} everywhere"
    return f"{grant.role} on {', '.join(grant.playbooks)} in {', '.join(grant.environments)}"


def _matches(value: str | None, patterns: tuple[str, ...]) -> bool:
    if value is None:
        return "*" in patterns
    return any(fnmatchcase(value, pattern) for pattern in patterns)


def covers(grant: Grant, resource: Resource, *, everywhere: bool = False) -> bool:
    """Is the resource within the grant's scope? `everywhere`: only an unscoped grant will do."""
    if everywhere:
        return grant.playbooks == ("*",) and grant.environments == ("*",)
    return _matches(resource.playbook, grant.playbooks) and _matches(resource.environment, grant.environments)


def _granting(principal: Principal, action: str, resource: Resource) -> Grant | None:
    everywhere = action in GLOBAL_ACTIONS
    for grant in principal.grants:
        if action in ROLE_ACTIONS[grant.role] and covers(grant, resource, everywhere=everywhere):
            return grant
    return None


def _on_every_playbook(principal: Principal, action: str, resource: Resource) -> bool:
    """A grant scoped to playbooks by name means the catalog's playbooks of those names: whoever sends a text
    chooses its name, so a text needs a grant on every playbook (its environments still apply)."""
    return any(action in ROLE_ACTIONS[grant.role] and grant.playbooks == ("*",) and covers(grant, resource)
               for grant in principal.grants)


def _holdings(principal: Principal) -> str:
    if not principal.grants:
        return f"{principal.name} holds no grants"
    return f"{principal.name} holds {'; '.join(describe_grant(g) for g in principal.grants)}"


def authorize(principal: Principal, action: Action, resource: Resource) -> Decision:
    """May this principal do this to that? The answer says why, in a sentence a user can act on."""
    doing = what(action, resource)
    if action in OWN_TOKEN_ACTIONS and resource.owner == principal.name:
        verb = ENGINE_ACTION_WORDS[action].split()[0]
        return Decision(True, f"{principal.name} may {verb} their own tokens")
    grant = _granting(principal, action, resource)
    if grant is None:
        scope = " (that needs admin on every playbook and environment)" if action in GLOBAL_ACTIONS else ""
        return Decision(False, f"{principal.name} may not {doing}{scope}: {_holdings(principal)}")
    if action in ("start", "retry") and resource.unsafe_shell:
        shell = next((g for g in principal.grants if g.role == "unsafe_shell" and covers(g, resource)), None)
        if shell is None:
            return Decision(False, f"{principal.name} may not {action} {resource.describe()} with allow_unsafe_shell: "
                                   f"that needs an unsafe_shell grant on it, and {_holdings(principal)}")
    if action in ("start", "retry") and resource.text_sent and not _on_every_playbook(principal, action, resource):
        return Decision(False, f"{principal.name} may not {action} {resource.describe()} from a text they sent: a text "
                               f"names its own playbook, so only a grant on every playbook covers it, and "
                               f"{_holdings(principal)}; start the catalog's version instead (an admin publishes it)")
    if action == "approve" and principal.kind == "agent":
        return Decision(False, f"{principal.name} may not approve: it is an agent, and a gate waits for a person "
                               "(an agent may reject, which lets nothing through)")
    if action in ("approve", "reject") and resource.approvers:
        if not eligible_entries(resource.approvers, principal.name, principal.groups):
            return Decision(False, f"{principal.name} may not {action} this gate: it names "
                                   f"{', '.join(resource.approvers)}, and {principal.name} is none of them "
                                   f"nor in their groups")
    return Decision(True, f"{principal.name} may {doing} as {describe_grant(grant)}", grant)


def reads_somewhere(principal: Principal, playbook: str | None) -> bool:
    """Does a grant let the principal read this playbook (None: some playbook) in at least one environment?"""
    return any("read" in ROLE_ACTIONS[g.role] and (playbook is None or _matches(playbook, g.playbooks))
               for g in principal.grants)


def may_grant(principal: Principal, grant: Grant) -> Decision:
    """May this principal put `grant` on a new token? Admins may grant any role but unsafe_shell, which
    only a holder of an unscoped unsafe_shell grant may pass on."""
    if not any(g.role == "admin" and covers(g, Resource(), everywhere=True) for g in principal.grants):
        return Decision(False, f"{principal.name} may not issue tokens: {_holdings(principal)}")
    if grant.role == "unsafe_shell" and not any(
            g.role == "unsafe_shell" and covers(g, Resource(), everywhere=True) for g in principal.grants):
        return Decision(False, f"{principal.name} may not grant unsafe_shell without holding it everywhere")
    return Decision(True, f"{principal.name} may grant {describe_grant(grant)}")


def parse_grant(text: str) -> Grant:
    """`ROLE[:PLAYBOOKS][@ENVIRONMENTS]`, patterns comma-separated: `operator:deploy-*@staging`."""
    head, _, environments = text.partition("@")
    role, _, playbooks = head.partition(":")
    if role not in ROLE_ACTIONS:
        raise PlaybookError(f"{text!r}: unknown role {role!r}; roles are {', '.join(ROLE_ACTIONS)}")

    def patterns(part: str) -> tuple[str, ...]:
        found = tuple(p.strip() for p in part.split(",") if p.strip())
        return found or ("*",)

    try:
        return msgspec.convert({"role": role, "playbooks": patterns(playbooks), "environments": patterns(environments)},
                               Grant)
    except msgspec.ValidationError as err:
        raise PlaybookError(f"{text[:200]!r}: {err}") from None


def format_grant(grant: Grant) -> str:
    """The inverse of `parse_grant`."""
    text = grant.role
    if grant.playbooks != ("*",):
        text += ":" + ",".join(grant.playbooks)
    if grant.environments != ("*",):
        text += "@" + ",".join(grant.environments)
    return text
