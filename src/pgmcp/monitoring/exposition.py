"""The Prometheus families of ``/metrics``, built at scrape time from a copy of the Monitor's counters."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from pgmcp._version import __version__

__all__ = ["BOUNDS_MS", "DURATION_BUCKETS_SECONDS", "Collector", "Counts", "counted_fields", "families"]

#: Histogram buckets of ``mcp_server_query_duration_seconds``: 0.5 ms … 60 s.
DURATION_BUCKETS_SECONDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: The same bounds in milliseconds (what the execute path measures); one more bucket = +Inf.
BOUNDS_MS: tuple[float, ...] = tuple(b * 1000.0 for b in DURATION_BUCKETS_SECONDS)
_LE = (*(str(b) for b in DURATION_BUCKETS_SECONDS), "+Inf")  # "0.0005" … "60.0", "+Inf"


@dataclass(frozen=True, slots=True)
class Counts:
    """A consistent copy of the counters, taken under the Monitor's lock."""

    queries: Mapping[tuple[str, str, str], int]  # (connection_id, query_type, status)
    histograms: Mapping[
        tuple[str, str], tuple[list[int], float]
    ]  # (conn, type) -> (per-bucket counts, sum ms)
    blocked: Mapping[tuple[str, str], int]  # (connection_id, reason)
    slow: Mapping[str, int]  # connection_id
    tools: Mapping[tuple[str, str], int]  # (tool, status)


def families(
    counts: Counts,
    *,
    pools: Mapping[str, Mapping[str, int]],
    business: Mapping[str, tuple[int, float]],
    rss_bytes: int,
    uptime_seconds: float,
) -> list[Metric]:
    """Every ``mcp_server_*`` family (SPEC §7 plus slow queries, idle connections, business events)."""
    queries = CounterMetricFamily(
        "mcp_server_queries",
        "Statements that reached the database, by outcome (success|error).",
        labels=["connection_id", "query_type", "status"],
    )
    for qkey, n in counts.queries.items():
        queries.add_metric(list(qkey), n)
    duration = HistogramMetricFamily(
        "mcp_server_query_duration_seconds",
        "Time to run a statement at the database.",
        labels=["connection_id", "query_type"],
    )
    for hkey, (buckets, sum_ms) in counts.histograms.items():
        cumulative: list[tuple[str, float]] = []
        acc = 0
        for le, n in zip(_LE, buckets, strict=True):
            acc += n
            cumulative.append((le, float(acc)))
        duration.add_metric(list(hkey), cumulative, sum_ms / 1000.0)
    blocked = CounterMetricFamily(
        "mcp_server_queries_blocked",
        "Statements refused by the policy (never sent to the database).",
        labels=["connection_id", "reason"],
    )
    for bkey, n in counts.blocked.items():
        blocked.add_metric(list(bkey), n)
    slow = CounterMetricFamily(
        "mcp_server_slow_queries", "Statements slower than SLOW_QUERY_THRESHOLD_MS.", labels=["connection_id"]
    )
    for conn, n in counts.slow.items():
        slow.add_metric([conn], n)
    tools = CounterMetricFamily(
        "mcp_server_tool_calls", "MCP tool calls, by outcome.", labels=["tool", "status"]
    )
    for tkey, n in counts.tools.items():
        tools.add_metric(list(tkey), n)

    size = GaugeMetricFamily(
        "mcp_server_pool_size", "Most connections the pool may open (pool_size).", labels=["connection_id"]
    )
    opened = GaugeMetricFamily(
        "mcp_server_connections_open", "Pool connections open now (idle + active).", labels=["connection_id"]
    )
    waiting = GaugeMetricFamily(
        "mcp_server_connections_waiting",
        "Calls waiting for a connection (of the pool, or room under MAX_CONNECTIONS).",
        labels=["connection_id"],
    )
    active = GaugeMetricFamily(
        "mcp_server_connections_active", "Pool connections in use.", labels=["connection_id"]
    )
    idle = GaugeMetricFamily(
        "mcp_server_connections_idle", "Idle pool connections.", labels=["connection_id"]
    )
    for conn, stats in pools.items():
        size.add_metric([conn], stats.get("size", 0))
        active.add_metric([conn], stats.get("active_connections", 0))
        idle.add_metric([conn], stats.get("idle_connections", 0))
        opened.add_metric([conn], stats.get("open", 0))
        waiting.add_metric([conn], stats.get("waiting", 0))

    events = CounterMetricFamily(
        "mcp_server_business_events", "Business events recorded by plugins.", labels=["event_type"]
    )
    values = SummaryMetricFamily(
        "mcp_server_business_event_value", "Values of business events.", labels=["event_type"]
    )
    for event_type, (count, total) in business.items():
        events.add_metric([event_type], count)
        values.add_metric([event_type], count_value=count, sum_value=total)

    info = GaugeMetricFamily("mcp_server_info", "Version of the server.", labels=["version"])
    info.add_metric([__version__], 1)
    return [
        queries,
        duration,
        blocked,
        slow,
        tools,
        size,
        active,
        idle,
        opened,
        waiting,
        events,
        values,
        GaugeMetricFamily(
            "mcp_server_memory_usage_bytes", "Resident memory of the server process.", value=rss_bytes
        ),
        GaugeMetricFamily(
            "mcp_server_uptime_seconds", "Seconds since the server started.", value=uptime_seconds
        ),
        info,
    ]


def counted_fields(counts: Counts, recent: list[float]) -> dict[str, Any]:
    """The ``get_metrics`` fields computed from the counters (``recent``: the reservoir of
    durations, sorted here), from the same integers ``/metrics`` renders; the Monitor adds
    ``uptime_seconds``, ``pools`` and ``system``."""
    ok = failed = 0
    by_type: dict[str, int] = {}
    by_conn: dict[str, int] = {}
    for (conn, qtype, status), n in counts.queries.items():
        if status == "success":
            ok += n
        else:
            failed += n
        by_type[qtype] = by_type.get(qtype, 0) + n
        by_conn[conn] = by_conn.get(conn, 0) + n
    total = ok + failed
    by_reason: dict[str, int] = {}
    for (_, reason), n in counts.blocked.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    tool_calls: dict[str, dict[str, int]] = {}
    for (tool, status), n in counts.tools.items():
        tool_calls.setdefault(tool, {})[status] = n
    sum_ms = sum(s for _, s in counts.histograms.values())
    recent.sort()
    p95 = recent[math.ceil(0.95 * len(recent)) - 1] if recent else 0.0  # nearest rank
    return {
        "total_queries": total,
        "successful_queries": ok,
        "failed_queries": failed,
        "blocked_queries": sum(by_reason.values()),
        "slow_queries": sum(counts.slow.values()),
        "failure_rate_percent": round(failed / total * 100, 3) if total else 0.0,
        "avg_query_time_ms": round(sum_ms / total, 3) if total else 0.0,
        "p95_query_time_ms": round(p95, 3),
        "queries_by_type": by_type,
        "queries_by_connection": by_conn,
        "blocked_by_reason": by_reason,
        "tool_calls": tool_calls,
    }


class Collector:
    """Hands a registry the families ``read`` builds, at scrape time."""

    def __init__(self, read: Callable[[], list[Metric]]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return iter(self._read())
