"""What judging functions by the database's catalog costs (issue 14).

Loads the catalog of a real PostgreSQL (the local one, or ``--dsn``) with
:func:`pgmcp.db.catalog.load_catalog`, then times
:meth:`pgmcp.security.Policy.check` with that catalog on ``bench_policy.py``'s
analytics query and on a query full of attribute notation, operators and casts —
cold (cache cleared before every call) and cached — beside the floor: the same
decision without a catalog (the parser layer alone). Also the one-off costs: a
full catalog load, and the fingerprint query a connection pays at most every
``CHECK_INTERVAL`` seconds (never per call in steady state).

    .venv/bin/python benchmarks/bench_policy_catalog.py [--runs 3000] [--dsn ...]

Targets (issue 14): cold <= 0.3 ms with the catalog cached, cached <= 5 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
from bench_policy import QUERY, median_us  # noqa: E402
from common import LOCAL_DSN  # noqa: E402

from pgmcp.db.catalog import CHECK_INTERVAL, FINGERPRINT, load_catalog  # noqa: E402
from pgmcp.security import Policy  # noqa: E402

CALLS_QUERY = (
    "SELECT (o.id)::text || ':' || c.name, (c.meta).jsonb_typeof, lower(c.name) COLLATE \"C\", "
    "o.total::numeric(10, 2), CAST(o.created_at AS date), c.meta ->> 'tier', "
    "coalesce(o.note, '') OPERATOR(pg_catalog.||) 'x', date_trunc('day', o.created_at) "
    "FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.total BETWEEN 10 AND 100 AND c.name LIKE 'A%' AND o.id = ANY (ARRAY[1, 2, 3]) "
    "ORDER BY o.created_at DESC LIMIT 50"
)
COLD_TARGET_MS = 0.3
CACHED_TARGET_US = 5.0


async def _catalog_costs(dsn: str, rounds: int = 20) -> tuple[object, float, float]:
    conn = await asyncpg.connect(dsn)
    try:
        loads, checks = [], []
        catalog = None
        for _ in range(rounds):
            start = time.perf_counter()
            catalog, _ = await load_catalog(conn)
            loads.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            await conn.fetchval(FINGERPRINT)
            checks.append((time.perf_counter() - start) * 1000)
        return catalog, statistics.median(loads), statistics.median(checks)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--dsn", default=os.environ.get("PGMCP_BENCH_DSN", LOCAL_DSN))
    args = parser.parse_args()
    catalog, load_ms, check_ms = asyncio.run(_catalog_costs(args.dsn))
    functions = sum(len(v) for v in catalog.functions.values())  # type: ignore[attr-defined]
    print(f"catalog: {functions} functions; load {load_ms:.2f} ms, fingerprint check {check_ms:.3f} ms")
    print(f"  (the check runs at most once per {CHECK_INTERVAL:g} s per connection, never per call)")
    print(f"median of {args.runs} runs; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'':<48} {'cold cpu':>10} {'cached cpu':>11}   targets: cold <= {COLD_TARGET_MS} ms, cached <= 5 µs"
    )
    policy = Policy(
        readonly_mode=True,
        allowed_operations=["SELECT", "WITH", "EXPLAIN"],
        blocked_keywords=["INSERT", "UPDATE", "DELETE", "DROP", "TRUNCATE", "ALTER", "CREATE"],
    )
    ok = True
    for name, query in (("analytics query", QUERY), ("attribute/operator/cast query", CALLS_QUERY)):
        for label, cat in (("floor: no catalog", None), ("with catalog", catalog)):

            def cold(query: str = query, cat: object = cat) -> None:
                policy.clear_cache()
                policy.check(query, require_read=True, catalog=cat)  # type: ignore[arg-type]

            def cached(query: str = query, cat: object = cat) -> None:
                policy.check(query, require_read=True, catalog=cat)  # type: ignore[arg-type]

            _, cold_cpu = median_us(cold, args.runs)
            _, cached_cpu = median_us(cached, args.runs)
            print(f"{name + ', ' + label:<48} {cold_cpu / 1000:7.3f} ms {cached_cpu:8.2f} µs")
            if cat is not None:
                ok = ok and cold_cpu / 1000 <= COLD_TARGET_MS and cached_cpu <= CACHED_TARGET_US
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
