"""`playbook backup DIR`: an engine's records and files, copied while it runs (docs/operations.md, "Backup,
restore, moving"); `app/restore.py` puts them back.

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
HOME_FILES = ("credentials/token", "credentials/nats-engine.json", "credentials/nats-executor.json",
              "credentials/nats-web.json",
              "credentials/nats-client.json", "credentials/nats-agent.json", "directory.yaml", "playbooks")
# Files other variables name: kept under files/, put back where the restoring environment's variable says.
NAMED_FILES = {"PLAYBOOK_SECRETS_FILE": "secrets.yaml", "PLAYBOOK_DIRECTORY": "directory.yaml",
               "PLAYBOOK_ERROR_PATTERNS": "error-patterns.yaml", "PLAYBOOK_ERROR_HANDLERS": "error-handlers.yaml"}


async def backup(settings: Settings, target: Path) -> dict[str, Any]:
    """Copy the running engine's streams and files into `target`, a new or empty directory; what was kept."""
    from app import snapshots
    where = _unused(target)
    partial = target.with_name(target.name + ".partial")
    nc = await connect(settings, "playbook-backup")   # the engine's own login: only who reads the home has it
    shutil.rmtree(partial, ignore_errors=True)
    private_dir(partial / "streams")
    try:
        taken_at = datetime.now(timezone.utc).isoformat()
        names = await snapshots.streams(nc)
        streams: dict[str, Any] = {}
        for name in _ordered(n for n in names if n not in SKIPPED):
            streams[name] = await snapshots.snapshot(nc, name, partial / "streams" / f"{name}.snap")
        files = _copy_files(settings, partial)
        manifest = {"format": FORMAT, "taken_at": taken_at, "home": str(settings.home), "streams": streams,
                    "files": files}
        write_private(partial / "manifest.json", json.dumps(manifest, indent=1))
        make_private(partial)
        counts = {name: stream["state"]["messages"] for name, stream in streams.items()}
        # Recorded before it is in place: no copy goes unrecorded.
        await _record(nc, where, counts, sorted(files))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        await nc.close()
    _put_in_place(partial, target)
    return {"backup": str(target), "taken_at": taken_at, "streams": counts, "files": sorted(files)}


async def _record(nc: Any, target: str, streams: dict[str, int], files: list[str]) -> None:
    """The audit's record of the copy (PB_ACCESS), for admins: it holds every credential and secret."""
    import msgspec

    from events import subjects
    from events.identity import BackupTaken
    from services.owners import user_name
    taken = BackupTaken(at=datetime.now(timezone.utc), actor=f"local:{user_name(os.geteuid())}",
                        target=target, streams=streams, files=tuple(files))
    await nc.jetstream().publish(subjects.backup_taken(), msgspec.json.encode(taken))


async def connect(settings: Settings, name: str) -> Any:
    """The engine's own NATS login, once: a server that does not answer is said at once (a stale nats.url)."""
    import nats

    from services.errors import EngineUnavailable
    from services.settings import connect_options, url_to_show
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
        raise EngineUnavailable(f"cannot reach the engine's NATS at {url_to_show(url)}: "
                                f"{err or type(err).__name__}") from None


def _unused(target: Path) -> str:
    """The target's absolute path; refused if it holds anything already."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise PlaybookError(f"{target} exists and is not empty: give a new directory for the backup")
    return str(target.resolve())


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
            copy_private(origin, partial / "home" / relative)
            kept[f"home/{relative}"] = str(origin)
    for variable, name in NAMED_FILES.items():
        value = settings.environ.get(variable)
        if value and Path(value).is_file() and not Path(value).resolve().is_relative_to(settings.home.resolve()):
            copy_private(Path(value), partial / "files" / name)
            kept[f"files/{name}"] = variable
    return kept


def copy_private(origin: Path, destination: Path) -> None:
    """A file or a folder, made private on the way: a backup holds credentials and secrets."""
    private_dir(destination.parent)
    if origin.is_dir():
        shutil.copytree(origin, destination, dirs_exist_ok=True)
        make_private(destination)
    else:
        write_private(destination, origin.read_bytes())


def write_private(path: Path, data: str | bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data.encode() if isinstance(data, str) else data)
    os.chmod(path, 0o600)


def private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def make_private(top: Path) -> None:
    """Every folder 0700, every file 0600 (folders made on the way took the umask)."""
    for path in [top, *top.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
