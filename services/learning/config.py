"""Where the learning service keeps its knowledge: SQLite under $PLAYBOOK_HOME, or PostgreSQL.

Read from the environment once, at the edge: `PLAYBOOK_LEARNING_POSTGRES` (a URL,
`postgresql://user:password@host:5432/dbname?schema=name`) chooses PostgreSQL; otherwise
SQLite files in `PLAYBOOK_LEARNING_DIR` (default `$PLAYBOOK_HOME/learning`). A bad URL
stops the service at start with a sentence saying what is wrong.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from services.errors import PlaybookError


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    dbname: str
    host: str
    user: str
    password: str = ""
    port: int = 5432
    schema: str = ""

    def __repr__(self) -> str:   # never print the password
        return f"PostgresSettings({self.user}@{self.host}:{self.port}/{self.dbname} schema={self.schema or 'public'})"


@dataclass(frozen=True, slots=True)
class LearningConfig:
    directory: Path                          # the SQLite files, when PostgreSQL is not configured
    postgres: PostgresSettings | None = None

    @property
    def backend(self) -> str:
        return "postgres" if self.postgres else "sqlite"

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> LearningConfig:
        """From the environment the edge read, with `home` the engine's ($PLAYBOOK_HOME)."""
        directory = Path(env["PLAYBOOK_LEARNING_DIR"]) if env.get("PLAYBOOK_LEARNING_DIR") else home / "learning"
        url = env.get("PLAYBOOK_LEARNING_POSTGRES")
        return cls(directory=directory.resolve(), postgres=postgres_settings(url) if url else None)


def postgres_settings(url: str) -> PostgresSettings:
    """`postgresql://user:password@host:port/dbname?schema=name` as settings; raises naming what is missing."""
    problem = "PLAYBOOK_LEARNING_POSTGRES must look like postgresql://user:password@host:5432/dbname"
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError as err:
        raise PlaybookError(f"{problem} ({err})") from None
    dbname = unquote(parts.path.lstrip("/"))
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.username or not dbname:
        raise PlaybookError(f"{problem}: the scheme, user, host or database name is missing")
    schema = parse_qs(parts.query).get("schema", [""])[0]
    return PostgresSettings(dbname=dbname, host=parts.hostname, user=unquote(parts.username),
                            password=unquote(parts.password or ""), port=port, schema=schema)
