"""`playbook up --cluster 3`'s routes take a login: on a machine with other users, an unauthenticated route
port let any of them join the cluster as a server, see every message (commands with their bearer tokens
included) and publish past every user's permissions (tried: a nats-server of another user, routed to it)."""
from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request

import pytest

from services.embedded import EmbeddedCluster
from tests.helpers import until

pytestmark = pytest.mark.e2e


def route_answer(port: int) -> bytes:
    """What a cluster port answers to a server joining without a login."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        assert sock.recv(65536).startswith(b"INFO ")
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":"rogue",'
                     b'"cluster":"pb"}\r\nPING\r\n')
        return sock.recv(65536)


async def test_a_server_without_the_route_login_cannot_join_the_cluster(nats_cluster: EmbeddedCluster) -> None:
    ports = [int(re.search(r'cluster \{\n  name: pb\n  listen: "127\.0\.0\.1:(\d+)"', server.config.read_text())[1])
             for server in nats_cluster.servers.values()]
    assert len(ports) == 3
    for port in ports:
        answer = await asyncio.to_thread(route_answer, port)
        assert b"Authorization Violation" in answer, answer
    for server in nats_cluster.servers.values():       # while the servers, with the login, route to each other
        port = server.monitor_port
        await until(lambda port=port: routes_of(port) >= 2, timeout=20, what=f"{server.name} routed to both")


def routes_of(monitor_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/routez", timeout=5) as answer:
        return len({route["remote_id"] for route in json.loads(answer.read())["routes"] or []})
