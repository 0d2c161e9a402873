"""NATS for one CLI command: plain TCP, blocking, the standard library only.

nats-py (with asyncio and ssl) costs a CLI process more to import than `playbook status`
may take in all. A command that sends a request, reads a run's stored events and takes the
live ones from the feed needs a few lines of the NATS client protocol, spoken here. URLs
other than nats:// (tls://, ws://) and servers that ask for TLS go through nats-py instead
(`ui.client.EngineClient`): `connect` answers None for them.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from services.errors import EngineUnavailable
from services.settings import LOGIN_REFUSED_HINT, url_to_show

LINE_MAX = 64 * 1024     # a protocol line (INFO, MSG ...) longer than this is not a NATS server speaking
CHUNK = 256 * 1024
# Any replica answers a direct get, and a frozen one never does (until its routes time out, minutes later):
# a read that hears nothing this long asks again, and another replica may answer.
READ_TRY = 0.5
# A cluster's server that takes the connection but says nothing (frozen) is passed over after this, at first.
HANDSHAKE_TRY = 1.0


class Message:
    __slots__ = ("subject", "sid", "reply", "headers", "data")

    def __init__(self, subject: str, sid: int, reply: str, headers: dict[str, str], data: bytes) -> None:
        self.subject, self.sid, self.reply, self.headers, self.data = subject, sid, reply, headers, data

    @property
    def status(self) -> str:
        """A status message's code (404, 204, 503 ...), else ''."""
        return self.headers.get("Status", "")


class Silent(EngineUnavailable):
    """Nothing answered a request in time."""


class Refused(EngineUnavailable):
    """The server said -ERR: the login is wrong, or a subject is not permitted to this login."""


class Connection:
    """One connection, used by one thread: publish, subscribe, and read what arrives until a deadline."""

    def __init__(self, sock: socket.socket, info: dict[str, Any]) -> None:
        self.sock, self.info = sock, info
        self._dial: Callable[[], Connection | None] | None = None   # `connect`'s servers and login, for `redial`
        self.max_payload = int(info.get("max_payload", 1024 * 1024))
        self._buffer = bytearray()
        self._queued: dict[int, deque[Message]] = {}
        self._subjects: dict[int, str] = {}      # by sid: made again on a new socket
        self._sids = 0
        self._inbox = "_INBOX." + os.urandom(11).hex()
        self._replies = 0
        self._reply_sid = 0

    # -- the protocol ------------------------------------------------------------------------

    def publish(self, subject: str, data: bytes = b"", reply: str = "", headers: dict[str, str] | None = None) -> None:
        if headers:
            head = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
            line = f"HPUB {subject} {reply} {len(head)} {len(head) + len(data)}\r\n".encode()
            self._send(line + head + data + b"\r\n")
        else:
            self._send(f"PUB {subject} {reply} {len(data)}\r\n".encode() + data + b"\r\n")

    def subscribe(self, subject: str) -> int:
        self._sids += 1
        self._queued[self._sids] = deque()
        self._subjects[self._sids] = subject
        self._send(f"SUB {subject} {self._sids}\r\n".encode())
        return self._sids

    def redial(self) -> None:
        """Connect again, to the first of the servers that answers, and subscribe again to every subject. What
        was sent meanwhile is gone: a reader reads it from the store. EngineUnavailable if no server answers."""
        fresh = self._dial() if self._dial is not None else None
        if fresh is None:
            raise EngineUnavailable("this connection to NATS cannot be made again")
        self.sock.close()
        self.sock, self.info, self.max_payload, self._buffer = fresh.sock, fresh.info, fresh.max_payload, fresh._buffer
        for sid, subject in self._subjects.items():
            self._send(f"SUB {subject} {sid}\r\n".encode())

    def next_message(self, sid: int, timeout: float) -> Message | None:
        """The next message on subscription `sid`, or None once `timeout` seconds pass without one."""
        deadline = time.monotonic() + timeout
        queued = self._queued[sid]
        while not queued:
            message = self._read(deadline)
            if message is None:
                return None
            self._queued.get(message.sid, deque()).append(message)
        return queued.popleft()

    def request(self, subject: str, data: bytes, timeout: float, headers: dict[str, str] | None = None) -> Message:
        """The first answer to `data` on `subject`; EngineUnavailable when nobody answers in time."""
        return self.answers(subject, data, timeout, headers)[0]

    def answers(self, subject: str, data: bytes, timeout: float, headers: dict[str, str] | None = None,
                *, until_status: bool = False, first_within: float | None = None) -> list[Message]:
        """The answer to one request (`until_status`: every answer until one with a status, a batch's end);
        Silent when none comes in `timeout` (or none begins in `first_within`); a 503 (no one subscribed)
        is EngineUnavailable."""
        if not self._reply_sid:
            self._reply_sid = self.subscribe(f"{self._inbox}.*")
        self._replies += 1
        reply = f"{self._inbox}.{self._replies}"
        self.publish(subject, data, reply, headers)
        started = time.monotonic()
        deadline, answers = started + timeout, list[Message]()
        while True:
            wait_until = deadline if answers or first_within is None else min(deadline, started + first_within)
            message = self.next_message(self._reply_sid, max(0.0, wait_until - time.monotonic()))
            if message is None:
                raise Silent(f"no answer on {subject} in {wait_until - started:g} s")
            if message.subject != reply:
                continue            # a late answer to an earlier request
            if message.status == "503":
                raise EngineUnavailable(f"nobody answers on {subject}")
            answers.append(message)
            if not until_status or message.status:
                return answers

    def stored(self, stream: str, subject: str, after: int = 0, *, batch: int = 256,
               timeout: float = 5.0) -> list[Message]:
        """Every message on `subject` in `stream` after sequence `after`, by batched direct gets (no consumer)."""
        found: list[Message] = []
        while True:
            request = json.dumps({"seq": after + 1, "next_by_subj": subject, "batch": batch}).encode()
            *messages, end = self._direct_get(stream, request, timeout, until_status=True)
            found += messages
            after = int(messages[-1].headers["Nats-Sequence"]) if messages else after
            if end.status == "404" or (end.status == "204" and (not messages or
                                                                 end.headers.get("Nats-Num-Pending", "0") == "0")):
                return found
            if end.status != "204":
                raise EngineUnavailable(f"{stream} cannot be read: {end.status} {end.headers.get('Description', '')}")

    def last(self, stream: str, subject: str, timeout: float = 5.0) -> Message | None:
        """The last message on `subject` in `stream`; None if there is none."""
        answer = self._direct_get(stream, json.dumps({"last_by_subj": subject}).encode(), timeout)[0]
        if answer.status == "404":
            return None
        if answer.status:
            raise EngineUnavailable(f"{stream} cannot be read: {answer.status} {answer.headers.get('Description', '')}")
        return answer

    def close(self) -> None:
        self.sock.close()

    def _direct_get(self, stream: str, request: bytes, timeout: float, *, until_status: bool = False) -> list[Message]:
        """A direct get's answers, asked again (it only reads) while replicas stay silent, for `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.answers(f"$JS.API.DIRECT.GET.{stream}", request, max(0.0, deadline - time.monotonic()),
                                    until_status=until_status, first_within=READ_TRY)
            except Silent:
                if time.monotonic() + READ_TRY > deadline:
                    raise Silent(f"no answer from {stream} in {timeout:g} s") from None

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise EngineUnavailable(f"the connection to NATS broke: {err}") from None

    # -- reading ------------------------------------------------------------------------------

    def _read(self, deadline: float) -> Message | None:
        """The next message for any subscription (answering the server's pings meanwhile), or None at the deadline."""
        while True:
            line = self._line(deadline)
            if line is None:
                return None
            if line.startswith(b"MSG ") or line.startswith(b"HMSG "):
                return self._message(line, deadline)
            if line == b"PING":
                self._send(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise _refusal(line)
            # PONG, +OK, INFO (a cluster's news): nothing to do

    def _message(self, line: bytes, deadline: float) -> Message:
        parts = line.decode().split(" ")
        with_headers = parts[0] == "HMSG"
        sizes = [int(p) for p in parts[-2:]] if with_headers else [0, int(parts[-1])]
        reply = parts[3] if len(parts) == (6 if with_headers else 5) else ""
        body = self._exact(sizes[-1] + 2, deadline)
        if body is None:
            raise EngineUnavailable("NATS stopped in the middle of a message")
        headers = _headers(body[:sizes[0]]) if with_headers else {}
        return Message(parts[1], int(parts[2]), reply, headers, bytes(body[sizes[0]:sizes[-1]]))

    def _line(self, deadline: float) -> bytes | None:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > LINE_MAX:
                raise EngineUnavailable("NATS sent a line too long to be the protocol's")
            if not self._fill(deadline):
                return None
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 2]
        return line

    def _exact(self, size: int, deadline: float) -> bytearray | None:
        while len(self._buffer) < size:
            if not self._fill(max(deadline, time.monotonic() + 5.0)):   # a message begun is read to its end
                return None
        data = self._buffer[:size]
        del self._buffer[:size]
        return data

    def _fill(self, deadline: float) -> bool:
        """More bytes from the server; False at the deadline. A closed connection is EngineUnavailable."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(CHUNK)
        except TimeoutError:
            return False
        except OSError as err:
            raise EngineUnavailable(f"the connection to NATS broke: {err}") from None
        if not data:
            raise EngineUnavailable("NATS closed the connection")
        self._buffer += data
        return True


def connect(url: str, user: str | None, password: str | None, timeout: float = 3.0) -> Connection | None:
    """A connection to the first of the URL's servers that answers; None when nats-py must do it (TLS, websockets).

    A login in the URL wins over `user` and `password`, as with nats-py.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if any("://" in s and not s.startswith("nats://") for s in servers):
        return None

    # Each server of a cluster briefly first, then each again with all the patience there is.
    patience = [(server, min(timeout, HANDSHAKE_TRY)) for server in servers] if len(servers) > 1 else []
    patience += [(server, timeout) for server in servers]

    def dial() -> Connection | None:
        failure: Exception | None = None
        login = (user, password)
        for server, wait in patience:
            where = urlsplit(server if "://" in server else f"nats://{server}")
            if where.username:
                login = (unquote(where.username), unquote(where.password or ""))
            try:
                connection = _handshake(where.hostname or "localhost", where.port or 4222, *login, wait)
            except _NeedsTls:
                return None
            except Refused as refused:   # the login is wrong: every server of a cluster says the same
                reason = str(refused).removeprefix("NATS refused: ")
                raise Refused(f"NATS at {url_to_show(url)} refused the login ({reason}): {LOGIN_REFUSED_HINT}") \
                    from None
            except (OSError, EngineUnavailable) as err:
                failure = err
                continue
            connection._dial = dial
            return connection
        raise EngineUnavailable(f"cannot reach NATS at {url_to_show(url)} ({failure}): is `playbook up` running?")

    return dial()


class _NeedsTls(Exception):
    pass


def _handshake(host: str, port: int, user: str | None, password: str | None, timeout: float) -> Connection:
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        connection = Connection(sock, {})
        line = connection._line(deadline)
        if line is None or not line.startswith(b"INFO "):
            raise EngineUnavailable(f"{host}:{port} is not a NATS server")
        info = json.loads(line[5:])
        if info.get("tls_required"):
            raise _NeedsTls()
        connection.info, connection.max_payload = info, int(info.get("max_payload", connection.max_payload))
        options = {"verbose": False, "pedantic": False, "tls_required": False, "name": "playbook-cli",
                   "lang": "python", "version": "wire", "protocol": 1, "headers": True, "no_responders": True}
        if user is not None:
            options.update(user=user, **{"pass": password or ""})
        sock.sendall(b"CONNECT " + json.dumps(options).encode() + b"\r\nPING\r\n")
        while (line := connection._line(deadline)) != b"PONG":
            if line is None:
                raise EngineUnavailable(f"{host}:{port} did not finish the handshake")
            if line.startswith(b"-ERR"):
                raise _refusal(line)
        return connection
    except BaseException:
        sock.close()
        raise


def _headers(block: bytearray) -> dict[str, str]:
    """`NATS/1.0 404 No Messages\\r\\nKey: value\\r\\n...`: the keys, with the status as `Status`."""
    lines = bytes(block).decode(errors="replace").split("\r\n")
    headers: dict[str, str] = {}
    status = lines[0][len("NATS/1.0"):].strip()
    if status:
        code, _, description = status.partition(" ")
        headers.update(Status=code, Description=description)
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip()] = value.strip()
    return headers


def _refusal(line: bytes) -> Refused:
    return Refused("NATS refused: " + line[5:].decode(errors="replace").strip().strip("'"))
