"""The embedded servers' JetStream storage (`PLAYBOOK_NATS_MAX_STORE`) in the configurations `playbook up`
writes, as nats-server itself reads them (`nats-server -t`), and the figure the engine sizes streams by."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from services.embedded import jetstream_storage, server_binary
from services.identity.credentials import NatsLogin
from services.identity.nats_users import ROLES, ClusterNode, cluster_node_config, server_config

LOGINS = {role: NatsLogin(f"pb-{role}", "secret") for role in ROLES}
PASSWORDS = {role: login.password for role, login in LOGINS.items()}


def server_accepts(path: Path) -> bool:
    return subprocess.run([server_binary(), "-t", "-c", str(path)], capture_output=True).returncode == 0


@pytest.mark.parametrize("max_store", [None, 600 * 2**20])
def test_the_configurations_carry_the_storage_and_the_server_reads_them(tmp_path: Path, max_store: int | None) -> None:
    node = ClusterNode("n1", store_dir=str(tmp_path / "n1"), max_store=max_store)
    texts = {"one.conf": server_config(LOGINS, max_store), "cluster.conf": cluster_node_config(node, [node], PASSWORDS)}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
        assert server_accepts(tmp_path / name), text
        assert ("max_file_store: 629145600" in text) == bool(max_store), text


def test_the_storage_is_the_setting_or_what_nats_server_takes_of_the_free_disk(tmp_path: Path) -> None:
    assert jetstream_storage(tmp_path, 600 * 2**20) == 600 * 2**20
    free = shutil.disk_usage(tmp_path).free
    assert 0.74 * free <= jetstream_storage(tmp_path) <= 0.76 * free
