"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temp folder, a Unix socket.

`postgres_server` (session) runs `initdb` and `pg_ctl start` as the `postgres` user (initdb
refuses root) and stops the server afterwards; `postgres_url` (per test) is a fresh, empty
database on it. Without the binaries or the user, tests that use them skip and say why.
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
from pathlib import Path

import pytest


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _as_postgres(*cmd: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        return subprocess.run(["su", "postgres", "-c", " ".join(cmd)], capture_output=True, text=True, timeout=120)
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Path]:
    """The socket folder of a running server; the server and its files go at the end."""
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install 'psycopg[binary]')")
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL tests need Debian's server (apt-get install postgresql): no pg_ctl found")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL tests need the 'postgres' system user (initdb refuses to run as root)")
    root = Path(tempfile.mkdtemp(prefix="animatrix-pg-"))
    if os.geteuid() == 0:
        os.chown(root, user.pw_uid, user.pw_gid)
    data, log = root / "data", root / "log"
    init = _as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    start = _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(log), "-o",
                         f"\"-k {root} -c listen_addresses='' -c max_connections=200 -c fsync=off\"", "start")
    if start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {(start.stderr or start.stdout).strip()[-300:]}")
    try:
        yield root
    finally:
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: Path) -> Iterator[str]:
    """A new empty database on the test server, as the URL the studio takes; dropped after."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=str(postgres_server), user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg://postgres@/{name}?host={postgres_server}"
    with psycopg.connect(host=str(postgres_server), user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
