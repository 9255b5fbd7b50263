"""The MCP server class: the SDK's MCPServer with pgmcp's error shape, tools/list and stdio.

Argument errors come back as ``invalid_input`` in the one response shape
(:func:`pgmcp.responses.tool_result`), which the SDK alone would report as a bare
message; tools/list is compacted (:mod:`pgmcp.tool_schemas`); stdio pipes are
served on the event loop, with the fast path (:mod:`pgmcp.fastpath`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import ValidationError

from pgmcp.app import AppContext
from pgmcp.confirm import Sealer
from pgmcp.errors import ConnectionFailed, InvalidInput, error_payload
from pgmcp.fastpath import ToolCallFastPath
from pgmcp.responses import field_errors, tool_result
from pgmcp.stdio import AnswerBadLines, open_stdio_pipes
from pgmcp.tool_schemas import OBJECT, compact_schema, inline_defs, optional_not_null, outline_schema

__all__ = ["PgMcpServer"]


class PgMcpServer(MCPServer[Any]):
    """MCPServer whose argument errors come back in pgmcp's response shape (``invalid_input``)."""

    app_context: AppContext | None = None
    _tools_cache: tuple[int, list[Any]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Tools registered through register_tool: their results are ours to put on the wire (fastpath.py).
        self.fast_tools: set[str] = set()
        # The tools of build_server's own list (SPEC §3), told apart from plugins' in tools/list.
        self.builtin_tools: set[str] = set()
        # CONFIRM_WRITES: the state handed to 2026-07-28 clients between rounds (confirm.py).
        self.sealer = Sealer()

    _header_free: dict[str, tuple[Any, bool]] | None = None

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        """The schema ``Mcp-Param-*`` headers are checked against (2026-07-28 HTTP), or None for none.

        The SDK walks the tool's whole input schema twice on every tools/call to find
        ``x-mcp-header`` annotations. A schema without one validates nothing, so it is
        reported as None and the walk is skipped; which schemas have one is found once.
        """
        schema = super()._tool_input_schema(name)
        if schema is None:
            return None
        if self._header_free is None:
            self._header_free = {}
        known = self._header_free.get(name)
        if known is None or known[0] is not schema:
            known = self._header_free[name] = (schema, b"x-mcp-header" not in orjson.dumps(schema))
        return None if known[1] else schema

    async def run_stdio_async(self) -> None:
        """Serve MCP over stdin/stdout, on the event loop when they are pipes or sockets.

        The SDK's stdio transport reads and writes through anyio's thread-backed files:
        two worker-thread hand-offs per call, the largest per-call CPU cost over stdio
        in the profile (benchmarks/README.md). MCP clients launch servers with pipes,
        which asyncio serves without threads; anything else (a terminal, a file) keeps
        the SDK's transport. Meanwhile fd 0 and 1 point at /dev/null and stderr, as
        the SDK arranges, so stray output from a library cannot corrupt the wire.
        """
        pipes = await open_stdio_pipes()
        if pipes is None:
            await super().run_stdio_async()
            return
        from mcp.server.stdio import stdio_server

        lines, out, restore = pipes
        settings = self.app_context.settings if self.app_context is not None else None
        if settings is None or (settings.mcp_fast_path and settings.mcp_stdio_fast_path):
            lines.fast = ToolCallFastPath(self, out.write_bytes, out.flush)
        try:
            async with stdio_server(stdin=cast(Any, lines), stdout=cast(Any, out)) as (read, write):
                lowlevel = self._lowlevel_server
                answered = AnswerBadLines(read, write, lines)
                await lowlevel.run(cast(Any, answered), write, lowlevel.create_initialization_options())
        finally:
            if lines.fast is not None:
                await lines.fast.close()
            restore()
            await out.close()

    async def list_tools(self) -> list[Any]:
        tools = await super().list_tools()
        if self._tools_cache is None or self._tools_cache[0] != len(tools):
            compact = [
                t.model_copy(
                    update={
                        "input_schema": optional_not_null(inline_defs(compact_schema(t.input_schema))),
                        # A built-in tool's: an object, no more. With every built-in tool
                        # enabled tools/list must stay under 16 KB of the model's context
                        # (issue 17); each result's fields are in SPEC §3 and pgmcp.models,
                        # which the results are built from, and test_output_schemas checks
                        # real results against the models' schemas. A plugin's: its fields.
                        "output_schema": (
                            OBJECT if t.name in self.builtin_tools else outline_schema(t.output_schema)
                        )
                        if t.output_schema
                        else None,
                    }
                )
                for t in tools
            ]
            self._tools_cache = (len(tools), compact)
        return self._tools_cache[1]

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Any = None
    ) -> Any:
        """The SDK's, with an unknown prompt or bad arguments answered -32602 (it answers code 0)."""
        if self._prompt_manager.get_prompt(name) is None:
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}. Call prompts/list.")
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from None

    # Graceful shutdown (cli.py): once draining, new calls are refused; in_flight counts the rest.
    draining: bool = False
    in_flight: int = 0

    async def wait_idle(self) -> None:
        """Return once no tool call is running (polled: it only runs while shutting down)."""
        while self.in_flight:
            await asyncio.sleep(0.02)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self.draining:
            refused = ConnectionFailed(
                "The server is shutting down and accepts no new calls; retry once it is back "
                "(calls already running are allowed to finish)"
            )
            return tool_result(error_payload(refused), is_error=True)
        self.in_flight += 1
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                err = InvalidInput(f"Invalid arguments for {name}: {field_errors(cause)}")
            elif str(exc).startswith("Unknown tool"):
                # A protocol error (-32602), as the spec says: there is no such tool to give a result.
                if self.app_context is not None:
                    self.app_context.monitor.record_tool_call(
                        tool=name, status="invalid_input", duration_ms=0.0
                    )
                raise MCPError(
                    code=INVALID_PARAMS,
                    message=f"Unknown tool: {name}. Call tools/list for the available tools.",
                ) from None
            else:
                raise
            if self.app_context is not None:
                self.app_context.monitor.record_tool_call(tool=name, status=err.error_type, duration_ms=0.0)
            return tool_result(error_payload(err), is_error=True)
        finally:
            self.in_flight -= 1
