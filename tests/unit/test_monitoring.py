"""Monitor: get_metrics and /metrics count the same things; logs, history and health behave."""

from __future__ import annotations

import json
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgmcp.config import load_settings
from pgmcp.logs import configure_logging
from pgmcp.monitoring import RESERVOIR_SIZE, Monitor

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def make_monitor(**overrides: Any) -> Monitor:
    return Monitor(load_settings(**overrides))


def scrape(monitor: Monitor) -> Samples:
    body, content_type = monitor.render_prometheus()
    assert content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def query(monitor: Monitor, conn: str = "main_db", qtype: str = "SELECT", ms: float = 5.0, **kw: Any) -> None:
    args: dict[str, Any] = {"success": True, "row_count": 1, "query": "SELECT 1"} | kw
    monitor.record_query(connection_id=conn, query_type=qtype, duration_ms=ms, **args)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _logs() -> None:
    configure_logging("INFO")


# --- counting ---------------------------------------------------------------------


def test_snapshot_and_prometheus_grow_by_exactly_what_was_recorded() -> None:
    monitor = make_monitor()
    query(monitor, "main_db", "SELECT")  # something before the baseline
    before_snap, before = monitor.snapshot(), scrape(monitor)
    n = 7
    for i in range(n):
        query(monitor, "main_db", "SELECT", ms=1.0 + i)
    query(monitor, "main_db", "SELECT", ms=20.0, success=False, row_count=None, error_type="database_error")
    query(monitor, "analytics", "INSERT", ms=3.0)
    after_snap, after = monitor.snapshot(), scrape(monitor)

    assert after_snap["total_queries"] - before_snap["total_queries"] == n + 2
    assert after_snap["successful_queries"] - before_snap["successful_queries"] == n + 1
    assert after_snap["failed_queries"] - before_snap["failed_queries"] == 1
    assert after_snap["queries_by_type"]["SELECT"] - before_snap["queries_by_type"]["SELECT"] == n + 1
    assert after_snap["queries_by_type"]["INSERT"] == 1
    assert (
        after_snap["queries_by_connection"]["main_db"] - before_snap["queries_by_connection"]["main_db"]
        == n + 1
    )
    assert after_snap["queries_by_connection"]["analytics"] == 1

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    main_select = {"connection_id": "main_db", "query_type": "SELECT"}
    assert grew("mcp_server_queries_total", **main_select, status="success") == n
    assert grew("mcp_server_queries_total", **main_select, status="error") == 1
    assert grew("mcp_server_query_duration_seconds_count", **main_select) == n + 1
    assert grew("mcp_server_query_duration_seconds_sum", **main_select) == pytest.approx(
        (sum(1.0 + i for i in range(n)) + 20.0) / 1000
    )
    analytics = {"connection_id": "analytics", "query_type": "INSERT"}
    assert grew("mcp_server_queries_total", **analytics, status="success") == 1
    assert grew("mcp_server_query_duration_seconds_count", **analytics) == 1

    # Same numbers both ways at the same moment.
    prom_total = sum(v for (name, _), v in after.items() if name == "mcp_server_queries_total")
    prom_errors = sum(
        v
        for (name, labels), v in after.items()
        if name == "mcp_server_queries_total" and ("status", "error") in labels
    )
    assert prom_total == after_snap["total_queries"]
    assert prom_errors == after_snap["failed_queries"]


def test_blocked_queries_are_counted_apart_from_total_and_failed(capsys: pytest.CaptureFixture[str]) -> None:
    monitor = make_monitor()
    query(monitor)
    monitor.record_blocked(
        connection_id="main_db",
        reason="blocked_keyword",
        query_type="DROP",
        message="Query blocked: contains dangerous keyword 'DROP'",
        query="DROP TABLE users",
    )
    snap, samples = monitor.snapshot(), scrape(monitor)
    assert (snap["total_queries"], snap["failed_queries"], snap["blocked_queries"]) == (1, 0, 1)
    assert snap["blocked_by_reason"] == {"blocked_keyword": 1}
    assert (
        value(samples, "mcp_server_queries_blocked_total", connection_id="main_db", reason="blocked_keyword")
        == 1
    )
    assert monitor.history() and all(h["query"] != "DROP TABLE users" for h in monitor.history())
    [line] = [x for x in json_lines(capsys.readouterr().err) if x["event"] == "query_blocked"]
    assert line["level"] == "WARNING"
    assert (line["connection_id"], line["reason"], line["query"]) == (
        "main_db",
        "blocked_keyword",
        "DROP TABLE users",
    )


def test_failure_rate_and_averages_never_divide_by_zero() -> None:
    snap = make_monitor().snapshot()
    assert snap["total_queries"] == 0
    assert snap["failure_rate_percent"] == 0.0
    assert snap["avg_query_time_ms"] == 0.0
    assert snap["p95_query_time_ms"] == 0.0


def test_average_is_since_start_and_p95_is_nearest_rank() -> None:
    monitor = make_monitor()
    for ms in range(1, 101):
        query(monitor, ms=float(ms), success=ms % 10 != 0)
    snap = monitor.snapshot()
    assert snap["avg_query_time_ms"] == pytest.approx(50.5)
    assert snap["p95_query_time_ms"] == 95.0
    assert snap["failure_rate_percent"] == 10.0
    assert RESERVOIR_SIZE >= 1000


def test_histogram_buckets_are_inclusive_and_span_half_a_millisecond_to_a_minute() -> None:
    monitor = make_monitor()
    for ms in (0.4, 0.5, 1000.0, 120_000.0):
        query(monitor, ms=ms)
    samples = scrape(monitor)

    def bucket(le: str) -> float:
        return value(
            samples,
            "mcp_server_query_duration_seconds_bucket",
            connection_id="main_db",
            query_type="SELECT",
            le=le,
        )

    assert bucket("0.0005") == 2  # 0.4 ms and exactly 0.5 ms
    assert bucket("0.5") == 2
    assert bucket("1.0") == 3  # exactly one second
    assert bucket("60.0") == 3
    assert bucket("+Inf") == 4


def test_tool_calls_and_pool_gauges() -> None:
    monitor = make_monitor()
    monitor.record_tool_call(tool="execute_query", status="success", duration_ms=3.0)
    monitor.record_tool_call(tool="execute_query", status="success", duration_ms=4.0)
    monitor.record_tool_call(tool="execute_query", status="query_blocked", duration_ms=1.0)
    monitor.set_pool_source(lambda: {"main_db": {"size": 10, "idle_connections": 7, "active_connections": 3}})
    snap, samples = monitor.snapshot(), scrape(monitor)
    assert snap["tool_calls"] == {"execute_query": {"success": 2, "query_blocked": 1}}
    assert value(samples, "mcp_server_tool_calls_total", tool="execute_query", status="success") == 2
    assert value(samples, "mcp_server_tool_calls_total", tool="execute_query", status="query_blocked") == 1
    assert snap["pools"] == {"main_db": {"size": 10, "idle_connections": 7, "active_connections": 3}}
    assert value(samples, "mcp_server_pool_size", connection_id="main_db") == 10
    assert value(samples, "mcp_server_connections_active", connection_id="main_db") == 3
    assert value(samples, "mcp_server_connections_idle", connection_id="main_db") == 7
    assert value(samples, "mcp_server_memory_usage_bytes") > 1_000_000
    assert value(samples, "mcp_server_uptime_seconds") >= 0


def test_a_failing_pool_source_does_not_break_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    monitor = make_monitor()

    def broken() -> dict[str, dict[str, int]]:
        raise RuntimeError("registry is closing, postgresql://u:pool-pw@db/x")

    monitor.set_pool_source(broken)
    assert monitor.snapshot()["pools"] == {}
    assert ("mcp_server_pool_size", frozenset()) not in scrape(monitor)
    err = capsys.readouterr().err
    assert "pool_source_failed" in err
    assert "pool-pw" not in err


def test_each_monitor_has_its_own_registry() -> None:
    first, second = make_monitor(), make_monitor()
    query(first)
    assert first.snapshot()["total_queries"] == 1
    assert second.snapshot()["total_queries"] == 0
    assert (
        value(
            scrape(second),
            "mcp_server_queries_total",
            connection_id="main_db",
            query_type="SELECT",
            status="success",
        )
        == 0
    )


def test_counters_keep_working_with_metrics_disabled() -> None:
    monitor = make_monitor(enable_metrics=False)
    query(monitor)
    assert monitor.snapshot()["total_queries"] == 1


# --- logs ---------------------------------------------------------------------------


def test_slow_query_logs_exactly_one_warning_with_duration_and_connection(
    capsys: pytest.CaptureFixture[str],
) -> None:
    monitor = make_monitor(slow_query_threshold_ms=100)
    query(monitor, "main_db", ms=50.0)
    query(monitor, "main_db", ms=100.0)  # at the threshold is not slow
    query(monitor, "main_db", ms=150.25, row_count=12)
    lines = json_lines(capsys.readouterr().err)
    slow = [x for x in lines if x["event"] == "slow_query"]
    assert len(slow) == 1
    assert slow[0]["level"] == "WARNING"
    assert slow[0]["connection_id"] == "main_db"
    assert slow[0]["duration_ms"] == 150.25
    assert slow[0]["threshold_ms"] == 100
    assert slow[0]["row_count"] == 12
    assert slow[0]["query_type"] == "SELECT"
    assert monitor.snapshot()["slow_queries"] == 1
    assert value(scrape(monitor), "mcp_server_slow_queries_total", connection_id="main_db") == 1


def test_query_is_logged_at_debug_with_its_fields(capsys: pytest.CaptureFixture[str]) -> None:
    monitor = make_monitor()
    query(monitor)  # INFO: not written
    assert json_lines(capsys.readouterr().err) == []
    configure_logging("DEBUG")
    query(monitor, "main_db", "SELECT", ms=2.5, row_count=4, query="SELECT * FROM orders WHERE id = $1")
    [line] = json_lines(capsys.readouterr().err)
    assert line["event"] == "query"
    assert line["level"] == "DEBUG"
    assert {k: line[k] for k in ("connection_id", "query_type", "duration_ms", "row_count", "success")} == {
        "connection_id": "main_db",
        "query_type": "SELECT",
        "duration_ms": 2.5,
        "row_count": 4,
        "success": True,
    }
    assert line["query"] == "SELECT * FROM orders WHERE id = $1"


def test_without_query_logging_no_query_text_is_kept_or_logged(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG")
    monitor = make_monitor(enable_query_logging=False, slow_query_threshold_ms=1)
    text = "SELECT secret_column_xyz FROM t"
    query(monitor, ms=5.0, query=text)
    query(monitor, ms=5.0, query=text, success=False, error_type="timeout")
    monitor.record_blocked(
        connection_id="main_db",
        reason="blocked_keyword",
        query_type="DROP",
        message="Query blocked",
        query=text,
    )
    err = capsys.readouterr().err
    assert "secret_column_xyz" not in err
    assert {x["event"] for x in json_lines(err)} >= {"query", "slow_query", "query_blocked"}
    assert [h["query"] for h in monitor.history()] == [None, None]
    assert "secret_column_xyz" not in json.dumps(monitor.snapshot())


def test_a_password_in_query_text_never_reaches_logs_or_history(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG")
    monitor = make_monitor()
    query(monitor, qtype="ALTER", query="ALTER ROLE app PASSWORD 'pw-in-sql-1'")
    query(monitor, query="SELECT * FROM dblink('host=db password=pw-in-dsn-2', 'select 1')")
    monitor.record_blocked(
        connection_id="main_db",
        reason="always_blocked",
        query_type="SELECT",
        message="Query blocked: function 'dblink' is not allowed",
        query="SELECT dblink_connect('postgresql://u:pw-in-uri-3@h/db')",
    )
    everything = capsys.readouterr().err + json.dumps(monitor.history()) + json.dumps(monitor.snapshot())
    for secret in ("pw-in-sql-1", "pw-in-dsn-2", "pw-in-uri-3"):
        assert secret not in everything
    assert monitor.history()[1]["query"] == "ALTER ROLE app PASSWORD '***'"


def test_tool_call_is_logged_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    make_monitor().record_tool_call(tool="list_tables", status="success", duration_ms=12.3456)
    [line] = json_lines(capsys.readouterr().err)
    assert (line["event"], line["level"], line["tool"], line["status"], line["duration_ms"]) == (
        "tool_call",
        "INFO",
        "list_tables",
        "success",
        12.346,
    )


# --- history ------------------------------------------------------------------------


def test_history_is_newest_first_and_filters() -> None:
    monitor = make_monitor()
    for i in range(6):
        query(monitor, "a" if i % 2 == 0 else "b", ms=float(i * 10), query=f"SELECT {i}")
    assert [h["query"] for h in monitor.history()] == [f"SELECT {i}" for i in range(5, -1, -1)]
    assert [h["query"] for h in monitor.history(connection_id="a")] == ["SELECT 4", "SELECT 2", "SELECT 0"]
    assert [h["query"] for h in monitor.history(min_duration_ms=30)] == ["SELECT 5", "SELECT 4", "SELECT 3"]
    assert [h["query"] for h in monitor.history(connection_id="b", min_duration_ms=20, limit=1)] == [
        "SELECT 5"
    ]
    assert monitor.history(limit=0) == []
    assert monitor.history(connection_id="nope") == []
    entry = monitor.history(limit=1)[0]
    assert set(entry) >= {
        "connection_id",
        "query",
        "query_type",
        "duration_ms",
        "success",
        "row_count",
        "timestamp",
    }
    stamp = datetime.fromisoformat(entry["timestamp"])
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_history_keeps_only_the_last_query_history_size() -> None:
    monitor = make_monitor(query_history_size=5)
    for i in range(8):
        query(monitor, query=f"SELECT {i}")
    assert [h["query"] for h in monitor.history(limit=50)] == [f"SELECT {i}" for i in range(7, 2, -1)]
    assert monitor.snapshot()["total_queries"] == 8  # counting is not bounded by the history
    none_kept = make_monitor(query_history_size=0)
    query(none_kept)
    assert none_kept.history() == []


def test_failed_query_in_history_carries_its_error_type() -> None:
    monitor = make_monitor()
    query(monitor, success=False, row_count=None, error_type="timeout", tool="execute_query")
    [entry] = monitor.history()
    assert (entry["success"], entry["row_count"], entry["error_type"], entry["tool"]) == (
        False,
        None,
        "timeout",
        "execute_query",
    )


# --- health -------------------------------------------------------------------------

RELAXED = {"memory_warning_threshold": 100, "cpu_warning_threshold": 100, "disk_warning_threshold": 100}


def ok(**extra: Any) -> dict[str, Any]:
    return {
        "is_healthy": True,
        "latency_ms": 1.2,
        "last_checked": datetime.now(UTC).isoformat(),
        "error": None,
    } | extra


def bad(error: str) -> dict[str, Any]:
    return {
        "is_healthy": False,
        "latency_ms": None,
        "last_checked": datetime.now(UTC).isoformat(),
        "error": error,
    }


def test_health_is_healthy_when_connections_answer_and_resources_are_fine() -> None:
    report = make_monitor(**RELAXED).health({"main_db": ok()})
    assert report["status"] == "healthy"
    assert report["is_healthy"] is True
    assert report["warnings"] == []
    assert report["connections"]["main_db"]["latency_ms"] == 1.2
    for key in ("uptime_seconds", "memory_percent", "cpu_percent", "disk_percent", "timestamp", "version"):
        assert key in report
    assert 0 <= report["memory_percent"] <= 100


def test_health_degrades_over_a_resource_threshold() -> None:
    report = make_monitor(**(RELAXED | {"memory_warning_threshold": 0})).health({"main_db": ok()})
    assert report["status"] == "degraded"
    assert report["is_healthy"] is True  # degraded still serves; warnings say what is wrong
    [warning] = report["warnings"]
    assert warning.startswith("Memory usage high: ")
    assert warning.endswith("% (threshold 0%)")


def test_health_degrades_when_some_connections_fail_and_is_unhealthy_when_all_do() -> None:
    monitor = make_monitor(**RELAXED)
    some = monitor.health({"main_db": ok(), "analytics": bad("connection refused")})
    assert some["status"] == "degraded"
    assert some["warnings"] == ["Connection 'analytics' is unhealthy: connection refused"]
    every = monitor.health({"main_db": bad("timeout"), "analytics": bad("connection refused")})
    assert every["status"] == "unhealthy"
    assert every["is_healthy"] is False


def test_health_without_connections_is_healthy_with_a_warning() -> None:
    report = make_monitor(**RELAXED).health({})
    assert report["status"] == "healthy"
    assert report["warnings"] == ["No database connections are registered"]


def test_health_ignores_a_connection_not_probed_yet() -> None:
    report = make_monitor(**RELAXED).health(
        {"main_db": ok(), "new": {"is_healthy": None, "last_checked": None}}
    )
    assert report["status"] == "healthy"
    assert report["warnings"] == ["Connection 'new' has not been checked yet"]


def test_health_degrades_when_the_cached_probe_is_stale() -> None:
    old = (datetime.now(UTC) - timedelta(seconds=200)).isoformat()
    report = make_monitor(**RELAXED, health_check_interval=30).health({"main_db": ok(last_checked=old)})
    assert report["status"] == "degraded"
    assert report["warnings"][0].startswith("Connection 'main_db' was last checked 20")


def test_health_masks_passwords_in_connection_errors() -> None:
    report = make_monitor(**RELAXED).health(
        {"main_db": bad("could not connect to postgresql://app:hc-pw@db/prod")}
    )
    assert "hc-pw" not in json.dumps(report)


def test_health_changed_is_logged_on_transitions_only(capsys: pytest.CaptureFixture[str]) -> None:
    monitor = make_monitor(**RELAXED)
    monitor.health({"main_db": ok()})  # healthy -> healthy: nothing
    monitor.health({"main_db": bad("timeout")})  # worse
    monitor.health({"main_db": bad("timeout")})  # unchanged
    monitor.health({"main_db": ok(), "other": bad("refused")})  # better
    monitor.health({"main_db": ok()})  # better
    changes = [x for x in json_lines(capsys.readouterr().err) if x["event"] == "health_changed"]
    assert [(x["level"], x["old_status"], x["new_status"]) for x in changes] == [
        ("WARNING", "healthy", "unhealthy"),
        ("INFO", "unhealthy", "degraded"),
        ("INFO", "degraded", "healthy"),
    ]


def test_health_answers_quickly() -> None:
    monitor = make_monitor()
    connections = {f"db{i}": ok() for i in range(20)}
    started = time.perf_counter()
    for _ in range(10):
        monitor.health(connections)
    assert (time.perf_counter() - started) / 10 < 0.05


def test_system_stats() -> None:
    stats = make_monitor().system_stats()
    assert 0 < stats["memory_percent"] <= 100
    assert stats["process_rss_bytes"] > 1_000_000
    assert 0 <= stats["cpu_percent"] <= 100
    assert 0 < stats["disk_percent"] <= 100
    assert stats["uptime_seconds"] >= 0


# --- business events and uptime -------------------------------------------------------


def test_business_metrics_cover_the_last_hour_only() -> None:
    clock = FakeClock()
    monitor = Monitor(load_settings(), clock=clock)
    monitor.record_business_event("order_placed", 2.0)
    clock.now += 1800
    monitor.record_business_event("order_placed", 4.0)
    monitor.record_business_event("refund")
    assert monitor.business_metrics() == {
        "order_placed": {"count": 2, "sum": 6.0, "avg": 3.0},
        "refund": {"count": 1, "sum": 1.0, "avg": 1.0},
    }
    clock.now += 1801  # the first order is now older than an hour
    assert monitor.business_metrics()["order_placed"] == {"count": 1, "sum": 4.0, "avg": 4.0}
    assert monitor.business_metrics(window_seconds=60)["order_placed"] == {"count": 0, "sum": 0.0, "avg": 0.0}
    samples = scrape(monitor)  # Prometheus counters are lifetime totals
    assert value(samples, "mcp_server_business_events_total", event_type="order_placed") == 2
    assert value(samples, "mcp_server_business_event_value_sum", event_type="order_placed") == 6.0
    assert value(samples, "mcp_server_business_event_value_count", event_type="refund") == 1
    assert monitor.uptime_seconds == pytest.approx(3601)
    assert monitor.snapshot()["uptime_seconds"] == pytest.approx(3601)


# --- cost -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m: query(m),
        lambda m: m.record_tool_call(tool="execute_query", status="success", duration_ms=1.0),
    ],
    ids=["record_query", "record_tool_call"],
)
def test_hot_path_calls_are_cheap(
    call: Callable[[Monitor], None], capsys: pytest.CaptureFixture[str]
) -> None:
    # A loose bound (the target is < 20 µs): catches a regression such as a regex
    # or a lock held across I/O, not scheduling noise.
    monitor = make_monitor()
    per_call = min(timeit.repeat(lambda: call(monitor), number=500, repeat=3)) / 500
    capsys.readouterr()
    assert per_call < 200e-6
