"""A throwaway PostgreSQL cluster for the tests and benchmarks: real server, no mock.

:func:`start` runs Debian's ``initdb`` into a fresh temporary directory and
``pg_ctl`` on a free loopback port (installed by ``tools/install-postgresql.sh``,
which ``make test`` and ``.ci/run`` call).  PostgreSQL refuses to run as root,
so under root the cluster belongs to the unprivileged user ``nobody``.  Each
test gets a database of its own (:meth:`Cluster.new_database`).  Durability
settings are off (``fsync``): the tests kill clients, never the server.

Without the binaries :func:`start_or_skip` skips, except under CI (``CI``
set), where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_UNPRIVILEGED = "nobody"
_counter = itertools.count(1)


def bindir() -> Path | None:
    """The newest installed server's binaries, or ``None``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    bin: Path
    data: Path
    port: int
    user: str | None  # the OS user it runs as (None: this one)
    databases: list[str] = field(default_factory=list)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement (autocommit); its rows, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as db:
            cursor = db.execute(statement.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; its URL."""
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        self.sql(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(Exception):
            self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            _run(self, "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.data.parent, ignore_errors=True)


def _run(cluster_or_bin: Cluster | Path, tool: str, *args: str, user: str | None = None) -> str:
    if isinstance(cluster_or_bin, Cluster):
        bin_dir, user = cluster_or_bin.bin, cluster_or_bin.user
    else:
        bin_dir = cluster_or_bin
    command = [str(bin_dir / tool), *args]
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def start() -> Cluster:
    """initdb + pg_ctl start on a free port; raises ``FileNotFoundError`` without binaries."""
    bin_dir = bindir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    user = _UNPRIVILEGED if os.geteuid() == 0 else None
    top = Path(tempfile.mkdtemp(prefix="replicator-pg-"))
    data = top / "data"
    if user is not None:  # the server's files belong to the unprivileged user
        entry = pwd.getpwnam(user)
        os.chown(top, entry.pw_uid, entry.pw_gid)
    try:
        _run(bin_dir, "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-sync", user=user)  # fmt: skip
        port = _free_port()
        options = " ".join(
            [
                f"-p {port}",
                f"-k {top}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=300",
            ]
        )
        cluster = Cluster(bin_dir, data, port, user)
        _run(cluster, "pg_ctl", "-D", str(data), "-l", str(top / "server.log"), "-o", options,
             "-w", "-t", "60", "start")  # fmt: skip
    except BaseException:
        shutil.rmtree(top, ignore_errors=True)
        raise
    return cluster


def start_or_skip() -> Cluster:
    """:func:`start`, or skip the test (fail under CI) when PostgreSQL is missing."""
    import pytest

    try:
        return start()
    except FileNotFoundError as exc:
        message = f"{exc}; tools/install-postgresql.sh installs it"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI must not skip the PostgreSQL tests")
        pytest.skip(message)
