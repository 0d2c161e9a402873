"""compose.yaml runs the engine secured: NATS with its users and nothing else published, each service with its login."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_nats_runs_with_the_reference_users_and_publishes_only_its_authenticated_port() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    nats = services["nats"]
    assert nats["command"] == ["-c", "/config/nats-server.conf"] and "./config:/config:ro" in nats["volumes"]
    assert nats["ports"] == ["4222:4222"]                      # no monitoring port: it has no authentication
    assert set(nats["environment"]) == {"PB_ENGINE_PASSWORD", "PB_CLIENT_PASSWORD", "PB_AGENT_PASSWORD"}
    assert all(value.startswith("${") and ":?" in value for value in nats["environment"].values())   # must be set


def test_every_engine_service_connects_with_the_engine_login_and_the_web_checks_host_names() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        if name == "nats":
            continue
        url = service["environment"]["NATS_URL"]
        assert url.startswith("nats://pb-engine:${PB_ENGINE_PASSWORD") and url.endswith("@nats:4222"), name
    assert "PLAYBOOK_WEB_HOSTS" in services["web"]["environment"]
    assert services["identity"]["command"] == ["python", "-m", "services.identity"]
