"""The MCP SDK internals the fast paths and the MCP edge use are still there, shaped as pgmcp uses them.

pyproject.toml bounds ``mcp`` to the minor release these were checked on. Several
of them are private (``_lowlevel_server``, ``_tool_manager``, the modern HTTP
entry's constants); when one moves, the failing test names it and the place in
pgmcp that uses it. The fast paths also decide from these whether to switch
themselves on: a change that quietly turned them off would cost CPU, not
correctness, and is caught here too (``fast paths stay on``).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from pydantic import ValidationError

from pgmcp.fastpath.calls import FastCalls, plain
from pgmcp.server import PgMcpServer

ROOT = Path(__file__).resolve().parents[2]
VERSION = importlib.metadata.version("mcp")


def _params(fn: Callable[..., object]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _server() -> PgMcpServer:
    server = PgMcpServer(name="sdk-internals", version="0")

    async def add(a: int, b: int = 1) -> dict[str, Any]:
        """Adds."""
        return {"n": a + b}

    server.add_tool(add, name="add", structured_output=True)
    server.fast_tools.add("add")
    return server


def _import(path: str) -> Any:
    module, _, name = path.rpartition(":")
    return getattr(importlib.import_module(module), name)


# (name, where pgmcp uses it): importable as named.
NAMES: list[tuple[str, str]] = [
    ("mcp.server.mcpserver:Context", "fastpath/calls.py FastCalls.answer"),
    ("mcp.shared.dispatcher:coerce_request_id", "fastpath/calls.py correlation_key"),
    ("mcp.shared.exceptions:MCPError", "fastpath/calls.py FastCalls.answer"),
    ("mcp.shared.inbound:InboundLadderRejection", "fastpath/calls.py FastCalls.modern_version"),
    ("mcp.shared.inbound:classify_inbound_request", "fastpath/calls.py FastCalls.modern_version"),
    ("mcp.shared.inbound:ERROR_CODE_HTTP_STATUS", "fastpath/http.py HttpFastPath._serve"),
    ("mcp.shared.inbound:find_duplicated_routing_header", "fastpath/http.py HttpFastPath._eligible"),
    ("mcp.server._streamable_http_modern:_SSE_HEADERS", "fastpath/http.py (event-stream answer headers)"),
    ("mcp.server._streamable_http_modern:_SSE_PING_INTERVAL", "fastpath/http.py (deferral window)"),
    ("mcp.server.streamable_http:check_accept_headers", "fastpath/http.py HttpFastPath._eligible"),
    ("mcp.server.transport_security:TransportSecurityMiddleware", "fastpath/http.py HttpFastPath"),
    ("mcp_types:CLIENT_CAPABILITIES_META_KEY", "fastpath/calls.py ENVELOPE_KEYS"),
    ("mcp_types:CLIENT_INFO_META_KEY", "fastpath/calls.py ENVELOPE_KEYS"),
    ("mcp_types:PROTOCOL_VERSION_META_KEY", "fastpath/calls.py, fastpath/stdio.py"),
    ("mcp_types:SERVER_INFO_META_KEY", "fastpath/calls.py FastCalls.answer"),
    ("mcp_types:INTERNAL_ERROR", "fastpath/calls.py FastCalls.answer"),
    ("mcp_types:methods", "fastpath/calls.py _dump, plain"),
    ("mcp_types.version:HANDSHAKE_PROTOCOL_VERSIONS", "fastpath/calls.py negotiated"),
    ("mcp_types.version:LATEST_HANDSHAKE_VERSION", "fastpath/calls.py negotiated"),
    ("mcp_types.version:MODERN_PROTOCOL_VERSIONS", "fastpath/calls.py, fastpath/http.py"),
    ("mcp.types:CONNECTION_CLOSED", "fastpath/stdio.py ToolCallFastPath._run"),
    ("mcp.types:INVALID_REQUEST", "stdio.py AnswerBadLines"),
    ("mcp.types:PARSE_ERROR", "stdio.py AnswerBadLines"),
    ("mcp.shared.message:SessionMessage", "stdio.py AnswerBadLines"),
    ("mcp.server.stdio:stdio_server", "mcp_server.py PgMcpServer.run_stdio_async"),
    ("mcp.server.mcpserver.exceptions:ToolError", "mcp_server.py PgMcpServer.call_tool"),
    ("mcp_types.version:is_version_at_least", "elicit.py"),
    ("mcp_types:InputRequiredResult", "elicit.py"),
]


@pytest.mark.parametrize(("name", "where"), NAMES, ids=[n for n, _ in NAMES])
def test_names_pgmcp_imports_from_the_sdk_exist(name: str, where: str) -> None:
    try:
        _import(name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"mcp {VERSION} no longer has {name} ({exc}); pgmcp uses it in src/pgmcp/{where}")


# (what, where, check): None when the internal is as pgmcp uses it.
SHAPES: list[tuple[str, str, Callable[[], str | None]]] = [
    (
        "Context(mcp_server=, subscriptions=)",
        "fastpath/calls.py FastCalls.answer",
        lambda: (
            None
            if {"mcp_server", "subscriptions"}
            <= set(_params(_import("mcp.server.mcpserver:Context").__init__))
            else f"signature is {inspect.signature(_import('mcp.server.mcpserver:Context').__init__)}"
        ),
    ),
    (
        "Context._request_context",
        "registration.py _principal (the HTTP request of a call), elicit.py (the session to ask)",
        lambda: (
            None
            if hasattr(_import("mcp.server.mcpserver:Context")(), "_request_context")
            else "no _request_context on Context"
        ),
    ),
    (
        "MCPServer.call_tool(name, arguments, context)",
        "mcp_server.py PgMcpServer.call_tool, fastpath/calls.py FastCalls.answer",
        lambda: (
            None
            if _params(_import("mcp.server.mcpserver:MCPServer").call_tool)
            == ["self", "name", "arguments", "context"]
            else f"signature is {inspect.signature(_import('mcp.server.mcpserver:MCPServer').call_tool)}"
        ),
    ),
    (
        "MCPServer._tool_input_schema(name)",
        "mcp_server.py PgMcpServer._tool_input_schema (skips the Mcp-Param header walk)",
        lambda: (
            None
            if _params(_import("mcp.server.mcpserver:MCPServer")._tool_input_schema) == ["self", "name"]
            else "missing or reshaped"
        ),
    ),
    (
        "classify_inbound_request(body, *, headers=)",
        "fastpath/calls.py FastCalls.modern_version",
        lambda: (
            None
            if inspect.signature(_import("mcp.shared.inbound:classify_inbound_request"))
            .parameters["headers"]
            .kind
            is inspect.Parameter.KEYWORD_ONLY
            else "headers is no longer keyword-only"
        ),
    ),
    (
        "methods.serialize_server_result(method, version, data)",
        "fastpath/calls.py _dump, plain",
        lambda: (
            None
            if _params(_import("mcp_types:methods").serialize_server_result)[:3]
            == ["method", "version", "data"]
            else "reshaped"
        ),
    ),
    (
        "TransportSecurityMiddleware(settings).validate_request(request, is_post=)",
        "fastpath/http.py HttpFastPath._eligible",
        lambda: (
            None
            if _params(_import("mcp.server.transport_security:TransportSecurityMiddleware").validate_request)
            == ["self", "request", "is_post"]
            else "reshaped"
        ),
    ),
    (
        "stdio_server(stdin=, stdout=)",
        "mcp_server.py PgMcpServer.run_stdio_async",
        lambda: (
            None if _params(_import("mcp.server.stdio:stdio_server")) == ["stdin", "stdout"] else "reshaped"
        ),
    ),
    (
        "_SSE_HEADERS and _SSE_PING_INTERVAL",
        "fastpath/http.py (the modern entry's event-stream headers and 15 s window)",
        lambda: (
            None
            if (b"content-type", b"text/event-stream")
            in _import("mcp.server._streamable_http_modern:_SSE_HEADERS")
            and isinstance(_import("mcp.server._streamable_http_modern:_SSE_PING_INTERVAL"), int | float)
            else "changed"
        ),
    ),
]


@pytest.mark.parametrize(("what", "where", "check"), SHAPES, ids=[s[0].split("(")[0] for s in SHAPES])
def test_sdk_shapes_are_as_pgmcp_uses_them(what: str, where: str, check: Callable[[], str | None]) -> None:
    problem = check()
    assert problem is None, f"mcp {VERSION} changed {what} ({problem}); pgmcp uses it in src/pgmcp/{where}"


def test_server_internals_the_fast_paths_read() -> None:
    server = _server()
    where = "fastpath/calls.py FastCalls / _intercepted, registration.py _advertise_without_validating"
    for attr in ("_lowlevel_server", "_tool_manager", "_subscriptions", "_extensions"):
        assert hasattr(server, attr), f"mcp {VERSION}: MCPServer.{attr} is gone; pgmcp reads it in {where}"
    lowlevel = server._lowlevel_server
    for attr in ("server_info_stamp", "cache_hints", "middleware", "run", "create_initialization_options"):
        assert hasattr(lowlevel, attr), f"mcp {VERSION}: lowlevel Server.{attr} is gone; used in {where}"
    stamp = lowlevel.server_info_stamp
    assert stamp == {"name": "sdk-internals", "version": "0"}, f"server_info_stamp is now {stamp!r}"
    tool = server._tool_manager.get_tool("add")
    assert tool is not None and hasattr(tool.fn_metadata, "output_model"), (
        f"mcp {VERSION}: Tool.fn_metadata.output_model is gone (registration.py _advertise_without_validating)"
    )
    assert tool.fn_metadata.output_schema is not None


def test_the_fast_paths_stay_on() -> None:
    """A server as pgmcp builds it: no middleware but the SDK's own, so the fast paths switch on."""
    server = _server()
    names = sorted(type(m).__name__ for m in server._lowlevel_server.middleware)
    assert FastCalls(server).enabled, (
        f"mcp {VERSION} turned the fast paths off: middleware {names}, "
        f"cache hint {server._lowlevel_server.cache_hints.get('tools/call')!r}, "
        f"extensions {server._extensions!r} (fastpath/calls.py _intercepted)"
    )
    versions = [
        *_import("mcp_types.version:HANDSHAKE_PROTOCOL_VERSIONS"),
        *_import("mcp_types.version:MODERN_PROTOCOL_VERSIONS"),
    ]
    for era in ("2025-11-25", "2026-07-28"):
        assert era in versions, f"mcp {VERSION} no longer speaks {era}"
        assert plain(era), f"mcp {VERSION}: the result sieve of {era} now reshapes pgmcp's tool results"


def test_the_http_session_manager_settings_the_fast_path_reads() -> None:
    server = _server()
    server.streamable_http_app(stateless_http=True, json_response=True)
    manager = server._lowlevel_server.session_manager
    for attr in ("security_settings", "json_response", "max_request_body_size"):
        assert hasattr(manager, attr), f"mcp {VERSION}: session_manager.{attr} is gone (fastpath/http.py)"


async def test_tool_errors_the_mcp_edge_recognises() -> None:
    """mcp_server.py PgMcpServer.call_tool turns these two ToolErrors into invalid_input."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = _server()
    with pytest.raises(ToolError) as unknown:
        await MCPServer.call_tool(server, "nope", {})
    assert str(unknown.value).startswith("Unknown tool"), f"the unknown-tool message is now {unknown.value}"
    with pytest.raises(ToolError) as invalid:
        await MCPServer.call_tool(server, "add", {"a": "not a number"})
    assert isinstance(invalid.value.__cause__, ValidationError), (
        f"an argument error's cause is now {type(invalid.value.__cause__).__name__}, not ValidationError"
    )


def test_coerce_request_id_matches_string_and_int_ids() -> None:
    coerce = _import("mcp.shared.dispatcher:coerce_request_id")
    assert coerce("7") == coerce(7), "the SDK no longer treats '7' and 7 as one request (fastpath cancel)"


def test_the_installed_mcp_is_in_the_range_these_were_checked_on() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = next(
        Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "mcp"
    )
    assert wanted.specifier.contains(VERSION), f"mcp {VERSION} is outside {wanted}"
    assert any(s.operator == "<" for s in wanted.specifier), f"{wanted} has no upper bound"
