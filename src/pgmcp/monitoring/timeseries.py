"""The last hour in fixed memory: a ring of 10-second buckets the Monitor fills as it counts.

Each bucket holds, for its 10 seconds: statements that succeeded, failed and were
blocked, a latency histogram (for p50/p95) and, per connection, the pool usage
sampled in it. The ring has :data:`BUCKETS` slots, reused as time goes on (a slot
is cleared when its 10 seconds come round again), so memory depends on the number
of buckets, latency bins and connections, never on the call rate or the uptime
(benchmarks/bench_timeseries.py).

Not thread-safe on its own: the Monitor calls it under its lock. The record
methods take the time from the caller (the Monitor reads the clock once per call).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

__all__ = ["BUCKETS", "BUCKET_SECONDS", "LATENCY_BOUNDS_MS", "TimeSeries"]

#: Width of one bucket, seconds.
BUCKET_SECONDS = 10
#: Buckets kept: one hour.
BUCKETS = 360
#: Upper bounds of the latency bins, ms: 0.1 ms × 1.25^k up to ~2 min; one more bin = above.
#: A bin is 25 % wide, so a quantile read from them is within about 12 % of the true one.
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(0.1 * 1.25**k for k in range(64))


class TimeSeries:
    """Per-bucket counts over the last ``buckets × bucket_seconds`` seconds."""

    __slots__ = ("_blocked", "_errors", "_lat", "_n", "_ok", "_pools", "_stamp", "_width")

    def __init__(self, *, bucket_seconds: int = BUCKET_SECONDS, buckets: int = BUCKETS) -> None:
        self._width = bucket_seconds
        self._n = buckets
        self._stamp = [-1] * buckets  # which bucket number (epoch // width) each slot holds
        self._ok = [0] * buckets
        self._errors = [0] * buckets
        self._blocked = [0] * buckets
        self._lat: list[list[int] | None] = [None] * buckets  # allocated at a slot's first query
        # connection_id -> per slot [in_use, open] (the sample with the largest in_use), or None
        self._pools: dict[str, list[list[int] | None]] = {}

    def _slot(self, now: float) -> int:
        """The slot of ``now``; a slot that held an older bucket is cleared first."""
        number = int(now // self._width)
        i = number % self._n
        if self._stamp[i] != number:
            self._clear(i, number)
        return i

    def _clear(self, i: int, number: int) -> None:
        self._stamp[i] = number
        self._ok[i] = self._errors[i] = self._blocked[i] = 0
        self._lat[i] = None
        for series in self._pools.values():
            series[i] = None

    def add_query(self, now: float, duration_ms: float, success: bool) -> bool:
        """Count one statement; True when it opened a new bucket (the Monitor then samples the pools)."""
        # The hot path: one call per statement, so _slot is inlined.
        number = int(now // self._width)
        i = number % self._n
        fresh = self._stamp[i] != number
        if fresh:
            self._clear(i, number)
        if success:
            self._ok[i] += 1
        else:
            self._errors[i] += 1
        bins = self._lat[i]
        if bins is None:
            bins = self._lat[i] = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        bins[bisect_left(LATENCY_BOUNDS_MS, duration_ms)] += 1
        return fresh

    def add_blocked(self, now: float) -> None:
        self._blocked[self._slot(now)] += 1

    def sample_pools(self, now: float, pools: Mapping[str, Mapping[str, int]]) -> None:
        """Pool usage now, ``pools`` as ``pool_stats`` gives it; the bucket keeps its busiest sample.

        Connections no longer in ``pools`` are forgotten, so the number of series
        follows the registry, not the history of connections ever added.
        """
        i = self._slot(now)
        for gone in [cid for cid in self._pools if cid not in pools]:
            del self._pools[gone]
        for cid, stats in pools.items():
            series = self._pools.get(cid)
            if series is None:
                series = self._pools[cid] = [None] * self._n
            in_use = int(stats.get("active_connections", 0))
            opened = int(stats.get("open", stats.get("size", 0)))
            old = series[i]
            if old is None or in_use >= old[0]:
                series[i] = [in_use, opened]

    def read(self, now: float, window_seconds: float = BUCKETS * BUCKET_SECONDS) -> dict[str, Any]:
        """Columns for a chart: ``t`` (bucket start, epoch seconds), oldest first, and per bucket
        ``ok``/``errors``/``blocked`` per second, ``p50_ms``/``p95_ms`` (None without queries)
        and ``pools`` {connection_id: {``in_use``, ``open``}} (None where not sampled)."""
        count = max(1, min(self._n, int(window_seconds // self._width)))
        last = int(now // self._width)
        per_s = 1.0 / self._width
        cols: dict[str, list[Any]] = {k: [] for k in ("t", "ok", "errors", "blocked", "p50_ms", "p95_ms")}
        pools: dict[str, dict[str, list[int | None]]] = {
            cid: {"in_use": [], "open": []} for cid in self._pools
        }
        for number in range(last - count + 1, last + 1):
            i = number % self._n
            here = self._stamp[i] == number
            cols["t"].append(number * self._width)
            cols["ok"].append(round(self._ok[i] * per_s, 3) if here else 0.0)
            cols["errors"].append(round(self._errors[i] * per_s, 3) if here else 0.0)
            cols["blocked"].append(round(self._blocked[i] * per_s, 3) if here else 0.0)
            bins = self._lat[i] if here else None
            cols["p50_ms"].append(_quantile(bins, 0.50) if bins else None)
            cols["p95_ms"].append(_quantile(bins, 0.95) if bins else None)
            for cid, series in self._pools.items():
                sample = series[i] if here else None
                out = pools[cid]
                out["in_use"].append(sample[0] if sample else None)
                out["open"].append(sample[1] if sample else None)
        return {"bucket_seconds": self._width, **cols, "pools": pools}


def _quantile(bins: list[int], q: float) -> float | None:
    """The ``q`` quantile of a histogram, interpolated geometrically inside its bin."""
    total = sum(bins)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for k, n in enumerate(bins):
        if n and seen + n >= rank:
            low = LATENCY_BOUNDS_MS[k - 1] if k > 0 else 0.0
            high = LATENCY_BOUNDS_MS[k] if k < len(LATENCY_BOUNDS_MS) else LATENCY_BOUNDS_MS[-1] * 1.25
            frac = (rank - seen) / n
            value = low + (high - low) * frac if low == 0.0 else low * (high / low) ** frac
            return round(value, 3)
        seen += n
    return round(LATENCY_BOUNDS_MS[-1], 3)
