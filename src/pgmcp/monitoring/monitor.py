"""The Monitor: counters, histogram, query history, and the readings built from them."""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import Metric

from pgmcp._version import __version__
from pgmcp.auth import current_call, current_principal
from pgmcp.config import Settings
from pgmcp.errors import mask_secrets
from pgmcp.logs import emit, get_logger, redact_text
from pgmcp.monitoring.business import BUSINESS_RETENTION_SECONDS, BusinessEvents
from pgmcp.monitoring.exposition import BOUNDS_MS, Collector, Counts, counted_fields, families
from pgmcp.monitoring.health import RANK, Status, SystemProbe, assess
from pgmcp.monitoring.history import (
    BLOCKED_HISTORY_SIZE,
    QueryRecord,
    blocked_rows,
    console_row,
    history_row,
    iso,
    pick,
)
from pgmcp.monitoring.timeseries import TimeSeries

__all__ = ["BLOCKED_HISTORY_SIZE", "RESERVOIR_SIZE", "Monitor", "PoolSource", "QueryRecord"]

#: How many recent query durations ``p95_query_time_ms`` is computed over.
RESERVOIR_SIZE = 10_000
#: ``() -> {connection_id: {"size", "open", "idle_connections", "active_connections", "waiting"}}``
PoolSource = Callable[[], Mapping[str, Mapping[str, int]]]


class _Hist:
    __slots__ = ("buckets", "sum_ms")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BOUNDS_MS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum_ms = 0.0


class Monitor:
    """Metrics, query history, business events and health of one server.

    Thread-safe: any method may be called from the event loop or another thread
    (an HTTP scrape). No I/O besides psutil readings. ``clock`` (monotonic
    seconds) is there for tests of uptime and business windows.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._log = get_logger("pgmcp.monitoring")
        self._keep_text = settings.enable_query_logging
        self._slow_ms = settings.slow_query_threshold_ms

        self._queries: dict[tuple[str, str, str], int] = {}
        self._hists: dict[tuple[str, str], _Hist] = {}
        self._blocked: dict[tuple[str, str], int] = {}
        self._slow: dict[str, int] = {}
        self._tools: dict[tuple[str, str], int] = {}
        self._recent_ms: deque[float] = deque(maxlen=RESERVOIR_SIZE)
        # (epoch, connection_id, query, query_type, duration_ms, success, row_count, error_type, tool,
        # principal, id): a tuple is cheaper to make on the hot path; QueryRecord is built when read.
        self._history: deque[tuple[Any, ...]] = deque(maxlen=settings.query_history_size)
        self._next_id = 0
        # (epoch, connection_id, reason, message, query, tool, principal), for the console.
        self._blocked_recent: deque[tuple[Any, ...]] = deque(maxlen=BLOCKED_HISTORY_SIZE)
        self.series = TimeSeries()

        self._business = BusinessEvents(clock)
        self._pool_source: PoolSource | None = None
        self._last_status: Status = "healthy"
        self._system = SystemProbe(settings.pgmcp_data_dir)

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(Collector(self._families))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # --- the execute path and the tool layer report here ------------------------

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
        """Count one statement that reached the database, whether it succeeded there or failed.

        Logs ``query`` at DEBUG, and ``slow_query`` at WARNING when ``duration_ms`` is
        over ``SLOW_QUERY_THRESHOLD_MS``. The query text is kept and logged only with
        ``ENABLE_QUERY_LOGGING``, with passwords masked (DSNs, ``password=``, SQL
        ``PASSWORD '...'``). Parameter values must never be passed here.
        """
        text = redact_text(query) if self._keep_text and query is not None else None
        slow = duration_ms > self._slow_ms
        qkey = (connection_id, query_type, "success" if success else "error")
        hkey = (connection_id, query_type)
        now = time.time()
        principal = current_principal.get().subject
        with self._lock:
            self._queries[qkey] = self._queries.get(qkey, 0) + 1
            hist = self._hists.get(hkey)
            if hist is None:
                hist = self._hists[hkey] = _Hist()
            hist.buckets[bisect_left(BOUNDS_MS, duration_ms)] += (
                1  # bucket i holds bound[i-1] < d <= bound[i]
            )
            hist.sum_ms += duration_ms
            self._recent_ms.append(duration_ms)
            self._next_id += 1
            self._history.append(
                (
                    now,
                    connection_id,
                    text,
                    query_type,
                    duration_ms,
                    success,
                    row_count,
                    error_type,
                    tool,
                    principal,
                    self._next_id,
                )
            )
            if slow:
                self._slow[connection_id] = self._slow.get(connection_id, 0) + 1
            sample = self.series.add_query(now, duration_ms, success)
        if sample:
            self.sample_pools(now)  # once per 10-second bucket, so pool charts have a point
        if not slow and not self._log.is_enabled_for(logging.DEBUG):
            return  # the usual case in production: no line to build
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
        self, *, connection_id: str, reason: str, query_type: str | None, message: str, query: str | None
    ) -> None:
        """Count a statement the policy refused (it never reached the database); log ``query_blocked``.

        Blocked statements are counted apart: not in ``total_queries``, not in
        ``failed_queries``, not in the history.
        """
        key = (connection_id, reason)
        now = time.time()
        call = current_call.get()
        tool = call.tool if call is not None else None
        text = redact_text(query) if self._keep_text and query is not None else None
        entry = (now, connection_id, reason, message, text, tool, current_principal.get().subject)
        with self._lock:
            self._blocked[key] = self._blocked.get(key, 0) + 1
            self._blocked_recent.append(entry)
            self.series.add_blocked(now)
        fields: dict[str, Any] = {
            "connection_id": connection_id,
            "reason": reason,
            "query_type": query_type,
            "message": message,
        }
        if text is not None:
            fields["query"] = text
        self._log.warning("query_blocked", **fields)

    def record_tool_call(self, *, tool: str, status: str, duration_ms: float) -> None:
        """Count one tool call (``status``: ``success`` or the error_type); log ``tool_call`` at INFO."""
        key = (tool, status)
        with self._lock:
            self._tools[key] = self._tools.get(key, 0) + 1
        # emit(): the same line as self._log.info(...), at a fifth of the cost (every call logs it).
        ms = round(duration_ms, 3)
        emit("pgmcp.monitoring", "info", "tool_call", tool=tool, status=status, duration_ms=ms)

    def set_pool_source(self, fn: PoolSource) -> None:
        """Where pool stats come from; called at every scrape and :meth:`snapshot`, so it must not block."""
        self._pool_source = fn

    def sample_pools(self, now: float | None = None) -> None:
        """Put the pools' usage now into the time series (the record path does it once per bucket,
        the console at each read)."""
        pools = self.pools()
        with self._lock:
            self.series.sample_pools(time.time() if now is None else now, pools)

    def timeseries(self, window_seconds: float = 3600) -> dict[str, Any]:
        """The last ``window_seconds`` of the time series (see :class:`.timeseries.TimeSeries.read`)."""
        now = time.time()
        self.sample_pools(now)
        with self._lock:
            return self.series.read(now, window_seconds)

    def record_business_event(self, event_type: str, value: float = 1.0) -> None:
        """A plugin's business event (the handbook's ``CustomMetricsCollector``).

        ``event_type`` becomes a metric label: keep the set of types small and fixed.
        """
        self._business.record(event_type, value)

    # --- readings -----------------------------------------------------------------

    @property
    def uptime_seconds(self) -> float:
        return self._clock() - self._started

    def business_metrics(
        self, window_seconds: float = BUSINESS_RETENTION_SECONDS
    ) -> dict[str, dict[str, float]]:
        """``{event_type: {count, sum, avg}}`` over the last ``window_seconds`` (at most an hour, 1 s resolution)."""
        return self._business.window(window_seconds)

    def history(
        self, *, connection_id: str | None = None, min_duration_ms: float = 0, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Recent queries, newest first: at most ``limit``, from the last ``QUERY_HISTORY_SIZE``.

        Only statements that reached the database are kept (blocked ones are not);
        ``query`` is None when ``ENABLE_QUERY_LOGGING`` is false.
        """
        if limit <= 0:
            return []
        with self._lock:
            picked = pick(reversed(self._history), connection_id, min_duration_ms, limit)
        return [history_row(entry) for entry in picked]

    def recent_queries(self) -> list[dict[str, Any]]:
        """The whole query history, newest first, with each entry's ``id`` and ``principal``
        (the console filters it); the fields of :meth:`history` plus those two."""
        with self._lock:
            entries = list(self._history)
        entries.reverse()
        return [console_row(entry) for entry in entries]

    def query_entry(self, query_id: int) -> dict[str, Any] | None:
        """One history entry by its ``id``, or None once it has left the history."""
        with self._lock:
            for entry in reversed(self._history):
                if entry[10] == query_id:
                    break
            else:
                return None
        return console_row(entry)

    def recent_blocked(self, limit: int = BLOCKED_HISTORY_SIZE) -> list[dict[str, Any]]:
        """Statements the policy refused, newest first: ``connection_id``, ``reason``, ``message``
        (what the caller was told), ``query`` (only with ``ENABLE_QUERY_LOGGING``), ``tool``,
        ``principal``, ``timestamp``."""
        with self._lock:
            entries = list(self._blocked_recent)
        entries.reverse()
        return blocked_rows(entries[:limit])

    def pools(self) -> dict[str, dict[str, int]]:
        """Pool stats from the pool source; empty when none is set or it fails."""
        if self._pool_source is None:
            return {}
        try:
            return {cid: dict(stats) for cid, stats in self._pool_source().items()}
        except Exception as exc:  # a broken source must not break /metrics or get_metrics
            self._log.warning("pool_source_failed", error=mask_secrets(str(exc)))
            return {}

    def _counts(self) -> tuple[Counts, list[float]]:
        with self._lock:
            counts = Counts(
                queries=dict(self._queries),
                histograms={k: (list(h.buckets), h.sum_ms) for k, h in self._hists.items()},
                blocked=dict(self._blocked),
                slow=dict(self._slow),
                tools=dict(self._tools),
            )
            recent = list(self._recent_ms)
        return counts, recent

    def snapshot(self) -> dict[str, Any]:
        """The ``get_metrics`` fields, from the same counters ``/metrics`` renders.

        ``total_queries`` = ``successful_queries`` + ``failed_queries`` (statements that
        reached the database); ``blocked_queries`` are apart. ``failure_rate_percent``
        = failed / total × 100, 0 before any query. ``avg_query_time_ms`` is since
        start; ``p95_query_time_ms`` over the last :data:`RESERVOIR_SIZE` queries.
        """
        counts, recent = self._counts()
        return {
            **counted_fields(counts, recent),
            "uptime_seconds": round(self.uptime_seconds, 3),
            "pools": self.pools(),
            "system": self.system_stats(),
        }

    def render_prometheus(self) -> tuple[bytes, str]:
        """``(body, content_type)``: the text exposition of this Monitor's own registry.

        Served by ``/metrics`` only when ``ENABLE_METRICS`` is true (the HTTP layer
        checks); the counters behind ``get_metrics`` are kept either way.
        """
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _families(self) -> list[Metric]:
        counts, _ = self._counts()
        return families(
            counts,
            pools=self.pools(),
            business=self._business.totals(),
            rss_bytes=self._system.rss_bytes(),
            uptime_seconds=self.uptime_seconds,
        )

    # --- health ---------------------------------------------------------------------

    def system_stats(self) -> dict[str, Any]:
        """``memory_percent`` (machine), ``process_rss_bytes``, ``cpu_percent`` (machine, non-blocking),
        ``cpu_count``, ``disk_percent`` (partition of ``PGMCP_DATA_DIR`` or the working directory),
        ``load_average`` (where the OS has one) and ``uptime_seconds``."""
        stats = self._system.read()
        stats["uptime_seconds"] = round(self.uptime_seconds, 3)
        return stats

    def health(self, connections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The ``health_check`` / ``/health`` answer, from the registry's cached probes.

        ``connections``: ``{id: {"is_healthy": bool | None, "latency_ms", "last_checked",
        "error", ...}}`` (None = not probed yet). Verdict rules: :func:`.health.assess`.

        ``is_healthy`` is ``status != "unhealthy"``: the server can serve. A degraded
        server (resources over a threshold, some connection down) still serves, and
        says what is wrong in ``warnings``; a momentary CPU spike must not make probes
        or the handbook's ``if not health["is_healthy"]`` alert flap. HTTP maps ``unhealthy`` to 503, the other two to 200.
        A change of status from the previous call (the first call compares with
        ``healthy``) logs ``health_changed``: WARNING when worse, INFO when better.
        """
        system = self.system_stats()
        status, warnings, conns = assess(system, connections, self.settings)
        with self._lock:
            old, self._last_status = self._last_status, status
        if old != status:
            log = self._log.warning if RANK[status] > RANK[old] else self._log.info
            log("health_changed", old_status=old, new_status=status, warnings=warnings)
        return {
            "is_healthy": status != "unhealthy",
            "status": status,
            "uptime_seconds": system["uptime_seconds"],
            "memory_percent": system["memory_percent"],
            "cpu_percent": system["cpu_percent"],
            "disk_percent": system["disk_percent"],
            "connections": conns,
            "warnings": warnings,
            "timestamp": iso(time.time()),
            "version": __version__,
        }
