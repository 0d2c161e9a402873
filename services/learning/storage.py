"""Stores of knowledge, one per generation, and the index saying which generation answers.

A rebuild learns into a fresh generation while the current one still answers, then the
index switches to it in one recorded event and the old one is dropped; a generation left
behind by a crash mid-rebuild is dropped at the next start. Each generation is an
eventsourcing application of its own: a SQLite file, or PostgreSQL tables prefixed with
its name. Settings come from the config object only, never from the process environment.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import Environment, EnvType

from services.errors import PlaybookError
from services.learning.config import LearningConfig

NAMESPACE = uuid.UUID("6f1c2a4e-3b9d-4f57-9a0e-52c1d3b7e8a1")
INDEX = "pb_learning"


def forget(recorder: Any, upto: Sequence[tuple[uuid.UUID, int]], *, including: bool) -> None:
    """Delete each aggregate's records up to a version (that version too when `including`) from a recorder's
    table. What a snapshot holds need not stay beside it: the store is then the size of what is known, not of
    every batch ever learned (eventsourcing has no delete of its own, so it is said here per backend)."""
    datastore, table, below = recorder.datastore, recorder.events_table_name, "<=" if including else "<"
    if type(datastore).__module__ == "eventsourcing.sqlite":
        with datastore.transaction(commit=True) as cursor:
            cursor.executemany(f"DELETE FROM {table} WHERE originator_id = ? AND originator_version {below} ?",
                               [(originator.hex, version) for originator, version in upto])
        return
    from psycopg.sql import SQL, Identifier
    statement = SQL("DELETE FROM {}.{} WHERE originator_id = %s AND originator_version " + below + " %s").format(
        Identifier(datastore.schema), Identifier(table))
    with datastore.transaction(commit=True) as cursor:
        cursor.executemany(statement, list(upto))


class LearningStoreError(PlaybookError):
    """The knowledge store cannot be read or written (unreachable, full, or not ours)."""


class ExplicitEnv(Application):
    """An application configured by the settings it is given, whatever the process environment holds."""

    defaults: dict[str, str] = {}

    def __init__(self, name: str, env: EnvType) -> None:
        self.name = name
        super().__init__(env)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        settings = {**self.defaults, **(env or {})}
        if type(self).is_snapshotting_enabled:
            settings["IS_SNAPSHOTTING_ENABLED"] = "y"
        return Environment(name, settings)


class Generations(Aggregate):
    """Which generation answers, and every generation made and not yet dropped."""

    @staticmethod
    def create_id() -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "generations")

    def __init__(self) -> None:
        self.current = ""
        self.made = 0
        self.kept: list[str] = []

    @event("Made")
    def make(self, name: str) -> None:
        self.made += 1
        self.kept.append(name)

    @event("Switched")
    def switch(self, to: str) -> None:
        self.current = to

    @event("Dropped")
    def drop(self, name: str) -> None:
        self.kept.remove(name)


class Index(ExplicitEnv):
    def generations(self) -> Generations:
        try:
            return self.repository.get(Generations.create_id())
        except AggregateNotFoundError:   # nothing made yet
            return Generations()

    def make(self) -> str:
        generations = self.generations()
        name = f"g{generations.made + 1}"
        generations.make(name)
        self.save(generations)
        return name

    def switch(self, to: str) -> None:
        generations = self.generations()
        generations.switch(to)
        self.save(generations)

    def dropped(self, name: str) -> None:
        generations = self.generations()
        if name in generations.kept:
            generations.drop(name)
            self.save(generations)


class Storage:
    """Opens the index and the generations with the configured backend's settings."""

    def __init__(self, config: LearningConfig) -> None:
        self.config = config
        self.index = Index(INDEX, self.settings(INDEX))

    def settings(self, name: str) -> dict[str, str]:
        postgres = self.config.postgres
        if postgres is None:
            self.config.directory.mkdir(parents=True, exist_ok=True)
            return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(self._file(name)),
                    "SQLITE_LOCK_TIMEOUT": "10"}
        return {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": postgres.dbname,
                "POSTGRES_HOST": postgres.host, "POSTGRES_PORT": str(postgres.port), "POSTGRES_USER": postgres.user,
                "POSTGRES_PASSWORD": postgres.password, "POSTGRES_SCHEMA": postgres.schema,
                "POSTGRES_POOL_SIZE": "2", "POSTGRES_CONNECT_TIMEOUT": "10"}

    def generation_name(self, generation: str) -> str:
        """The application's name: PostgreSQL prefixes its tables with it."""
        return f"{INDEX}_{generation}"

    def drop(self, generation: str) -> None:
        """Delete a generation's data; it must be closed already."""
        name = self.generation_name(generation)
        if self.config.postgres is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._file(name)}{suffix}").unlink(missing_ok=True)
        else:
            from psycopg.sql import SQL, Identifier
            schema = self.config.postgres.schema or "public"
            datastore: Any = self.index.factory.datastore   # type: ignore[attr-defined]
            with datastore.transaction(commit=True) as cursor:
                for table in ("events", "snapshots", "tracking"):
                    cursor.execute(SQL("DROP TABLE IF EXISTS {}.{}").format(
                        Identifier(schema), Identifier(f"{name}_{table}")))
        self.index.dropped(generation)

    def close(self) -> None:
        self.index.close()

    def _file(self, name: str) -> Path:
        return self.config.directory / f"{name}.sqlite"
