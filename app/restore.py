"""`playbook restore DIR`: a backup (`app/backup.py`) put back into a home where no engine runs, and into its
NATS server; runs that were running when it was taken are paused, so a moved engine never runs a step again on
its own (docs/operations.md, "Backup, restore, moving").
"""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.backup import FORMAT, NAMED_FILES, connect, copy_private
from services.errors import PlaybookError
from services.settings import Settings


async def restore(settings: Settings, source: Path, *, force: bool = False) -> dict[str, Any]:
    """Put the backup in `source` into the settings' home (and NATS_URL's server, if set); what was restored."""
    from app.up import only_up_in   # holds the home's lock: no `playbook up` starts on it meanwhile
    manifest = _manifest(source)
    with only_up_in(settings.home):
        return await _restore(settings, source, manifest, force=force)


async def _restore(settings: Settings, source: Path, manifest: dict[str, Any], *, force: bool) -> dict[str, Any]:
    from app import snapshots
    from services.embedded import EmbeddedNats, free_port
    from services.identity.nats_users import ensure_nats_users
    home = settings.home
    if not force and settings.nats_url is None and _holds_data(home):
        raise PlaybookError(f"{home} already holds an engine's data (jetstream/ or credentials/token): restore into "
                            "a new PLAYBOOK_HOME, or add --force to replace it")
    placed = _place_files(settings, source, manifest, force=force)
    embedded = None
    if settings.nats_url is None:
        embedded = EmbeddedNats(home, free_port(), settings.nats_server_bin, config=ensure_nats_users(home))
        settings = replace(settings, nats_url=await embedded.start())
    try:
        nc = await connect(settings, "playbook-restore")
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
    from events import subjects
    from events.commands import PauseRun
    from services.aggregates import run_repository
    from services.domain.run.commands import InterruptStep
    from services.domain.run.decider import decide
    from services.playbook_store import PlaybookStore
    from services.store import EventStore
    store = EventStore(nc)
    runs = run_repository(store, PlaybookStore(nc))
    # One subject a run (its start), not every event type of every run: a long history is a long answer.
    info = await nc.jetstream().stream_info(store.stream, subjects_filter=subjects.events_of_type("RunStarted"))
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
        copy_private(origin, destination)
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
