"""The web console's JSON API: what the page shows is what get_query_history and get_metrics say.

In-process: pgmcp with an MCP client, and the console app on the same AppContext
driven over ASGI. Login, cookies and CONSOLE_PORT over real sockets are in
test_console_auth.py; the page in a real Chromium in test_console_browser.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from pgmcp.app import AppContext
from pgmcp.auth import Authenticator
from pgmcp.console import Console
from tests.conftest import PgServer
from tests.integration.harness import call, call_err, call_ok, running

SLOW_MS = 100
HISTORY_FIELDS = (
    "connection_id", "query", "query_type", "duration_ms", "success", "row_count", "timestamp", "error_type", "tool",
)  # fmt: skip


@asynccontextmanager
async def console_client(app: AppContext) -> AsyncIterator[httpx2.AsyncClient]:
    console = Console(app, Authenticator(app.settings))
    transport = httpx2.ASGITransport(app=console)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as http:
        yield http


async def api(http: httpx2.AsyncClient, path: str) -> dict[str, Any]:
    response = await http.get(f"/console/api/{path}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def a_few_calls(client: Any) -> dict[str, Any]:
    """One fast, one blocked, one slow and one failing statement."""
    await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
    blocked = await call_err(
        client, "execute_query", "query_blocked", connection_id="default", query="DROP TABLE t"
    )
    await call_ok(client, "execute_query", connection_id="default", query="SELECT pg_sleep(0.25) AS slept")
    await call_err(client, "execute_query", "database_error", connection_id="default", query="SELECT 1/0")
    return blocked


async def test_console_api_matches_get_query_history_and_get_metrics(module_db: PgServer) -> None:
    async with (
        running(module_db, slow_query_threshold_ms=SLOW_MS) as (app, client),
        console_client(app) as http,
    ):
        blocked = await a_few_calls(client)
        history = (await call_ok(client, "get_query_history", limit=50))["queries"]
        metrics = await call_ok(client, "get_metrics")
        page_history = (await api(http, "queries?limit=50"))["queries"]
        overview = await api(http, "overview")
        series = await api(http, "timeseries?window_seconds=600")
        refused = (await api(http, "blocked"))["blocked"]
        slow = await api(http, "slow")
        pool_size = app.registry.get("default").pool_size

    # The history rows are get_query_history's, newest first, field for field.
    assert [{k: row[k] for k in HISTORY_FIELDS} for row in page_history] == history
    assert [row["query"] for row in page_history] == [
        "SELECT 1/0",
        "SELECT pg_sleep(0.25) AS slept",
        "SELECT 1 AS one",
    ]
    assert all(
        row["principal"] == "stdio" for row in page_history
    )  # in-process MCP calls are the stdio caller

    # The totals are get_metrics' (the parts that do not move between two readings).
    for key in (
        "total_queries", "successful_queries", "failed_queries", "blocked_queries", "slow_queries",
        "avg_query_time_ms", "p95_query_time_ms", "queries_by_type", "blocked_by_reason",
    ):  # fmt: skip
        assert overview["metrics"][key] == metrics[key], key
    # get_metrics counted itself once it had answered.
    assert overview["metrics"]["tool_calls"].pop("get_metrics") == {"success": 1}
    assert overview["metrics"]["tool_calls"] == metrics["tool_calls"]
    assert (metrics["total_queries"], metrics["blocked_queries"], metrics["slow_queries"]) == (3, 1, 1)

    # The charts' buckets add up to the same counts.
    width = series["bucket_seconds"]
    assert round(sum(series["ok"]) * width) == metrics["successful_queries"] == 2
    assert round(sum(series["errors"]) * width) == metrics["failed_queries"] == 1
    assert round(sum(series["blocked"]) * width) == metrics["blocked_queries"] == 1
    assert (
        max(v for v in series["p95_ms"] if v is not None) >= 200
    )  # the pg_sleep(0.25), within a bin's width
    assert "default" in series["pools"] and series["pools"]["default"]["max"] == pool_size

    # The blocked call, with the reason and the message the caller got.
    assert refused[0]["reason"] == "blocked_keyword"
    assert refused[0]["message"] == blocked["error"]
    assert refused[0]["query"] == "DROP TABLE t"
    assert refused[0]["tool"] == "execute_query"

    # The slow call and nothing else.
    assert [row["query"] for row in slow["queries"]] == ["SELECT pg_sleep(0.25) AS slept"]
    assert slow["queries"][0]["explainable"] is True

    # The connection, healthy, with its pool.
    (conn,) = overview["connections"]
    assert conn["connection_id"] == "default"
    assert conn["is_healthy"] is True
    assert conn["server_version"]
    assert conn["pool"]["max"] == pool_size


async def test_history_filters_by_connection_tool_outcome_duration_and_text(module_db: PgServer) -> None:
    async with (
        running(module_db, slow_query_threshold_ms=SLOW_MS) as (app, client),
        console_client(app) as http,
    ):
        await a_few_calls(client)
        await call_ok(client, "list_schemas", connection_id="default")

        async def queries(query: str) -> list[str | None]:
            return [row["query"] for row in (await api(http, f"queries?{query}"))["queries"]]

        assert await queries("outcome=error") == ["SELECT 1/0"]
        assert await queries(f"min_duration_ms={SLOW_MS}") == ["SELECT pg_sleep(0.25) AS slept"]
        assert await queries("q=PG_SLEEP") == ["SELECT pg_sleep(0.25) AS slept"]
        assert await queries("tool=list_schemas") == ["list_schemas"]
        assert await queries("connection_id=nope") == []
        assert len(await queries("limit=2")) == 2
        bad = await api(http, "queries?outcome=maybe")
        assert (bad["success"], bad["error_type"]) == (False, "invalid_input")


async def test_slow_query_plan_is_explain_without_analyze_as_a_read_only_caller(module_db: PgServer) -> None:
    async with (
        running(module_db, slow_query_threshold_ms=SLOW_MS) as (app, client),
        console_client(app) as http,
    ):
        await a_few_calls(client)
        (slow,) = (await api(http, "slow"))["queries"]
        plan = await api(http, f"explain?id={slow['id']}")
        assert plan["success"] is True, plan
        assert plan["analyzed"] is False
        assert plan["plan"][0]["Plan"]["Node Type"] == "Result"
        assert "Execution Time" not in plan["plan"][0]  # not ANALYZE: pg_sleep did not run again
        newest = (await api(http, "queries?limit=1"))["queries"][0]
        assert newest["query"].startswith("EXPLAIN (VERBOSE, FORMAT JSON) SELECT pg_sleep")
        assert (newest["tool"], newest["principal"], newest["duration_ms"] < SLOW_MS) == (
            "explain_query", "console", True,
        )  # fmt: skip

        # An EXPLAIN's own entry has no plan to show; a gone id is said so.
        refused = await api(http, f"explain?id={newest['id']}")
        assert (refused["success"], refused["error_type"]) == (False, "invalid_input")
        gone = await api(http, "explain?id=999999")
        assert (gone["success"], gone["error_type"]) == (False, "invalid_input")


async def test_console_explain_is_policy_checked_and_never_writes(module_db: PgServer, conn: Any) -> None:
    await conn.execute("CREATE TABLE IF NOT EXISTS console_t (id int)")
    try:
        async with running(module_db) as (app, client), console_client(app) as http:
            await call_ok(client, "execute_transaction", connection_id="default",
                          queries=[{"query": "INSERT INTO console_t VALUES (1)"}])  # fmt: skip
            entry = next(e for e in app.monitor.recent_queries() if e["query_type"] == "INSERT")
            plan = await api(http, f"explain?id={entry['id']}")
            # EXPLAIN without ANALYZE of a write shows its plan and changes nothing ...
            assert plan["success"] is True, plan
            assert plan["plan"][0]["Plan"]["Node Type"] == "ModifyTable"
        assert await conn.fetchval("SELECT count(*) FROM console_t") == 1
        # ... and what the policy refuses to a caller it refuses to the console (no entry of the
        # history can carry it past the policy: a statement recorded by, say, a plugin's tool).
        async with running(module_db) as (app, client), console_client(app) as http:
            app.monitor.record_query(
                connection_id="default", query_type="SELECT", duration_ms=5000, success=True, row_count=1,
                query="SELECT pg_read_file('/etc/hostname')", tool="plugin_tool",
            )  # fmt: skip
            entry = app.monitor.recent_queries()[0]
            refused = await api(http, f"explain?id={entry['id']}")
            assert (refused["success"], refused["error_type"]) == (False, "query_blocked"), refused
            assert (await api(http, "blocked"))["blocked"][0]["tool"] is None  # not a tool call: no CallInfo
        assert await conn.fetchval("SELECT count(*) FROM console_t") == 1
    finally:
        await conn.execute("DROP TABLE console_t")


async def test_without_query_logging_no_statement_text_reaches_the_page(module_db: PgServer) -> None:
    async with (
        running(module_db, slow_query_threshold_ms=SLOW_MS, enable_query_logging=False) as (app, client),
        console_client(app) as http,
    ):
        await a_few_calls(client)
        rows = (await api(http, "queries"))["queries"]
        assert rows and all(row["query"] is None for row in rows)
        assert all(row["query"] is None for row in (await api(http, "blocked"))["blocked"])
        detail = (await api(http, f"queries/{rows[0]['id']}"))["query"]
        assert detail["query"] is None and detail["explainable"] is False
        slow = (await api(http, "slow"))["queries"][0]
        refused = await api(http, f"explain?id={slow['id']}")
        assert (refused["success"], refused["error_type"]) == (False, "invalid_input")
        assert "ENABLE_QUERY_LOGGING" in refused["error"]
        page = await api(http, "overview")
        assert page["settings"]["enable_query_logging"] is False


async def test_long_statements_are_cut_in_the_list_and_whole_in_the_detail(module_db: PgServer) -> None:
    long_sql = "SELECT " + " + ".join(["1"] * 400) + " AS n"
    async with running(module_db) as (app, client), console_client(app) as http:
        await call_ok(client, "execute_query", connection_id="default", query=long_sql)
        (row,) = (await api(http, "queries"))["queries"]
        assert (
            row["query_truncated"] is True and long_sql.startswith(row["query"]) and row["query"] != long_sql
        )
        assert (await api(http, f"queries/{row['id']}"))["query"]["query"] == long_sql
        missing = await http.get("/console/api/queries/123456")
        assert missing.status_code == 404


async def test_console_refuses_foreign_host_headers_and_cross_site_reads(module_db: PgServer) -> None:
    async with running(module_db) as (app, _), console_client(app) as http:
        rebound = await http.get("/console/api/overview", headers={"Host": "evil.example:3000"})
        assert rebound.status_code == 421
        cross = await http.get("/console/api/overview", headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 403
        page = await http.get("/console")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "http" not in csp  # nothing from anywhere else
        for asset in (
            "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css",
            "vendor/uPlot.LICENSE",
            "console.js",
        ):
            assert (await http.get(f"/console/static/{asset}")).status_code == 200, asset
        assert (await http.get("/console/static/../routes.py")).status_code == 404


@pytest.mark.parametrize("path", ["/console", "/console/api/overview"])
async def test_console_can_be_turned_off(module_db: PgServer, path: str) -> None:
    from pgmcp.http import build_http_app
    from pgmcp.server import build_server

    async with running(module_db, console_enabled=False) as (app, _):
        asgi = build_http_app(app, build_server(app))
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=asgi), base_url="http://127.0.0.1"
        ) as http:
            assert (await http.get(path)).status_code == 404


async def test_history_call_shape_is_unchanged_for_get_query_history(module_db: PgServer) -> None:
    """The Monitor keeps more per entry now (id, caller); the tool's rows are as before."""
    async with running(module_db) as (_, client):
        await call_ok(client, "execute_query", connection_id="default", query="SELECT 1")
        (row,) = (await call(client, "get_query_history"))["queries"]
        assert set(row) == set(HISTORY_FIELDS)


async def test_privileges_a_connection_reports_become_warnings_on_its_card(module_db: PgServer) -> None:
    """``privileges`` comes from the registry (test_connection / list_connections); shown when present."""
    async with running(module_db) as (app, _), console_client(app) as http:
        (plain,) = (await api(http, "overview"))["connections"]
        conn = app.registry.get("default")
        described = conn.describe()
        privileges = {"superuser": True, "risky_roles": ["pg_read_server_files"]}
        conn.describe = lambda: {**described, "privileges": privileges}  # type: ignore[method-assign]
        (card,) = (await api(http, "overview"))["connections"]
    assert card["privileges"] == privileges
    assert any("superuser" in w for w in card["warnings"])
    assert any("pg_read_server_files" in w for w in card["warnings"])
    if plain.get("privileges") is None:
        assert plain["warnings"] == []
