"""`playbook backup DIR` and `playbook restore DIR`: an engine's records and files, copied while it runs, and
put back into a home where no engine runs (docs/operations.md, "Backup, restore, moving").

A backup is a directory, private (0700, its files 0600: it holds the local admin's token, the NATS logins and
the secrets file): `manifest.json`, one snapshot per stream in `streams/`, the home's files in `home/` and the
files other variables name in `files/`. Made in a `.partial` directory renamed at the end, so a backup that
failed never looks like one.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from services.errors import PlaybookError
from services.settings import Settings

FORMAT = 1
# Not kept: leases say who is alive (a restore settles what was running instead), the probe's and the staged
# uploads' contents last seconds. Every other stream is, including any a later version adds.
SKIPPED = frozenset({"PB_LEASES", "PB_PROBE", "OBJ_PB_UPLOADS"})
# Snapshotted in this order, the playbook texts last: a run or a catalog entry is stored after the text it pins,
# so every text a kept run names is in the backup. Streams not named here come after these.
FIRST = ("PB_RUNS", "PB_CATALOG", "PB_IDENTITY", "PB_ACCESS", "PB_LOGS")
LAST = ("OBJ_PB_PLAYBOOKS",)
# The home's own files (the projections' snapshots and the learning store are rebuilt from the streams).
HOME_FILES = ("credentials/token", "credentials/nats-engine.json", "credentials/nats-client.json",
              "credentials/nats-agent.json", "directory.yaml", "playbooks")
# Files other variables name: kept under files/, put back where the restoring environment's variable says.
NAMED_FILES = {"PLAYBOOK_SECRETS_FILE": "secrets.yaml", "PLAYBOOK_DIRECTORY": "directory.yaml",
               "PLAYBOOK_ERROR_PATTERNS": "error-patterns.yaml", "PLAYBOOK_ERROR_HANDLERS": "error-handlers.yaml"}


async def restore(settings: Settings, source: Path, *, force: bool = False) -> dict[str, Any]:
    """Put the backup in `source` into the settings' home (and NATS_URL's server, if set); what was restored."""
    from app.up import only_up_in   # holds the home's lock: no `playbook up` starts on it meanwhile
    manifest = _manifest(source)
    with only_up_in(settings.home):
        return await _restore(settings, source, manifest, force=force)


async def backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Copy the running engine's streams and files into `target`, a new or empty directory; what was kept."""
    from app import snapshots
    _refuse_used(target)
    partial = target.with_name(target.name + ".partial")
    nc = await _connect(settings, "playbook-backup")   # the engine's own login: only who reads the home has it
    shutil.rmtree(partial, ignore_errors=True)
    _private_dir(partial / "streams")
    try:
        taken_at = datetime.now(timezone.utc).isoformat()
        names = await snapshots.streams(nc)
        streams: dict[str, Any] = {}
        for name in _ordered(n for n in names if n not in SKIPPED):
            streams[name] = await snapshots.snapshot(nc, name, partial / "streams" / f"{name}.snap")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        await nc.close()
    files = _copy_files(settings, partial)
    manifest = {"format": FORMAT, "taken_at": taken_at, "home": str(settings.home), "streams": streams,
                "files": files}
    _write_private(partial / "manifest.json", json.dumps(manifest, indent=1))
    _make_private(partial)
    _put_in_place(partial, target)
    return {"backup": str(target), "taken_at": taken_at, "streams": {n: s["state"]["messages"]
                                                                      for n, s in streams.items()},
            "files": sorted(files)}


async def _connect(settings: Settings, name: str) -> Any:
    """The engine's own NATS login, once: a server that does not answer is said at once (a stale nats.url)."""
    import nats

    from services.errors import EngineUnavailable
    from services.settings import connect_options
    url = settings.engine_url()

    async def quiet(_err: Exception) -> None:   # said once below, not as nats-py's traceback per try
        pass

    try:
        login = settings.nats_login("engine")
    except PermissionError as err:
        raise PlaybookError(f"cannot read the engine's NATS login ({err.filename}): a backup or restore is made as "
                            "the engine's own user, who alone may read $PLAYBOOK_HOME/credentials") from None
    try:
        return await nats.connect(**connect_options(url), name=name, allow_reconnect=False, connect_timeout=5,
                                  max_reconnect_attempts=1, reconnect_time_wait=0.2, error_cb=quiet, **login)
    except (OSError, nats.errors.Error) as err:
        raise EngineUnavailable(f"cannot reach the engine's NATS at {url}: {err or type(err).__name__}") from None


def _refuse_used(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PlaybookError(f"{target} exists and is not empty: give a new directory for the backup")


def _put_in_place(partial: Path, target: Path) -> None:
    if target.exists():
        target.rmdir()
    partial.rename(target)


def _ordered(names: Any) -> list[str]:
    names = set(names)
    middle = sorted(names - set(FIRST) - set(LAST))
    return [n for n in FIRST if n in names] + middle + [n for n in LAST if n in names]


def _copy_files(settings: Settings, partial: Path) -> dict[str, str]:
    """Copy the home's files and those the variables name; what each was, by where it lies in the backup."""
    kept: dict[str, str] = {}
    for relative in HOME_FILES:
        origin = settings.home / relative
        if origin.exists():
            _copy(origin, partial / "home" / relative)
            kept[f"home/{relative}"] = str(origin)
    for variable, name in NAMED_FILES.items():
        value = settings.environ.get(variable)
        if value and Path(value).is_file() and not Path(value).resolve().is_relative_to(settings.home.resolve()):
            _copy(Path(value), partial / "files" / name)
            kept[f"files/{name}"] = variable
    return kept


async def _restore(settings: Settings, source: Path, manifest: dict[str, Any], *, force: bool) -> dict[str, Any]:
    from app import snapshots
    from services.embedded import EmbeddedNats
    from services.identity.nats_users import ensure_nats_users
    home = settings.home
    if not force and settings.nats_url is None and _holds_data(home):
        raise PlaybookError(f"{home} already holds an engine's data (jetstream/ or credentials/token): restore into "
                            "a new PLAYBOOK_HOME, or add --force to replace it")
    placed = _place_files(settings, source, manifest, force=force)
    embedded = None
    if settings.nats_url is None:
        embedded = EmbeddedNats(home, _free_port(), settings.nats_server_bin, config=ensure_nats_users(home))
        settings = _with_url(settings, await embedded.start())
    try:
        nc = await _connect(settings, "playbook-restore")
        try:
            present = set(await snapshots.streams(nc)) & set(manifest["streams"])
            if present and not force:
                raise PlaybookError(f"the NATS server already holds {', '.join(sorted(present))}: restore into an "
                                    "empty one, or add --force to replace them")
            restored: dict[str, int] = {}
            for name, meta in manifest["streams"].items():
                if name in present:
                    await snapshots.delete(nc, name)
                # As many copies as this engine makes: a cluster's backup restores onto one server, and back.
                meta = {**meta, "config": {**meta["config"], "num_replicas": settings.stream_replicas}}
                info = await snapshots.restore(nc, name, source / "streams" / f"{name}.snap", meta)
                restored[name] = info["state"]["messages"]
            settled = await _settle_runs_in_flight(nc, manifest["taken_at"])
        finally:
            await nc.close()
    finally:
        if embedded:
            embedded.stop()
    return {"restored": str(source), "taken_at": manifest["taken_at"], "home": str(home), "streams": restored,
            "files": placed, "paused": settled}


async def _settle_runs_in_flight(nc: Any, taken_at: str) -> list[str]:
    """Runs that were running at the backup are paused, their running attempts recorded interrupted: the old
    engine may have finished them (or still runs them), so nothing runs again until someone resumes the run."""
    from events.commands import PauseRun
    from services.aggregates import run_repository
    from services.domain.run.commands import InterruptStep
    from services.domain.run.decider import decide
    from services.playbook_store import PlaybookStore
    from services.store import EventStore
    store = EventStore(nc)
    runs = run_repository(store, PlaybookStore(nc))
    info = await nc.jetstream().stream_info(store.stream, subjects_filter="pb.run.>")
    run_ids = sorted({subject.split(".")[2] for subject in (info.state.subjects or {})})
    reason = f"restored from a backup taken at {taken_at}; the old engine may have run it: resume when it is stopped"
    paused = []
    for run_id in run_ids:
        run = await runs.get(run_id)
        if run.status not in ("running", "cancelling", "rolling_back"):
            continue
        pause = PauseRun(run_id=run_id, reason=reason, actor="system")
        commands: list[Any] = [pause] if run.status == "running" else []
        for step in run.steps.values():
            for rollback, state, attempt in ((False, step.status, step.attempt.number),
                                             (True, step.rollback.status, step.rollback.attempt)):
                if state == "running":
                    commands.append(InterruptStep(step_id=step.id, attempt=attempt, rollback=rollback,
                                                  reason=f"running when the backup was taken ({taken_at})"))
        if commands and commands[0] is pause:
            paused.append(run_id)
        for command in commands:     # the pause first: the interrupted step then waits for a resume
            await runs.change(run_id, _deciding(decide, command, datetime.now(timezone.utc)))
    return paused


def _deciding(decide: Any, command: Any, at: datetime) -> Any:
    return lambda run: decide(run, command, at)


def _place_files(settings: Settings, source: Path, manifest: dict[str, Any], *, force: bool) -> dict[str, str]:
    """The home's files back in the home; the others where this environment's variable points (else left)."""
    placed: dict[str, str] = {}
    for kept in manifest["files"]:
        origin = source / kept
        if kept.startswith("home/"):
            destination = settings.home / kept.removeprefix("home/")
        else:
            variable = next(v for v, name in NAMED_FILES.items() if kept == f"files/{name}")
            if not settings.environ.get(variable):
                placed[kept] = f"not placed: set {variable} and copy it from the backup"
                continue
            destination = Path(settings.environ[variable])
        if destination.exists() and not force:
            raise PlaybookError(f"{destination} exists: restore into a new home, or add --force to replace it")
        _copy(origin, destination)
        placed[kept] = str(destination)
    return placed


def _holds_data(home: Path) -> bool:
    store = home / "jetstream"
    return (store.exists() and any(store.iterdir())) or (home / "credentials" / "token").exists()


def _manifest(source: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise PlaybookError(f"{source} is not a backup (no readable manifest.json): {err}") from None
    if manifest.get("format") != FORMAT:
        raise PlaybookError(f"{source} is a backup of format {manifest.get('format')!r}; this engine reads {FORMAT}")
    return manifest


def _copy(origin: Path, destination: Path) -> None:
    """A file or a folder, made private on the way: a backup holds credentials and secrets."""
    _private_dir(destination.parent)
    if origin.is_dir():
        shutil.copytree(origin, destination, dirs_exist_ok=True)
        _make_private(destination)
    else:
        _write_private(destination, origin.read_bytes())


def _write_private(path: Path, data: str | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, 0o600)


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _make_private(top: Path) -> None:
    """Every folder 0700, every file 0600 (folders made on the way took the umask)."""
    for path in [top, *top.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def _free_port() -> int:
    from services.embedded import free_port
    return free_port()


def _with_url(settings: Settings, url: str) -> Settings:
    from dataclasses import replace
    return replace(settings, nats_url=url)
