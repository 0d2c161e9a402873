"""NATS users: only the engine writes events; clients send commands and read; agents only read.

NATS has no notion of people, so per-person authority stays in the engine (tokens,
grants). These users keep the event streams writable by the engine alone:

- engine: publishes events (`pb.run.>`, `pb.circuit.>`, `pb.identity.>`, `pb.catalog.>`, timers,
  output), writes the playbook buckets, uses the whole JetStream API and answers commands.
- client: sends commands (`pb.cmd.>`), reads PB_RUNS and PB_LOGS through consumers it names, the
  feed (`pb.feed.>`, which only the server publishes) and live output; reads the catalog and the
  playbooks runs pin (direct gets); stages large playbooks in PB_UPLOADS (write only: uploads have
  unguessable names no one else can read); asks the learning service what it learned, and to
  learn again; asks a web server for the audit.
- agent: reads PB_RUNS and PB_LOGS through consumers it names, the feed and live output, the
  catalog and the pinned playbooks, and asks what was learned; nothing else.
- executor: an executor in a process of its own (`python -m services.executor`), which runs operators' shell
  commands: the run events it writes (its steps' starts and outcomes, on `pb.run.*.<Type>`), the circuit events
  of its calls (no reset), leases,
  output lines, its own consumer; no other event (no gate approved, no run started or steered), no token, no
  stream made or changed, no one's commands. The run service advances the run after its steps' outcomes.
- web: the web server of a split deployment (`python -m ui.web`), which faces HTTP: what a client may, and
  reads PB_IDENTITY and PB_ACCESS (its token registry, the audit) and the engine's consumers' state (/metrics);
  records the refusals it decides (`pb.identity.refused.<door>.AccessRefused`: the door a label, never a
  proof); answers `pb.projections.rebuild` and `pb.audit` (on the asker's inbox alone). It writes no event and
  no token: dashboard sessions are opened and closed by the identity service, at the web's request.

Readers create consumers only in the named form (`CONSUMER.CREATE.PB_RUNS.<name>`): the
unnamed form takes the name from the request body, and with it anyone could rewrite an
engine consumer (say, point the executor's deliveries at their own inbox). The engine's
durable consumers are denied by name on every subject that reaches them. Passwords are
256 random bits in `credentials/` (0600); the server listens on loopback only, so they
never leave the machine. For a NATS server elsewhere, see `reference_config` and
docs/security.md (nkeys or bcrypt hashes and TLS there). A cluster's servers each get a
configuration of their own (`cluster_node_config`): the same users, a name, a store and
routes to every server of the cluster.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from events import subjects
from services.identity.credentials import NatsLogin, NatsRole, credentials_dir, nats_login, write_secret
from services.leases import LEASE_STREAM, LEASE_SUBJECTS

ROLES: tuple[NatsRole, ...] = ("engine", "executor", "web", "client", "agent")
# Who logs in as each role (docs/configuration.md is written from this).
ROLE_HOLDERS: dict[NatsRole, str] = {
    "engine": "every engine service but the executor (`python -m services.<name>`), and `playbook up` (all of them "
              "in one process, with the dashboard it serves)",
    "executor": "an executor alone (`python -m services.executor`, compose's `executor`): its steps' events, "
                "leases, output; no other event, no token, no stream",
    "web": "the web server alone (`python -m ui.web`, compose's `web`): commands and reads, no event, no token, "
           "no stream",
    "client": "the CLI and `playbook mcp`: commands and reads",
    "agent": "a read-only agent: reads",
}
# The durable consumers the engine's services create on PB_RUNS; no reader may touch them.
ENGINE_CONSUMERS = ("advancer", "executor", "approval", "resilience", "abandoned")
SERVER_CONFIG = "nats-server.conf"
API = "$JS.API"


def user_name(role: NatsRole) -> str:
    return f"pb-{role}"


def _direct_reads(*streams: str) -> list[str]:
    """Reading these streams by direct get only (the catalog, the playbooks bucket): no consumer needed."""
    return [subject for stream in streams for subject in (f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>")]


def _consumers_of_own(*streams: str, delete: bool = True) -> list[str]:
    """Making, reading and (with `delete`) removing consumers one names on these streams (ordered ones too), and
    their info. Without `delete`, ordered consumers only: they go by themselves once no one listens."""
    return [subject for stream in streams for subject in (
        f"{API}.STREAM.INFO.{stream}", f"{API}.CONSUMER.CREATE.{stream}.*", f"{API}.CONSUMER.CREATE.{stream}.*.>",
        f"{API}.CONSUMER.INFO.{stream}.*", *([f"{API}.CONSUMER.DELETE.{stream}.*"] if delete else []),
        f"$JS.FC.{stream}.>")]


def _reader_publish(*, engine_consumer_info: bool = False) -> tuple[list[str], list[str]]:
    """What reading PB_RUNS and PB_LOGS through one's own consumers needs, and the engine's consumers denied (but
    their info, with `engine_consumer_info`: the web's /metrics tells whether each service takes its work)."""
    allow = [f"{API}.INFO", f"{API}.STREAM.NAMES"]
    for stream in (subjects.RUNS_STREAM, subjects.LOGS_STREAM):
        allow += [*_consumers_of_own(stream), f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>",
                  f"{API}.CONSUMER.MSG.NEXT.{stream}.*", f"$JS.ACK.{stream}.>"]
    stream = subjects.RUNS_STREAM
    verbs = ("CREATE", "DELETE", "PAUSE", "UNPIN") if engine_consumer_info else ("*",)
    deny = [subject for name in ENGINE_CONSUMERS for subject in (
        *(f"{API}.CONSUMER.{verb}.{stream}.{name}" for verb in verbs), f"{API}.CONSUMER.CREATE.{stream}.{name}.>",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{name}", f"$JS.ACK.{stream}.{name}.>")]
    # Spelled out although never allowed: events, timers, identity and output lines are the engine's alone,
    # and no one else may answer on an inbox (a forged reply).
    deny += [subjects.RUN_SUBJECTS, subjects.CIRCUIT_SUBJECTS, subjects.TIMER_SUBJECTS, subjects.IDENTITY_SUBJECTS,
             subjects.CATALOG_SUBJECTS, subjects.object_subjects(subjects.PLAYBOOKS_BUCKET),
             subjects.FEED_SUBJECTS, subjects.OUTPUT_SUBJECTS, "_INBOX.>"]
    allow += _direct_reads(subjects.CATALOG_STREAM, subjects.object_stream(subjects.PLAYBOOKS_BUCKET))
    return allow, deny


def _web_permissions() -> dict:
    """The web server's: a client's commands and reads, its token registry and audit (PB_IDENTITY and PB_ACCESS
    read), refusals at its own doors, answers to what it serves; no event, no token, no stream."""
    allow, deny = _reader_publish(engine_consumer_info=True)
    # Refusal records only: the rest of pb.identity (tokens, backups) stays denied.
    deny = [subject for subject in deny if subject != subjects.IDENTITY_SUBJECTS]
    deny += [subjects.TOKEN_SUBJECTS, subjects.BACKUP_SUBJECTS]
    allow += [subjects.COMMAND_SUBJECTS, subjects.LEARNING_INSIGHTS, subjects.LEARNING_STATUS, subjects.PROBE_SUBJECT,
              # Every door's refusals: it answers NATS requests too (audit, rebuild), under the door the asker names.
              subjects.object_subjects(subjects.UPLOADS_BUCKET), subjects.access_refused("*"),
              # Ordered consumers only: deleting none, it stops no other process's token registry.
              *_consumers_of_own(subjects.IDENTITY_STREAM, subjects.ACCESS_STREAM, delete=False),
              f"{API}.STREAM.INFO.{subjects.CATALOG_STREAM}"]    # there before it serves (services/readiness.py)
    return {"publish": {"allow": allow, "deny": deny},
            "subscribe": {"allow": ["_INBOX.>", subjects.FEED_SUBJECTS, subjects.OUTPUT_SUBJECTS,
                                    subjects.PROJECTIONS_REBUILD, subjects.AUDIT]},
            # Replies to the requests it received (a rebuild, an audit), on their inboxes only: `_INBOX.>` stays
            # denied, so it forges no other answer.
            "allow_responses": True}


# The run events an executor writes (services/executor: its steps' starts and outcomes, a step scheduled again when
# its holder went before starting it, a delivery it gave up on), and nothing else: pb-executor may publish these.
EXECUTOR_EVENTS = ("StepStarted", "StepSucceeded", "StepFailed", "StepScheduled", "StepRollbackStarted",
                   "StepRolledBack", "StepRollbackFailed", "StepRollbackScheduled", "MessageAbandoned")
# And the circuit events it writes around the calls it makes (a reset is an admin's command, the run service's).
EXECUTOR_CIRCUIT_EVENTS = ("CircuitCallFailed", "CircuitCallSucceeded", "CircuitOpened", "CircuitHalfOpened",
                           "CircuitTrialStarted", "CircuitClosed")
EXECUTOR_STREAMS = (subjects.RUNS_STREAM, LEASE_STREAM)    # where it makes consumers (its own, and ordered ones)


def _executor_permissions() -> dict:
    """An executor alone: its events, circuits, leases and output lines; reading runs, leases and the playbooks the
    runs pin; its own durable consumer. No other event, no token, no stream's change, no command, no answer."""
    runs = subjects.RUNS_STREAM
    allow = [*(subjects.events_of_type(name) for name in EXECUTOR_EVENTS),
             *(f"{subjects.PREFIX}.circuit.*.{name}" for name in EXECUTOR_CIRCUIT_EVENTS),
             LEASE_SUBJECTS, subjects.OUTPUT_SUBJECTS,
             f"{API}.INFO", f"{API}.STREAM.NAMES", f"{API}.STREAM.INFO.{subjects.LOGS_STREAM}",
             f"{API}.STREAM.INFO.{subjects.object_stream(subjects.PLAYBOOKS_BUCKET)}",
             *_consumers_of_own(*EXECUTOR_STREAMS, delete=False),
             *_direct_reads(runs, LEASE_STREAM, subjects.object_stream(subjects.PLAYBOOKS_BUCKET)),
             f"{API}.CONSUMER.DURABLE.CREATE.{runs}.executor", f"$JS.ACK.{runs}.executor.>"]
    others = [name for name in ENGINE_CONSUMERS if name != "executor"]
    deny = [subject for name in others for subject in (
        f"{API}.CONSUMER.CREATE.{runs}.{name}", f"{API}.CONSUMER.CREATE.{runs}.{name}.>")]
    deny += ["_INBOX.>"]     # it answers no request: no reply of its is anyone's answer
    return {"publish": {"allow": allow, "deny": deny},
            "subscribe": {"allow": ["_INBOX.>", f"_pb.deliver.{runs}.executor"]}}


def permissions(role: NatsRole) -> dict:
    """The role's publish and subscribe permissions, as nats-server reads them."""
    if role == "engine":
        # The feed is the server's own republishing of stored events: not even the engine writes there.
        return {"publish": {"allow": [f"{subjects.PREFIX}.>", "$JS.>", "_INBOX.>",
                                      subjects.object_subjects(subjects.PLAYBOOKS_BUCKET),
                                      subjects.object_subjects(subjects.UPLOADS_BUCKET)],
                            "deny": [subjects.FEED_SUBJECTS]},
                # Messages the server gave up delivering to a service: the run service records them (MessageAbandoned).
                "subscribe": {"allow": [f"{subjects.PREFIX}.>", "_pb.>", "_INBOX.>",
                                        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{subjects.RUNS_STREAM}.*"]}}
    if role == "web":
        return _web_permissions()
    if role == "executor":
        return _executor_permissions()
    allow, deny = _reader_publish()
    learned = [subjects.LEARNING_INSIGHTS, subjects.LEARNING_STATUS]   # what past runs taught: read-only answers
    watching = ["_INBOX.>", subjects.FEED_SUBJECTS, subjects.OUTPUT_SUBJECTS]   # the feed and live output lines
    if role == "client":
        return {"publish": {"allow": [subjects.COMMAND_SUBJECTS, subjects.PROJECTIONS_REBUILD, subjects.AUDIT, *learned,
                                      subjects.LEARNING_REBUILD, subjects.object_subjects(subjects.UPLOADS_BUCKET),
                                      *allow], "deny": deny},
                "subscribe": {"allow": watching}}
    return {"publish": {"allow": [*learned, *allow], "deny": deny}, "subscribe": {"allow": watching}}


def _render(value: object, indent: str) -> str:
    """NATS configuration syntax, one entry per line: readable, and diffable in config/."""
    inner = indent + "  "
    if isinstance(value, dict):
        return "{\n" + "".join(f"{inner}{key}: {_render(item, inner)}\n" for key, item in value.items()) + indent + "}"
    if isinstance(value, list):
        return "[\n" + "".join(f"{inner}{_render(item, inner)}\n" for item in value) + indent + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if text.startswith("$PB_") else json.dumps(text)   # an environment placeholder stays bare


def _users_block(passwords: dict[NatsRole, str]) -> str:
    users = [{"user": user_name(role), "password": passwords[role], "permissions": permissions(role)}
             for role in ROLES]
    return "authorization " + _render({"users": users}, "") + "\n"


def server_config(logins: dict[NatsRole, NatsLogin], max_store: int | None = None) -> str:
    """The embedded server's users and JetStream storage; the command line gives it the port and the store."""
    header = "# Generated by `playbook up` from services/identity/nats_users.py; rewritten on every start.\n"
    storage = f"jetstream {{ max_file_store: {max_store} }}\n" if max_store else ""
    return header + storage + _users_block({role: login.password for role, login in logins.items()})


def reference_config() -> str:
    """A server configuration for an external NATS: the same users, passwords from the environment."""
    placeholders = _placeholders()
    return (
        "# Playbook Engine: reference nats-server configuration for an external NATS (docs/security.md).\n"
        "# Generated from services/identity/nats_users.py (tests keep it equal): change that, not this.\n"
        "# Passwords come from the environment: PB_ENGINE_PASSWORD, PB_EXECUTOR_PASSWORD, PB_WEB_PASSWORD,\n"
        "# PB_CLIENT_PASSWORD, PB_AGENT_PASSWORD\n"
        "# (for the server, bcrypt hashes from `nats server passwd` are better; the engine needs the clear text).\n"
        "listen: 0.0.0.0:4222\n"
        "jetstream { store_dir: /data }\n"
        "# tls { cert_file: /certs/server.pem, key_file: /certs/server-key.pem }   # anything beyond one host\n"
        + _users_block(placeholders)
    )


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One server of a JetStream cluster: its name, where others reach it, where it keeps its store."""

    name: str                     # server_name, and its host name in compose
    host: str = "127.0.0.1"       # where clients and the other servers reach it
    port: int = 4222              # clients
    cluster_port: int = 6222      # the other servers (routes)
    monitor_port: int = 8222      # /healthz?js-enabled-only=true
    store_dir: str = "/data"
    max_store: int | None = None  # its JetStream storage: nats-server's default (75% of the disk's free space)
    listen_host: str = ""         # where it listens, if not at `host` (0.0.0.0 in a container)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"


CLUSTER_NAME = "pb"


ROUTE_USER = "pb-route"


def cluster_node_config(node: ClusterNode, nodes: Sequence[ClusterNode], passwords: dict[NatsRole, str],
                        header: str = "", route_password: str | None = None) -> str:
    """A cluster server's configuration: the users, JetStream in its own store, routes to every server. With
    `route_password`, a server joins only with the route login: without one, any user of the machine may
    join as a server and see and publish everything, past the users' permissions."""
    listen = node.listen_host or node.host
    login = f"{ROUTE_USER}:{route_password}@" if route_password else ""
    routes = _render([f"nats-route://{login}{peer.host}:{peer.cluster_port}" for peer in nodes], "  ")
    route_auth = (f"  authorization {{ user: {json.dumps(ROUTE_USER)}, password: {json.dumps(route_password)} }}\n"
                  if route_password else "")
    return (
        header
        + f"server_name: {json.dumps(node.name)}\n"
        + f"listen: {json.dumps(f'{listen}:{node.port}')}\n"
        + f"http: {json.dumps(f'127.0.0.1:{node.monitor_port}')}\n"   # monitoring has no login: this host only
        + f"jetstream {{ store_dir: {json.dumps(node.store_dir)}"
        + (f", max_file_store: {node.max_store} }}\n" if node.max_store else " }\n")
        + f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {json.dumps(f'{listen}:{node.cluster_port}')}\n"
        + route_auth + f"  routes: {routes}\n}}\n"
        + _users_block(passwords)
    )


def cluster_configs(home: Path, nodes: Sequence[ClusterNode]) -> list[Path]:
    """The embedded cluster's server configurations, in `credentials/` (they hold passwords); one per node."""
    from secrets import token_urlsafe
    logins = ensure_logins(home)
    route_password = token_urlsafe(32)      # new on every start: every server's configuration is written anew
    header = "# Generated by `playbook up --cluster` from services/identity/nats_users.py; rewritten on every start.\n"
    return [write_secret(home, f"nats-{node.name}.conf", cluster_node_config(
        node, nodes, {role: login.password for role, login in logins.items()}, header, route_password))
        for node in nodes]


REFERENCE_CLUSTER = tuple(ClusterNode(f"nats-{n}", host=f"nats-{n}", listen_host="0.0.0.0") for n in (1, 2, 3))


def reference_cluster_config(node: ClusterNode) -> str:
    """compose.yaml's cluster: three servers, the same users, passwords from the environment."""
    header = ("# Playbook Engine: one server of compose.yaml's 3-node JetStream cluster (docs/security.md).\n"
              "# Generated from services/identity/nats_users.py (tests keep it equal): change that, not this.\n"
              "# Passwords come from the environment: PB_ENGINE_PASSWORD, PB_EXECUTOR_PASSWORD, PB_WEB_PASSWORD,\n"
              "# PB_CLIENT_PASSWORD, PB_AGENT_PASSWORD.\n"
              "# Beyond one host, add TLS to the client and cluster blocks.\n")
    return cluster_node_config(node, REFERENCE_CLUSTER, _placeholders(), header)


def password_variable(role: NatsRole) -> str:
    """Where a reference configuration (compose's, an external server's) takes the role's password from."""
    return f"PB_{role.upper()}_PASSWORD"


def _placeholders() -> dict[NatsRole, str]:
    return {role: f"${password_variable(role)}" for role in ROLES}


def ensure_logins(home: Path) -> dict[NatsRole, NatsLogin]:
    """Each role's login, made once, then kept in `credentials/nats-<role>.json`."""
    from secrets import token_urlsafe   # the engine's start only: a CLI reading its login needs no randomness
    logins = {}
    for role in ROLES:
        logins[role] = nats_login(role, home) or NatsLogin(user_name(role), token_urlsafe(32))
        write_secret(home, f"nats-{role}.json", json.dumps({"user": logins[role].user,
                                                            "password": logins[role].password}))
    return logins


def ensure_nats_users(home: Path, max_store: int | None = None) -> Path:
    """Each role's login (made once, then kept) and the server configuration; returns the configuration's path."""
    return write_secret(home, SERVER_CONFIG, server_config(ensure_logins(home), max_store))


def server_config_path(home: Path) -> Path:
    return credentials_dir(home) / SERVER_CONFIG
