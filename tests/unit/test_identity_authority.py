"""Who may do what, where: the authorization table, role x action x scope -> allowed or refused, and why."""
from __future__ import annotations

import pytest

from events.identity import Grant
from services.errors import PlaybookError
from services.identity.authority import (
    COMMAND_ACTIONS, ROLE_ACTIONS, Resource, authorize, format_grant, may_grant, parse_grant,
)
from services.identity.principal import Principal


def person(name: str, *grants: str, groups: tuple[str, ...] = ()) -> Principal:
    return Principal(name=name, groups=groups, grants=tuple(parse_grant(g) for g in grants))


VIEWER = person("vera", "viewer")
OPERATOR = person("otto", "operator")
STAGING_DEPLOYER = person("sam", "operator:deploy-*@staging")
APPROVER = person("alice", "approver", groups=("ops-team",))
ADMIN = person("root", "admin")
SHELL_OPERATOR = person("shelly", "operator", "unsafe_shell:maintenance-*")
NOBODY = person("newbie")
AGENT_APPROVER = Principal(name="bot", kind="agent", grants=(parse_grant("approver"),))
AGENT_ADMIN = Principal(name="root-bot", kind="agent", grants=(parse_grant("admin"),))

DEPLOY_STAGING = Resource(playbook="deploy-web", environment="staging")
DEPLOY_PRODUCTION = Resource(playbook="deploy-web", environment="production")
DEPLOY_NO_ENV = Resource(playbook="deploy-web")
MIGRATE_STAGING = Resource(playbook="migrate-db", environment="staging")
ENGINE = Resource()

TABLE = [
    # viewer: reads, nothing else
    (VIEWER, "read", DEPLOY_PRODUCTION, "vera may read deploy-web in production as viewer everywhere"),
    (VIEWER, "start", DEPLOY_STAGING, "vera may not start deploy-web in staging: vera holds viewer everywhere"),
    (VIEWER, "approve", DEPLOY_STAGING, "vera may not approve deploy-web in staging: vera holds viewer everywhere"),
    # operator: steers runs
    (OPERATOR, "start", DEPLOY_PRODUCTION, "otto may start deploy-web in production as operator everywhere"),
    (OPERATOR, "cancel", DEPLOY_STAGING, "otto may cancel deploy-web in staging as operator everywhere"),
    (OPERATOR, "rollback", DEPLOY_STAGING, "otto may rollback deploy-web in staging as operator everywhere"),
    (OPERATOR, "retry", DEPLOY_STAGING, "otto may retry deploy-web in staging as operator everywhere"),
    (OPERATOR, "approve", DEPLOY_STAGING, "otto may not approve deploy-web in staging: otto holds operator everywhere"),
    (OPERATOR, "reset_circuit", ENGINE,
     "otto may not reset circuit breakers (that needs admin on every playbook and environment): "
     "otto holds operator everywhere"),
    # scoped operator: deploy-* in staging only
    (STAGING_DEPLOYER, "start", DEPLOY_STAGING,
     "sam may start deploy-web in staging as operator on deploy-* in staging"),
    (STAGING_DEPLOYER, "pause", DEPLOY_STAGING,
     "sam may pause deploy-web in staging as operator on deploy-* in staging"),
    (STAGING_DEPLOYER, "start", DEPLOY_PRODUCTION,
     "sam may not start deploy-web in production: sam holds operator on deploy-* in staging"),
    (STAGING_DEPLOYER, "start", MIGRATE_STAGING,
     "sam may not start migrate-db in staging: sam holds operator on deploy-* in staging"),
    (STAGING_DEPLOYER, "start", DEPLOY_NO_ENV,
     "sam may not start deploy-web (no environment): sam holds operator on deploy-* in staging"),
    (STAGING_DEPLOYER, "read", ENGINE, "sam may not read the engine: sam holds operator on deploy-* in staging"),
    # a text names its own playbook: a grant scoped by name covers the catalog's versions, not what sam sends
    (STAGING_DEPLOYER, "start", Resource(playbook="deploy-web", environment="staging", text_sent=True),
     "sam may not start deploy-web in staging from a text they sent: a text names its own playbook, so only a grant "
     "on every playbook covers it, and sam holds operator on deploy-* in staging; start the catalog's version "
     "instead (an admin publishes it)"),
    (STAGING_DEPLOYER, "retry", Resource(playbook="deploy-web", environment="staging", text_sent=True),
     "sam may not retry deploy-web in staging from a text they sent: a text names its own playbook, so only a grant "
     "on every playbook covers it, and sam holds operator on deploy-* in staging; start the catalog's version "
     "instead (an admin publishes it)"),
    (OPERATOR, "start", Resource(playbook="deploy-web", environment="production", text_sent=True),
     "otto may start deploy-web in production as operator everywhere"),
    (person("stan", "operator:*@staging"), "start", Resource(playbook="deploy-web", environment="staging",
                                                             text_sent=True),
     "stan may start deploy-web in staging as operator on * in staging"),
    # approver: decides where a gate names them or their group
    (APPROVER, "approve", Resource(playbook="deploy-web", environment="production", approvers=("ops-team",)),
     "alice may approve deploy-web in production as approver everywhere"),
    (APPROVER, "reject", Resource(playbook="deploy-web", environment="production", approvers=("alice", "carol")),
     "alice may reject deploy-web in production as approver everywhere"),
    (APPROVER, "approve", Resource(playbook="deploy-web", environment="production", approvers=("tech-lead",)),
     "alice may not approve this gate: it names tech-lead, and alice is none of them nor in their groups"),
    (APPROVER, "start", DEPLOY_STAGING, "alice may not start deploy-web in staging: alice holds approver everywhere"),
    # an agent holding approver, even admin, never lets a gate through: a gate waits for a person; it may stop one
    (AGENT_APPROVER, "approve", DEPLOY_STAGING,
     "bot may not approve: it is an agent, and a gate waits for a person (an agent may reject, which lets nothing "
     "through)"),
    (AGENT_ADMIN, "approve", DEPLOY_STAGING,
     "root-bot may not approve: it is an agent, and a gate waits for a person (an agent may reject, which lets "
     "nothing through)"),
    (AGENT_APPROVER, "reject", DEPLOY_STAGING, "bot may reject deploy-web in staging as approver everywhere"),
    # admin: the engine itself, and everything an operator or approver does
    (ADMIN, "reset_circuit", ENGINE, "root may reset circuit breakers as admin everywhere"),
    (ADMIN, "rebuild_projections", ENGINE, "root may rebuild projections as admin everywhere"),
    (ADMIN, "manage_directory", ENGINE, "root may change the directory as admin everywhere"),
    (ADMIN, "publish_playbook", ENGINE, "root may publish playbooks as admin everywhere"),
    (OPERATOR, "publish_playbook", ENGINE,
     "otto may not publish playbooks (that needs admin on every playbook and environment): "
     "otto holds operator everywhere"),
    (ADMIN, "create_token", Resource(owner="bob"), "root may create tokens for bob as admin everywhere"),
    (ADMIN, "act_on_behalf", ENGINE, "root may act on behalf of others as admin everywhere"),
    (ADMIN, "start", DEPLOY_PRODUCTION, "root may start deploy-web in production as admin everywhere"),
    (ADMIN, "approve", Resource(playbook="deploy-web", environment="staging", approvers=("tech-lead",)),
     "root may not approve this gate: it names tech-lead, and root is none of them nor in their groups"),
    # unsafe shell: its own grant, which no role implies
    (ADMIN, "start", Resource(playbook="deploy-web", environment="staging", unsafe_shell=True),
     "root may not start deploy-web in staging with allow_unsafe_shell: that needs an unsafe_shell grant on it, "
     "and root holds admin everywhere"),
    (SHELL_OPERATOR, "start", Resource(playbook="maintenance-disk", environment="production", unsafe_shell=True),
     "shelly may start maintenance-disk in production as operator everywhere"),
    (SHELL_OPERATOR, "start", Resource(playbook="deploy-web", environment="production", unsafe_shell=True),
     "shelly may not start deploy-web in production with allow_unsafe_shell: that needs an unsafe_shell grant on it, "
     "and shelly holds operator everywhere; unsafe_shell on maintenance-* in *"),
    # a retry is authorised like a start: a run started with allow_unsafe_shell needs the unsafe_shell grant again
    (STAGING_DEPLOYER, "retry", DEPLOY_STAGING,
     "sam may retry deploy-web in staging as operator on deploy-* in staging"),
    (STAGING_DEPLOYER, "retry", DEPLOY_PRODUCTION,
     "sam may not retry deploy-web in production: sam holds operator on deploy-* in staging"),
    (VIEWER, "retry", DEPLOY_STAGING, "vera may not retry deploy-web in staging: vera holds viewer everywhere"),
    (APPROVER, "retry", DEPLOY_STAGING, "alice may not retry deploy-web in staging: alice holds approver everywhere"),
    (SHELL_OPERATOR, "retry", Resource(playbook="maintenance-disk", environment="production", unsafe_shell=True),
     "shelly may retry maintenance-disk in production as operator everywhere"),
    (OPERATOR, "retry", Resource(playbook="maintenance-disk", environment="production", unsafe_shell=True),
     "otto may not retry maintenance-disk in production with allow_unsafe_shell: that needs an unsafe_shell grant "
     "on it, and otto holds operator everywhere"),
    # tokens: one's own, or an admin's
    (NOBODY, "list_tokens", Resource(owner="newbie"), "newbie may list their own tokens"),
    (NOBODY, "revoke_token", Resource(owner="newbie"), "newbie may revoke their own tokens"),
    (NOBODY, "revoke_token", Resource(owner="root"),
     "newbie may not revoke tokens of root (that needs admin on every playbook and environment): "
     "newbie holds no grants"),
    (OPERATOR, "list_tokens", Resource(),
     "otto may not list tokens of everyone (that needs admin on every playbook and environment): "
     "otto holds operator everywhere"),
    (OPERATOR, "create_token", Resource(owner="otto"),
     "otto may not create tokens for otto (that needs admin on every playbook and environment): "
     "otto holds operator everywhere"),
    # admin scoped to some playbooks runs them, but is not an admin of the engine
    (person("pat", "admin:deploy-*"), "reset_circuit", ENGINE,
     "pat may not reset circuit breakers (that needs admin on every playbook and environment): "
     "pat holds admin on deploy-* in *"),
    (person("pat", "admin:deploy-*"), "publish_playbook", Resource(playbook="deploy-web"),
     "pat may not publish playbooks (that needs admin on every playbook and environment): "
     "pat holds admin on deploy-* in *"),
    (person("pat", "admin:deploy-*"), "cancel", DEPLOY_PRODUCTION,
     "pat may cancel deploy-web in production as admin on deploy-* in *"),
]


@pytest.mark.parametrize(("principal", "action", "resource", "sentence"), TABLE,
                         ids=[f"{p.name}-{a}-{r.describe()}" for p, a, r, _ in TABLE])
def test_the_authorization_table(principal: Principal, action: str, resource: Resource, sentence: str) -> None:
    decision = authorize(principal, action, resource)  # type: ignore[arg-type]
    assert decision.reason == sentence
    assert decision.allowed == (" may not " not in sentence)


def test_a_retry_is_an_operators_action_a_viewer_and_an_approver_may_not_take() -> None:
    assert COMMAND_ACTIONS["RetryRun"] == "retry"
    assert [role for role, actions in ROLE_ACTIONS.items() if "retry" in actions] == ["operator", "admin"]


def test_every_action_is_refused_to_a_principal_without_grants() -> None:
    for action in ("read", "start", "pause", "resume", "cancel", "rollback", "retry", "approve", "reject",
                   "reset_circuit", "rebuild_projections", "manage_directory", "publish_playbook", "act_on_behalf"):
        assert not authorize(NOBODY, action, DEPLOY_STAGING).allowed, action  # type: ignore[arg-type]


def test_grants_are_written_role_colon_playbooks_at_environments() -> None:
    grant = parse_grant("operator:deploy-*,db-*@staging,qa")
    assert grant == Grant(role="operator", playbooks=("deploy-*", "db-*"), environments=("staging", "qa"))
    assert format_grant(grant) == "operator:deploy-*,db-*@staging,qa"
    assert parse_grant("viewer") == Grant(role="viewer")
    assert format_grant(parse_grant("approver@production")) == "approver@production"


def test_a_grant_with_an_unknown_role_or_an_oversized_pattern_is_refused_with_the_roles() -> None:
    with pytest.raises(PlaybookError, match="unknown role 'superuser'; roles are viewer, operator, approver, admin"):
        parse_grant("superuser")
    with pytest.raises(PlaybookError, match="length"):
        parse_grant("operator:" + "x" * 200)


def test_admins_pass_on_any_role_but_unsafe_shell_needs_holding_it_everywhere() -> None:
    assert may_grant(ADMIN, parse_grant("operator:deploy-*@staging")).allowed
    assert not may_grant(ADMIN, parse_grant("unsafe_shell")).allowed
    assert may_grant(person("root", "admin", "unsafe_shell"), parse_grant("unsafe_shell:maint-*")).allowed
    refused = may_grant(OPERATOR, parse_grant("viewer"))
    assert not refused.allowed and refused.reason == "otto may not issue tokens: otto holds operator everywhere"


def test_every_command_of_the_contract_and_every_request_has_its_action_in_the_table() -> None:
    from typing import get_args

    from events import subjects
    from events.commands import COMMAND_TYPES
    from events.identity import IDENTITY_COMMAND_TYPES
    from services.identity.authority import COMMAND_ACTIONS, SIGNED_IN_ONLY, Action
    requests = (subjects.LEARNING_INSIGHTS, subjects.LEARNING_STATUS, subjects.LEARNING_REBUILD,
                subjects.PROJECTIONS_REBUILD, subjects.AUDIT)
    names = {kind.__name__ for kind in (*COMMAND_TYPES, *IDENTITY_COMMAND_TYPES)}
    names |= {subject.removeprefix(f"{subjects.PREFIX}.") for subject in requests}
    assert names == set(COMMAND_ACTIONS) | SIGNED_IN_ONLY and not SIGNED_IN_ONLY & set(COMMAND_ACTIONS)
    assert set(COMMAND_ACTIONS.values()) <= set(get_args(Action))
