"""`playbook up` keeps the web port it was given across a restart, so open dashboards find it again."""
from __future__ import annotations

import socket

from app.up import _free_or_any


def _closed_connection_left_on_a_port() -> int:
    """A port whose server just closed a connection first, as a stopped engine closes a dashboard's stream: the
    server's side of it waits in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # as the web server (asyncio) listens
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()          # the server closes first: its end is the one left in TIME_WAIT
        client.close()
    return port


def test_a_restart_keeps_the_port_its_last_run_served_connections_on() -> None:
    port = _closed_connection_left_on_a_port()
    assert _free_or_any(port) == port


def test_a_port_another_server_listens_on_is_left_to_it() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        assert _free_or_any(other.getsockname()[1]) == 0
