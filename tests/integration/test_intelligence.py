"""Database intelligence against real problems in a real PostgreSQL.

The server is a cluster these tests start themselves with
``shared_preload_libraries=pg_stat_statements`` (Debian's PostgreSQL 15
binaries; ``hypopg`` where ``postgresql-15-hypopg`` is installed), or, with
``PGMCP_TEST_EMBEDDED=1``, the embedded PostgreSQL (which preloads
pg_stat_statements too, and has no hypopg: those tests skip).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import jsonschema
import pytest
from mcp import Client

from tests.conftest import PgServer, create_database, drop_database
from tests.integration import pgcluster
from tests.integration.harness import call_err, call_ok, running

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    if os.environ.get("PGMCP_TEST_EMBEDDED") == "1":
        yield request.getfixturevalue("pg_server")
        return
    reason = pgcluster.available()
    if reason:
        pytest.skip(reason)
    cluster = pgcluster.start(
        {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"},
        prefix="pgmcp-intel-",
    )
    try:
        yield cluster.server
    finally:
        cluster.stop()


@pytest.fixture
async def db(server: PgServer) -> AsyncIterator[PgServer]:
    """A fresh database of the test server, dropped afterwards."""
    name = f"t_intel_{uuid.uuid4().hex[:8]}"
    await create_database(server, name)
    try:
        yield replace(server, database=name)
    finally:
        await drop_database(server, name)


async def has_hypopg(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'hypopg'"))


async def wait_for(conn: asyncpg.Connection, sql: str, *args: Any, timeout: float = 15) -> None:
    """Until ``sql`` returns true (statistics reach the views a moment after the work)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await conn.fetchval(sql, *args):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still false after {timeout} s: {sql}")
        await asyncio.sleep(0.2)


async def assert_matches_schema(client: Client, tool: str, data: dict[str, Any]) -> None:
    """The result validates against the output schema the tool advertises (see test_output_schemas)."""
    (schema,) = [t.output_schema for t in (await client.list_tools()).tools if t.name == tool]
    jsonschema.validate(data, schema)


def by_check(
    findings: list[dict[str, Any]], check: str, metric: str | None = None
) -> dict[str, dict[str, Any]]:
    """The findings of ``check`` by object (those with ``metric`` only, if given)."""
    return {
        f["object"]: f for f in findings if f["check"] == check and (metric is None or metric in f["metric"])
    }


# --- analyze_db_health and get_activity ------------------------------------------------


async def test_a_healthy_database_reports_no_findings(db: PgServer) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL);"
            "INSERT INTO customers (email) SELECT 'c' || g || '@example.com' FROM generate_series(1, 2000) g;"
            "ANALYZE customers"
        )
    finally:
        await conn.close()
    async with running(db, health_unused_index_min_bytes=0) as (_, client):
        data = await call_ok(client, "analyze_db_health", connection_id="default")
    assert data["findings"] == [], data["findings"]
    assert set(data["summary"]) == {
        "indexes",
        "vacuum",
        "sequences",
        "connections",
        "cache",
        "replication",
        "constraints",
    }
    assert set(data["summary"].values()) == {"ok"}


async def test_each_seeded_problem_is_reported_by_its_check_with_its_object(db: PgServer) -> None:
    setup = await asyncpg.connect(db.dsn())
    holder = await asyncpg.connect(db.dsn())
    waiter = await asyncpg.connect(db.dsn())
    blocked: asyncio.Task[Any] | None = None
    try:
        await setup.execute(
            """
            CREATE TABLE orders (id serial PRIMARY KEY, status text, note text);
            INSERT INTO orders (status, note) SELECT 's' || (g % 5), 'n' || g FROM generate_series(1, 5000) g;
            CREATE INDEX orders_status_a ON orders (status);
            CREATE INDEX orders_status_b ON orders (status);
            CREATE INDEX orders_note_idx ON orders (note);
            CREATE TABLE dups (v int);
            INSERT INTO dups VALUES (1), (1);
            CREATE TABLE churn (id int, v text) WITH (autovacuum_enabled = false);
            INSERT INTO churn SELECT g, repeat('x', 20) FROM generate_series(1, 10000) g;
            DELETE FROM churn WHERE id <= 6000;
            CREATE SEQUENCE nearly_done MAXVALUE 1000;
            SELECT setval('nearly_done', 950);
            CREATE TABLE accounts (id int PRIMARY KEY, balance int);
            INSERT INTO accounts VALUES (1, 100);
            ALTER TABLE orders ADD CONSTRAINT status_known CHECK (status <> '') NOT VALID;
            """
        )
        # A failed CREATE INDEX CONCURRENTLY leaves an invalid index behind.
        with pytest.raises(asyncpg.UniqueViolationError):
            await setup.execute("CREATE UNIQUE INDEX CONCURRENTLY dups_v_key ON dups (v)")
        await wait_for(setup, "SELECT n_dead_tup >= 6000 FROM pg_stat_user_tables WHERE relname = 'churn'")
        # One session holds a row lock and sits idle in its transaction; another waits for it.
        await holder.execute("BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1")
        holder_pid = holder.get_server_pid()
        waiter_pid = waiter.get_server_pid()
        blocked = asyncio.create_task(
            waiter.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        )
        await wait_for(setup, "SELECT cardinality(pg_blocking_pids($1)) > 0", waiter_pid)
        await asyncio.sleep(1.2)  # past HEALTH_IDLE_IN_TRANSACTION_SECONDS below

        async with running(
            db,
            health_unused_index_min_bytes=0,
            health_idle_in_transaction_seconds=1,
            activity_long_transaction_seconds=1,
        ) as (_, client):
            data = await call_ok(client, "analyze_db_health", connection_id="default")
            activity = await call_ok(client, "get_activity", connection_id="default")
            only = await call_ok(client, "analyze_db_health", connection_id="default", checks=["sequences"])

        findings = data["findings"]
        indexes = by_check(findings, "indexes")
        assert "invalid" in indexes["public.dups_v_key"]["message"]
        duplicates = by_check(findings, "indexes", "duplicate_of")
        assert duplicates["public.orders_status_b"]["metric"]["duplicate_of"] == "public.orders_status_a"
        assert list(duplicates) == ["public.orders_status_b"]  # the one to keep is not reported
        unused = by_check(findings, "indexes", "idx_scan")
        assert unused["public.orders_note_idx"]["metric"]["idx_scan"] == 0
        assert "public.orders_pkey" not in unused  # a primary key is never "unused"
        vacuum = by_check(findings, "vacuum")
        assert vacuum["public.churn"]["metric"]["dead_tuples"] >= 6000
        assert "public.orders" not in vacuum
        sequences = by_check(findings, "sequences")
        assert sequences["public.nearly_done"]["metric"]["used_ratio"] >= 0.9
        assert sequences["public.nearly_done"]["severity"] == "warning"
        assert list(by_check(findings, "sequences")) == ["public.nearly_done"]  # orders_id_seq is fine
        connections = by_check(findings, "connections")
        assert connections[f"pid {holder_pid}"]["metric"]["idle_seconds"] >= 1
        assert f"pg_terminate_backend({holder_pid})" in connections[f"pid {holder_pid}"]["message"]
        assert f"pid {waiter_pid}" not in connections  # waiting on a lock is active, not idle
        constraints = by_check(findings, "constraints")
        assert "VALIDATE CONSTRAINT status_known" in constraints["public.orders.status_known"]["message"]
        assert data["summary"]["indexes"] == "warning"
        assert data["summary"]["replication"] == "ok"
        assert only["checks"] == ["sequences"] and {f["check"] for f in only["findings"]} == {"sequences"}

        (chain,) = [b for b in activity["blocking"] if b["pid"] == waiter_pid]
        assert chain["blocked_by"] == [holder_pid]
        assert chain["chain"] == [holder_pid, waiter_pid]
        assert "UPDATE accounts" in chain["query"]
        assert chain["blocking_queries"][0]["state"] == "idle in transaction"
        long_pids = {t["pid"] for t in activity["long_transactions"]}
        assert holder_pid in long_pids
        assert {s["pid"] for s in activity["sessions"]} >= {holder_pid, waiter_pid}
        assert any(not lock["granted"] for lock in activity["locks"])
    finally:
        await holder.close()
        if blocked is not None:
            await asyncio.wait_for(blocked, 10)
        await waiter.close()
        await setup.close()


# --- get_top_queries -----------------------------------------------------------------------


async def test_top_queries_lists_the_workload_in_the_order_of_each_sort(db: PgServer) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(40):
            await conn.fetch("SELECT 1 AS many_calls")
        for _ in range(8):
            await conn.fetch("SELECT pg_sleep(0.05) AS medium_sleep")
        for _ in range(2):
            # A different statement, not only another alias: aliases are not part of a queryid.
            await conn.fetch("SELECT pg_sleep(0.15) AS long_sleep FROM (SELECT 1) AS src")
        await conn.fetch("SELECT generate_series(1, 5000) AS many_rows")
    finally:
        await conn.close()

    def rank(queries: list[dict[str, Any]], *marks: str) -> list[str]:
        order = [m for q in queries for m in marks if m in q["query"]]
        return list(dict.fromkeys(order))

    async with running(db) as (_, client):
        results = {
            sort: await call_ok(client, "get_top_queries", connection_id="default", sort_by=sort, limit=100)
            for sort in ("total_time", "mean_time", "calls", "rows", "shared_blks_read")
        }
        await assert_matches_schema(client, "get_top_queries", results["total_time"])
    marks = ("many_calls", "medium_sleep", "long_sleep", "many_rows")
    assert rank(results["total_time"]["queries"], "medium_sleep", "long_sleep") == [
        "medium_sleep",
        "long_sleep",
    ]
    assert rank(results["mean_time"]["queries"], "medium_sleep", "long_sleep") == [
        "long_sleep",
        "medium_sleep",
    ]
    assert rank(results["calls"]["queries"], "many_calls", "medium_sleep", "long_sleep") == list(marks[:3])
    assert rank(results["rows"]["queries"], *marks)[0] == "many_rows"
    reads = [q["shared_blks_read"] for q in results["shared_blks_read"]["queries"]]
    assert reads == sorted(reads, reverse=True)
    by_mark = {m: q for q in results["calls"]["queries"] for m in marks if m in q["query"]}
    assert by_mark["many_calls"]["calls"] == 40
    assert by_mark["long_sleep"]["calls"] == 2
    assert by_mark["long_sleep"]["mean_time_ms"] >= 150
    assert by_mark["many_rows"]["rows"] == 5000
    total = results["total_time"]["queries"]
    assert 0 < sum(q["percent_of_total_time"] for q in total) <= 100.5
    assert set(total[0]) == {
        "query",
        "calls",
        "total_time_ms",
        "mean_time_ms",
        "rows",
        "shared_blks_hit",
        "shared_blks_read",
        "percent_of_total_time",
    }


async def test_top_queries_without_the_extension_says_how_to_enable_it(db: PgServer) -> None:
    async with running(db) as (_, client):
        err = await call_err(client, "get_top_queries", "extension_missing", connection_id="default")
        workload = await call_err(client, "recommend_indexes", "extension_missing", connection_id="default")
    assert "CREATE EXTENSION pg_stat_statements" in err["error"]
    assert err["extension"] == "pg_stat_statements"
    assert "pg_stat_statements" in workload["error"]


# --- recommend_indexes and hypothetical indexes ---------------------------------------------

SLOW = "SELECT id, kind FROM events WHERE account_id = 4242"


async def make_events(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        CREATE TABLE events (id bigserial PRIMARY KEY, account_id int NOT NULL, kind text NOT NULL,
                             payload text);
        INSERT INTO events (account_id, kind, payload)
             SELECT (g * 7919) % 20000, 'k' || (g % 7), repeat('p', 40) FROM generate_series(1, 200000) g;
        ANALYZE events;
        """
    )


async def plan_cost(conn: asyncpg.Connection, query: str) -> tuple[float, str]:
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}")
    import json

    root = json.loads(plan)[0]["Plan"]
    return float(root["Total Cost"]), json.dumps(root)


async def test_the_recommended_index_is_the_filter_column_and_its_estimate_holds_for_real(
    db: PgServer,
) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        if not await has_hypopg(conn):
            pytest.skip("hypopg is not installed for this PostgreSQL (Debian: postgresql-15-hypopg)")
        await conn.execute("CREATE EXTENSION hypopg")
        await make_events(conn)
        async with running(db, db_pool_size=1) as (_, client):
            data = await call_ok(client, "recommend_indexes", connection_id="default", queries=[SLOW])
            # The hypothetical indexes died with the call: the pooled session has none.
            left = await call_ok(
                client,
                "execute_query",
                connection_id="default",
                query="SELECT count(*) AS n FROM hypopg_list_indexes",
            )
        assert left["rows"] == [{"n": 0}]
        assert data["hypopg"] is True
        best = data["recommendations"][0]
        assert (best["table"], best["columns"], best["verified"]) == ("public.events", ["account_id"], True)
        assert best["definition"] == "CREATE INDEX ON public.events USING btree (account_id)"
        assert best["estimated_size_bytes"] > 100_000
        (served,) = best["queries"]
        assert served["query"] == SLOW
        assert served["cost_after"] < served["cost_before"] / 10
        assert best["improvement"] > 0.9
        assert all(r["columns"] != ["kind"] for r in data["recommendations"])  # kind is not filtered on
        assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'events'") == 1

        before, _ = await plan_cost(conn, SLOW)
        await conn.execute(best["definition"])
        await conn.execute("ANALYZE events")
        after, plan = await plan_cost(conn, SLOW)
        assert "events_account_id_idx" in plan
        estimated_ratio = served["cost_before"] / served["cost_after"]
        real_ratio = before / after
        assert real_ratio >= estimated_ratio / 10, (real_ratio, estimated_ratio)
    finally:
        await conn.close()


async def test_the_workload_of_pg_stat_statements_is_tuned_when_queries_are_left_out(db: PgServer) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        if not await has_hypopg(conn):
            pytest.skip("hypopg is not installed for this PostgreSQL (Debian: postgresql-15-hypopg)")
        await conn.execute("CREATE EXTENSION hypopg; CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await make_events(conn)
        await conn.execute("SELECT pg_stat_statements_reset()")
        for account in (1, 2, 3):
            await conn.fetch("SELECT id, kind FROM events WHERE account_id = $1", account)
    finally:
        await conn.close()
    async with running(db) as (_, client):
        data = await call_ok(client, "recommend_indexes", connection_id="default")
    # The normalised statement (account_id = $1) was planned as a generic plan.
    tuned = [r for r in data["recommendations"] if r["columns"] == ["account_id"]]
    assert tuned and "account_id = $1" in tuned[0]["queries"][0]["query"]
    assert tuned[0]["queries"][0]["cost_after"] < tuned[0]["queries"][0]["cost_before"]


async def test_without_hypopg_candidates_are_returned_unverified(db: PgServer) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, account_id int, kind text)")
    finally:
        await conn.close()
    async with running(db) as (_, client):
        data = await call_ok(client, "recommend_indexes", connection_id="default", queries=[SLOW])
        hypo = await call_err(
            client,
            "explain_query",
            "extension_missing",
            connection_id="default",
            query=SLOW,
            hypothetical_indexes=[{"table": "events", "columns": ["account_id"]}],
        )
    assert data["hypopg"] is False
    assert any("hypopg" in w for w in data["warnings"])
    rec = data["recommendations"][0]
    assert (rec["columns"], rec["verified"], rec["improvement"]) == (["account_id"], False, None)
    assert "CREATE EXTENSION hypopg" in hypo["error"]


async def test_explain_with_hypothetical_indexes_shows_both_plans(db: PgServer) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        if not await has_hypopg(conn):
            pytest.skip("hypopg is not installed for this PostgreSQL (Debian: postgresql-15-hypopg)")
        await conn.execute("CREATE EXTENSION hypopg")
        await make_events(conn)
    finally:
        await conn.close()
    async with running(db, db_pool_size=1) as (_, client):
        data = await call_ok(
            client,
            "explain_query",
            connection_id="default",
            query="SELECT id FROM events WHERE account_id = $1",
            params=[4242],
            hypothetical_indexes=[{"table": "public.events", "columns": ["account_id"]}],
        )
        await assert_matches_schema(client, "explain_query", data)
        # A call that fails after creating a hypothetical index closes its session instead of pooling it.
        await call_err(
            client,
            "explain_query",
            "invalid_input",
            connection_id="default",
            query=SLOW,
            hypothetical_indexes=[
                {"table": "events", "columns": ["kind"]},
                {"table": "events", "columns": ["no_such_column"]},
            ],
        )
        left = await call_ok(
            client,
            "execute_query",
            connection_id="default",
            query="SELECT count(*) AS n FROM hypopg_list_indexes",
        )
        assert left["rows"] == [{"n": 0}]
        plain = await call_ok(client, "explain_query", connection_id="default", query=SLOW)
        bad = await call_err(
            client,
            "explain_query",
            "invalid_input",
            connection_id="default",
            query=SLOW,
            hypothetical_indexes=[{"table": "events", "columns": ["no_such_column"]}],
        )
        await call_err(
            client,
            "explain_query",
            "invalid_input",
            connection_id="default",
            query=SLOW,
            analyze=True,
            hypothetical_indexes=[{"table": "events", "columns": ["account_id"]}],
        )
    assert data["summary"]["node_type"] in ("Seq Scan", "Gather")
    hypothetical = data["hypothetical"]
    assert hypothetical["indexes"][0]["used"] is True
    assert hypothetical["summary"]["total_cost"] < data["summary"]["total_cost"] / 10
    assert "no_such_column" in bad["error"]
    # The next call on the one pooled session plans without it again.
    assert plain["summary"]["node_type"] in ("Seq Scan", "Gather")


# --- the policy still decides ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM events",
        "SELECT 1; DROP TABLE events",
        "UPDATE events SET kind = 'x' WHERE account_id = 1",
        "SELECT pg_read_file('/etc/passwd')",
    ],
)
async def test_no_intelligence_tool_runs_what_the_policy_refuses(db: PgServer, query: str) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE events (id bigserial PRIMARY KEY, account_id int, kind text);"
            "INSERT INTO events (account_id, kind) VALUES (1, 'a')"
        )
        hypopg = await has_hypopg(conn)
        if hypopg:
            await conn.execute("CREATE EXTENSION hypopg")
        async with running(db) as (_, client):
            direct = await client.call_tool("execute_query", {"connection_id": "default", "query": query})
            assert direct.is_error
            await call_err(
                client, "recommend_indexes", "query_blocked", connection_id="default", queries=[query]
            )
            if hypopg:
                await call_err(
                    client,
                    "explain_query",
                    "query_blocked",
                    connection_id="default",
                    query=query,
                    hypothetical_indexes=[{"table": "events", "columns": ["account_id"]}],
                )
        assert await conn.fetchval("SELECT count(*) FROM events WHERE kind = 'a'") == 1
        assert await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")
    finally:
        await conn.close()
