"""copy_data of 1,000,000 rows between two databases, beside ``psql … | psql …`` in the same run.

    .venv/bin/python benchmarks/bench_copy.py               # 1,000,000 rows (~1 minute)
    .venv/bin/python benchmarks/bench_copy.py --rows 200000

Creates two scratch databases on the machine's PostgreSQL (127.0.0.1:5432, else the
embedded one): a source table of 4 columns (integer, text, numeric, timestamptz) and an
empty target table of the same shape; drops both at the end. Then, alternately:

* the floor: ``psql -c "COPY (SELECT …) TO STDOUT" | psql -c "COPY t FROM STDIN"``;
* ``copy_data`` through the official MCP client over stdio (``pgmcp serve`` as a
  subprocess), the server's RSS sampled every 5 ms during the call.

Every copy is checked: ``compare_tables`` must say identical, and an md5 over every row,
computed in each database, must match. Prints a Markdown table for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import asyncpg  # noqa: E402
import psutil  # noqa: E402
from common import Postgres, find_postgres, stdio_server  # noqa: E402

DDL = "CREATE TABLE items (id integer PRIMARY KEY, name text, amount numeric(14,2), at timestamptz)"
FILL = """
INSERT INTO items
SELECT g, 'name ' || g || CASE WHEN g % 97 = 0 THEN E'\\ttab\\nline' ELSE '' END,
       CASE WHEN g % 500 = 0 THEN NULL ELSE (g % 100000) / 100.0 + 0.01 END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, {rows}) AS g
"""
QUERY = "SELECT id, name, amount, at FROM items"
DIGEST = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM items AS t"


async def create(pg: Postgres, name: str, sql: list[str]) -> Postgres:
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    db = Postgres(pg.host, pg.port, pg.kind, database=name, user=pg.user, version=pg.version)
    conn = await asyncpg.connect(db.dsn())
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()
    return db


async def drop(pg: Postgres, name: str) -> None:
    admin = await asyncpg.connect(pg.dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fetch(db: Postgres, sql: str) -> Any:
    conn = await asyncpg.connect(db.dsn())
    try:
        return tuple(await conn.fetchrow(sql))
    finally:
        await conn.close()


async def truncate(db: Postgres) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute("TRUNCATE items")
    finally:
        await conn.close()


def psql_pipe(source: Postgres, target: Postgres) -> float | None:
    psql = shutil.which("psql")
    if psql is None:
        return None
    env = {**os.environ, "PGHOST": source.host, "PGPORT": str(source.port), "PGUSER": source.user}
    command = (
        f'{psql} -X -q -d {source.database} -c "COPY ({QUERY}) TO STDOUT" | '
        f'{psql} -X -q -d {target.database} -c "COPY items FROM STDIN"'
    )
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


async def pgmcp_copy(source: Postgres, target: Postgres, log_dir: Path) -> dict[str, Any]:
    # A call with a progressToken is served by the SDK's path (the fast path steps aside for it).
    async with stdio_server(source, log_dir) as srv:
        client = srv.client
        added = await client.call_tool(
            "add_connection",
            {
                "connection_id": "target",
                "host": target.host,
                "port": target.port,
                "database": target.database,
                "user": target.user,
                "ssl_mode": "disable",
            },
        )
        assert not added.is_error, added.content
        proc = psutil.Process(srv.pid)
        before = peak = proc.memory_info().rss
        notes: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            notes.append(progress)

        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, proc.memory_info().rss)
                await asyncio.sleep(0.005)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        result = await client.call_tool(
            "copy_data",
            {
                "source_connection_id": "default",
                "query": QUERY,
                "target_connection_id": "target",
                "target_table": "items",
            },
            progress_callback=on_progress,
        )
        seconds = time.perf_counter() - started
        done.set()
        await sampler
        assert not result.is_error, result.content
        compared = await client.call_tool(
            "compare_tables",
            {
                "source_connection_id": "default",
                "source_table": "items",
                "target_connection_id": "target",
                "target_table": "items",
                "key": "id",
            },
        )
        assert not compared.is_error, compared.content
        return {
            "seconds": seconds,
            "rows": result.structured_content["rows_copied"],
            "rss_growth_mb": (peak - before) / 2**20,
            "progress_notifications": len(notes),
            "identical": compared.structured_content["identical"],
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    pg = await find_postgres()
    tag = uuid.uuid4().hex[:8]
    names = (f"pgmcp_bench_copy_src_{tag}", f"pgmcp_bench_copy_dst_{tag}")
    log_dir = Path(tempfile.mkdtemp(prefix="pgmcp-bench-copy-"))
    try:
        source = await create(pg, names[0], [DDL, FILL.format(rows=args.rows), "ANALYZE items"])
        target = await create(pg, names[1], [DDL])
        expected = await fetch(source, DIGEST)
        floors: list[float] = []
        runs: list[dict[str, Any]] = []
        for _ in range(args.runs):
            await truncate(target)
            floor = psql_pipe(source, target)
            if floor is not None:
                assert await fetch(target, DIGEST) == expected, "psql copy differs"
                floors.append(floor)
            await truncate(target)
            run = await pgmcp_copy(source, target, log_dir)
            assert run["identical"] and run["rows"] == args.rows, run
            assert await fetch(target, DIGEST) == expected, "copy_data differs from the source"
            runs.append(run)
        load = os.getloadavg()
        best = min(runs, key=lambda r: r["seconds"])
        floor = min(floors) if floors else None
        print(f"copy_data of {args.rows:,} rows (int, text, numeric, timestamptz), PostgreSQL {pg.version}")
        print(f"load average at end {load[0]:.2f}; best of {args.runs} runs each, interleaved")
        print()
        print("| figure | this run | floor (same run) |")
        print("| --- | ---: | --- |")
        ratio = f"{best['seconds'] / floor:.2f}x" if floor else "n/a"
        psql_text = (
            f"psql COPY … TO STDOUT \\| psql COPY … FROM STDIN: {floor:.2f} s" if floor else "psql: n/a"
        )
        print(f"| copy_data {args.rows:,} rows over stdio | {best['seconds']:.2f} s | {psql_text} |")
        print(f"| copy_data / psql pipe | {ratio} | target ≤ 2x |")
        print(
            f"| server RSS growth during the copy | {max(r['rss_growth_mb'] for r in runs):.1f} MB | target < 50 MB |"
        )
        print(f"| progress notifications | {best['progress_notifications']} | one per 10,000 rows |")
        print("| every row identical (compare_tables and md5 of all rows on both sides) | yes | |")
    finally:
        for name in names:
            await drop(pg, name)
        shutil.rmtree(log_dir, ignore_errors=True)
        pg.stop()


if __name__ == "__main__":
    asyncio.run(main())
