"""What the MCP spec says a server answers, checked through the official Python client.

The defects an official conformance run and the TypeScript SDK client found: unknown
prompt and unknown tool are -32602, a schema resource of a missing table or connection is
a JSON-RPC error, ``completion/complete`` exists, and without WRAP_UNTRUSTED_DATA a
result's text is exactly the JSON of its structuredContent.
"""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, ResourceTemplateReference
from mcp_types import INVALID_PARAMS

from pgmcp.app import open_app
from pgmcp.server import build_server
from tests.conftest import PgServer
from tests.integration.harness import call_ok, load_demo, running, settings_for

MODES = ["legacy", "2026-07-28"]
TEMPLATE = "postgres://{connection_id}/{schema_name}/{table}/schema"


@pytest.fixture(scope="module")
async def demo(module_db: PgServer) -> PgServer:
    await load_demo(module_db)
    return module_db


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_prompt_unknown_tool_and_missing_resources_are_json_rpc_errors(
    demo: PgServer, mode: str
) -> None:
    async with open_app(settings_for(demo)) as app, Client(build_server(app), mode=mode) as client:
        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("no_such_prompt")
        assert prompt.value.error.code == INVALID_PARAMS
        assert "no_such_prompt" in prompt.value.error.message
        with pytest.raises(MCPError) as tool:
            await client.call_tool("drop_everything", {})
        assert tool.value.error.code == INVALID_PARAMS
        assert "drop_everything" in tool.value.error.message
        for uri, needle in (
            ("postgres://default/public/no_such_table/schema", "no_such_table"),
            ("postgres://nowhere/public/customers/schema", "nowhere"),
        ):
            with pytest.raises(MCPError) as missing:
                await client.read_resource(uri)
            assert missing.value.error.code == INVALID_PARAMS, uri
            assert needle in missing.value.error.message
        # What exists still reads.
        found = await client.read_resource("postgres://default/public/customers/schema")
        assert json.loads(found.contents[0].text)["table_name"] == "customers"  # type: ignore[union-attr]
        prompt_ok = await client.get_prompt("slow_query_tuning", {"connection_id": "default"})
        assert prompt_ok.messages


@pytest.mark.parametrize("mode", MODES)
async def test_completion_completes_tables_schemas_and_connections_by_prefix(
    demo: PgServer, mode: str
) -> None:
    async with open_app(settings_for(demo)) as app, Client(build_server(app), mode=mode) as client:
        if mode == "legacy":  # a pinned 2026-07-28 client synthesizes its discover result
            assert client.server_capabilities.completions is not None
        ref = ResourceTemplateReference(uri=TEMPLATE)
        tables = await client.complete(ref, {"name": "table", "value": "c"}, {"connection_id": "default"})
        assert "customers" in tables.completion.values
        assert all(v.lower().startswith("c") for v in tables.completion.values)
        schemas = await client.complete(ref, {"name": "schema_name", "value": "pub"})
        assert schemas.completion.values == ["public"]
        connections = await client.complete(ref, {"name": "connection_id", "value": ""})
        assert connections.completion.values == ["default"]
        migration = PromptReference(name="database_migration")
        prompt_tables = await client.complete(migration, {"name": "table", "value": "ord"})
        assert "orders" in prompt_tables.completion.values
        analysis = PromptReference(name="bi_analysis")
        listed = await client.complete(analysis, {"name": "connections", "value": "default,de"})
        assert listed.completion.values == ["default,default"]
        nothing = await client.complete(ref, {"name": "table", "value": "zzz_none"})
        assert nothing.completion.values == []


async def test_completion_is_bounded_to_100_values(module_db: PgServer) -> None:
    import asyncpg

    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "CREATE SCHEMA many; "
            "DO $$ BEGIN FOR i IN 1..150 LOOP EXECUTE format('CREATE TABLE many.t%s (id int)', i); END LOOP; END $$"
        )
        async with running(module_db) as (_, client):
            ref = ResourceTemplateReference(uri=TEMPLATE)
            result = await client.complete(ref, {"name": "table", "value": "t"}, {"schema_name": "many"})
        assert len(result.completion.values) == 100
        assert result.completion.total == 150
        assert result.completion.has_more is True
    finally:
        await conn.execute("DROP SCHEMA many CASCADE")
        await conn.close()


async def test_without_wrapping_the_text_is_exactly_the_json_of_structured_content(demo: PgServer) -> None:
    async with running(demo, wrap_untrusted_data=False) as (_, client):
        for tool, arguments in (
            (
                "execute_query",
                {"connection_id": "default", "query": "SELECT * FROM orders ORDER BY 1 LIMIT 5"},
            ),
            ("list_tables", {"connection_id": "default"}),
            ("get_table_schema", {"connection_id": "default", "table_name": "orders"}),
            ("list_connections", {}),
        ):
            result = await client.call_tool(tool, arguments)
            assert not result.is_error
            assert json.loads(result.content[0].text) == result.structured_content, tool  # type: ignore[union-attr]
    # With wrapping on (the default), the framing stays: documented as deliberate.
    async with running(demo) as (_, client):
        data = await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
        assert data["rows"] == [{"one": 1}]
        result = await client.call_tool("execute_query", {"connection_id": "default", "query": "SELECT 1"})
        assert "untrusted-data-" in result.content[0].text  # type: ignore[union-attr]
