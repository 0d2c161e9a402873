"""The engine's configuration: read from the environment once, at the process edge, then passed down.

Only the process edges (the CLI, `python -m services.<name>`, `python -m ui.web`, the
root in `app/`) call `Settings.from_environ`; everything below receives a Settings.
The secret source is the one part that reads variables later, when a step asks for a
secret: it is built here, over the edge's environment, and passed in like the rest.

Engine error patterns and handlers (`$PLAYBOOK_ERROR_PATTERNS`, `$PLAYBOOK_ERROR_HANDLERS`)
are YAML lists, read when a service first needs them: a bad file stops that service at
start, naming the file and what is wrong.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import nats
import yaml
from nats.aio.client import Client as NATS

from events.playbook import ErrorHandler
from services.domain.classify import Pattern
from services.errors import PlaybookError
from services.identity.nats_users import NatsRole, nats_login
from services.secrets import SecretSource

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"   # the bundled playbooks
DEFAULT_NATS_PORT = 4222
T = TypeVar("T")

log = logging.getLogger("playbook")


@dataclass(frozen=True, kw_only=True)
class Settings:
    home: Path = Path(".playbook")                 # $PLAYBOOK_HOME: the embedded server's data, snapshots
    nats_url: str | None = None                    # $NATS_URL; None: the URL file the embedded server leaves
    ack_wait: float = 30.0                         # $PLAYBOOK_ACK_WAIT: silence before work goes to another replica
    max_deliver: int = 10                          # $PLAYBOOK_MAX_DELIVER: tries of a message before it is abandoned
    lease_seconds: float = 5.0                     # $PLAYBOOK_LEASE_SECONDS: an executor's silence before takeover
    log_level: str = "INFO"                        # $PLAYBOOK_LOG
    directory: Path | None = None                  # $PLAYBOOK_DIRECTORY, else home/directory.yaml
    library: tuple[Path, ...] = ()                 # $PLAYBOOK_LIBRARY, else home/playbooks and the examples
    error_patterns_file: Path | None = None        # $PLAYBOOK_ERROR_PATTERNS
    error_handlers_file: Path | None = None        # $PLAYBOOK_ERROR_HANDLERS
    secrets: SecretSource = field(default_factory=SecretSource)
    # The edge's environment, for what hands variables on to step processes (the process rules)
    # or reads its own (the learning store's location); nothing else reads it.
    environ: Mapping[str, str] = field(default_factory=dict)
    nats_port: int = DEFAULT_NATS_PORT             # $PLAYBOOK_NATS_PORT, for the embedded server
    nats_server_bin: str | None = None             # $NATS_SERVER_BIN
    http_port: int = 8080                          # $PLAYBOOK_HTTP_PORT: the dashboard of `playbook up`
    web_host: str = "127.0.0.1"                    # $PLAYBOOK_WEB_HOST: `python -m ui.web`
    web_port: int = 8080                           # $PLAYBOOK_WEB_PORT: `python -m ui.web`
    user: str | None = None                        # $PLAYBOOK_USER: the local admin `playbook up` makes (else login)
    token: str | None = None                       # $PLAYBOOK_TOKEN: the CLI's API token (else the local admin's)
    # $PLAYBOOK_WEB_HOSTS: the names the web answers to (the Host header), beside loopback; `*` for any.
    web_hosts: tuple[str, ...] = ()
    web_origins: tuple[str, ...] = ()              # $PLAYBOOK_WEB_ORIGINS: other origins that may send changes
    metrics_access: str = "viewer"                 # $PLAYBOOK_METRICS: "viewer" (a token) or "open" for /metrics

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        def path(name: str) -> Path | None:
            return Path(environ[name]) if environ.get(name) else None

        def number(name: str, default: float, kind: type[Any]) -> Any:
            text = environ.get(name) or str(default)
            try:
                return kind(text)
            except ValueError:
                raise PlaybookError(f"${name} must be a number, got {text!r}") from None

        library = environ.get("PLAYBOOK_LIBRARY", "")
        return cls(
            home=Path(environ.get("PLAYBOOK_HOME") or ".playbook").resolve(),
            nats_url=environ.get("NATS_URL") or None,
            ack_wait=number("PLAYBOOK_ACK_WAIT", 30.0, float),
            max_deliver=number("PLAYBOOK_MAX_DELIVER", 10, int),
            lease_seconds=number("PLAYBOOK_LEASE_SECONDS", 5.0, float),
            log_level=environ.get("PLAYBOOK_LOG") or "INFO",
            directory=path("PLAYBOOK_DIRECTORY"),
            library=tuple(Path(part) for part in library.split(os.pathsep) if part),
            error_patterns_file=path("PLAYBOOK_ERROR_PATTERNS"),
            error_handlers_file=path("PLAYBOOK_ERROR_HANDLERS"),
            secrets=SecretSource(environ),   # reads PLAYBOOK_SECRET_* when asked
            environ=environ,
            nats_port=number("PLAYBOOK_NATS_PORT", DEFAULT_NATS_PORT, int),
            nats_server_bin=environ.get("NATS_SERVER_BIN") or None,
            http_port=number("PLAYBOOK_HTTP_PORT", 8080, int),
            web_host=environ.get("PLAYBOOK_WEB_HOST") or "127.0.0.1",
            web_port=number("PLAYBOOK_WEB_PORT", 8080, int),
            user=environ.get("PLAYBOOK_USER") or None,
            token=(environ.get("PLAYBOOK_TOKEN") or "").strip() or None,
            web_hosts=_names(environ.get("PLAYBOOK_WEB_HOSTS", "")),
            web_origins=_names(environ.get("PLAYBOOK_WEB_ORIGINS", "")),
            metrics_access=_choice(environ, "PLAYBOOK_METRICS", ("viewer", "open")),
        )

    @property
    def directory_path(self) -> Path:
        """Who is in which group: a YAML file `users: {name: [groups]}`."""
        return self.directory or self.home / "directory.yaml"

    @property
    def library_folders(self) -> tuple[Path, ...]:
        """Where stored playbooks are found, the first holding an id winning."""
        return self.library or (self.home / "playbooks", EXAMPLES)

    @functools.cached_property
    def error_patterns(self) -> list[Pattern]:
        """Engine patterns, tried before the built-in classification table."""
        return _read_list(self.error_patterns_file, "PLAYBOOK_ERROR_PATTERNS", "error patterns", list[Pattern])

    @functools.cached_property
    def error_handlers(self) -> list[ErrorHandler]:
        """Engine error handlers, written as in a playbook and tried after the playbook's own."""
        return _read_list(self.error_handlers_file, "PLAYBOOK_ERROR_HANDLERS", "error handlers", list[ErrorHandler])

    def engine_url(self) -> str:
        """Where the engine's NATS is: `$NATS_URL`, else the embedded server's URL file."""
        if self.nats_url:
            return self.nats_url
        url_file = self.home / "nats.url"
        if url_file.exists():
            return url_file.read_text().strip()
        raise PlaybookError(f"no NATS server: set NATS_URL, or start the engine with `playbook up` "
                            f"(looked for {url_file})")

    def nats_login(self, role: NatsRole) -> dict[str, str]:
        """The user and password of `role` from `$PLAYBOOK_HOME/credentials`, unless the URL carries its own."""
        url = self.engine_url()
        if "@" in url.partition("://")[2]:
            return {}
        login = nats_login(role, self.home)
        return login.connect_options() if login else {}

    async def connect(self, name: str, role: NatsRole = "engine") -> NATS:
        """A connection to the engine's NATS, as `role`, that reconnects for as long as the process lives."""
        async def on_error(err: Exception) -> None:
            log.warning("NATS: %s", err)

        return await nats.connect(self.engine_url(), name=name, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.5, error_cb=on_error, **self.nats_login(role))


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (environ.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise PlaybookError(f"${name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


def _read_list(path: Path | None, variable: str, what: str, kind: type[list[T]]) -> list[T]:
    if path is None:
        return []
    try:
        items: list[T] = msgspec.convert(yaml.safe_load(path.read_text()) or [], kind)
        return items
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as err:
        raise PlaybookError(f"{path} (${variable}): cannot read the {what}: {err}") from err

