"""Whoever starts a run cannot choose where its requests go: a parameter in a URL's scheme or host must be typed
host or url, and its value is checked against the parameter's pattern and allowed_hosts."""
from __future__ import annotations

import pytest

from services.playbook import validate_playbook
from tests.helpers import playbook_yaml


def findings(steps: list[dict], *, parameters: list[dict], variables: dict | None = None,
             given: dict | None = None) -> list[tuple[str, int | None, str]]:
    text = playbook_yaml(steps, parameters=parameters, **({"variables": variables} if variables else {}))
    return [(d.code, d.line, d.message) for d in validate_playbook(text, "p.yaml", parameters=given)
            if d.code in ("PB211", "PB302", "PB307", "PB104")]


def request(url: str, **extra) -> dict:
    return {"id": "check", "name": "check", "action": "http_request", "args": {"url": url, **extra}}


SERVICE = {"name": "service", "required": True}


@pytest.mark.parametrize("url, part", [
    ("http://${service}.internal/health", "host, port or user"),
    ("https://api.internal:${service}/", "host, port or user"),
    ("https://${service}@api.internal/", "host, port or user"),
    ("${service}://api.internal/", "scheme"),
    ("${service}/health", "scheme and host"),
])
def test_an_untyped_parameter_in_a_urls_scheme_or_authority_is_an_error(url, part) -> None:
    [(code, line, message)] = findings([request(url)], parameters=[SERVICE])
    assert code == "PB211" and line is not None
    assert f"parameter 'service' sets this URL's {part}" in message and "type: host" in message


@pytest.mark.parametrize("url", [
    "http://api.internal/health/${service}",
    "http://api.internal/health?for=${service}",
    "http://api.internal/#${service}",
    "https://${secret:HOST}/x",               # the engine's, not the caller's
    "https://${env.API_HOST}/x",
])
def test_a_parameter_in_the_path_query_or_fragment_is_fine(url) -> None:
    assert findings([request(url)], parameters=[SERVICE]) == []


def test_variables_are_followed_to_the_parameter_they_hold() -> None:
    [(code, _, message)] = findings([request("${health}")], parameters=[SERVICE],
                                    variables={"base": "http://${service}.internal", "health": "${base}/health"})
    assert code == "PB211" and "(through variable 'health' -> 'base')" in message


def test_rollbacks_remediations_and_validators_are_checked_too() -> None:
    step = {**request("http://api.internal/"), "rollback": [{"action": "http_request",
                                                             "args": {"url": "http://${service}/undo"}}],
            "validators": [{"type": "http_status", "url": "http://${service}/ready"}]}
    assert [code for code, _, _ in findings([step], parameters=[SERVICE])] == ["PB211", "PB211"]


@pytest.mark.parametrize("declared", [{"type": "host"}, {"type": "url"}])
def test_a_parameter_typed_host_or_url_may_stand_there(declared) -> None:
    assert findings([request("http://${service}/health")], parameters=[{**SERVICE, **declared}]) == []


@pytest.mark.parametrize("value", ["127.0.0.1:18398/steal?x=", "evil.com/x", "user@evil.com", "http://evil.com",
                                   "a b", ""])
def test_a_host_parameter_takes_only_a_host(value) -> None:
    found = findings([request("http://${service}/health")], parameters=[{**SERVICE, "type": "host"}],
                     given={"service": value})
    assert [code for code, _, _ in found] == ["PB302"]


@pytest.mark.parametrize("value", ["checkout", "checkout.internal", "10.0.0.7", "[::1]"])
def test_a_host_parameter_takes_names_and_addresses(value) -> None:
    assert findings([request("http://${service}/health")], parameters=[{**SERVICE, "type": "host"}],
                    given={"service": value}) == []


def test_allowed_hosts_and_pattern_limit_what_a_caller_may_give() -> None:
    parameters = [{"name": "base", "type": "url", "allowed_hosts": ["*.internal"], "pattern": "https://.*"},
                  {"name": "node", "type": "host", "allowed_hosts": ["db.internal", "10.0.0.7"]}]
    steps = [request("${base}/x"), {**request("http://${node}/y"), "id": "other"}]
    assert findings(steps, parameters=parameters, given={"base": "https://a.internal", "node": "10.0.0.7"}) == []
    found = findings(steps, parameters=parameters, given={"base": "https://evil.com/a.internal", "node": "db"})
    assert [(code, message.split(" (from")[0]) for code, _, message in found] == [
        ("PB307", "parameter 'base' is 'https://evil.com/a.internal', which names host 'evil.com', which is not "
                  "among its allowed_hosts (*.internal)"),
        ("PB307", "parameter 'node' is 'db', which names host 'db', which is not among its allowed_hosts "
                  "(db.internal, 10.0.0.7)")]
    found = findings(steps, parameters=parameters, given={"base": "http://a.internal", "node": "db.internal"})
    assert [(code, "does not match its pattern" in message) for code, _, message in found] == [("PB307", True)]


def test_a_bad_pattern_or_host_list_is_reported_where_it_is_written() -> None:
    parameters = [{"name": "a", "pattern": "("}, {"name": "b", "allowed_hosts": ["x"]},
                  {"name": "c", "type": "host", "allowed_hosts": ["http://x/"]}]
    messages = [message for _, _, message in findings([request("http://api/")], parameters=parameters)]
    assert len(messages) == 3
    assert "is not a regular expression" in messages[0]
    assert "allowed_hosts applies to parameters of type host or url" in messages[1]
    assert "'http://x/' is not a host name" in messages[2]
