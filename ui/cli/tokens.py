"""`playbook token create|list|revoke`: API tokens, managed through the identity service.

The caller is `$PLAYBOOK_TOKEN`, else the local admin's token that `playbook up` wrote to
`$PLAYBOOK_HOME/credentials/token` (ui/cli/connect.py). A new credential is printed once,
alone on stdout (details go to stderr), so `TOKEN=$(playbook token create ...)` keeps it.
"""
from __future__ import annotations

import argparse
import re

from services.errors import PlaybookError
from ui.cli.common import person
from ui.cli.lazy import Lazy

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `token` and its actions to the CLI's subcommands."""
    token = sub.add_parser("token", help="create, list and revoke API tokens", description=__doc__)
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="issue a token (admin); the credential is shown once",
                                description="issue a token (admin); the credential is printed once, alone on stdout")
    create.add_argument("name", help="what the token is for, e.g. 'ci deploys'")
    create.add_argument("--owner", required=True, help="the person or agent who will use it")
    create.add_argument("--grant", action="append", default=[], metavar="ROLE[:PLAYBOOKS][@ENVIRONMENTS]",
                        help="e.g. operator:deploy-*@staging; roles: viewer, operator, approver, admin, unsafe_shell")
    create.add_argument("--agent", action="store_true", help="the owner is an agent, not a person")
    create.add_argument("--expires", default="90d", help="30d, 12h, 45m, 600s or never (default 90d)")
    create.set_defaults(handler=Lazy("token_actions", "cmd_token_create"))

    listing = actions.add_parser("list", help="your tokens, someone's (--owner) or everyone's (--all)",
                                 description="your tokens, someone's (--owner) or everyone's (--all)")
    listing.add_argument("--owner", help="this person's or agent's tokens (admin, unless it is you)")
    listing.add_argument("--all", action="store_true", help="every owner's tokens (admin)")
    listing.add_argument("--inactive", action="store_true", help="include revoked and expired tokens")
    listing.set_defaults(handler=Lazy("token_actions", "cmd_token_list"))

    revoke = actions.add_parser("revoke", help="revoke a token for good (yours, or anyone's as admin)",
                                description="revoke a token for good (yours, or anyone's as admin): refused "
                                            "everywhere within a second")
    revoke.add_argument("token_id", help="the token's id (`playbook token list` shows them)")
    revoke.add_argument("--reason", default="", help="why (recorded)")
    revoke.set_defaults(handler=Lazy("token_actions", "cmd_token_revoke"))

    for action in (create, listing, revoke):
        action.add_argument("--as", dest="on_behalf_of", metavar="PERSON", type=person,
                            help="act on behalf of this person (admin; both recorded)")
        action.add_argument("--json", action="store_true", help="the answer as one JSON document")


def parse_expiry(text: str) -> float | None:
    """Seconds until a token expires, None for `never`."""
    if text == "never":
        return None
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found[1]) == 0:
        raise PlaybookError(f"--expires {text!r}: write a duration like 30d, 12h, 45m, 600s, or never")
    return int(found[1]) * _UNIT_SECONDS[found[2]]
