"""The documents say what the code does: the written ones are current, every key, command, option, event and
variable is in them, and the README and docs link only inside the repository."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.docs import DOCS_DIR, WRITTEN, stale
from app.docs.language import keys_of, structs
from events.circuit import CIRCUIT_EVENT_TYPES
from events.commands import COMMAND_TYPES
from events.run import RUN_EVENT_TYPES
from services.playbook import validate_playbook
from services.settings import ENVIRONMENT, Settings
from ui.cli.completion import commands_of
from ui.cli.main import parser
from ui.cli.render import EXIT_CODES

ROOT = DOCS_DIR.parent
PRODUCT = ("events", "services", "projections", "ui", "app")


def read(name: str) -> str:
    return (DOCS_DIR / name).read_text()


def section(text: str, title: str) -> str:
    """The text under a heading, up to the next heading of its level or above."""
    start = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.M)
    assert start, f"no heading {title!r}"
    level = len(start.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, start.end())
    return text[start.end():end.start() if end else len(text)]


def test_every_written_document_is_what_the_code_writes_now() -> None:
    assert stale() == [], "run python -m app.docs"


def test_the_written_documents_are_written_to_a_fresh_folder_identically(tmp_path: Path) -> None:
    from app.docs import write
    assert sorted(write(tmp_path)) == sorted(WRITTEN)
    assert all((tmp_path / name).read_text() == read(name) for name in WRITTEN)


@pytest.mark.parametrize("kind", structs(), ids=lambda kind: kind.__name__)
def test_every_key_of_the_playbook_schema_is_in_the_language_reference(kind: type) -> None:
    described = section(read("language.md"), kind.__name__)
    for key in keys_of(kind):
        assert f"| `{key}` |" in described, f"{kind.__name__}.{key} is not in docs/language.md"


def test_a_new_key_without_a_meaning_stops_the_writing() -> None:
    from app.docs import language
    meanings = language.MEANINGS["RetryPolicy"]
    language.MEANINGS["RetryPolicy"] = {k: v for k, v in meanings.items() if k != "jitter"}
    try:
        with pytest.raises(LookupError, match="RetryPolicy's key\\(s\\) jitter"):
            language.render()
    finally:
        language.MEANINGS["RetryPolicy"] = meanings


def test_every_event_and_command_is_in_the_event_contract_with_its_fields() -> None:
    contract = read("events.md")
    for kind in (*RUN_EVENT_TYPES, *CIRCUIT_EVENT_TYPES, *COMMAND_TYPES):
        described = section(contract, kind.__name__)
        for field in kind.__struct_encode_fields__:
            assert f"`{field}`" in described or field in ("run_id", "at", "key"), (kind.__name__, field)


def test_every_command_and_option_of_the_cli_is_in_its_reference() -> None:
    reference = read("cli.md")
    every = [(f"playbook {c.name}", c) for c in commands_of(parser(Settings()))]
    every += [(f"{name} {sub.name}", sub) for name, c in every for sub in c.subcommands]
    assert any(name == "playbook token create" for name, _ in every)
    for name, command in every:
        described = section(reference, name)
        for option in command.options:
            assert all(f"`{flag}`" in described for flag in option.flags), (name, option.flags)


def test_the_exit_codes_are_those_the_readme_and_the_cli_reference_give() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())
    exits = section(read("cli.md"), "Exit codes")
    for code, meaning in EXIT_CODES.items():
        assert f"`{code}` {meaning}" in readme, f"README: exit code {code}"
        assert f"| `{code}` | {meaning} |" in exits


def variables_read_by_the_code() -> set[str]:
    """Every environment variable name written as a string in the product code."""
    found: set[str] = set()
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"(PLAYBOOK|NATS)_[A-Z_]*", node.value):
                    found.add(node.value)
    return found


def test_every_environment_variable_the_code_reads_is_configured_and_documented() -> None:
    configured = {variable.name for variable in ENVIRONMENT}
    documented = read("configuration.md")
    for name in variables_read_by_the_code():
        known = name in configured or any(c.startswith(name) and c.endswith("<NAME>") for c in configured)
        assert known, f"{name} is read by the code but not in services/settings.py ENVIRONMENT"
    for name in configured:
        assert f"| `{name}` |" in documented
    assert {"PLAYBOOK_HOME", "NATS_URL", "PLAYBOOK_ACK_WAIT", "PLAYBOOK_TOKEN", "PLAYBOOK_STEP_SANDBOX"} <= configured


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("document", ["README.md", *(f"docs/{p.name}" for p in sorted(DOCS_DIR.glob("*.md")))])
def test_documents_link_to_files_that_are_in_the_repository_and_the_readme_to_nothing_else(document: str) -> None:
    path = ROOT / document
    for target in LINK.findall(path.read_text()):
        if "://" in target:
            assert document != "README.md", f"the README links outside the repository: {target}"
            continue
        file = target.split("#")[0]
        inside = (path.parent / file).resolve()
        assert not file or (inside.is_file() and inside.is_relative_to(ROOT)), f"{document}: {target} is not here"
    assert "shared/" not in path.read_text()


def test_the_design_document_links_the_others() -> None:
    design = read("design.md")
    for other in ("architecture.md", "security.md", "events.md", "language.md", "cli.md", "configuration.md"):
        assert f"]({other})" in design


def test_the_readme_playbook_is_a_valid_playbook() -> None:
    readme = (ROOT / "README.md").read_text()
    example = readme[readme.index("```yaml") + 7:readme.index("```", readme.index("```yaml") + 7)]
    assert [d for d in validate_playbook(example, "README.md") if d.severity != "info"] == []
