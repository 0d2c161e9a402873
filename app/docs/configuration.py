"""docs/configuration.md: every environment variable the engine reads, written from `services/settings.py`."""
from __future__ import annotations

from app.docs.markdown import GENERATED, table
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
