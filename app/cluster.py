"""A JetStream cluster on this machine: `playbook up --cluster 3`, the cluster benchmark and the cluster tests.

Each server has its name, its own store under `$PLAYBOOK_HOME/cluster/<name>`, routes to
every other and the engine's NATS users (services/identity/nats_users.py writes their
configurations into `credentials/`). The engine's processes log in as `pb-engine`.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from services.embedded import ClusterServer, EmbeddedCluster, free_port, port_free
from services.errors import PlaybookError
from services.identity.credentials import NatsLogin, nats_login
from services.identity.nats_users import ClusterNode, cluster_configs

MIN_SIZE = 3         # a replicated stream keeps a quorum through the loss of one server from three


def local_cluster(home: Path, size: int = 3, first_port: int | None = None, binary: str | None = None,
                  max_store: int | None = None) -> EmbeddedCluster:
    """`size` servers on loopback (clients on `first_port`, `first_port + 1`, ... when free), not yet started."""
    if size < MIN_SIZE:
        raise PlaybookError(f"a cluster needs at least {MIN_SIZE} servers to survive losing one, not {size}")
    home.mkdir(parents=True, exist_ok=True)
    nodes = [ClusterNode(f"n{number}", port=_port(first_port, number - 1), cluster_port=free_port(),
                         monitor_port=free_port(), store_dir=str(home / "cluster" / f"n{number}"),
                         max_store=max_store)
             for number in range(1, size + 1)]
    configs = cluster_configs(home, nodes)
    return EmbeddedCluster(home, [ClusterServer(node.name, config, node.port, node.monitor_port)
                                  for node, config in zip(nodes, configs)], binary)


def login_url(cluster: EmbeddedCluster, login: NatsLogin) -> str:
    """Every server's URL with the login in it, as `NATS_URL` takes it (separated by commas)."""
    user, password = quote(login.user, safe=""), quote(login.password, safe="")
    return ",".join(f"nats://{user}:{password}@127.0.0.1:{server.port}" for server in cluster.servers.values())


def engine_url(cluster: EmbeddedCluster) -> str:
    login = nats_login("engine", cluster.home)
    assert login is not None, "cluster_configs writes the logins"
    return login_url(cluster, login)


def _port(first: int | None, offset: int) -> int:
    if first is None:
        return free_port()
    wanted = first + offset
    return wanted if port_free(wanted) else free_port()
