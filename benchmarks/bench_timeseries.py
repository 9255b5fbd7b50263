"""The console's time series: memory over a simulated run, and what it adds to the Monitor's hot path.

1. Memory: the real :class:`pgmcp.monitoring.Monitor` records 200 statements a
   second (1 % of them blocked, durations 0.5–20 ms) for a simulated 70 minutes;
   the clock is simulated, so the run takes seconds, not an hour. Printed at
   simulated 1, 5, 10, 60 and 70 minutes: the time series' own size (deep
   ``sys.getsizeof``) and the memory tracemalloc sees allocated since the start
   (Monitor, history and reservoir included). The series is bounded by its 360
   buckets: it stops growing when the ring is full (an hour) whatever the rate.
2. Hot path: CPU time of one ``Monitor.record_query`` call, beside the floor of
   the same Monitor with the time series stubbed out, in the same run.

    .venv/bin/python benchmarks/bench_timeseries.py [--rate 200] [--minutes 70] [--runs 200000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from typing import Any

from pgmcp.config import load_settings
from pgmcp.logs import configure_logging
from pgmcp.monitoring import Monitor
from pgmcp.monitoring import monitor as monitor_module
from pgmcp.monitoring.timeseries import BUCKETS


def deep_size(obj: Any, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        size += sum(deep_size(v, seen) for v in obj)
    elif hasattr(obj, "__slots__"):
        size += sum(deep_size(getattr(obj, s), seen) for s in obj.__slots__ if hasattr(obj, s))
    return size


class _SimulatedTime:
    """Stands in for the ``time`` module inside pgmcp.monitoring.monitor: ``time()`` is simulated."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.monotonic = time.monotonic
        self.perf_counter = time.perf_counter

    def time(self) -> float:
        return self.now


def memory_run(rate: int, minutes: int) -> list[tuple[int, int, int]]:
    """[(simulated minute, time series bytes, traced bytes since start)] at the checkpoints."""
    settings = load_settings(pgmcp_embedded=False)
    fake = _SimulatedTime(1_800_000_000.0)
    real_time = monitor_module.time
    monitor_module.time = fake  # type: ignore[assignment]
    checkpoints = {1, 5, 10, 60, minutes}
    out: list[tuple[int, int, int]] = []
    try:
        monitor = Monitor(settings)
        monitor.set_pool_source(
            lambda: {"default": {"size": 10, "idle_connections": 8, "active_connections": 2}}
        )
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        step = 1.0 / rate
        n = 0
        for second in range(minutes * 60):
            for k in range(rate):
                fake.now = 1_800_000_000.0 + second + k * step
                n += 1
                if n % 100 == 0:
                    monitor.record_blocked(
                        connection_id="default", reason="blocked_keyword", query_type=None,
                        message="Query blocked: contains dangerous keyword 'DROP'", query="DROP TABLE t",
                    )  # fmt: skip
                else:
                    monitor.record_query(
                        connection_id="default", query_type="SELECT", duration_ms=0.5 + (n % 400) * 0.05,
                        success=n % 50 != 0, row_count=1, query="SELECT 1", tool="execute_query",
                    )  # fmt: skip
            if (second + 1) % 60 == 0 and (second + 1) // 60 in checkpoints:
                traced = tracemalloc.get_traced_memory()[0] - base
                out.append(((second + 1) // 60, deep_size(monitor.series), traced))
        tracemalloc.stop()
    finally:
        monitor_module.time = real_time
    return out


class _NoSeries:
    """The floor: a Monitor whose time series does nothing."""

    def add_query(self, now: float, duration_ms: float, success: bool) -> bool:
        return False


def record_cost_us(runs: int) -> tuple[float, float]:
    """Median CPU µs of one record_query: (with the time series, floor without it)."""
    settings = load_settings(pgmcp_embedded=False)
    with_series = Monitor(settings)
    floor = Monitor(settings)
    floor.series = _NoSeries()  # type: ignore[assignment]
    results = []
    for monitor in (with_series, floor):
        batches = []
        for _ in range(7):
            start = time.thread_time_ns()
            for i in range(runs // 7):
                monitor.record_query(
                    connection_id="default", query_type="SELECT", duration_ms=1.0 + (i % 50),
                    success=True, row_count=1, query="SELECT 1", tool="execute_query",
                )  # fmt: skip
            batches.append((time.thread_time_ns() - start) / (runs // 7) / 1000)
        results.append(statistics.median(batches))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=200, help="statements per simulated second")
    parser.add_argument("--minutes", type=int, default=70, help="simulated minutes")
    parser.add_argument("--runs", type=int, default=210_000, help="record_query calls timed")
    args = parser.parse_args()
    configure_logging("CRITICAL")  # the blocked statements would each log a line

    started = time.perf_counter()
    rows = memory_run(args.rate, args.minutes)
    took = time.perf_counter() - started
    print(f"time series memory, {args.rate} statements/s (1 % blocked), simulated clock ({took:.1f} s real):")
    print("| simulated minute | statements recorded | time series | all memory since start |")
    print("| ---: | ---: | ---: | ---: |")
    for minute, series_bytes, traced in rows:
        print(
            f"| {minute} | {minute * 60 * args.rate:,} | {series_bytes / 1024:,.1f} KiB | {traced / 1024:,.1f} KiB |"
        )
    full = BUCKETS * 10 // 60
    print(f"(the ring holds {BUCKETS} buckets = {full} minutes; past that the series does not grow)")

    with_us, floor_us = record_cost_us(args.runs)
    print("\nMonitor.record_query, CPU per call (median of 7 batches):")
    print(f"| with the time series | {with_us:.3f} µs |")
    print(f"| floor: time series stubbed out | {floor_us:.3f} µs |")
    print(f"| the time series adds | {with_us - floor_us:.3f} µs |")


if __name__ == "__main__":
    main()
