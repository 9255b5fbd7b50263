"""Every tool's output schema is advertised, and real results match it.

The SDK would re-validate each result against the tool's output model on every
call; pgmcp turns that off for its own tools (it cost more than a SELECT 1, see
benchmarks/README.md) and relies on this module instead: each advertised schema
is checked with jsonschema against results of real calls on a real PostgreSQL.
A tool added without a case here fails ``test_every_tool_has_a_case``.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jsonschema
import pytest
from jsonschema.validators import validator_for
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.harness import ServerInTask, load_demo, payload

RICH_SELECT = """
SELECT 42 AS i, 9007199254740993::bigint AS big, 12345678901234567890.123456789::numeric AS n,
       timestamptz '2024-01-15 10:00:00+00' AS ts, date '2024-01-15' AS d, interval '1 day 2 hours' AS iv,
       '{"a": [1, 2, {"b": null}]}'::jsonb AS j, '\\x00ff'::bytea AS b, ARRAY[1, 2, NULL] AS arr,
       NULL::text AS nothing, 'NaN'::float8 AS nan, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
       inet '10.1.2.3' AS ip, true AS flag, 'plain <tag> text' AS t
"""


def cases(db: PgServer) -> dict[str, list[dict[str, Any]]]:
    """Argument sets per tool: success paths with the shapes that vary (truncation, hints, plans)."""
    return {
        "list_connections": [{}],
        "test_connection": [{"connection_id": "default"}],
        "add_connection": [{"connection_id": "second", **db.spec_args(), "pool_size": 1}],
        "remove_connection": [{"connection_id": "second"}],
        "execute_query": [
            {"connection_id": "default", "query": RICH_SELECT},
            {"connection_id": "default", "query": "SELECT g FROM generate_series(1, 10) g", "fetch_size": 3},
            {"connection_id": "default", "query": "SELECT * FROM customers WHERE id > $1", "params": [0]},
            {"connection_id": "default", "query": "WITH t AS (SELECT 1 AS a) SELECT a, a AS a FROM t"},
        ],
        "execute_transaction": [
            {
                "connection_id": "default",
                "queries": [
                    {"query": "INSERT INTO schema_probe (id, note) VALUES ($1, $2)", "params": [1, "one"]},
                    {"query": "UPDATE schema_probe SET note = $1 WHERE id = $2", "params": ["uno", 1]},
                    {"query": "SELECT id, note FROM schema_probe ORDER BY id"},
                ],
            }
        ],
        "batch_execute": [
            {
                "connection_id": "default",
                "query": "INSERT INTO schema_probe (id, note) VALUES ($1, $2)",
                "params_list": [[10, "a"], [11, None], [12, "c"]],
            }
        ],
        "list_schemas": [{"connection_id": "default"}],
        "list_tables": [
            {"connection_id": "default"},
            {"connection_id": "default", "schema": "pg_catalog"},
            {"connection_id": "default", "schema": "pg_catalog", "limit": 2},
        ],
        "search_objects": [
            {"connection_id": "default", "pattern": "order"},
            {"connection_id": "default", "pattern": "order", "detail": "summary", "limit": 2},
            {"connection_id": "default", "pattern": "orders", "kinds": ["table"], "detail": "full"},
        ],
        "get_table_schema": [
            {"connection_id": "default", "table_name": "orders"},
            {"connection_id": "default", "table_name": "schema_probe"},
        ],
        "explain_query": [
            {
                "connection_id": "default",
                "query": "SELECT * FROM orders WHERE customer_id = $1",
                "params": [1],
            },
            {"connection_id": "default", "query": "SELECT count(*) FROM customers", "analyze": True},
        ],
        "health_check": [{}],
        "get_metrics": [{}],
        "get_query_history": [{}, {"connection_id": "default", "min_duration_ms": 0, "limit": 2}],
        "get_business_metrics": [{}, {"window_seconds": 60}],
    }


@pytest.fixture(scope="module")
async def demo(module_db: PgServer) -> PgServer:
    await load_demo(module_db)
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE schema_probe (id int PRIMARY KEY, note text)")
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
async def server(demo: PgServer) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(demo) as pair:
        yield pair


@pytest.fixture(scope="module")
async def schemas(server: tuple[AppContext, Client]) -> dict[str, dict[str, Any]]:
    tools = (await server[1].list_tools()).tools
    return {t.name: t.output_schema for t in tools if t.output_schema is not None}


def check(schema: dict[str, Any], instance: Any) -> None:
    cls = validator_for(schema)
    cls.check_schema(schema)
    cls(schema).validate(instance)


async def test_every_tool_advertises_an_object_output_schema(
    server: tuple[AppContext, Client], schemas: dict[str, dict[str, Any]]
) -> None:
    names = {t.name for t in (await server[1].list_tools()).tools}
    assert names and set(schemas) == names
    for name, schema in schemas.items():
        assert schema.get("type") == "object", name
        assert "success" in schema.get("required", []), name


async def test_every_tool_has_a_case(schemas: dict[str, dict[str, Any]], demo: PgServer) -> None:
    assert set(cases(demo)) == set(schemas), "add argument sets for new tools to cases()"


async def test_real_results_match_the_advertised_schemas(
    server: tuple[AppContext, Client], schemas: dict[str, dict[str, Any]], demo: PgServer
) -> None:
    client = server[1]
    seen: dict[str, list[dict[str, Any]]] = {}
    for tool, argument_sets in cases(demo).items():
        for arguments in argument_sets:
            result = await client.call_tool(tool, arguments)
            data = payload(result)
            assert not result.is_error, (tool, data)
            check(schemas[tool], data)
            seen.setdefault(tool, []).append(data)
    # The cases reach the shapes that vary, so the check above covered them.
    truncated = seen["execute_query"][1]
    assert truncated["truncated"] is True and truncated["row_count"] == 3 and "hint" in truncated
    rich = seen["execute_query"][0]["rows"][0]
    assert rich["big"] == "9007199254740993" and rich["j"] == {"a": [1, 2, {"b": None}]}
    assert seen["batch_execute"][0]["rows_affected"] == 3
    assert seen["execute_transaction"][0]["results"][2]["rows"] == [{"id": 1, "note": "uno"}]


async def test_the_schemas_are_not_vacuous(schemas: dict[str, dict[str, Any]]) -> None:
    # The same check rejects a result that breaks the contract, so passing above means something.
    good = {
        "success": True,
        "columns": [{"name": "x", "type": "integer"}],
        "rows": [{"x": 1}],
        "row_count": 1,
        "truncated": False,
        "duration_ms": 0.5,
    }
    check(schemas["execute_query"], good)
    for broken in ("success", "rows", "row_count"):
        bad = copy.deepcopy(good)
        del bad[broken]
        with pytest.raises(jsonschema.ValidationError):
            check(schemas["execute_query"], bad)
    with pytest.raises(jsonschema.ValidationError):
        check(schemas["execute_query"], {**good, "truncated": "no"})


async def test_builtin_results_are_not_revalidated_per_call(server: tuple[AppContext, Client]) -> None:
    # The schema stays advertised (above) while the SDK's per-call validation is off:
    # its output model is what FuncMetadata.convert_result validates against.
    pg_server = server[1].server
    for tool in pg_server._tool_manager.list_tools():  # type: ignore[union-attr]
        assert tool.output_schema is not None, tool.name
        assert tool.fn_metadata.output_model is None, tool.name


def _array_items(schema: Any, path: str = "") -> list[str]:
    """Paths of every ``items`` schema under an array of objects in ``schema``."""
    found: list[str] = []
    if isinstance(schema, dict):
        items = schema.get("items")
        if isinstance(items, dict) and items.get("type") != "string":
            found.append(path or "/")
        for key, value in schema.items():
            found += _array_items(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += _array_items(value, f"{path}/{i}")
    return found


async def test_row_arrays_cost_a_validating_client_nothing_per_row(
    schemas: dict[str, dict[str, Any]],
) -> None:
    # The official client validates every result against the advertised schema with jsonschema;
    # an items schema on rows made it check each row on each call (~11 ms per 1,000 rows).
    assert {name: _array_items(schema) for name, schema in schemas.items() if _array_items(schema)} == {}
    checked: list[Any] = []
    cls = validator_for(schemas["execute_query"])
    counting = cls.TYPE_CHECKER.redefine(
        "object", lambda _, value: checked.append(value) or isinstance(value, dict)
    )
    validator = jsonschema.validators.extend(cls, type_checker=counting)(schemas["execute_query"])
    rows = [{"x": i} for i in range(1_000)]
    validator.validate(
        {
            "success": True,
            "columns": [],
            "rows": rows,
            "row_count": 1_000,
            "truncated": True,
            "duration_ms": 1.0,
        }
    )
    row_ids = {id(row) for row in rows}
    assert checked and not [value for value in checked if id(value) in row_ids]
