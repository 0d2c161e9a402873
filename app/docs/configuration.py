"""docs/configuration.md: every environment variable the engine reads, written from `services/settings.py`."""
from __future__ import annotations

from app.docs.markdown import GENERATED, table
from services.identity.nats_users import ROLE_HOLDERS, ROLES, password_variable, user_name
from services.settings import ENVIRONMENT


def render() -> str:
    lines = [
        "# Configuration", "", GENERATED, "",
        "The engine is configured by environment variables, read once when a process starts (the settings in "
        "`services/settings.py`) and handed down from there. A bad value stops the process at start, naming the "
        "variable. Files the engine reads (error patterns and handlers, secrets, the directory) are YAML.", "",
    ]
    lines += table(("variable", "default", "what it sets", "read by"),
                   [(f"`{v.name}`", v.default, v.meaning, v.read_by) for v in ENVIRONMENT])
    lines += [
        "", "## NATS logins", "",
        "Each process logs in to NATS as its role: with the user and password in `NATS_URL` "
        "(`nats://pb-web:PASSWORD@host:4222`), else with `$PLAYBOOK_HOME/credentials/nats-<role>.json`, which "
        "`playbook up` writes. A server that is not `playbook up`'s takes each password from its own environment "
        "(`config/nats-server.conf`, `compose.yaml`: put them in `.env`). What each may: "
        "[security.md](security.md#nats-users-and-permissions).", "",
    ]
    lines += table(("user", "password, in the server's environment", "who logs in with it"),
                   [(f"`{user_name(role)}`", f"`{password_variable(role)}`", ROLE_HOLDERS[role]) for role in ROLES])
    lines += [
        "", "## Files", "",
        "- `$PLAYBOOK_ERROR_PATTERNS`: a YAML list of `{regex, category}`; a failure whose text matches is put in "
        "that category before the built-in patterns are tried.",
        "- `$PLAYBOOK_ERROR_HANDLERS`: a YAML list of error handlers written as a playbook writes them "
        "(`{category | pattern, run: {action, args}, then: retry | fail}`).",
        "- `$PLAYBOOK_SECRETS_FILE`: `NAME: value`, or `NAME: {value: ..., allowed_hosts: [api.example.com, "
        "\"*.corp\"]}`; values shorter than 8 characters are refused. What stays secret and what cannot: "
        "[security.md](security.md).",
        "- `$PLAYBOOK_DIRECTORY`: `users: {alice: [ops-team, tech-lead]}`, the groups approval gates name.",
    ]
    return "\n".join(lines).rstrip() + "\n"
