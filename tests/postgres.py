"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a temp dir, a free port.

One cluster per test session, a fresh database per test. PostgreSQL refuses to run as
root, so as root (CI) the cluster runs as `nobody` in a directory `nobody` owns. Without
the binaries the tests that need it are skipped with the reason, unless
PLAYBOOK_REQUIRE_POSTGRES is set (CI), where that is a failure.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.embedded import free_port

USER = "playbook"


@dataclass(frozen=True)
class Cluster:
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _missing(reason: str) -> None:
    if os.environ.get("PLAYBOOK_REQUIRE_POSTGRES"):
        pytest.fail(f"{reason}, and PLAYBOOK_REQUIRE_POSTGRES is set (CI installs Debian's postgresql package)")
    pytest.skip(f"{reason}: the PostgreSQL variant is skipped (install Debian's postgresql package to run it)")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    bin_dir = binaries()
    if bin_dir is None:
        _missing("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    try:
        import psycopg  # noqa: F401 - needs libpq, which the postgresql package brings
    except ImportError as err:
        _missing(f"psycopg cannot be imported ({err})")
    assert bin_dir is not None
    home = Path(tempfile.mkdtemp(prefix="pb-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    port = free_port()
    data, log = home / "data", home / "log"

    def pg(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=60)

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "start", "-o",
           f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200")
        yield Cluster(port)
    except subprocess.CalledProcessError as err:
        pytest.fail(f"the throwaway PostgreSQL did not start: {err.stderr.decode(errors='replace')[-2000:]}")
    finally:
        if data.exists():
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> Iterator[str]:
    """A fresh database in the session's cluster; its URL, as PLAYBOOK_LEARNING_POSTGRES takes it."""
    import psycopg
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_cluster.url(name)
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
