"""Binding plugin code to pgmcp: a custom tool's call and result, its SQL parameters, its rules.

A custom tool runs inside a :class:`Call` (its queries are attributed to it and
their warnings returned with its result); what ``register`` registers is staged
(:class:`StagedTool`) and committed by :mod:`pgmcp.extension.plugins` all or nothing.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import inspect
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pgmcp.errors import PgMcpError
from pgmcp.mcp_server import PgMcpServer
from pgmcp.registration import TOOL_GROUPS
from pgmcp.security import Decision, Policy, Risk, Rule

__all__ = [
    "BUILTIN_TOOLS",
    "KNOWN_ERROR_TYPES",
    "TOOL_NAME",
    "Call",
    "HandbookRule",
    "PluginResult",
    "StagedTool",
    "ToolFailure",
    "as_rule",
    "bind",
    "current_tool_call",
    "jsonable",
    "params_of",
    "payload_of",
    "plugin_tools",
    "rules_installed",
]

HandbookRule = Callable[[str], Iterable[Risk | str]]

TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
KNOWN_ERROR_TYPES = frozenset(
    {
        "invalid_input",
        "connection_not_found",
        "query_blocked",
        "timeout",
        "limit_exceeded",
        "connection_failed",
        "database_error",
    }
)
BUILTIN_TOOLS = frozenset(name for names in TOOL_GROUPS.values() for name in names)


class PluginResult(BaseModel):
    """Default output schema of a custom tool: ``success`` plus whatever the tool returns."""

    model_config = ConfigDict(extra="allow")

    success: bool = Field(description="True when the call did what was asked.")
    warnings: list[str] | None = Field(None, description="Risks the policy's warn-level rules found.")


# --- the call a custom tool is running in ---------------------------------------------


@dataclass
class Call:
    tool: str
    warnings: list[str] = field(default_factory=list)


current_tool_call: ContextVar[Call | None] = ContextVar("pgmcp_extension_call", default=None)


class ToolFailure(PgMcpError):
    """A custom tool returned ``{"success": False, ...}``: reported in the one error shape."""

    def __init__(self, message: str, error_type: str, extra: dict[str, Any]) -> None:
        super().__init__(message)
        self.error_type = error_type  # type: ignore[misc]
        self.extra = extra


def payload_of(result: Any, tool: str) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        payload = result.model_dump(mode="json", exclude_none=True)
    elif isinstance(result, dict):
        payload = dict(result)
    else:
        raise TypeError(f"tool {tool} returned {type(result).__name__}; return a dict or a pydantic model")
    if payload.get("success") is False:
        error_type = payload.get("error_type")
        extra = {k: v for k, v in payload.items() if k not in ("success", "error", "error_type")}
        raise ToolFailure(
            str(payload.get("error") or f"{tool} failed"),
            error_type if error_type in KNOWN_ERROR_TYPES else "database_error",
            extra,
        )
    return payload


def bind(
    fn: Callable[..., Awaitable[Any]], tool: str, output: type[BaseModel]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Run ``fn`` as tool ``tool``: its queries are attributed to it, their warnings returned,
    and its result checked against its output schema (a mismatch is the plugin's bug: logged,
    reported as an internal error, never mistaken for the caller's invalid input)."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        state = Call(tool)
        token = current_tool_call.set(state)
        try:
            result = await fn(*args, **kwargs)
        finally:
            current_tool_call.reset(token)
        payload = payload_of(result, tool)
        if state.warnings:
            given = payload.get("warnings")
            merged = list(given) if isinstance(given, list) else []
            merged += [w for w in dict.fromkeys(state.warnings) if w not in merged]
            payload["warnings"] = merged
        payload.setdefault("success", True)
        try:
            output.model_validate(payload)
        except ValidationError as exc:
            raise TypeError(
                f"tool {tool} returned a result that does not fit its output schema {output.__name__}: "
                + "; ".join(f"{'.'.join(map(str, e['loc'])) or 'result'}: {e['msg']}" for e in exc.errors())
            ) from None
        return payload

    return call


def jsonable(value: Any) -> Any:
    """Python values a plugin may hold → the JSON forms the execute path converts from."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def params_of(params: Sequence[Any]) -> list[Any]:
    return [jsonable(v) for v in params]


def as_rule(rule: Rule | HandbookRule) -> Rule:
    """Accept the handbook's one-argument ``rule(query)`` as well as ``rule(query, decision)``."""
    try:
        positional = [
            p
            for p in inspect.signature(rule).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        return rule  # type: ignore[return-value]
    if len(positional) == 1 and positional[0].kind is not inspect.Parameter.VAR_POSITIONAL:
        one: HandbookRule = rule  # type: ignore[assignment]

        @functools.wraps(one)
        def adapted(query: str, decision: Decision) -> Iterable[Risk | str]:
            return one(query)

        return adapted
    return rule  # type: ignore[return-value]


@dataclass
class StagedTool:
    name: str
    fn: Callable[..., Awaitable[dict[str, Any]]]
    description: str | None
    annotations: Any
    output: type[BaseModel]
    untrusted: bool


# Plugins whose rules are on a policy already (a second MCP server of the same app).
rules_installed: weakref.WeakKeyDictionary[Policy, set[str]] = weakref.WeakKeyDictionary()
# Tool names plugins registered on an MCP server.
plugin_tools: weakref.WeakKeyDictionary[PgMcpServer, set[str]] = weakref.WeakKeyDictionary()
