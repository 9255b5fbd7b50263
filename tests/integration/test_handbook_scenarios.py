"""The handbook's four scenarios ("實際應用場景"), run as written through the MCP tools.

Each result is compared with what PostgreSQL itself says through a direct
asyncpg connection. The databases of the scenarios are made on the test server:
``sales`` / ``crm`` (scenario 1) and ``legacy`` (scenario 2) are copies of a
database loaded with the demo data; ``modern`` (scenario 2) starts empty.

The server runs with the handbook's own settings: ``default`` with
DB_POOL_SIZE=10, DEFAULT_POOL_SIZE=10 and MAX_CONNECTIONS=20. Pools grow on
demand, so three pools of 10 live under a cap of 20 open connections.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer, drop_database
from tests.integration.harness import ServerInTask, call_ok, load_demo

MONTHLY_SALES = """
    SELECT
        DATE_TRUNC('month', order_date) as month,
        SUM(total_amount) as revenue,
        COUNT(*) as order_count,
        AVG(total_amount) as avg_order_value
    FROM orders
    WHERE order_date >= $1
    GROUP BY month
    ORDER BY month
    """

CUSTOMER_ANALYSIS = """
    SELECT
        customer_segment,
        COUNT(*) as customer_count,
        AVG(lifetime_value) as avg_ltv
    FROM customers
    WHERE created_at >= $1
    GROUP BY customer_segment
    """

PAGE = "SELECT * FROM customers ORDER BY id LIMIT 1000 OFFSET $1"
INSERT_V2 = "INSERT INTO customers_v2 (id, name, email, phone, created_at) VALUES ($1, $2, $3, $4, $5)"
# As written in the handbook: `\.` inside a plain SQL literal (standard_conforming_strings
# keeps the backslash, so the regex sees an escaped dot).
QUALITY_CHECK = (
    r"SELECT COUNT(*) as invalid_emails FROM customers_v2 WHERE email !~ "
    r"'^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$'"
)
CUSTOMERS_V2 = """
    CREATE TABLE customers_v2 (
        id          bigint PRIMARY KEY,
        name        text NOT NULL,
        email       text,
        phone       text,
        created_at  timestamptz NOT NULL
    )
"""


class Databases:
    def __init__(self, default: PgServer, sales: PgServer, crm: PgServer, legacy: PgServer, modern: PgServer):
        self.default = default
        self.sales = sales
        self.crm = crm
        self.legacy = legacy
        self.modern = modern


@pytest.fixture(scope="module")
async def dbs(module_db: PgServer) -> AsyncIterator[Databases]:
    await load_demo(module_db)
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"t_handbook_{role}_{suffix}" for role in ("sales", "crm", "legacy", "modern")}
    admin = await asyncpg.connect(module_db.dsn("postgres"))
    try:
        for role in ("sales", "crm", "legacy"):
            await admin.execute(f'CREATE DATABASE "{names[role]}" TEMPLATE "{module_db.database}"')
        await admin.execute(f'CREATE DATABASE "{names["modern"]}"')
    finally:
        await admin.close()
    modern = replace(module_db, database=names["modern"])
    conn = await asyncpg.connect(modern.dsn())
    try:
        await conn.execute(CUSTOMERS_V2)
    finally:
        await conn.close()
    try:
        yield Databases(
            default=module_db,
            sales=replace(module_db, database=names["sales"]),
            crm=replace(module_db, database=names["crm"]),
            legacy=replace(module_db, database=names["legacy"]),
            modern=modern,
        )
    finally:
        for name in names.values():
            await drop_database(module_db, name)


@pytest.fixture(scope="module")
async def server(dbs: Databases) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(dbs.default, db_pool_size=10, default_pool_size=10, max_connections=20) as pair:
        yield pair


@pytest.fixture
def client(server: tuple[AppContext, Client]) -> Client:
    return server[1]


def connect_args(db: PgServer) -> dict[str, Any]:
    """add_connection's arguments as the handbook writes them (a password, no pool_size)."""
    args = db.spec_args()
    args.setdefault("password", "***")  # trust authentication ignores it; it must not leak either
    return args


async def direct(db: PgServer, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db.dsn())
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
    finally:
        await conn.close()
    return rows


async def remove_all_but_default(client: Client) -> None:
    listed = await call_ok(client, "list_connections")
    for conn in listed["connections"]:
        if conn["connection_id"] != "default":
            await call_ok(client, "remove_connection", connection_id=conn["connection_id"])


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- scenario 1: business intelligence over two databases ----------------------------------------


async def test_scenario_1_business_intelligence(client: Client, dbs: Databases) -> None:
    try:
        sales = await call_ok(client, "add_connection", connection_id="sales_db", **connect_args(dbs.sales))
        assert sales["message"] == "Connection established successfully"
        assert sales["pool_stats"]["size"] == 10  # DEFAULT_POOL_SIZE
        assert "note" not in sales
        # default (10) + sales_db (10) + crm_db (10) > MAX_CONNECTIONS=20: fine, the cap is on
        # connections open at once, and each pool opens one until calls need more.
        crm = await call_ok(client, "add_connection", connection_id="crm_db", **connect_args(dbs.crm))
        assert crm["pool_stats"]["size"] == 10
        assert crm["pool_stats"]["open"] == 1
        assert "note" not in crm

        # Explore
        sales_tables = await call_ok(client, "list_tables", connection_id="sales_db")
        names = {t["table_name"] for t in sales_tables["tables"]}
        expected_names = {
            r["table_name"]
            for r in await direct(
                dbs.sales,
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            )
        }
        assert names == expected_names
        assert {"orders", "customers"} <= names
        orders_schema = await call_ok(
            client, "get_table_schema", connection_id="sales_db", table_name="orders"
        )
        customer_schema = await call_ok(
            client, "get_table_schema", connection_id="crm_db", table_name="customers"
        )
        for schema, db, table in (
            (orders_schema, dbs.sales, "orders"),
            (customer_schema, dbs.crm, "customers"),
        ):
            columns = await direct(
                db,
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                table,
            )
            assert [c["name"] for c in schema["columns"]] == [r["column_name"] for r in columns]
            assert [c["nullable"] for c in schema["columns"]] == [r["is_nullable"] == "YES" for r in columns]
            assert schema["primary_key"] == ["id"]
        assert {"order_date", "total_amount"} <= {c["name"] for c in orders_schema["columns"]}
        assert {"customer_segment", "lifetime_value"} <= {c["name"] for c in customer_schema["columns"]}

        # Analyse
        monthly = await call_ok(
            client, "execute_query", connection_id="sales_db", query=MONTHLY_SALES, params=["2024-01-01"]
        )
        truth = await direct(dbs.sales, MONTHLY_SALES.replace("$1", "'2024-01-01'"))
        assert [c["name"] for c in monthly["columns"]] == [
            "month",
            "revenue",
            "order_count",
            "avg_order_value",
        ]
        assert monthly["row_count"] == len(truth) == 12
        assert monthly["truncated"] is False
        for got, want in zip(monthly["rows"], truth, strict=True):
            assert ts(got["month"]) == want["month"]
            assert Decimal(got["revenue"]) == want["revenue"]
            assert got["order_count"] == want["order_count"]
            assert Decimal(got["avg_order_value"]) == want["avg_order_value"]  # every digit

        segments = await call_ok(
            client, "execute_query", connection_id="crm_db", query=CUSTOMER_ANALYSIS, params=["2024-01-01"]
        )
        truth = await direct(dbs.crm, CUSTOMER_ANALYSIS.replace("$1", "'2024-01-01'"))
        got_by_segment = {r["customer_segment"]: r for r in segments["rows"]}
        assert (
            set(got_by_segment) == {r["customer_segment"] for r in truth} == {"enterprise", "smb", "consumer"}
        )
        for want in truth:
            got = got_by_segment[want["customer_segment"]]
            assert got["customer_count"] == want["customer_count"]
            assert Decimal(got["avg_ltv"]) == want["avg_ltv"]
        listed = await call_ok(client, "list_connections")
        assert "***" not in str(listed)
    finally:
        await remove_all_but_default(client)


# --- scenario 2: migration legacy_db -> modern_db ------------------------------------------------


async def test_scenario_2_migration(client: Client, dbs: Databases) -> None:
    try:
        await call_ok(client, "add_connection", connection_id="legacy_db", **connect_args(dbs.legacy))
        await call_ok(client, "add_connection", connection_id="modern_db", **connect_args(dbs.modern))

        # Analyse the source: every table's structure
        legacy_tables = await call_ok(client, "list_tables", connection_id="legacy_db")
        assert "customers" in {t["table_name"] for t in legacy_tables["tables"]}
        for table in legacy_tables["tables"]:
            schema = await call_ok(
                client, "get_table_schema", connection_id="legacy_db", table_name=table["table_name"]
            )
            assert schema["columns"], table["table_name"]

        # Migrate in pages of 1000
        batch_offset = 0
        pages = 0
        while True:
            source_data = await call_ok(
                client, "execute_query", connection_id="legacy_db", query=PAGE, params=[batch_offset]
            )
            if not source_data["rows"]:
                break
            assert source_data["truncated"] is False
            transformed_data = [
                [r["id"], r["name"], r["email"], r["phone"], r["created_at"]] for r in source_data["rows"]
            ]
            result = await call_ok(
                client,
                "batch_execute",
                connection_id="modern_db",
                query=INSERT_V2,
                params_list=transformed_data,
            )
            assert result["rows_affected"] == result["batch_size"] == len(transformed_data)
            pages += 1
            batch_offset += 1000
        assert pages == 2  # the demo has 2,000 customers

        # Verify: counts
        legacy_count = await call_ok(
            client, "execute_query", connection_id="legacy_db", query="SELECT COUNT(*) FROM customers"
        )
        modern_count = await call_ok(
            client, "execute_query", connection_id="modern_db", query="SELECT COUNT(*) FROM customers_v2"
        )
        assert legacy_count["rows"] == modern_count["rows"] == [{"count": 2000}]

        # Verify: e-mail quality (the handbook's regex, as written)
        quality_check = await call_ok(client, "execute_query", connection_id="modern_db", query=QUALITY_CHECK)
        truth = await direct(dbs.legacy, QUALITY_CHECK.replace("customers_v2", "customers"))
        invalid = quality_check["rows"][0]["invalid_emails"]
        assert invalid == truth[0]["invalid_emails"]
        assert invalid > 0  # the demo has deliberately broken addresses

        # Every migrated row is exactly its source row.
        columns = "id, name, email, phone, created_at"
        source = await direct(dbs.legacy, f"SELECT {columns} FROM customers ORDER BY id")
        target = await direct(dbs.modern, f"SELECT {columns} FROM customers_v2 ORDER BY id")
        assert [tuple(r) for r in target] == [tuple(r) for r in source]
    finally:
        await remove_all_but_default(client)


# --- scenario 3: the monitoring script -----------------------------------------------------------


async def test_scenario_3_monitoring_script(client: Client, dbs: Databases, module_db: PgServer) -> None:
    scratch = f"t_handbook_backup_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(module_db.dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{scratch}"')
    finally:
        await admin.close()
    alerts: list[str] = []
    send_alert = alerts.append
    try:
        for conn_id, db in (
            ("prod_db", dbs.default),
            ("analytics_db", dbs.sales),
            ("backup_db", replace(module_db, database=scratch)),
        ):
            await call_ok(client, "add_connection", connection_id=conn_id, pool_size=1, **connect_args(db))
        # The backup database goes away: its connection must be reported, not crash the script.
        await drop_database(module_db, scratch)

        before = await call_ok(client, "get_metrics")
        await call_ok(client, "execute_query", connection_id="prod_db", query="SELECT count(*) FROM orders")
        await call_ok(client, "execute_query", connection_id="analytics_db", query="SELECT 1")
        result = await client.call_tool(
            "execute_query", {"connection_id": "prod_db", "query": "SELECT * FROM no_such_table"}
        )
        assert result.is_error

        # --- the handbook's monitor_databases(), as written ---
        health = await call_ok(client, "health_check")
        if not health["is_healthy"]:
            send_alert(f"MCP Server unhealthy: {health['status']}")
        connections = ["prod_db", "analytics_db", "backup_db"]
        for conn_id in connections:
            conn_status = await call_ok(client, "test_connection", connection_id=conn_id)
            if not conn_status["is_healthy"]:
                send_alert(f"Database {conn_id} connection failed")
        metrics = await call_ok(client, "get_metrics")
        if metrics["avg_query_time_ms"] > 1000:
            send_alert(f"High average query time: {metrics['avg_query_time_ms']}ms")
        failure_rate = metrics["failed_queries"] / metrics["total_queries"] * 100
        if failure_rate > 5:
            send_alert(f"High query failure rate: {failure_rate:.1f}%")
        # --- end of the script ---

        assert "Database backup_db connection failed" in alerts
        assert not any(
            a.startswith("Database prod_db") or a.startswith("Database analytics_db") for a in alerts
        )
        # One of three connections down: degraded, still serving (is_healthy true), so the
        # script's first check stays quiet and the per-connection check names the culprit.
        assert health["status"] == "degraded"
        assert health["is_healthy"] is True
        assert not any(a.startswith("MCP Server unhealthy") for a in alerts)
        assert any("backup_db" in w for w in health["warnings"])
        assert health["connections"]["backup_db"]["is_healthy"] is False
        assert health["connections"]["prod_db"]["is_healthy"] is True
        assert any("backup_db" in w for w in health["warnings"])
        assert metrics["total_queries"] >= before["total_queries"] + 3
        assert metrics["failed_queries"] >= before["failed_queries"] + 1
        assert 0 < failure_rate <= 100
        assert isinstance(metrics["avg_query_time_ms"], int | float)
        assert metrics["avg_query_time_ms"] >= 0
        assert set(metrics["pools"]) >= {"default", "prod_db", "analytics_db", "backup_db"}
    finally:
        await remove_all_but_default(client)
        await drop_database(module_db, scratch)


# --- scenario 4: slow-query analysis ------------------------------------------------------------

SLOW = "SELECT pg_sleep(0.4) AS slept, count(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id"
FAST = "SELECT count(*) AS n FROM products"


async def test_scenario_4_slow_queries_are_found_and_explained(client: Client, dbs: Databases) -> None:
    try:
        await call_ok(
            client, "add_connection", connection_id="main_db", pool_size=2, **connect_args(dbs.default)
        )
        slow = await call_ok(client, "execute_query", connection_id="main_db", query=SLOW)
        assert slow["duration_ms"] >= 400
        await call_ok(client, "execute_query", connection_id="main_db", query=FAST)

        history = await call_ok(client, "get_query_history", connection_id="main_db", min_duration_ms=350)
        slow_queries = [q for q in history["queries"] if q["duration_ms"] > 350]
        assert slow_queries == history["queries"], "min_duration_ms filters"
        assert [q["query"] for q in slow_queries] == [SLOW]
        assert slow_queries[0]["connection_id"] == "main_db"
        assert slow_queries[0]["success"] is True
        everything = await call_ok(client, "get_query_history", connection_id="main_db")
        assert [q["query"] for q in everything["queries"]][:2] == [FAST, SLOW]  # newest first

        for query in slow_queries:
            plan = await call_ok(
                client,
                "explain_query",
                connection_id=query["connection_id"],
                query=query["query"],
                analyze=True,
            )
            assert isinstance(plan["plan"], list)
            assert plan["summary"]["total_cost"] > 0
            assert plan["summary"]["execution_time_ms"] >= 400  # it really ran
            # orders.customer_id has no index (on purpose): the join is a sequential scan.
            assert any("Sequential scan" in w for w in plan["warnings"]), plan["warnings"]
    finally:
        await remove_all_but_default(client)


async def test_pools_of_removed_connections_are_closed(client: Client, dbs: Databases) -> None:
    """After the scenarios, only 'default' holds sessions: removed connections left nothing open."""
    await asyncio.sleep(0)
    listed = await call_ok(client, "list_connections")
    assert [c["connection_id"] for c in listed["connections"]] == ["default"]
    rows = await direct(
        dbs.default,
        "SELECT datname, count(*) AS n FROM pg_stat_activity WHERE application_name = 'pgmcp' "
        "AND datname = ANY($1::text[]) GROUP BY datname",
        [dbs.sales.database, dbs.crm.database, dbs.legacy.database, dbs.modern.database],
    )
    assert rows == []
