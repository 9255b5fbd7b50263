"""What the session reset at the end of every call costs.

Two figures, variants interleaved round after round so the machine's load falls on all alike:

1. The transaction end on one asyncpg connection (``BEGIN READ ONLY`` + the end, two round
   trips per sample, as a call has them): the bare ``ROLLBACK`` (the floor), the previous
   ``COMMIT; RESET ALL``, and pgmcp's ``db/session.py`` end, with 10 and with 250 statements
   in asyncpg's cache (the prepared-statement check reads them all).
2. ``Executor.query("SELECT 1")`` back to back on a one-connection pool, in-process (no MCP):
   with the real end, and with the end replaced by the previous ``ROLLBACK; RESET ALL`` —
   the call is answered before its end returns, so the cost shows where the next call waits.

    .venv/bin/python benchmarks/bench_session_reset.py [--rounds 15] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Postgres, find_postgres  # noqa: E402

from pgmcp.db import session  # noqa: E402


def backend_cpu(pid: int) -> Callable[[], float]:
    """Seconds of CPU the PostgreSQL backend ``pid`` has used (user + system), if readable."""
    try:
        import psutil

        proc = psutil.Process(pid)
        proc.cpu_times()
    except Exception:
        return lambda: 0.0

    def read() -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    return read


async def interleaved(
    variants: dict[str, Callable[[], Awaitable[Any]]],
    rounds: int,
    calls: int,
    cpu: Callable[[], float] = lambda: 0.0,
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """µs per call of every variant (one sample per round), and the backend's CPU µs per call."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    used: dict[str, float] = dict.fromkeys(variants, 0.0)
    for fn in variants.values():  # warm-up
        for _ in range(50):
            await fn()
    for _ in range(rounds):
        for name, fn in variants.items():
            before = cpu()
            started = time.perf_counter()
            for _ in range(calls):
                await fn()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
            used[name] += cpu() - before
    return samples, {name: total / (rounds * calls) * 1e6 for name, total in used.items()}


def show(
    title: str, samples: dict[str, list[float]], floor: str, cpu: dict[str, float] | None = None
) -> None:
    print(f"\n{title}")
    print(
        f"  {'µs per call':<44} {'median':>8} {'min':>8} {'+median':>8}"
        + (f" {'server CPU':>10}" if cpu else "")
    )
    base = statistics.median(samples[floor])
    for name, values in samples.items():
        median = statistics.median(values)
        line = f"  {name:<44} {median:8.1f} {min(values):8.1f} {median - base:+8.1f}"
        if cpu:
            line += f" {cpu[name]:10.1f}"
        print(line)


async def transaction_ends(dsn: str, rounds: int, calls: int) -> None:
    conn = await asyncpg.connect(dsn, statement_cache_size=300)
    try:

        def variant(end: Callable[[], str]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await conn.execute("BEGIN READ ONLY")
                await conn.execute(end())

            return run

        variants = {
            "BEGIN + ROLLBACK (floor)": variant(lambda: "ROLLBACK"),
            "BEGIN + COMMIT; RESET ALL (previous)": variant(lambda: "COMMIT; RESET ALL"),
            "BEGIN + end without the PREPARE check": variant(
                lambda: session.end_text("ROLLBACK").rsplit(", (SELECT count(*)", 1)[0]
            ),
            "BEGIN + session.end_text (10 cached)": variant(lambda: session.end_text("ROLLBACK")),
        }
        for i in range(10):
            await conn.fetchval(f"SELECT {i} + $1::int", 1)
        cpu = backend_cpu(int(await conn.fetchval("SELECT pg_backend_pid()")))
        small, small_cpu = await interleaved(variants, rounds, calls, cpu)
        for i in range(10, 250):
            await conn.fetchval(f"SELECT {i} + $1::int", 1)
        big, big_cpu = await interleaved(
            {
                "BEGIN + ROLLBACK (floor)": variants["BEGIN + ROLLBACK (floor)"],
                "BEGIN + session.end_text (250 cached)": variant(lambda: session.end_text("ROLLBACK")),
            },
            rounds,
            calls,
            cpu,
        )
        show(
            "transaction end, one connection",
            {**small, **big},
            "BEGIN + ROLLBACK (floor)",
            {**small_cpu, **big_cpu},
        )
    finally:
        await conn.close()


async def executor_calls(db: Postgres, rounds: int, calls: int) -> None:
    from pgmcp.app import open_app
    from pgmcp.config import load_settings

    env = {k.lower(): v for k, v in db.env().items()}
    settings = load_settings(pgmcp_embedded=False, db_pool_size=1, health_check_interval=3600, **env)
    real = session.end_text
    async with open_app(settings) as app:

        async def call() -> None:
            await app.executor.query("default", "SELECT 1")

        async def previous() -> None:
            session.end_text = lambda end: f"{end}; RESET ALL"  # type: ignore[assignment]
            try:
                await app.executor.query("default", "SELECT 1")
            finally:
                session.end_text = real  # type: ignore[assignment]

        samples, _ = await interleaved(
            {"ROLLBACK; RESET ALL (previous reset)": previous, "session reset": call}, rounds, calls
        )
    show(
        "Executor.query('SELECT 1') back to back, pool of 1", samples, "ROLLBACK; RESET ALL (previous reset)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    pg = await find_postgres(embedded=os.environ.get("PGMCP_TEST_EMBEDDED") == "1")
    try:
        print(f"PostgreSQL {pg.version} ({pg.kind}); load average {os.getloadavg()[0]:.2f}")
        await transaction_ends(pg.dsn(), args.rounds, args.calls)
        await executor_calls(pg, args.rounds, args.calls)
    finally:
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
