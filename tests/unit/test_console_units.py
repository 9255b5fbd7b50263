"""The console's pure parts: the time series ring (bounded, correct after wrap-around) and session cookies."""

from __future__ import annotations

import math
import sys

from pgmcp.console.session import Sessions
from pgmcp.monitoring.timeseries import BUCKET_SECONDS, BUCKETS, LATENCY_BOUNDS_MS, TimeSeries, _quantile

T0 = 1_800_000_000.0  # a bucket boundary


def test_buckets_count_per_second_by_outcome_and_blocked() -> None:
    ts = TimeSeries()
    for k in range(20):
        ts.add_query(T0 + k * 0.1, 2.0, success=k % 4 != 0)
    ts.add_blocked(T0 + 3)
    ts.add_query(T0 + BUCKET_SECONDS, 5.0, success=True)  # the next bucket
    read = ts.read(T0 + BUCKET_SECONDS + 1, 60)
    assert read["t"][-2:] == [T0, T0 + BUCKET_SECONDS]
    assert read["ok"][-2:] == [15 / BUCKET_SECONDS, 1 / BUCKET_SECONDS]
    assert read["errors"][-2] == 5 / BUCKET_SECONDS
    assert read["blocked"][-2:] == [1 / BUCKET_SECONDS, 0.0]
    assert len(read["t"]) == 60 // BUCKET_SECONDS
    assert read["p50_ms"][0] is None  # nothing happened then


def test_quantiles_are_within_a_bin_of_the_truth() -> None:
    ts = TimeSeries()
    durations = [0.5 + 0.37 * k for k in range(1000)]  # 0.5 … 370 ms
    for d in durations:
        ts.add_query(T0 + 1, d, success=True)
    read = ts.read(T0 + 2, BUCKET_SECONDS)
    ordered = sorted(durations)
    for key, q in (("p50_ms", 0.5), ("p95_ms", 0.95)):
        truth = ordered[math.ceil(q * len(ordered)) - 1]
        assert abs(read[key][-1] - truth) / truth < 0.13, (key, read[key][-1], truth)
    assert _quantile([0] * (len(LATENCY_BOUNDS_MS) + 1), 0.5) is None


def test_an_old_slot_is_cleared_when_its_time_comes_round_again() -> None:
    ts = TimeSeries()
    ts.add_query(T0, 1.0, success=False)
    ts.sample_pools(T0, {"a": {"size": 3, "active_connections": 2, "idle_connections": 1}})
    later = T0 + BUCKETS * BUCKET_SECONDS  # the same slot, an hour on
    ts.add_query(later, 1.0, success=True)
    read = ts.read(later, BUCKETS * BUCKET_SECONDS)
    assert sum(read["errors"]) == 0 and read["ok"][-1] == 1 / BUCKET_SECONDS
    assert read["t"][0] == T0 + BUCKET_SECONDS  # the window never reaches back to the overwritten hour
    assert read["pools"]["a"]["in_use"][-1] is None  # not sampled in the new bucket


def test_pool_samples_keep_the_busiest_and_forget_removed_connections() -> None:
    ts = TimeSeries()
    ts.sample_pools(
        T0, {"a": {"size": 4, "active_connections": 3}, "b": {"size": 1, "active_connections": 0}}
    )
    ts.sample_pools(
        T0 + 1, {"a": {"size": 4, "active_connections": 1}, "b": {"size": 1, "active_connections": 1}}
    )
    read = ts.read(T0 + 2, BUCKET_SECONDS)
    assert read["pools"]["a"] == {"in_use": [3], "open": [4]}
    assert read["pools"]["b"] == {"in_use": [1], "open": [1]}
    ts.sample_pools(T0 + 3, {"a": {"size": 4, "active_connections": 0}})
    assert set(ts.read(T0 + 4, BUCKET_SECONDS)["pools"]) == {"a"}


def _deep_size(obj: object, seen: set[int] | None = None) -> int:
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        size += sum(_deep_size(v, seen) for v in obj)
    elif hasattr(obj, "__slots__"):
        size += sum(_deep_size(getattr(obj, s), seen) for s in obj.__slots__ if hasattr(obj, s))
    return size


def test_memory_does_not_grow_with_calls_or_time() -> None:
    ts = TimeSeries()
    pools = {"default": {"size": 10, "active_connections": 1}}
    for second in range(BUCKETS * BUCKET_SECONDS):  # one hour, every bucket used
        ts.add_query(T0 + second, 1.0 + second % 50, success=True)
        if second % BUCKET_SECONDS == 0:
            ts.sample_pools(T0 + second, pools)
    full = _deep_size(ts)
    for second in range(BUCKETS * BUCKET_SECONDS, 3 * BUCKETS * BUCKET_SECONDS):  # two more hours, 3 calls/s
        for k in range(3):
            ts.add_query(T0 + second + k / 3, 1.0 + k, success=k != 2)
        ts.add_blocked(T0 + second)
        if second % BUCKET_SECONDS == 0:
            ts.sample_pools(T0 + second, pools)
    assert _deep_size(ts) <= full * 1.01


def test_a_session_cookie_is_signed_expires_and_can_be_revoked() -> None:
    now = [1000.0]
    sessions = Sessions("the-token", 60, clock=lambda: now[0])
    value = sessions.issue()
    assert sessions.valid(value) and "the-token" not in value
    sid, expiry, mac = value.split(".")
    assert not sessions.valid(f"{sid}.{int(expiry) + 1}.{mac}")
    assert not sessions.valid(f"{sid}x.{expiry}.{mac}")
    assert not sessions.valid("the-token") and not sessions.valid(None) and not sessions.valid("a.b.c")
    # Replicas with the same token accept each other's sessions; another token does not.
    assert Sessions("the-token", 60, clock=lambda: now[0]).valid(value)
    assert not Sessions("other-token", 60, clock=lambda: now[0]).valid(value)
    now[0] += 61
    assert not sessions.valid(value)
    now[0] -= 61
    sessions.revoke(value)
    assert not sessions.valid(value)
    assert sessions.valid(sessions.issue())


def test_the_console_assets_are_package_data_with_their_licence() -> None:
    """``pip install .`` (no Node.js) ships every file the page loads, and uPlot's licence."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "pgmcp"
    ]
    static = root / "src" / "pgmcp" / "console" / "static"
    files = [p.relative_to(root / "src" / "pgmcp").as_posix() for p in static.rglob("*") if p.is_file()]
    assert (
        "console/static/vendor/uPlot.LICENSE" in files and "console/static/vendor/uPlot.iife.min.js" in files
    )
    for name in files:
        assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not package data"
    html = (static / "console.html").read_text() + (static / "login.html").read_text()
    assert "https://" not in html and "http://" not in html  # nothing from the internet
