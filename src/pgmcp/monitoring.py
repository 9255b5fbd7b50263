"""Metrics, health and query history: what the one execute path reports to.

One :class:`Monitor` per server. The execute path calls :meth:`Monitor.record_query`
(or :meth:`Monitor.record_blocked`), the tool layer :meth:`Monitor.record_tool_call`;
``get_metrics``, ``get_query_history``, ``health_check``, ``/health`` and
``/metrics`` read from it.

Counting, so that ``get_metrics`` and ``/metrics`` never disagree: the counters
are plain integers kept under one lock, and ``/metrics`` is rendered from those
same integers at scrape time by a custom collector (not by separate
``prometheus_client`` Counter objects). Each Monitor has its own
``CollectorRegistry``, so several servers in one process do not collide.

- ``total_queries`` = queries that reached the database = ``successful_queries``
  + ``failed_queries``.
- ``blocked_queries`` were refused by the policy and never reached the
  database: they are *not* in ``total_queries`` nor in ``failed_queries``
  (metric ``mcp_server_queries_blocked_total``, not ``mcp_server_queries_total``).
- ``avg_query_time_ms`` is over every query since start (= the histogram's
  sum / count); ``p95_query_time_ms`` is over the most recent
  :data:`RESERVOIR_SIZE` query durations.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from pgmcp import __version__
from pgmcp.config import Settings
from pgmcp.errors import mask_secrets
from pgmcp.logs import get_logger

__all__ = ["DURATION_BUCKETS_SECONDS", "RESERVOIR_SIZE", "Monitor", "PoolSource", "QueryRecord"]

#: Histogram buckets of ``mcp_server_query_duration_seconds``: 0.5 ms … 60 s.
DURATION_BUCKETS_SECONDS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: How many recent query durations ``p95_query_time_ms`` is computed over.
RESERVOIR_SIZE = 10_000
#: Business events older than this are forgotten by :meth:`Monitor.business_metrics`.
BUSINESS_RETENTION_SECONDS = 3600

PoolSource = Callable[[], Mapping[str, Mapping[str, int]]]
Status = Literal["healthy", "degraded", "unhealthy"]
_RANK: dict[str, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}
_BOUNDS_MS = tuple(b * 1000.0 for b in DURATION_BUCKETS_SECONDS)
_LE = tuple(str(b) for b in DURATION_BUCKETS_SECONDS) + ("+Inf",)  # "0.0005" … "60.0", "+Inf"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One query in the history (``get_query_history``)."""

    connection_id: str
    query: str | None
    query_type: str
    duration_ms: float
    success: bool
    row_count: int | None
    timestamp: str  # ISO 8601, UTC
    error_type: str | None = None
    tool: str | None = None


class _Hist:
    __slots__ = ("buckets", "count", "sum_ms")

    def __init__(self) -> None:
        self.buckets = [0] * (len(_BOUNDS_MS) + 1)  # per bucket, not cumulative; last = +Inf
        self.count = 0
        self.sum_ms = 0.0


class _Collector:
    """Renders the Monitor's counters at scrape time (the same numbers ``snapshot()`` reads)."""

    def __init__(self, monitor: Monitor) -> None:
        self._monitor = monitor

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return iter(self._monitor._families())


class Monitor:
    """Counters, histogram, query history, business events and health of one server.

    Thread-safe: every method may be called from the event loop or from another
    thread (the HTTP scrape). Nothing here does I/O except reading ``psutil``.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._log = get_logger("pgmcp.monitoring")
        self._keep_text = settings.enable_query_logging
        self._slow_ms = settings.slow_query_threshold_ms

        self._queries: dict[tuple[str, str, str], int] = {}  # (connection_id, query_type, status)
        self._hists: dict[tuple[str, str], _Hist] = {}  # (connection_id, query_type)
        self._blocked: dict[tuple[str, str], int] = {}  # (connection_id, reason)
        self._slow: dict[str, int] = {}  # connection_id
        self._tools: dict[tuple[str, str], int] = {}  # (tool, status)
        self._recent_ms: deque[float] = deque(maxlen=RESERVOIR_SIZE)
        # History entries: (epoch, connection_id, query, query_type, duration_ms, success,
        # row_count, error_type, tool); a QueryRecord is built only when read.
        self._history: deque[tuple[Any, ...]] = deque(maxlen=settings.query_history_size)
        self._business_totals: dict[str, list[float]] = {}  # event_type -> [count, sum]
        self._business_window: dict[str, deque[list[float]]] = {}  # event_type -> [[second, count, sum]]

        self._pool_source: PoolSource | None = None
        self._last_status: Status = "healthy"
        self._process = psutil.Process()
        self._cpu_lock = threading.Lock()
        self._cpu_at = 0.0
        self._cpu_value = 0.0
        psutil.cpu_percent(interval=None)  # prime: the next non-blocking call measures from here
        self._disk_path = self._find_disk_path(settings.pgmcp_data_dir)

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # --- hot path -----------------------------------------------------------

    def record_query(
        self,
        *,
        connection_id: str,
        query_type: str,
        duration_ms: float,
        success: bool,
        row_count: int | None,
        query: str | None,
        error_type: str | None = None,
        tool: str | None = None,
    ) -> None:
        """Count one statement that reached the database (succeeded or failed there).

        Logs ``query`` at DEBUG and, above ``SLOW_QUERY_THRESHOLD_MS``,
        ``slow_query`` at WARNING. Query text is kept and logged only with
        ``ENABLE_QUERY_LOGGING``; parameter values are never passed here.
        """
        text = query if self._keep_text else None
        status = "success" if success else "error"
        slow = duration_ms > self._slow_ms
        qkey = (connection_id, query_type, status)
        hkey = (connection_id, query_type)
        with self._lock:
            self._queries[qkey] = self._queries.get(qkey, 0) + 1
            hist = self._hists.get(hkey)
            if hist is None:
                hist = self._hists[hkey] = _Hist()
            hist.buckets[bisect_left(_BOUNDS_MS, duration_ms)] += 1
            hist.count += 1
            hist.sum_ms += duration_ms
            self._recent_ms.append(duration_ms)
            self._history.append(
                (
                    time.time(),
                    connection_id,
                    text,
                    query_type,
                    duration_ms,
                    success,
                    row_count,
                    error_type,
                    tool,
                )
            )
            if slow:
                self._slow[connection_id] = self._slow.get(connection_id, 0) + 1
        fields: dict[str, Any] = {
            "connection_id": connection_id,
            "query_type": query_type,
            "duration_ms": round(duration_ms, 3),
            "row_count": row_count,
            "success": success,
            "error_type": error_type,
        }
        if tool is not None:
            fields["tool"] = tool
        if text is not None:
            fields["query"] = text
        self._log.debug("query", **fields)
        if slow:
            self._log.warning("slow_query", threshold_ms=self._slow_ms, **fields)

    def record_blocked(
        self,
        *,
        connection_id: str,
        reason: str,
        query_type: str | None,
        message: str,
        query: str | None,
    ) -> None:
        """Count a statement the policy refused (it never reached the database); log ``query_blocked``."""
        key = (connection_id, reason)
        with self._lock:
            self._blocked[key] = self._blocked.get(key, 0) + 1
        fields: dict[str, Any] = {
            "connection_id": connection_id,
            "reason": reason,
            "query_type": query_type,
            "message": message,
        }
        if self._keep_text and query is not None:
            fields["query"] = query
        self._log.warning("query_blocked", **fields)

    def record_tool_call(self, *, tool: str, status: str, duration_ms: float) -> None:
        """Count one tool call (``status``: ``success`` or an error_type); log ``tool_call`` at INFO."""
        key = (tool, status)
        with self._lock:
            self._tools[key] = self._tools.get(key, 0) + 1
        self._log.info("tool_call", tool=tool, status=status, duration_ms=round(duration_ms, 3))

    def set_pool_source(self, fn: PoolSource) -> None:
        """Where pool gauges come from: ``fn() -> {connection_id: {size, idle_connections, active_connections}}``.

        Called at scrape time and by :meth:`snapshot`; it must be cheap and must not block.
        """
        self._pool_source = fn

    # --- reading ------------------------------------------------------------

    @property
    def uptime_seconds(self) -> float:
        return self._clock() - self._started

    def history(
        self, *, connection_id: str | None = None, min_duration_ms: float = 0, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The most recent queries, newest first (at most ``QUERY_HISTORY_SIZE`` are kept).

        Only queries that reached the database are kept; blocked ones are not.
        ``query`` is None when ``ENABLE_QUERY_LOGGING`` is false.
        """
        if limit <= 0:
            return []
        with self._lock:
            entries = list(self._history)
        out: list[dict[str, Any]] = []
        for epoch, conn, text, qtype, dur, ok, rows, err, tool in reversed(entries):
            if (connection_id is not None and conn != connection_id) or dur < min_duration_ms:
                continue
            out.append(
                asdict(QueryRecord(conn, text, qtype, round(dur, 3), ok, rows, _iso(epoch), err, tool))
            )
            if len(out) >= limit:
                break
        return out

    def pools(self) -> dict[str, dict[str, int]]:
        """Pool stats from the pool source (empty if none is set or it fails)."""
        if self._pool_source is None:
            return {}
        try:
            return {cid: dict(stats) for cid, stats in self._pool_source().items()}
        except Exception as exc:  # a broken source must not break /metrics or get_metrics
            self._log.warning("pool_source_failed", error=mask_secrets(str(exc)))
            return {}

    def snapshot(self) -> dict[str, Any]:
        """The ``get_metrics`` fields; the same counters ``/metrics`` renders.

        ``total_queries`` = ``successful_queries`` + ``failed_queries`` (reached the
        database); ``blocked_queries`` are separate. ``failure_rate_percent`` is
        ``failed / total * 100`` (0 when no query ran). ``avg_query_time_ms`` is
        since start; ``p95_query_time_ms`` over the last :data:`RESERVOIR_SIZE` queries.
        """
        with self._lock:
            queries = dict(self._queries)
            blocked = dict(self._blocked)
            tools = dict(self._tools)
            slow = sum(self._slow.values())
            sum_ms = sum(h.sum_ms for h in self._hists.values())
            recent = sorted(self._recent_ms)
        ok = sum(n for (_, _, st), n in queries.items() if st == "success")
        failed = sum(n for (_, _, st), n in queries.items() if st != "success")
        total = ok + failed
        by_type: dict[str, int] = {}
        by_conn: dict[str, int] = {}
        for (conn, qtype, _), n in queries.items():
            by_type[qtype] = by_type.get(qtype, 0) + n
            by_conn[conn] = by_conn.get(conn, 0) + n
        by_reason: dict[str, int] = {}
        for (_, reason), n in blocked.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        tool_calls: dict[str, dict[str, int]] = {}
        for (tool, status), n in tools.items():
            tool_calls.setdefault(tool, {})[status] = n
        p95 = recent[max(0, math.ceil(0.95 * len(recent)) - 1)] if recent else 0.0
        return {
            "total_queries": total,
            "successful_queries": ok,
            "failed_queries": failed,
            "blocked_queries": sum(blocked.values()),
            "slow_queries": slow,
            "failure_rate_percent": round(failed / total * 100, 3) if total else 0.0,
            "avg_query_time_ms": round(sum_ms / total, 3) if total else 0.0,
            "p95_query_time_ms": round(p95, 3),
            "queries_by_type": by_type,
            "queries_by_connection": by_conn,
            "blocked_by_reason": by_reason,
            "tool_calls": tool_calls,
            "uptime_seconds": round(self.uptime_seconds, 3),
            "pools": self.pools(),
            "system": self.system_stats(),
        }

    def render_prometheus(self) -> tuple[bytes, str]:
        """``(body, content_type)`` of the Prometheus text exposition of this Monitor's registry."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _families(self) -> list[Metric]:
        with self._lock:
            queries = dict(self._queries)
            hists = {k: (list(h.buckets), h.sum_ms) for k, h in self._hists.items()}
            blocked = dict(self._blocked)
            slow = dict(self._slow)
            tools = dict(self._tools)
            business = {k: (v[0], v[1]) for k, v in self._business_totals.items()}
        fams: list[Metric] = []
        q = CounterMetricFamily(
            "mcp_server_queries",
            "Statements that reached the database, by outcome.",
            labels=["connection_id", "query_type", "status"],
        )
        for qkey, n in queries.items():
            q.add_metric(list(qkey), n)
        fams.append(q)
        h = HistogramMetricFamily(
            "mcp_server_query_duration_seconds",
            "Time to run a statement at the database.",
            labels=["connection_id", "query_type"],
        )
        for hkey, (buckets, sum_ms) in hists.items():
            cumulative: list[tuple[str, float]] = []
            acc = 0
            for le, n in zip(_LE, buckets, strict=True):
                acc += n
                cumulative.append((le, float(acc)))
            h.add_metric(list(hkey), cumulative, sum_ms / 1000.0)
        fams.append(h)
        b = CounterMetricFamily(
            "mcp_server_queries_blocked",
            "Statements refused by the policy (never sent to the database).",
            labels=["connection_id", "reason"],
        )
        for bkey, n in blocked.items():
            b.add_metric(list(bkey), n)
        fams.append(b)
        s = CounterMetricFamily(
            "mcp_server_slow_queries",
            "Statements slower than SLOW_QUERY_THRESHOLD_MS.",
            labels=["connection_id"],
        )
        for conn, n in slow.items():
            s.add_metric([conn], n)
        fams.append(s)
        t = CounterMetricFamily(
            "mcp_server_tool_calls", "MCP tool calls, by outcome.", labels=["tool", "status"]
        )
        for tkey, n in tools.items():
            t.add_metric(list(tkey), n)
        fams.append(t)
        size = GaugeMetricFamily("mcp_server_pool_size", "Connections in the pool.", labels=["connection_id"])
        active = GaugeMetricFamily(
            "mcp_server_connections_active", "Pool connections in use.", labels=["connection_id"]
        )
        idle = GaugeMetricFamily(
            "mcp_server_connections_idle", "Idle pool connections.", labels=["connection_id"]
        )
        for conn, stats in self.pools().items():
            size.add_metric([conn], stats.get("size", 0))
            active.add_metric([conn], stats.get("active_connections", 0))
            idle.add_metric([conn], stats.get("idle_connections", 0))
        fams += [size, active, idle]
        ev = CounterMetricFamily(
            "mcp_server_business_events", "Business events recorded by plugins.", labels=["event_type"]
        )
        val = SummaryMetricFamily(
            "mcp_server_business_event_value", "Values of business events.", labels=["event_type"]
        )
        for etype, (count, total) in business.items():
            ev.add_metric([etype], count)
            val.add_metric([etype], count_value=int(count), sum_value=total)
        fams += [ev, val]
        fams.append(
            GaugeMetricFamily(
                "mcp_server_memory_usage_bytes", "Resident memory of the server process.", value=self._rss()
            )
        )
        fams.append(
            GaugeMetricFamily("mcp_server_uptime_seconds", "Seconds since start.", value=self.uptime_seconds)
        )
        info = GaugeMetricFamily("mcp_server_info", "Build information.", labels=["version"])
        info.add_metric([__version__], 1)
        fams.append(info)
        return fams

    # --- business events (the handbook's CustomMetricsCollector) --------------

    def record_business_event(self, event_type: str, value: float = 1.0) -> None:
        """Record a plugin's business event (``event_type`` becomes a metric label: keep the set small)."""
        now = self._clock()
        second = float(math.floor(now))
        with self._lock:
            totals = self._business_totals.setdefault(event_type, [0.0, 0.0])
            totals[0] += 1
            totals[1] += value
            window = self._business_window.setdefault(event_type, deque())
            if window and window[-1][0] == second:
                window[-1][1] += 1
                window[-1][2] += value
            else:
                window.append([second, 1.0, value])
            while window and window[0][0] <= now - BUSINESS_RETENTION_SECONDS:
                window.popleft()

    def business_metrics(self, window_seconds: float = 3600) -> dict[str, dict[str, float]]:
        """``{event_type: {count, sum, avg}}`` over the last ``window_seconds`` (at most one hour, 1 s resolution)."""
        cutoff = self._clock() - min(window_seconds, BUSINESS_RETENTION_SECONDS)
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for etype, window in self._business_window.items():
                count = total = 0.0
                for second, n, s in window:
                    if second > cutoff:
                        count += n
                        total += s
                out[etype] = {"count": count, "sum": total, "avg": total / count if count else 0.0}
        return out

    # --- system and health ------------------------------------------------------

    @staticmethod
    def _find_disk_path(data_dir: Path | None) -> str:
        path = Path(data_dir) if data_dir is not None else Path.cwd()
        while not path.exists() and path != path.parent:
            path = path.parent
        return str(path)

    def _rss(self) -> int:
        try:
            return int(self._process.memory_info().rss)
        except psutil.Error:
            return 0

    def _cpu_percent(self) -> float:
        # Non-blocking: system CPU since the previous sample. Samples closer than a
        # second apart would be noise, so the last value is reused within a second.
        now = time.monotonic()
        with self._cpu_lock:
            if now - self._cpu_at >= 1.0:
                self._cpu_value = float(psutil.cpu_percent(interval=None))
                self._cpu_at = now
            return self._cpu_value

    def system_stats(self) -> dict[str, Any]:
        """Memory, CPU, disk (of the data directory's partition) and load of the machine and process."""
        stats: dict[str, Any] = {
            "memory_percent": float(psutil.virtual_memory().percent),
            "process_rss_bytes": self._rss(),
            "cpu_percent": self._cpu_percent(),
            "cpu_count": os.cpu_count() or 1,
            "disk_percent": 0.0,
            "uptime_seconds": round(self.uptime_seconds, 3),
        }
        with contextlib.suppress(OSError):  # data dir on a vanished mount: report 0
            stats["disk_percent"] = float(psutil.disk_usage(self._disk_path).percent)
        if hasattr(os, "getloadavg"):
            stats["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return stats

    def health(self, connections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Aggregate the cached connection probes and system thresholds into one health report.

        ``connections``: ``{id: {"is_healthy": bool | None, "latency_ms", "last_checked", "error", ...}}``
        as the registry's background probe last saw them (None = not probed yet: neither
        healthy nor unhealthy). No I/O beyond psutil, so it answers in well under 50 ms.

        - ``unhealthy``: at least one connection is registered and every probed one failed.
        - ``degraded``: memory/CPU/disk at or over its threshold, or some (not all) connections failed.
        - ``healthy``: otherwise, including when no connection is registered (with a warning:
          the server itself works, and ``add_connection`` can still be used).

        ``is_healthy`` is ``status == "healthy"``: a degraded server is reported not healthy,
        so the handbook's ``if not health["is_healthy"]: send_alert(...)`` fires on it too.
        HTTP maps ``unhealthy`` to 503 and the other two to 200.
        """
        system = self.system_stats()
        s = self.settings
        warnings: list[str] = []
        degraded = False
        for label, value, threshold in (
            ("Memory", system["memory_percent"], s.memory_warning_threshold),
            ("CPU", system["cpu_percent"], s.cpu_warning_threshold),
            ("Disk", system["disk_percent"], s.disk_warning_threshold),
        ):
            if value >= threshold:
                degraded = True
                warnings.append(f"{label} usage high: {value:.1f}% (threshold {threshold:g}%)")
        conns: dict[str, dict[str, Any]] = {}
        failed = probed = 0
        for cid, info in connections.items():
            entry = {k: (mask_secrets(v) if isinstance(v, str) else v) for k, v in info.items()}
            conns[cid] = entry
            state = entry.get("is_healthy")
            if state is None:
                warnings.append(f"Connection '{cid}' has not been checked yet")
                continue
            probed += 1
            if not state:
                failed += 1
                warnings.append(f"Connection '{cid}' is unhealthy: {entry.get('error') or 'no answer'}")
        status: Status
        if not connections:
            warnings.append("No database connections are registered")
        if probed and failed == probed:
            status = "unhealthy"
        elif degraded or failed:
            status = "degraded"
        else:
            status = "healthy"
        with self._lock:
            old, self._last_status = self._last_status, status
        if old != status:
            log = self._log.warning if _RANK[status] > _RANK[old] else self._log.info
            log("health_changed", old_status=old, new_status=status, warnings=warnings)
        return {
            "is_healthy": status == "healthy",
            "status": status,
            "uptime_seconds": round(self.uptime_seconds, 3),
            "memory_percent": system["memory_percent"],
            "cpu_percent": system["cpu_percent"],
            "disk_percent": system["disk_percent"],
            "connections": conns,
            "warnings": warnings,
            "timestamp": _iso(time.time()),
            "version": __version__,
        }
