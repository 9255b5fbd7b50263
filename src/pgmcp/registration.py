"""Registering a tool: the wrapper every tool call runs in, the annotations, the ENABLED_TOOLS groups.

:func:`register_tool` gives a tool function pgmcp's error shape, tool-call
metrics, audit, the caller's principal, CONFIRM_WRITES' asker and progress; the
built-in tools (:func:`pgmcp.server.build_server`) and plugin tools
(:mod:`pgmcp.extension`) are registered through it.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel

from pgmcp.app import AppContext
from pgmcp.auth import ANONYMOUS, CallInfo, Principal, current_call, current_principal
from pgmcp.confirm import current_asker
from pgmcp.elicit import ClientAsker, ClientProgress, InputNeeded, wants_progress
from pgmcp.errors import DatabaseError, PgMcpError, error_payload
from pgmcp.logs import get_logger
from pgmcp.mcp_server import PgMcpServer
from pgmcp.progress import current_progress
from pgmcp.responses import tool_result

__all__ = [
    "CONNECT",
    "READ",
    "REMOVE",
    "TOOL_GROUPS",
    "WRITE",
    "ToolFn",
    "enabled_tool_names",
    "register_tool",
]

log = get_logger("pgmcp.server")

# Tool groups for ENABLED_TOOLS.
TOOL_GROUPS: dict[str, tuple[str, ...]] = {
    "read": (
        "execute_query",
        "list_schemas",
        "list_tables",
        "get_table_schema",
        "search_objects",
        "explain_query",
        "list_connections",
        "test_connection",
        "compare_schemas",
        "compare_tables",
    ),
    "write": ("execute_transaction", "batch_execute", "copy_data"),
    "admin": ("add_connection", "remove_connection"),
    "monitoring": ("health_check", "get_metrics", "get_query_history", "get_business_metrics"),
    "intelligence": ("analyze_db_health", "get_top_queries", "recommend_indexes", "get_activity"),
}

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)
CONNECT = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
REMOVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)


ToolFn = Callable[..., Awaitable[dict[str, Any]]]


def register_tool(
    server: PgMcpServer,
    app: AppContext,
    fn: ToolFn,
    *,
    name: str | None = None,
    description: str | None = None,
    annotations: ToolAnnotations | None = None,
    output: type[BaseModel] | None = None,
    untrusted: bool = False,
    validate_output: bool = True,
) -> None:
    """Register ``fn`` as an MCP tool with pgmcp's error shape, tool-call metrics and audit.

    ``fn`` returns a dict (``success`` is added when missing) or raises a
    :class:`~pgmcp.errors.PgMcpError`; anything else is logged and reported as
    an internal error without its traceback.
    """
    tool_name = name or fn.__name__
    wrap = untrusted and app.settings.wrap_untrusted_data
    monitor = app.monitor
    audit = app.audit
    confirming = app.settings.confirm_writes != "never"

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        started = time.perf_counter()
        status = "success"
        payload: dict[str, Any] | None = None
        ctx = kwargs.pop(_CTX_PARAM, None)
        principal = _principal(ctx)
        call = CallInfo(tool=tool_name, principal=principal, connection_id=kwargs.get("connection_id"))
        principal_token = current_principal.set(principal)
        call_token = current_call.set(call)
        asker_token = current_asker.set(ClientAsker(ctx, server.sealer)) if confirming else None
        progress_token_ = current_progress.set(ClientProgress(ctx)) if wants_progress(ctx) else None
        try:
            payload = await fn(*args, **kwargs)
            payload.setdefault("success", True)
            return tool_result(payload, untrusted=wrap)
        except InputNeeded as needed:  # 2026-07-28: the client asks the person, then calls again
            status = "input_required"
            return needed.result  # type: ignore[return-value]
        except PgMcpError as failure:
            status = failure.error_type
            return tool_result(error_payload(failure), is_error=True)
        except Exception:
            status = "internal_error"
            log.exception("tool_failed", tool=tool_name)
            internal = DatabaseError(f"Internal error in {tool_name}; the server log has the details")
            return tool_result(error_payload(internal), is_error=True)
        except BaseException:
            status = "cancelled"  # the client gave up (or the server is stopping): not a success
            raise
        finally:
            if progress_token_ is not None:
                current_progress.reset(progress_token_)
            if asker_token is not None:
                current_asker.reset(asker_token)
            current_call.reset(call_token)
            current_principal.reset(principal_token)
            duration_ms = (time.perf_counter() - started) * 1000
            monitor.record_tool_call(tool=tool_name, status=status, duration_ms=duration_ms)
            if audit is not None:
                audit.record(call, outcome=status, duration_ms=duration_ms, rows=_rows(payload))

    signature = inspect.signature(fn, eval_str=True)
    # The SDK hands the request context to a parameter annotated with Context; it is not
    # part of the input schema. It tells who is calling (HTTP principal or stdio).
    context_param = inspect.Parameter(
        _CTX_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Context, default=None
    )
    returns = output if output is not None else dict[str, Any]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), context_param], return_annotation=returns
    )
    # A fresh dict: functools.wraps shares fn's; the SDK finds the Context parameter here.
    wrapper.__annotations__ = {
        **{p.name: p.annotation for p in signature.parameters.values()},
        _CTX_PARAM: Context,
        "return": returns,
    }
    server.add_tool(
        wrapper,
        name=tool_name,
        description=description or inspect.getdoc(fn) or "",
        annotations=annotations,
        structured_output=output is not None,
    )
    if not validate_output:
        _advertise_without_validating(server, tool_name)
    # With CONFIRM_WRITES on, a write may have to ask the person through the session,
    # which the fast paths do not have: only read-only tools take them.
    if not confirming or (annotations is not None and annotations.read_only_hint):
        server.fast_tools.add(tool_name)


_CTX_PARAM = "pgmcp_context"


def _advertise_without_validating(server: PgMcpServer, tool_name: str) -> None:
    """Stop the SDK re-validating every result against the tool's output model.

    With an output model the SDK validates each returned ``structured_content``
    against it (``FuncMetadata.convert_result``): pydantic work proportional to the
    result, on every call, for payloads our own code builds to that model. The model
    is dropped after registration; the tool keeps its output schema (not advertised in
    tools/list, see ``PgMcpServer.list_tools``), and
    tests/integration/test_output_schemas.py checks real results against it instead.
    """
    tool = server._tool_manager.get_tool(tool_name)
    if tool is not None and tool.fn_metadata.output_schema is not None:
        tool.fn_metadata.output_model = None


def _principal(ctx: Any) -> Principal:
    """The caller: the principal the HTTP auth middleware put on the request, else the one the
    transport set for this call (the HTTP fast path does), else stdio."""
    request = getattr(getattr(ctx, "_request_context", None), "request", None)
    if request is None:
        return current_principal.get()
    state = request.scope.get("state") or {}
    principal = state.get("pgmcp_principal")
    return principal if isinstance(principal, Principal) else ANONYMOUS


def _rows(payload: dict[str, Any] | None) -> int | None:
    if not payload:
        return None
    for key in ("row_count", "rows_affected"):
        value = payload.get(key)
        if isinstance(value, int):
            return int(value)
    results = payload.get("results")
    if isinstance(results, list):
        return sum(int(r.get("row_count", 0)) for r in results if isinstance(r, dict))
    return None


def enabled_tool_names(app: AppContext) -> set[str] | None:
    wanted = app.settings.enabled_tools
    if not wanted:
        return None
    names: set[str] = set()
    for item in wanted:
        key = item.strip()
        if key.lower() in TOOL_GROUPS:
            names.update(TOOL_GROUPS[key.lower()])
        else:
            names.add(key)
    return names
