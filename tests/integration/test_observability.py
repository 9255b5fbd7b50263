"""What an operator sees of a real ``pgmcp serve``: metrics, slow queries, history and JSON logs.

The handbook's scenario 3 (an operator's monitoring script, Prometheus alerts,
logs read with ``jq``) against spawned servers and a real PostgreSQL:

- ``get_metrics`` and ``/metrics`` (scraped over HTTP, parsed with
  prometheus_client's own parser) grow by exactly what was done, per
  connection, query type and outcome; pool gauges match ``list_connections``.
- A query over ``SLOW_QUERY_THRESHOLD_MS`` logs exactly one ``slow_query`` and is
  found by ``get_query_history(min_duration_ms=...)``; a fast one is not.
- Every stderr line is a JSON object with ``timestamp``, ``level``, ``event``;
  with ``ENABLE_QUERY_LOGGING=false`` no query text is anywhere; over stdio,
  stdout carries JSON-RPC only, even at DEBUG.
- The alert rules and the dashboard name only series the live server exports.

Three servers: ``obs`` (HTTP, DEBUG, threshold 200 ms, the example plugin
loaded so business events exist), ``quiet`` (HTTP, metrics and query logging
off, an audit file) and one stdio server. Connections to down hosts, a dropped
database and a hung host are in ``test_health_recovery.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, load_demo
from tests.integration.proc import (
    PGMCP,
    ROOT,
    ServerProcess,
    free_port,
    http_get,
    json_lines,
    pgmcp_env,
    serve_http,
)

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read alerts.yml")

ALERTS = ROOT / "deployment" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deployment" / "grafana" / "dashboard.json"
PLUGIN_PATH = ROOT / "examples" / "revenue_plugin"
METRIC = re.compile(r"\bmcp_server_[a-z0-9_]+")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
SLOW_MS = 200
# A loaded 2-core CI machine may sit at 80 % CPU: health must answer about connections here.
CALM = {"CPU_WARNING_THRESHOLD": "100", "MEMORY_WARNING_THRESHOLD": "100", "DISK_WARNING_THRESHOLD": "100"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def demo(module_db: PgServer) -> PgServer:
    await load_demo(module_db)
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE obs_items (id int PRIMARY KEY, note text)")
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
def obs(demo: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """HTTP server at DEBUG with SLOW_QUERY_THRESHOLD_MS=200 and the example plugin (business events)."""
    env = pgmcp_env(
        demo,
        MCP_LOG_LEVEL="DEBUG",
        SLOW_QUERY_THRESHOLD_MS=str(SLOW_MS),
        PYTHONPATH=str(PLUGIN_PATH),
        MCP_PLUGINS="pgmcp_revenue",
        **CALM,
    )
    with serve_http(env, tmp_path_factory.mktemp("obs"), name="obs") as server:
        yield server
    assert_every_line_is_a_log_object(server.stderr_text())


@dataclass
class Quiet:
    server: ServerProcess
    audit: Path


@pytest.fixture(scope="module")
def quiet(demo: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quiet]:
    """ENABLE_METRICS=false, ENABLE_QUERY_LOGGING=false, at DEBUG, every query slow, an audit file."""
    tmp = tmp_path_factory.mktemp("quiet")
    audit = tmp / "audit.jsonl"
    env = pgmcp_env(
        demo,
        ENABLE_METRICS="false",
        ENABLE_QUERY_LOGGING="false",
        MCP_LOG_LEVEL="DEBUG",
        SLOW_QUERY_THRESHOLD_MS="0",
        AUDIT_LOG_FILE=str(audit),
        **CALM,
    )
    with serve_http(env, tmp, name="quiet") as server:
        yield Quiet(server, audit)


# --- helpers ---------------------------------------------------------------------------------------


def assert_every_line_is_a_log_object(stderr: str) -> list[dict[str, Any]]:
    """Every non-empty stderr line is a JSON object with an ISO timestamp, a level and an event."""
    lines = json_lines(stderr)
    assert lines, "the server logged nothing"
    for line in lines:
        assert isinstance(line.get("event"), str) and line["event"], line
        assert line.get("level") in LEVELS, line
        stamp = line.get("timestamp")
        assert isinstance(stamp, str) and stamp.endswith("Z"), line
        datetime.fromisoformat(stamp)  # raises if it is not ISO 8601
    return lines


def scrape(server: ServerProcess) -> Samples:
    status, body = http_get(f"{server.base_url}/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and wanted <= lbl)


def events(lines: list[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        line for line in lines if line["event"] == event and all(line.get(k) == v for k, v in fields.items())
    ]


def diff(after: dict[str, Any], before: dict[str, Any], *path: str) -> float:
    def get(d: dict[str, Any]) -> float:
        for key in path[:-1]:
            d = d.get(key, {})
        return float(d.get(path[-1], 0))

    return get(after) - get(before)


# --- counting: get_metrics and /metrics agree, exactly ---------------------------------------------


async def test_n_queries_and_one_failure_grow_get_metrics_and_prometheus_by_exactly_that(
    obs: ServerProcess, demo: PgServer
) -> None:
    async with Client(obs.mcp_url) as client:
        n = 6
        await call_ok(client, "add_connection", connection_id="reports", pool_size=2, **demo.spec_args())
        try:
            log_mark = len(obs.logs())
            before_m = await call_ok(client, "get_metrics")
            before = scrape(obs)

            for i in range(n):
                data = await call_ok(
                    client, "execute_query", connection_id="default", query="SELECT $1::int AS i", params=[i]
                )
                assert data["rows"] == [{"i": i}]
            await call_err(
                client,
                "execute_query",
                "database_error",
                connection_id="default",
                query="SELECT * FROM no_such_table",
            )
            await call_err(
                client,
                "execute_query",
                "query_blocked",
                connection_id="default",
                query="DROP TABLE obs_items",
            )
            await call_ok(
                client,
                "execute_transaction",
                connection_id="reports",
                queries=[
                    {"query": "INSERT INTO obs_items VALUES ($1, $2)", "params": [1, "a"]},
                    {"query": "INSERT INTO obs_items VALUES ($1, $2)", "params": [2, "b"]},
                ],
            )

            after_m = await call_ok(client, "get_metrics")
            after = scrape(obs)
            history = (await call_ok(client, "get_query_history", connection_id="default", limit=n + 1))[
                "queries"
            ]
        finally:
            await call_ok(client, "remove_connection", connection_id="reports")

        # get_metrics: statements that reached the database; the blocked one is counted apart.
        assert diff(after_m, before_m, "total_queries") == n + 1 + 2
        assert diff(after_m, before_m, "successful_queries") == n + 2
        assert diff(after_m, before_m, "failed_queries") == 1
        assert diff(after_m, before_m, "blocked_queries") == 1
        assert diff(after_m, before_m, "queries_by_type", "SELECT") == n + 1
        assert diff(after_m, before_m, "queries_by_type", "INSERT") == 2
        assert diff(after_m, before_m, "queries_by_connection", "default") == n + 1
        assert diff(after_m, before_m, "queries_by_connection", "reports") == 2
        assert diff(after_m, before_m, "blocked_by_reason", "blocked_keyword") == 1
        assert diff(after_m, before_m, "tool_calls", "execute_query", "success") == n
        assert diff(after_m, before_m, "tool_calls", "execute_query", "database_error") == 1
        assert diff(after_m, before_m, "tool_calls", "execute_query", "query_blocked") == 1
        assert diff(after_m, before_m, "tool_calls", "execute_transaction", "success") == 1

        # /metrics: the same numbers, per connection, query type and status.
        q = "mcp_server_queries_total"
        assert grew(before, after, q, connection_id="default", query_type="SELECT", status="success") == n
        assert grew(before, after, q, connection_id="default", query_type="SELECT", status="error") == 1
        assert grew(before, after, q, connection_id="reports", query_type="INSERT", status="success") == 2
        assert total(after, q) - total(before, q) == n + 1 + 2
        h = "mcp_server_query_duration_seconds"
        assert grew(before, after, f"{h}_count", connection_id="default", query_type="SELECT") == n + 1
        assert (
            grew(before, after, f"{h}_bucket", connection_id="default", query_type="SELECT", le="+Inf")
            == n + 1
        )
        assert grew(before, after, f"{h}_count", connection_id="reports", query_type="INSERT") == 2
        assert (
            grew(
                before,
                after,
                "mcp_server_queries_blocked_total",
                connection_id="default",
                reason="blocked_keyword",
            )
            == 1
        )
        t = "mcp_server_tool_calls_total"
        assert grew(before, after, t, tool="execute_query", status="success") == n
        assert grew(before, after, t, tool="execute_query", status="database_error") == 1
        assert grew(before, after, t, tool="execute_query", status="query_blocked") == 1
        assert grew(before, after, t, tool="execute_transaction", status="success") == 1

        # The histogram's sum is the durations the history shows for those same statements.
        assert [e["success"] for e in history] == [False] + [True] * n
        assert history[0]["query"] == "SELECT * FROM no_such_table"
        assert history[0]["error_type"] == "database_error"
        sum_ms = grew(before, after, f"{h}_sum", connection_id="default", query_type="SELECT") * 1000
        assert sum_ms == pytest.approx(sum(e["duration_ms"] for e in history), abs=0.001 * (n + 1) + 1e-6)

        # The logs say the same: one `query` line (DEBUG) per statement, one query_blocked.
        lines = obs.logs()[log_mark:]
        queries = events(lines, "query", connection_id="default")
        assert len(queries) == n + 1
        assert [line["success"] for line in queries] == [True] * n + [False]
        assert len(events(lines, "query_blocked", connection_id="default", reason="blocked_keyword")) == 1
        assert len(events(lines, "query", connection_id="reports", query_type="INSERT")) == 2
        assert len(events(lines, "tool_call", tool="execute_query")) == n + 2


async def test_pool_gauges_match_list_connections_also_mid_query(obs: ServerProcess, demo: PgServer) -> None:
    async with Client(obs.mcp_url) as client:
        await call_ok(client, "add_connection", connection_id="gauged", pool_size=3, **demo.spec_args())
        try:
            listed = {
                c["connection_id"]: c["pool_stats"]
                for c in (await call_ok(client, "list_connections"))["connections"]
            }
            samples = scrape(obs)
            metrics = await call_ok(client, "get_metrics")
            # The pool opened one connection (add_connection's test) and may grow to 3.
            assert listed["gauged"] == {
                "size": 3,
                "open": 1,
                "idle_connections": 1,
                "active_connections": 0,
                "waiting": 0,
            }
            assert metrics["pools"] == listed
            for cid, stats in listed.items():
                assert value(samples, "mcp_server_pool_size", connection_id=cid) == stats["size"], cid
                assert (
                    value(samples, "mcp_server_connections_active", connection_id=cid)
                    == stats["active_connections"]
                )
                assert (
                    value(samples, "mcp_server_connections_idle", connection_id=cid)
                    == stats["idle_connections"]
                )
                assert value(samples, "mcp_server_connections_open", connection_id=cid) == stats["open"]
                assert value(samples, "mcp_server_connections_waiting", connection_id=cid) == stats["waiting"]

            # A statement in flight holds one connection: both views show it.
            async with Client(obs.mcp_url) as other:
                running = asyncio.create_task(
                    call_ok(
                        other, "execute_query", connection_id="gauged", query="SELECT pg_sleep(0.8) AS slept"
                    )
                )
                for _ in range(100):
                    listed = {
                        c["connection_id"]: c["pool_stats"]
                        for c in (await call_ok(client, "list_connections"))["connections"]
                    }
                    if listed["gauged"]["active_connections"] == 1:
                        break
                    await asyncio.sleep(0.02)
                samples = scrape(obs)
                assert listed["gauged"] == {
                    "size": 3,
                    "open": 1,
                    "idle_connections": 0,
                    "active_connections": 1,
                    "waiting": 0,
                }
                assert value(samples, "mcp_server_connections_active", connection_id="gauged") == 1
                assert value(samples, "mcp_server_connections_idle", connection_id="gauged") == 0
                assert value(samples, "mcp_server_connections_open", connection_id="gauged") == 1
                assert value(samples, "mcp_server_pool_size", connection_id="gauged") == 3
                await running
        finally:
            await call_ok(client, "remove_connection", connection_id="gauged")
        samples = scrape(obs)
        # A removed connection has no pool any more: its gauges go, its counters stay.
        assert ("mcp_server_pool_size", frozenset({("connection_id", "gauged")})) not in samples
        assert (
            value(
                samples,
                "mcp_server_queries_total",
                connection_id="gauged",
                query_type="SELECT",
                status="success",
            )
            == 1
        )


async def test_metrics_off_means_no_metrics_endpoint_but_get_metrics_still_answers(quiet: Quiet) -> None:
    status, body = http_get(f"{quiet.server.base_url}/metrics")
    assert status == 404
    assert json.loads(body)["error"] == "Metrics are disabled (ENABLE_METRICS=false)"
    async with Client(quiet.server.mcp_url) as c:
        before = await call_ok(c, "get_metrics")
        await call_ok(c, "execute_query", connection_id="default", query="SELECT 1 AS one")
        await call_err(c, "execute_query", "database_error", connection_id="default", query="SELECT 1/0")
        after = await call_ok(c, "get_metrics")
    assert diff(after, before, "total_queries") == 2
    assert diff(after, before, "failed_queries") == 1
    assert diff(after, before, "tool_calls", "execute_query", "success") == 1
    assert after["avg_query_time_ms"] > 0


# --- slow queries ----------------------------------------------------------------------------------


async def test_a_slow_query_logs_one_slow_query_line_and_is_found_in_the_history(
    obs: ServerProcess,
) -> None:
    async with Client(obs.mcp_url) as client:
        mark = len(obs.logs())
        before_m = await call_ok(client, "get_metrics")
        before = scrape(obs)
        slow = "SELECT pg_sleep(0.3) AS slept"
        fast = "SELECT 7 AS fast_one"
        await call_ok(client, "execute_query", connection_id="default", query=slow)
        await call_ok(client, "execute_query", connection_id="default", query=fast)
        after_m = await call_ok(client, "get_metrics")
        after = scrape(obs)

        lines = obs.logs()[mark:]
        slow_lines = events(lines, "slow_query")
        assert len(slow_lines) == 1, slow_lines
        line = slow_lines[0]
        assert line["level"] == "WARNING"
        assert line["connection_id"] == "default"
        assert line["query_type"] == "SELECT"
        assert line["threshold_ms"] == SLOW_MS
        assert line["duration_ms"] >= 300
        assert line["query"] == slow
        assert line["success"] is True
        assert diff(after_m, before_m, "slow_queries") == 1
        assert grew(before, after, "mcp_server_slow_queries_total", connection_id="default") == 1

        found = (await call_ok(client, "get_query_history", min_duration_ms=SLOW_MS))["queries"]
        assert found[0]["query"] == slow
        assert found[0]["duration_ms"] >= 300
        assert found[0]["connection_id"] == "default"
        assert all(entry["duration_ms"] >= SLOW_MS for entry in found)
        assert fast not in [entry["query"] for entry in found]
        recent = (await call_ok(client, "get_query_history", limit=2))["queries"]
        assert [entry["query"] for entry in recent] == [fast, slow]

        # As an operator reads it: jq over the raw stderr file.
        jq = shutil.which("jq")
        if jq is not None:
            out = subprocess.run(
                [
                    jq,
                    "-c",
                    'select(.event == "slow_query") | {connection_id, duration_ms, query}',
                    str(obs.stderr_path),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout
            picked = [json.loads(x) for x in out.splitlines()]
            assert {"connection_id": "default", "duration_ms": line["duration_ms"], "query": slow} in picked


# --- logs --------------------------------------------------------------------------------------------


async def test_each_situation_logs_its_event_as_one_json_object_per_line(
    obs: ServerProcess, demo: PgServer
) -> None:
    async with Client(obs.mcp_url) as client:
        password = "obs-Pw-8c1e"  # trust authentication ignores it; it must not reach the log
        param = "param-value-5d0c"
        mark = len(obs.logs())
        await call_ok(
            client,
            "add_connection",
            connection_id="logged",
            pool_size=1,
            password=password,
            **{k: v for k, v in demo.spec_args().items() if k != "password"},
        )
        try:
            await call_ok(client, "execute_query", connection_id="logged", query="SELECT 2 AS two")
            # Query text is logged (ENABLE_QUERY_LOGGING=true), parameter values never.
            echoed = await call_ok(
                client, "execute_query", connection_id="logged", query="SELECT $1::text AS v", params=[param]
            )
            assert echoed["rows"] == [{"v": param}]
            await call_err(
                client, "execute_query", "query_blocked", connection_id="logged", query="TRUNCATE obs_items"
            )
            dead_port = free_port()
            await call_err(
                client,
                "add_connection",
                "connection_failed",
                connection_id="nowhere",
                host="127.0.0.1",
                port=dead_port,
                database="x",
                user="x",
                password=password,
            )
        finally:
            await call_ok(client, "remove_connection", connection_id="logged")

        stderr = obs.stderr_text()
        assert password not in stderr
        assert param not in stderr
        lines = assert_every_line_is_a_log_object(stderr)[mark:]

        added = events(lines, "connection_added", connection_id="logged")
        assert len(added) == 1 and added[0]["level"] == "INFO"
        assert added[0]["database"] == demo.database and added[0]["pool_size"] == 1

        query, with_param = events(lines, "query", connection_id="logged")
        assert with_param["query"] == "SELECT $1::text AS v"
        assert query["level"] == "DEBUG"
        assert query["query_type"] == "SELECT" and query["row_count"] == 1
        assert query["query"] == "SELECT 2 AS two"
        assert isinstance(query["duration_ms"], float | int) and query["duration_ms"] >= 0

        (blocked,) = events(lines, "query_blocked", connection_id="logged")
        assert blocked["level"] == "WARNING"
        assert blocked["reason"] == "blocked_keyword"
        assert "TRUNCATE" in blocked["message"]

        failed = events(lines, "connection_failed", connection_id="nowhere")
        assert failed and all(f["level"] == "WARNING" for f in failed)
        assert failed[0]["host"] == "127.0.0.1" and failed[0]["error"], failed

        calls = events(lines, "tool_call")
        by_tool = {(c["tool"], c["status"]) for c in calls}
        assert {
            ("add_connection", "success"),
            ("execute_query", "success"),
            ("execute_query", "query_blocked"),
            ("add_connection", "connection_failed"),
            ("remove_connection", "success"),
        } <= by_tool
        assert all(c["level"] == "INFO" and c["duration_ms"] >= 0 for c in calls)
        assert not events(lines, "slow_query")  # nothing here took 200 ms


async def test_without_query_logging_no_query_text_appears_anywhere(quiet: Quiet) -> None:
    canary = "canary_7f3a"
    async with Client(quiet.server.mcp_url) as c:
        ok = await call_ok(
            c, "execute_query", connection_id="default", query=f"SELECT 1 AS n WHERE '{canary}' <> ''"
        )
        assert ok["rows"] == [{"n": 1}]
        await call_err(
            c,
            "execute_query",
            "database_error",
            connection_id="default",
            query=f"SELECT 1/0 AS n WHERE '{canary}' <> ''",
        )
        await call_err(
            c, "execute_query", "query_blocked", connection_id="default", query=f"DROP TABLE {canary}"
        )
        await call_ok(
            c,
            "batch_execute",
            connection_id="default",
            query=f"INSERT INTO obs_items (id, note) VALUES ($1, $2 || '{canary}')",
            params_list=[[101, "x"], [102, "y"]],
        )
        history = await call_ok(c, "get_query_history", limit=10)

    assert len(history["queries"]) >= 3
    assert all(entry["query"] is None for entry in history["queries"])
    assert canary not in json.dumps(history)

    stderr = quiet.server.stderr_text()
    lines = assert_every_line_is_a_log_object(stderr)
    # The lines are there (DEBUG `query`, `slow_query` at threshold 0, `query_blocked`), without text.
    assert len(events(lines, "query")) >= 3
    assert len(events(lines, "slow_query")) >= 3
    assert events(lines, "query_blocked", reason="blocked_keyword")
    assert not [line for line in lines if "query" in line]
    assert canary not in stderr

    audit = quiet.audit.read_text()
    records = [json.loads(x) for x in audit.splitlines()]
    assert {(r["tool"], r["outcome"]) for r in records} >= {
        ("execute_query", "success"),
        ("execute_query", "database_error"),
        ("execute_query", "query_blocked"),
        ("batch_execute", "success"),
    }
    assert canary not in audit


async def test_over_stdio_stdout_is_json_rpc_only_even_at_debug(demo: PgServer, tmp_path: Path) -> None:
    env = pgmcp_env(demo, MCP_LOG_LEVEL="DEBUG", SLOW_QUERY_THRESHOLD_MS="0")
    stderr_path = tmp_path / "stdio.stderr"
    calls: list[tuple[str, dict[str, Any]]] = [
        ("execute_query", {"connection_id": "default", "query": "SELECT 41 + 1 AS answer"}),
        ("execute_query", {"connection_id": "default", "query": "SELECT * FROM no_such_table"}),
        ("execute_query", {"connection_id": "default", "query": "DROP TABLE obs_items"}),
        ("get_metrics", {}),
        ("health_check", {}),
        ("get_query_history", {"limit": 5}),
    ]
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "obs", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    requests += [
        {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}}
        for i, (name, args) in enumerate(calls, start=1)
    ]
    with stderr_path.open("wb") as errfile:
        proc = await asyncio.create_subprocess_exec(
            PGMCP,
            "serve",
            "--transport",
            "stdio",
            env=env,
            cwd=str(tmp_path),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errfile,
        )
    assert proc.stdin is not None and proc.stdout is not None
    answers: dict[int, dict[str, Any]] = {}
    raw: list[bytes] = []
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            await proc.stdin.drain()
            while "id" in request and request["id"] not in answers:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
                assert line, f"stdout closed early:\n{stderr_path.read_text()}"
                raw.append(line)
                message = json.loads(line)
                if "id" in message:
                    answers[message["id"]] = message
        proc.stdin.close()
        raw += (await asyncio.wait_for(proc.stdout.read(), timeout=30)).splitlines(keepends=True)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, stderr_path.read_text()
    for line in raw:
        if line.strip():
            message = json.loads(line)
            assert message.get("jsonrpc") == "2.0" and ("id" in message or "method" in message), line

    def content(i: int) -> dict[str, Any]:
        # Errors carry their JSON as text only (structured content must match the output schema).
        answer = answers[i]["result"]
        result: dict[str, Any] = answer.get("structuredContent") or json.loads(answer["content"][0]["text"])
        return result

    assert content(1)["rows"] == [{"answer": 42}]
    assert content(2)["error_type"] == "database_error"
    assert content(3)["error_type"] == "query_blocked"
    assert content(4)["total_queries"] == 2 and content(4)["blocked_queries"] == 1
    assert content(5)["connections"]["default"]["is_healthy"] is True
    assert [e["success"] for e in content(6)["queries"]] == [False, True]

    lines = assert_every_line_is_a_log_object(stderr_path.read_text())
    for event in ("server_started", "tool_call", "query", "slow_query", "query_blocked", "server_stopped"):
        assert events(lines, event), event


# --- the alert rules and the dashboard name what the live server exports -------------------------------


def _alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "expr" and isinstance(item, str):
                    yield item
                else:
                    yield from walk(item)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(json.loads(DASHBOARD.read_text(encoding="utf-8"))))


async def test_alert_rules_and_dashboard_name_only_series_the_live_server_exports(
    obs: ServerProcess, demo: PgServer
) -> None:
    async with Client(obs.mcp_url) as client:
        # One of everything the rules watch: a success, a failure, a block, a slow query, a business event.
        await call_ok(client, "execute_query", connection_id="default", query="SELECT pg_sleep(0.21)")
        await call_err(client, "execute_query", "database_error", connection_id="default", query="SELECT 1/0")
        await call_err(
            client, "execute_query", "query_blocked", connection_id="default", query="DROP TABLE orders"
        )
        await call_ok(
            client,
            "calculate_revenue_metrics",
            connection_id="default",
            start_date="2024-01-01",
            end_date="2024-12-31",
        )
        exported = {name for name, _ in scrape(obs)}

        alert_names = {m for expr in _alert_exprs() for m in METRIC.findall(expr)}
        dashboard_names = {m for expr in _dashboard_exprs() for m in METRIC.findall(expr)}
        assert len(alert_names) >= 6 and len(dashboard_names) >= 8
        assert alert_names <= exported, sorted(alert_names - exported)
        assert dashboard_names <= exported, sorted(dashboard_names - exported)
        # The check can fail: the handbook's bare histogram name is no series.
        assert "mcp_server_query_duration_seconds" not in exported


# --- the handbook's monitoring script (scenario 3), as written -----------------------------------------


async def test_the_handbooks_monitoring_script_runs_against_the_server(
    obs: ServerProcess, demo: PgServer
) -> None:
    async with Client(obs.mcp_url) as client:
        alerts: list[str] = []
        send_alert = alerts.append
        names = ["prod_db", "analytics_db", "backup_db"]
        for name in names:
            await call_ok(client, "add_connection", connection_id=name, pool_size=1, **demo.spec_args())
        try:
            await call_ok(
                client, "execute_query", connection_id="prod_db", query="SELECT count(*) AS n FROM orders"
            )
            await call_ok(
                client,
                "execute_query",
                connection_id="analytics_db",
                query="SELECT count(*) AS n FROM customers",
            )
            await call_err(
                client,
                "execute_query",
                "database_error",
                connection_id="backup_db",
                query="SELECT * FROM no_such_table",
            )

            async def health_check() -> dict[str, Any]:
                return await call_ok(client, "health_check")

            async def test_connection(conn_id: str) -> dict[str, Any]:
                return await call_ok(client, "test_connection", connection_id=conn_id)

            async def get_metrics() -> dict[str, Any]:
                return await call_ok(client, "get_metrics")

            # --- the handbook's monitor_databases(), as written ---
            health = await health_check()
            if not health["is_healthy"]:
                send_alert(f"MCP Server unhealthy: {health['status']}")

            connections = ["prod_db", "analytics_db", "backup_db"]
            for conn_id in connections:
                conn_status = await test_connection(conn_id)
                if not conn_status["is_healthy"]:
                    send_alert(f"Database {conn_id} connection failed")

            metrics = await get_metrics()

            if metrics["avg_query_time_ms"] > 1000:
                send_alert(f"High average query time: {metrics['avg_query_time_ms']}ms")

            failure_rate = metrics["failed_queries"] / metrics["total_queries"] * 100
            if failure_rate > 5:
                send_alert(f"High query failure rate: {failure_rate:.1f}%")
            # --- end of the script ---
            samples = scrape(obs)
        finally:
            for name in names:
                await call_ok(client, "remove_connection", connection_id=name)

        assert all(health["connections"][name]["is_healthy"] for name in names)
        assert not [w for w in health["warnings"] if "Connection" in w], health["warnings"]
        assert not [a for a in alerts if a.startswith(("Database", "High average"))], alerts
        if health["status"] != "healthy":  # only a machine at 100 % CPU (CALM) may degrade it here
            assert health["warnings"] and all("usage high" in w for w in health["warnings"]), health
        # Sensible numbers, and the same ones Prometheus would compute.
        count = total(samples, "mcp_server_query_duration_seconds_count")
        assert metrics["total_queries"] == total(samples, "mcp_server_queries_total") == count >= 3
        assert metrics["failed_queries"] == total(samples, "mcp_server_queries_total", status="error") >= 1
        assert 0 < metrics["avg_query_time_ms"] < 1000
        assert metrics["avg_query_time_ms"] == pytest.approx(
            total(samples, "mcp_server_query_duration_seconds_sum") * 1000 / count, abs=0.001
        )
        assert metrics["p95_query_time_ms"] > 0
        assert 0 < failure_rate < 100
        assert metrics["failure_rate_percent"] == pytest.approx(failure_rate, abs=0.001)
        assert ("High query failure rate" in " ".join(alerts)) == (failure_rate > 5)
        assert set(metrics["pools"]) >= {"default", *names}
