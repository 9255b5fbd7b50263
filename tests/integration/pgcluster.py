"""A throwaway PostgreSQL cluster of the machine's own binaries, with settings the shared server lacks.

The machine's server on 5432 is left as it is; a test that needs
``shared_preload_libraries`` (or TLS, or any other server setting) starts its
own cluster in a temporary directory on a free loopback port::

    cluster = pgcluster.start(settings={"shared_preload_libraries": "pg_stat_statements"})
    cluster.dsn()             # postgresql://postgres@127.0.0.1:PORT/postgres
    cluster.stop()            # stops the server and removes the directory

Binaries come from ``PGMCP_TEST_PG_BIN`` or ``/usr/lib/postgresql/15/bin``
(Debian's). initdb refuses to run as root, so as root every command runs as
the ``postgres`` OS user, which owns the temporary directory. The postmaster
starts in its own session: a Ctrl-C of pytest does not stop it behind
``stop``'s back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import PgServer

__all__ = ["Cluster", "available", "free_port", "pg_bin", "start"]

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"


def pg_bin() -> Path:
    return Path(os.environ.get("PGMCP_TEST_PG_BIN") or DEFAULT_BIN)


def available() -> str | None:
    """None when a cluster can be started here, else the reason (for ``pytest.skip``)."""
    if not (pg_bin() / "initdb").exists():
        return f"no PostgreSQL binaries in {pg_bin()} (set PGMCP_TEST_PG_BIN)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run initdb as"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    base: Path
    port: int
    user: str | None
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def server(self) -> PgServer:
        """The cluster as the suite's :class:`PgServer` (for ``running``, ``module_db`` helpers)."""
        return PgServer("127.0.0.1", self.port, "postgres", None, "postgres", "cluster")

    def run(self, command: str, *args: str, timeout: float = 60) -> str:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        done = subprocess.run(
            [str(pg_bin() / command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            check=False,
            start_new_session=True,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    def stop(self) -> None:
        """Stop the server (fast) and remove its directory; a stopped server is not an error."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.run("pg_ctl", "-w", "-t", "30", "-D", str(self.data), "-m", "fast", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


def start(
    settings: dict[str, str] | None = None, *, port: int | None = None, prefix: str = "pgmcp-cluster-"
) -> Cluster:
    """initdb and start a cluster with ``settings`` (``-c name=value``); returns it running.

    Raises:
        RuntimeError: initdb or pg_ctl failed (with their output).
    """
    base = Path(tempfile.mkdtemp(prefix=prefix))
    user = None
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
        user = "postgres"
    wanted = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", **(settings or {})}
    cluster = Cluster(base=base, port=port or free_port(), user=user, settings=wanted)
    try:
        # --no-sync: a throwaway cluster need not survive an OS crash, and initdb is seconds faster.
        cluster.run(
            "initdb",
            "--auth=trust",
            "--encoding=utf8",
            "--no-sync",
            "-U",
            "postgres",
            "-D",
            str(cluster.data),
        )
        # Settings go into postgresql.conf, not onto pg_ctl's command line: values with
        # spaces or commas (shared_preload_libraries lists) need no shell quoting there.
        with (cluster.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {cluster.port}\n")
            conf.write(f"unix_socket_directories = '{cluster.data}'\n")
            for name, value in wanted.items():
                conf.write(f"{name} = '{value}'\n")
        cluster.run(
            "pg_ctl", "-w", "-t", "30", "-D", str(cluster.data), "-l", str(base / "postgres.log"), "start"
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster
