"""Per-call work pgmcp's MCP edge skips, and the cases where it must not skip it."""

from __future__ import annotations

from typing import Annotated, Any

import httpx2
from pydantic import Field

from pgmcp.server import PgMcpServer

MODERN = "2026-07-28"


def _server() -> PgMcpServer:
    server = PgMcpServer(name="fast-paths")

    async def plain(connection_id: str) -> str:
        """No header annotations."""
        return connection_id

    async def routed(
        connection_id: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Connection"})],
    ) -> str:
        """Routed by an Mcp-Param-Connection header."""
        return connection_id

    server.add_tool(plain)
    server.add_tool(routed)
    return server


def test_header_validation_is_skipped_only_for_schemas_without_x_mcp_header() -> None:
    server = _server()
    assert server._tool_input_schema("plain") is None
    routed = server._tool_input_schema("routed")
    assert routed is not None and routed["properties"]["connection_id"]["x-mcp-header"] == "Connection"
    assert server._tool_input_schema("no_such_tool") is None


async def _call(server: PgMcpServer, tool: str, headers: dict[str, str]) -> httpx2.Response:
    app = server.streamable_http_app(json_response=True, stateless_http=True)
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": {"connection_id": "main"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as http,
    ):
        return await http.post(
            "/mcp",
            json=body,
            headers={
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": MODERN,
                "mcp-method": "tools/call",
                "mcp-name": tool,
                **headers,
            },
        )


async def test_a_mismatching_mcp_param_header_is_still_refused_where_a_schema_declares_one() -> None:
    server = _server()
    refused = await _call(server, "routed", {"mcp-param-connection": "other"})
    assert refused.status_code == 400, refused.text
    assert "Mcp-Param-Connection" in refused.text
    ok = await _call(server, "routed", {"mcp-param-connection": "main"})
    assert ok.status_code == 200 and ok.json()["result"]["content"][0]["text"] == "main", ok.text
    plain = await _call(server, "plain", {})
    assert plain.status_code == 200 and plain.json()["result"]["content"][0]["text"] == "main", plain.text
