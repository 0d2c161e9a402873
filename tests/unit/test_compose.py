"""compose.yaml runs the engine secured: NATS with its users and nothing else published, each service with its login."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ("nats-1", "nats-2", "nats-3")


def test_each_nats_server_runs_with_the_reference_users_and_publishes_only_its_authenticated_port() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for number, name in enumerate(SERVERS):
        nats = services[name]
        assert nats["command"] == ["-c", f"/config/{name}.conf"]
        assert "./config/nats-cluster:/config:ro" in nats["volumes"]
        assert nats["ports"] == [f"{4222 + number}:4222"]     # no monitoring port: it has no authentication
        assert set(nats["environment"]) == {"PB_ENGINE_PASSWORD", "PB_EXECUTOR_PASSWORD", "PB_WEB_PASSWORD",
                                            "PB_CLIENT_PASSWORD", "PB_AGENT_PASSWORD"}
        assert all(value.startswith("${") and ":?" in value for value in nats["environment"].values())  # must be set


def test_every_engine_service_connects_to_every_server_with_the_engine_login_the_web_and_executor_with_theirs(
        ) -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        if name in SERVERS:
            continue
        urls = service["environment"]["NATS_URL"].split(",")
        assert [url.rsplit("@", 1)[1] for url in urls] == [f"{server}:4222" for server in SERVERS], name
        if name == "web":       # it faces HTTP: a login that writes no event, no token, no stream
            assert all(url.strip().startswith("nats://pb-web:${PB_WEB_PASSWORD") for url in urls)
            continue
        if name == "executor":  # it runs operators' shell commands: its steps' events, no gate, token or stream
            assert all(url.strip().startswith("nats://pb-executor:${PB_EXECUTOR_PASSWORD") for url in urls)
            assert service["environment"]["PLAYBOOK_LEASE_SECONDS"] == "20"
            continue
        assert all(url.strip().startswith("nats://pb-engine:${PB_ENGINE_PASSWORD") for url in urls), name
        assert service["environment"]["PLAYBOOK_STREAM_REPLICAS"] == "3", name
    assert "PLAYBOOK_WEB_HOSTS" in services["web"]["environment"]
    assert services["identity"]["command"] == ["python", "-m", "services.identity"]


def test_every_home_in_a_volume_is_a_directory_the_image_gives_the_user_it_runs_as() -> None:
    """A named volume mounted where the image has no directory is made root's: a service running as `nobody`
    could not write its home there (the first admin's token, the learning store, the web's snapshots)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")][-1]
    before_user = dockerfile.split(f"USER {user}")[0]
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    homes = {name: service["environment"]["PLAYBOOK_HOME"] for name, service in services.items()
             if "PLAYBOOK_HOME" in (service.get("environment") or {})}
    assert set(homes) == {"identity", "learning", "web"}
    for name, home in homes.items():
        assert any(volume.endswith(f":{home}") and not volume.startswith(".") for volume in services[name]["volumes"])
        assert re.search(rf"mkdir[^\n]*\s{re.escape(home)}\b", before_user), f"{name}: the image makes no {home}"
        assert re.search(rf"chown[^\n]*\s{user}\S*\s[^\n]*{re.escape(home)}\b", before_user), \
            f"{name}: {home} is not {user}'s"
