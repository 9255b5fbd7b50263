"""How long the policy takes to decide about one statement.

Times :meth:`pgmcp.security.Policy.check` on a typical ~300-character analytics
query (a CTE, a join, a window function, JSON operators), cold (cache cleared
before every call: parse + walk + decide) and cached, under the handbook's
development and read-only profiles, and for a statement whose text holds a
blocked word so that the keyword scanner runs too. Medians over many runs.

    .venv/bin/python benchmarks/bench_policy.py [--runs 5000]

Targets: cold < 0.2 ms, cached a few microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from pgmcp.security import Policy

QUERY = (
    "WITH recent AS (SELECT customer_id, sum(total) AS revenue, count(*) AS n FROM orders "
    "WHERE created_at > now() - interval '30 days' GROUP BY customer_id) "
    "SELECT c.name, r.revenue, rank() OVER (ORDER BY r.revenue DESC) AS rk, c.meta->>'tier' AS tier "
    "FROM recent r JOIN customers c ON c.id = r.customer_id WHERE c.meta @> '{\"active\": true}' "
    "ORDER BY rk LIMIT 20"
)
# Same length and shape, but 'drop' appears as a word (in a literal): the scanner must run.
QUERY_WITH_WORD = QUERY.replace("'30 days'", "'drop 30'")

PROFILES = {
    "development": Policy(),
    "read-only": Policy(
        readonly_mode=True,
        allowed_operations=["SELECT", "WITH", "EXPLAIN"],
        blocked_keywords=["INSERT", "UPDATE", "DELETE", "DROP", "TRUNCATE", "ALTER", "CREATE"],
    ),
}


def median_us(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time of one call, in microseconds.

    The CPU time (this thread's) is the steadier figure on a busy machine.
    """
    for _ in range(min(runs, 200)):  # warm up
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        cpu.append(time.thread_time_ns() - start_cpu)
        wall.append(time.perf_counter_ns() - start)
    return statistics.median(wall) / 1000, statistics.median(cpu) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    runs = parser.parse_args().runs
    print(f"query: {len(QUERY)} characters, median of {runs} runs; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':<20} {'cold wall':>10} {'cold cpu':>10} {'cached wall':>12} {'cached cpu':>11}")
    for name, policy in PROFILES.items():
        for label, query in (("", QUERY), (" +scan", QUERY_WITH_WORD)):

            def cold(policy: Policy = policy, query: str = query) -> None:
                policy.clear_cache()
                policy.check(query, require_read=True)

            def cached(policy: Policy = policy, query: str = query) -> None:
                policy.check(query, require_read=True)

            cold_wall, cold_cpu = median_us(cold, runs)
            cached_wall, cached_cpu = median_us(cached, runs)
            print(
                f"{name + label:<20} {cold_wall / 1000:7.3f} ms {cold_cpu / 1000:7.3f} ms "
                f"{cached_wall:9.2f} µs {cached_cpu:8.2f} µs"
            )


if __name__ == "__main__":
    main()
