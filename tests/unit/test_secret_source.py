"""Where secrets come from: the environment, then the secrets file; with the hosts each may be sent to."""
from __future__ import annotations

import re

import pytest

from services.secrets import MIN_SECRET_LENGTH, Secret, SecretRefused, SecretSource


def test_an_environment_secret_may_name_its_hosts() -> None:
    source = SecretSource({"PLAYBOOK_SECRET_API_TOKEN": "tok-12345678",
                           "PLAYBOOK_SECRET_API_TOKEN_ALLOWED_HOSTS": "api.example.com, *.corp"})
    assert source.secret("api-token") == Secret("api-token", "tok-12345678", ("api.example.com", "*.corp"))
    assert source.get("api-token") == "tok-12345678"


def test_without_allowed_hosts_a_secret_may_go_anywhere() -> None:
    assert SecretSource({"PLAYBOOK_SECRET_X": "long-enough"}).secret("x") == Secret("x", "long-enough", None)


def test_the_hosts_variable_is_never_a_secret_of_its_own() -> None:
    source = SecretSource({"PLAYBOOK_SECRET_X_ALLOWED_HOSTS": "api.example.com"})
    assert source.secret("x_allowed_hosts") is None


def test_the_secrets_file_gives_plain_values_or_values_with_hosts(tmp_path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text("plain: just-a-value\n"
                    "db: {value: pa55-word-db, allowed_hosts: [db.internal]}\n")
    source = SecretSource({"PLAYBOOK_SECRETS_FILE": str(path)})
    assert source.secret("plain") == Secret("plain", "just-a-value", None)
    assert source.secret("db") == Secret("db", "pa55-word-db", ("db.internal",))
    assert source.secret("missing") is None


@pytest.mark.parametrize("entry, words", [
    ("{value: pa55-word-db, hosts: [x]}", "unknown keys ['hosts']"),
    ("{allowed_hosts: [x]}", "no text 'value'"),
    ("{value: pa55-word-db, allowed_hosts: {a: 1}}", "'allowed_hosts' must be a list"),
    ("{value: pa55-word-db, allowed_hosts: ['http://x/']}", "is not a host name"),
])
def test_a_badly_written_secret_is_refused_with_what_is_wrong(tmp_path, entry, words) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(f"db: {entry}\n")
    with pytest.raises(SecretRefused, match=re.escape(words)):
        SecretSource({"PLAYBOOK_SECRETS_FILE": str(path)}).secret("db")


def test_a_secret_too_short_to_redact_is_refused() -> None:
    source = SecretSource({"PLAYBOOK_SECRET_PIN": "1234"})
    with pytest.raises(SecretRefused, match=f"shorter than {MIN_SECRET_LENGTH} characters"):
        source.get("pin")
