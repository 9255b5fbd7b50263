"""Every tool of SPEC §3 through the official MCP client, in-process, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.harness import ServerInTask, call_err, call_ok, load_demo

EXPECTED_TOOLS: dict[str, set[str]] = {
    "add_connection": {
        "connection_id",
        "host",
        "port",
        "database",
        "user",
        "password",
        "password_env",
        "pool_size",
        "ssl_mode",
        "ssl_root_cert",
        "ssl_cert",
        "ssl_key",
        "readonly",
        "ssh_host",
        "ssh_port",
        "ssh_user",
        "ssh_key_env",
        "ssh_password_env",
        "ssh_known_hosts",
        "dsn",
    },
    "remove_connection": {"connection_id"},
    "list_connections": set(),
    "test_connection": {"connection_id"},
    "execute_query": {"connection_id", "query", "params", "fetch_size"},
    "execute_transaction": {"connection_id", "queries"},
    "batch_execute": {"connection_id", "query", "params_list"},
    "list_schemas": {"connection_id"},
    "list_tables": {"connection_id", "schema", "limit"},
    "search_objects": {"connection_id", "pattern", "kinds", "schema", "detail", "limit"},
    "get_table_schema": {"connection_id", "table_name", "schema"},
    "explain_query": {"connection_id", "query", "params", "analyze"},
    "health_check": set(),
    "get_metrics": set(),
    "get_query_history": {"connection_id", "min_duration_ms", "limit"},
    "get_business_metrics": {"window_seconds"},
}


@pytest.fixture(scope="module")
async def demo(module_db: PgServer) -> PgServer:
    await load_demo(module_db)
    return module_db


@pytest.fixture(scope="module")
async def server(demo: PgServer) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(demo) as pair:
        yield pair


@pytest.fixture
def client(server: tuple[AppContext, Client]) -> Client:
    return server[1]


async def test_every_tool_is_listed_with_its_parameters_and_annotations(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == set(EXPECTED_TOOLS)
    for name, params in EXPECTED_TOOLS.items():
        tool = tools[name]
        assert set(tool.input_schema.get("properties", {})) == params, name
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is not None
        assert tool.output_schema is not None, name
        assert tool.description
    assert tools["execute_query"].annotations.read_only_hint is True
    assert tools["execute_transaction"].annotations.destructive_hint is True
    assert set(tools["execute_query"].input_schema["required"]) == {"connection_id", "query"}
    # params is a concrete JSON type, not "any"
    items = tools["execute_query"].input_schema["properties"]["params"]
    assert [b["type"] for b in items["items"]["anyOf"]] == [
        "string",
        "number",
        "boolean",
        "null",
        "array",
        "object",
    ]


async def test_execute_query_with_a_date_string_against_timestamptz(client: Client, demo: PgServer) -> None:
    data = await call_ok(
        client,
        "execute_query",
        connection_id="default",
        query="SELECT count(*) AS n FROM orders WHERE created_at > $1",
        params=["2024-01-01"],
    )
    conn = await asyncpg.connect(demo.dsn())
    try:
        expected = await conn.fetchval("SELECT count(*) FROM orders WHERE created_at > '2024-01-01'")
    finally:
        await conn.close()
    assert data["rows"] == [{"n": expected}]
    assert data["columns"] == [{"name": "n", "type": "bigint"}]
    assert data["row_count"] == 1
    assert data["truncated"] is False
    assert data["duration_ms"] >= 0


async def test_fetch_size_truncates_and_says_so(client: Client) -> None:
    data = await call_ok(
        client,
        "execute_query",
        connection_id="default",
        query="SELECT id FROM customers ORDER BY id",
        fetch_size=10,
    )
    assert [r["id"] for r in data["rows"]] == list(range(1, 11))
    assert data["truncated"] is True
    assert "keyset" in data["hint"]


async def test_execute_query_refuses_a_write_and_names_execute_transaction(
    client: Client, demo: PgServer
) -> None:
    data = await call_err(
        client, "execute_query", "query_blocked", connection_id="default", query="DELETE FROM logs"
    )
    assert "execute_transaction" in data["error"]
    conn = await asyncpg.connect(demo.dsn())
    try:
        assert await conn.fetchval("SELECT count(*) FROM logs") > 0
    finally:
        await conn.close()


async def test_transaction_commits_all_statements(client: Client, conn: asyncpg.Connection) -> None:
    before = await conn.fetchval("SELECT stock FROM inventory WHERE product_id = 456")
    data = await call_ok(
        client,
        "execute_transaction",
        connection_id="default",
        queries=[
            {
                "query": "INSERT INTO orders (user_id, total) VALUES ($1, $2) RETURNING id, total",
                "params": [123, 299.99],
            },
            {"query": "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2", "params": [1, 456]},
        ],
    )
    assert data["committed"] is True
    assert data["results"][0]["row_count"] == 1
    assert data["results"][0]["rows"][0]["total"] == "299.99"
    assert data["results"][1] == {"row_count": 1}
    new_id = data["results"][0]["rows"][0]["id"]
    assert await conn.fetchval("SELECT total::text FROM orders WHERE id = $1", new_id) == "299.99"
    assert await conn.fetchval("SELECT stock FROM inventory WHERE product_id = 456") == before - 1


async def test_failing_statement_rolls_back_the_whole_transaction(
    client: Client, conn: asyncpg.Connection
) -> None:
    orders = await conn.fetchval("SELECT count(*) FROM orders")
    stock = await conn.fetchval("SELECT stock FROM inventory WHERE product_id = 456")
    data = await call_err(
        client,
        "execute_transaction",
        "database_error",
        connection_id="default",
        queries=[
            {"query": "INSERT INTO orders (user_id, total) VALUES ($1, $2)", "params": [7, 10]},
            {"query": "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2", "params": [1, 456]},
            {"query": "INSERT INTO no_such_table VALUES (1)", "params": []},
        ],
    )
    assert data["failed_index"] == 2
    assert data["rolled_back"] is True
    assert data["committed"] is False
    assert await conn.fetchval("SELECT count(*) FROM orders") == orders
    assert await conn.fetchval("SELECT stock FROM inventory WHERE product_id = 456") == stock


async def test_bad_parameter_in_transaction_names_it_and_changes_nothing(
    client: Client, conn: asyncpg.Connection
) -> None:
    orders = await conn.fetchval("SELECT count(*) FROM orders")
    data = await call_err(
        client,
        "execute_transaction",
        "invalid_input",
        connection_id="default",
        queries=[
            {"query": "INSERT INTO orders (user_id, total) VALUES ($1, $2)", "params": [7, 10]},
            {"query": "INSERT INTO orders (user_id, total) VALUES ($1, $2)", "params": ["x", 10]},
        ],
    )
    assert data["failed_index"] == 1
    assert "$1" in data["error"]
    assert await conn.fetchval("SELECT count(*) FROM orders") == orders


async def test_batch_execute_inserts_every_row_in_one_call(client: Client, conn: asyncpg.Connection) -> None:
    data = await call_ok(
        client,
        "batch_execute",
        connection_id="default",
        query="INSERT INTO logs (level, message, timestamp) VALUES ($1, $2, $3)",
        params_list=[
            ["INFO", "batch-login", "2024-01-15 10:00:00"],
            ["ERROR", "batch-failed", "2024-01-15 10:05:00"],
            ["INFO", "batch-logout", "2024-01-15 11:00:00"],
        ],
    )
    assert data["rows_affected"] == 3
    assert data["batch_size"] == 3
    rows = await conn.fetch(
        "SELECT level, timestamp::text AS ts FROM logs WHERE message LIKE 'batch-%' ORDER BY ts"
    )
    assert [(r["level"], r["ts"]) for r in rows] == [
        ("INFO", "2024-01-15 10:00:00"),
        ("ERROR", "2024-01-15 10:05:00"),
        ("INFO", "2024-01-15 11:00:00"),
    ]


async def test_batch_failure_leaves_the_table_exactly_as_before(
    client: Client, conn: asyncpg.Connection
) -> None:
    before = await conn.fetchval("SELECT count(*) FROM logs")
    await call_err(
        client,
        "batch_execute",
        "database_error",
        connection_id="default",
        query="INSERT INTO logs (id, level, message, timestamp) VALUES ($1, $2, $3, $4)",
        params_list=[[900001, "INFO", "a", "2024-01-01"], [900001, "INFO", "dup", "2024-01-01"]],
    )
    assert await conn.fetchval("SELECT count(*) FROM logs") == before


async def test_update_batch_counts_rows_actually_affected(client: Client, conn: asyncpg.Connection) -> None:
    data = await call_ok(
        client,
        "batch_execute",
        connection_id="default",
        query="UPDATE products SET name = name WHERE id = $1",
        params_list=[[1], [2], [999999]],
    )
    assert data["rows_affected"] == 2


async def test_schema_tools_describe_the_demo(client: Client, conn: asyncpg.Connection) -> None:
    schemas = await call_ok(client, "list_schemas", connection_id="default")
    names = {s["schema_name"] for s in schemas["schemas"]}
    assert {"public", "analytics"} <= names
    tables = await call_ok(client, "list_tables", connection_id="default")
    by_name = {t["table_name"]: t for t in tables["tables"]}
    assert {"customers", "orders", "products", "inventory", "logs"} <= set(by_name)
    assert by_name["orders"]["table_type"] == "BASE TABLE"
    assert by_name["orders"]["schema"] == "public"
    actual = await conn.fetchval("SELECT count(*) FROM orders")
    assert abs(by_name["orders"]["row_estimate"] - actual) <= actual * 0.05
    schema = await call_ok(client, "get_table_schema", connection_id="default", table_name="orders")
    columns = {c["name"]: c for c in schema["columns"]}
    assert columns["id"]["nullable"] is False
    assert schema["primary_key"] == ["id"]
    fks = {fk["referenced_table"] for fk in schema["foreign_keys"]}
    assert "customers" in fks
    assert any(ix["unique"] and ix["columns"] == ["id"] for ix in schema["indexes"])


async def test_identifiers_are_parameters_not_sql(client: Client) -> None:
    await call_err(
        client,
        "get_table_schema",
        "database_error",
        connection_id="default",
        table_name="orders'; DROP TABLE orders; --",
    )
    data = await call_ok(client, "list_tables", connection_id="default", schema="x' OR '1'='1")
    assert data["tables"] == []


async def test_explain_gives_plan_summary_and_warnings(client: Client) -> None:
    data = await call_ok(
        client,
        "explain_query",
        connection_id="default",
        query="SELECT * FROM orders o JOIN customers c ON o.customer_id = c.id",
        analyze=True,
    )
    assert isinstance(data["plan"], list)
    assert data["summary"]["total_cost"] > 0
    assert data["summary"]["execution_time_ms"] >= 0
    assert any("Sequential scan" in w for w in data["warnings"]), data["warnings"]


async def test_explain_analyze_of_a_write_is_rolled_back(client: Client, conn: asyncpg.Connection) -> None:
    before = await conn.fetchval("SELECT count(*) FROM logs")
    data = await call_ok(
        client, "explain_query", connection_id="default", query="DELETE FROM logs", analyze=True
    )
    assert data["rolled_back"] is True
    assert await conn.fetchval("SELECT count(*) FROM logs") == before


async def test_connections_can_be_added_tested_listed_and_removed(client: Client, demo: PgServer) -> None:
    added = await call_ok(client, "add_connection", connection_id="second", pool_size=2, **demo.spec_args())
    assert added["message"] == "Connection established successfully"
    # The pool opens one connection (the one add_connection tests) and grows on demand to 2.
    assert added["pool_stats"] == {
        "size": 2,
        "open": 1,
        "idle_connections": 1,
        "active_connections": 0,
        "waiting": 0,
    }
    tested = await call_ok(client, "test_connection", connection_id="second")
    assert tested["is_healthy"] is True
    assert tested["server_version"]
    listed = await call_ok(client, "list_connections")
    assert {c["connection_id"] for c in listed["connections"]} == {"default", "second"}
    await call_ok(client, "remove_connection", connection_id="second")
    await call_err(client, "test_connection", "connection_not_found", connection_id="second")


@pytest.mark.parametrize(
    ("tool", "args", "error_type"),
    [
        ("execute_query", {"connection_id": "nope", "query": "SELECT 1"}, "connection_not_found"),
        ("execute_query", {"connection_id": "default", "query": "SELEC 1"}, "database_error"),
        (
            "execute_query",
            {"connection_id": "default", "query": "SELECT * FROM missing_table"},
            "database_error",
        ),
        (
            "execute_query",
            {"connection_id": "default", "query": "SELECT * FROM orders WHERE id = $1", "params": ["abc"]},
            "invalid_input",
        ),
        (
            "execute_query",
            {"connection_id": "default", "query": "SELECT 1", "fetch_size": -5},
            "invalid_input",
        ),
        ("execute_query", {"connection_id": "default"}, "invalid_input"),
        (
            "execute_query",
            {"connection_id": "default", "query": "SELECT $1::int", "params": [1, 2]},
            "invalid_input",
        ),
        (
            "batch_execute",
            {"connection_id": "default", "query": "SELECT 1", "params_list": []},
            "invalid_input",
        ),
    ],
)
async def test_bad_input_gets_a_clear_error_and_the_next_call_works(
    client: Client, tool: str, args: dict[str, Any], error_type: str
) -> None:
    data = await call_err(client, tool, error_type, **args)
    assert len(data["error"]) > 10
    ok = await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
    assert ok["rows"] == [{"one": 1}]


async def test_an_unknown_tool_is_a_json_rpc_error_and_the_next_call_works(client: Client) -> None:
    with pytest.raises(MCPError) as raised:
        await client.call_tool("no_such_tool", {})
    assert raised.value.error.code == INVALID_PARAMS
    assert "no_such_tool" in raised.value.error.message
    ok = await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
    assert ok["rows"] == [{"one": 1}]


async def test_wrong_parameter_type_names_the_parameter(client: Client) -> None:
    data = await call_err(
        client,
        "execute_query",
        "invalid_input",
        connection_id="default",
        query="SELECT * FROM orders WHERE id = $1 AND created_at > $2",
        params=[1, "not a date"],
    )
    assert "$2" in data["error"]


async def test_unreachable_host_fails_fast_with_connection_failed(client: Client) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = await call_err(
        client,
        "add_connection",
        "connection_failed",
        connection_id="ghost",
        host="127.0.0.1",
        port=port,
        database="x",
        user="u",
        password="hunter2-secret",
    )
    assert "hunter2-secret" not in data["error"]
    await call_err(client, "test_connection", "connection_not_found", connection_id="ghost")


async def test_health_metrics_and_history_tell_the_truth(client: Client) -> None:
    health = await call_ok(client, "health_check")
    assert health["status"] in {"healthy", "degraded"}
    assert health["connections"]["default"]["is_healthy"] is True
    before = await call_ok(client, "get_metrics")
    await call_ok(client, "execute_query", connection_id="default", query="SELECT 42 AS answer")
    await call_err(client, "execute_query", "database_error", connection_id="default", query="SELECT 1/0")
    after = await call_ok(client, "get_metrics")
    assert after["total_queries"] == before["total_queries"] + 2
    assert after["failed_queries"] == before["failed_queries"] + 1
    history = await call_ok(client, "get_query_history", limit=2)
    assert [q["query"] for q in history["queries"]] == ["SELECT 1/0", "SELECT 42 AS answer"]
    assert history["queries"][0]["success"] is False
    assert history["queries"][1]["row_count"] == 1


async def test_concurrent_calls_share_the_pool(client: Client) -> None:
    results = await asyncio.gather(
        *(
            call_ok(client, "execute_query", connection_id="default", query="SELECT $1::int AS i", params=[i])
            for i in range(40)
        )
    )
    assert sorted(r["rows"][0]["i"] for r in results) == list(range(40))


async def test_session_settings_changed_inside_a_function_do_not_reach_the_next_caller(
    demo: PgServer, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "CREATE OR REPLACE FUNCTION sneaky() RETURNS int LANGUAGE sql AS "
        "$$ SELECT length(set_config('search_path', 'evil', false)) $$"
    )
    async with ServerInTask(demo, db_pool_size=1) as (_, single):
        await call_ok(single, "execute_query", connection_id="default", query="SELECT sneaky() AS x")
        shown = await call_ok(
            single,
            "execute_query",
            connection_id="default",
            query="SELECT current_setting($$search_path$$) AS search_path",
        )
    assert shown["rows"][0]["search_path"] != "evil"


async def test_explain_does_not_blame_statistics_for_rows_a_limit_never_read(client: Client) -> None:
    data = await call_ok(
        client,
        "explain_query",
        connection_id="default",
        query="SELECT * FROM orders ORDER BY total_amount DESC LIMIT 5",
        analyze=True,
    )
    assert not any("statistics may be stale" in w for w in data["warnings"]), data["warnings"]
