"""tools/list stays small in a model's context: under 16 KB with every built-in tool enabled.

Measured as the issue says, from the official client:
``len(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools]))``.
"""

from __future__ import annotations

import json

from mcp import Client

from pgmcp.app import open_app
from pgmcp.config import load_settings
from pgmcp.server import build_server

LIMIT = 16 * 1024


async def measure() -> tuple[int, dict[str, int]]:
    settings = load_settings(pgmcp_embedded=False, db_host=None, mcp_config_file=None, enabled_tools="")
    async with open_app(settings) as app, Client(build_server(app)) as client:
        tools = (await client.list_tools()).tools
    dumped = [t.model_dump(mode="json", exclude_none=True) for t in tools]
    return len(json.dumps(dumped)), {t["name"]: len(json.dumps(t)) for t in dumped}


async def test_tools_list_with_every_tool_enabled_is_under_16_kb() -> None:
    total, per_tool = await measure()
    largest = sorted(per_tool.items(), key=lambda kv: -kv[1])[:5]
    assert total < LIMIT, f"tools/list is {total} bytes (limit {LIMIT}); largest: {largest}"


async def test_every_tool_has_a_description_and_a_compact_schema() -> None:
    settings = load_settings(pgmcp_embedded=False, db_host=None, mcp_config_file=None, enabled_tools="")
    async with open_app(settings) as app, Client(build_server(app)) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        assert tool.description, tool.name
        assert '"title"' not in json.dumps(tool.input_schema), tool.name
