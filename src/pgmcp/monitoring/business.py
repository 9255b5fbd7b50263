"""Business events of plugins: the handbook's ``CustomMetricsCollector``, bounded in memory."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["BUSINESS_RETENTION_SECONDS", "BusinessEvents"]

#: Events older than this are forgotten by :meth:`BusinessEvents.window`.
BUSINESS_RETENTION_SECONDS = 3600


class BusinessEvents:
    """Lifetime totals (for Prometheus counters) and one-second buckets of the last hour.

    Memory is bounded by (event types × 3600) buckets however many events arrive.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._totals: dict[str, tuple[int, float]] = {}
        self._buckets: dict[str, deque[list[float]]] = {}  # event_type -> [[second, count, sum], ...]

    def record(self, event_type: str, value: float = 1.0) -> None:
        now = self._clock()
        second = float(math.floor(now))
        with self._lock:
            count, total = self._totals.get(event_type, (0, 0.0))
            self._totals[event_type] = (count + 1, total + value)
            buckets = self._buckets.setdefault(event_type, deque())
            if buckets and buckets[-1][0] == second:
                buckets[-1][1] += 1
                buckets[-1][2] += value
            else:
                buckets.append([second, 1.0, value])
            while buckets and buckets[0][0] <= now - BUSINESS_RETENTION_SECONDS:
                buckets.popleft()

    def totals(self) -> dict[str, tuple[int, float]]:
        """``{event_type: (count, sum)}`` since start."""
        with self._lock:
            return dict(self._totals)

    def window(self, window_seconds: float = BUSINESS_RETENTION_SECONDS) -> dict[str, dict[str, float]]:
        """``{event_type: {count, sum, avg}}`` over the last ``window_seconds`` (capped at one hour).

        Every event type ever recorded is listed, with zeros when nothing is recent
        (as the handbook's collector does). Resolution: one second.
        """
        cutoff = self._clock() - min(window_seconds, BUSINESS_RETENTION_SECONDS)
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for event_type, buckets in self._buckets.items():
                count = total = 0.0
                for second, n, s in buckets:
                    if second > cutoff:
                        count += n
                        total += s
                out[event_type] = {"count": count, "sum": total, "avg": total / count if count else 0.0}
        return out
