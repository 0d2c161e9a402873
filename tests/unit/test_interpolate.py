"""`${...}` resolution: types kept, shell values quoted, unresolvable references refused."""
from __future__ import annotations

import shlex

import pytest

from services.errors import PlaybookError, UnresolvedReference
from services.playbook.interpolate import Context, resolve, resolve_shell
from services.secrets import redact


def ctx(**kwargs) -> Context:
    base = dict(parameters={"service": "checkout", "replicas": 3, "flag": True, "tags": ["a", "b"]},
                variables={"url": "https://${service}.internal", "loop": "${loop}"},
                steps={"backup": {"stdout": "/var/backups/x.tar", "json": {"items": [{"id": 7}]}}})
    base.update(kwargs)
    return Context(**base)


@pytest.mark.parametrize("value, expected", [
    ("${replicas}", 3),                                   # a whole reference keeps its type
    ("${flag}", True),
    ("${tags}", ["a", "b"]),
    ("n=${replicas}", "n=3"),                             # inside text it is rendered
    ("${url}/health", "https://checkout.internal/health"),  # variables resolve their own references
    ("${steps.backup.stdout}", "/var/backups/x.tar"),
    ("${steps.backup.json.items.0.id}", 7),
    ("${steps.backup.json.items[0].id}", 7),              # a list indexed as outputs' `from:` writes it
    ("first ${tags[0]}, then ${tags.1}", "first a, then b"),
    ("cost $${HOME}", "cost ${HOME}"),                    # $${ is a literal ${
    ("${tags} and ${flag}", '["a","b"] and true'),
    ({"a": ["${service}", 1]}, {"a": ["checkout", 1]}),
    ("no references", "no references"),
])
def test_references_resolve(value, expected) -> None:
    assert resolve(value, ctx()) == expected


@pytest.mark.parametrize("value, problem", [
    ("${nope}", "no parameter, variable or output named 'nope'"),
    ("${steps.later.stdout}", "step 'later' has no outputs"),
    ("${steps.backup.missing}", r"^\$\{steps.backup.missing\}: no 'missing' in the value"),   # said once
    ("${loop}", "refers to itself"),
    ("${env.HOME}", "not available"),
    ("${secret:db}", "no secret named 'db'"),
    ("${tags.%s}" % ("9" * 5000), "no '9999"),        # an index int() refuses (past 4,300 digits): not a ValueError
])
def test_an_unresolvable_reference_is_an_error_never_literal_text(value, problem) -> None:
    with pytest.raises(UnresolvedReference, match=problem):
        resolve(value, ctx())


def test_an_unclosed_reference_is_an_error() -> None:
    with pytest.raises(PlaybookError, match="never closed"):
        resolve("echo ${service", ctx())


def test_shell_values_are_quoted_as_one_word_each() -> None:
    hostile = "'; rm -rf / #"
    command = resolve_shell("echo ${target} ${service}", ctx(parameters={"target": hostile, "service": "a b"}))
    assert shlex.split(command) == ["echo", hostile, "a b"]


def test_raw_insertion_is_a_visible_opt_in() -> None:
    assert resolve_shell("ls ${raw:opts}", ctx(parameters={"opts": "-l -a"})) == "ls -l -a"


def test_secrets_resolve_from_the_source_and_are_remembered_for_redaction() -> None:
    c = ctx(secrets={"db": "hunter2"}.get)
    assert resolve_shell("psql --password ${secret:db}", c) == "psql --password hunter2"
    assert c.used_secrets == {"hunter2"}
    assert redact("login failed for hunter2", c.used_secrets) == "login failed for ***"


def test_environment_variables_resolve_only_when_allowed() -> None:
    assert resolve("${env.REGION}", ctx(env={"REGION": "eu-west-1"})) == "eu-west-1"


@pytest.mark.parametrize("written", [
    "echo '${p}'", 'echo "${p}"', 'echo "before ${p} after"', "echo $'${p}'", 'echo "$(echo \'${p}\')"',
    "echo `echo '${p}'`", 'echo "`echo ${p}`"', "echo x # a note on ${p}", "cat <<EOF\n${p}\nEOF",
    "cat <<'EOF'\n${p}\nEOF",
])
def test_a_value_inside_quotes_or_a_comment_is_still_one_word_never_shell_syntax(written) -> None:
    """`'${p}'` with p = `$(id)` ran id: the engine's single quotes closed the author's. Every value must reach
    the program as written, whatever quotes the author put around the reference."""
    import subprocess
    hostile = "a'b\"c $(echo INJECTED) `echo INJECTED` \\ $HOME\necho INJECTED"
    command = resolve_shell(written, ctx(parameters={"p": hostile}))
    printed = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=10).stdout
    assert printed.count("INJECTED") == (0 if "#" in written else hostile.count("INJECTED")), (command, printed)
    if "#" not in written and "`" not in written:   # an unquoted substitution's output is split into words
        assert hostile in printed, (command, printed)
