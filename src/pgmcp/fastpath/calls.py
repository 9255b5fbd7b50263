"""Which ``tools/call`` messages a fast path may answer, and the answer the SDK would have given."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from mcp.server.mcpserver import Context
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request
from mcp.types import CallToolResult, InitializeRequestParams, TextContent
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
    SERVER_INFO_META_KEY,
    methods,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from pydantic_core import from_json

from pgmcp.logs import get_logger

__all__ = ["Call", "FastCalls", "loads", "request_id"]

log = get_logger("pgmcp.fastpath")

_PARAM_KEYS = frozenset({"name", "arguments", "_meta"})
# The 2026-07-28 per-request envelope.
ENVELOPE_KEYS = frozenset({PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY})
# What the classifier compares with the envelope and the body over HTTP (Mcp-Name is the tool's).
_ROUTING_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name")
# The SDK's own middleware: tracing spans (no-ops without an OpenTelemetry SDK) and the
# 2026-07-28 requestState seal, which plain tool calls never carry.
_SDK_MIDDLEWARE = frozenset({"OpenTelemetryMiddleware", "RequestStateBoundary"})


def request_id(value: Any) -> str | int | None:
    """A JSON-RPC request id (int or string, never a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value


def loads(data: bytes) -> dict[str, Any] | None:
    """``data`` parsed as the SDK parses a message (pydantic-core's parser: the same nesting
    limit, NaN and big-number handling), or None when it is not a JSON object."""
    try:
        msg = from_json(data)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


@dataclass(frozen=True, slots=True)
class Call:
    """One eligible ``tools/call``: its id (and the SDK's correlation key for it), tool, arguments, _meta."""

    id: str | int
    key: str | int
    name: str
    arguments: dict[str, Any]
    meta: Any


class FastCalls:
    """The part every fast path shares: eligibility, protocol versions, and answers."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._tools: frozenset[str] = frozenset(getattr(server, "fast_tools", ()))
        self.enabled = bool(self._tools) and not _intercepted(server)
        # (routing headers + tool name, envelope) pairs the SDK's classifier accepted, newest first
        self._accepted: list[tuple[tuple[str | None, ...] | None, dict[str, Any]]] = []
        self._stamp: dict[str, Any] | None = None
        self._context: Any = None

    def parse(self, data: bytes) -> Call | None:
        """``data`` as a tools/call a fast path may take, or None (the SDK's, then)."""
        msg = loads(data)
        if msg is None or msg.get("jsonrpc") != "2.0" or msg.get("method") != "tools/call":
            return None
        rid = request_id(msg.get("id"))
        params = msg.get("params")
        if rid is None or not isinstance(params, dict) or not _PARAM_KEYS.issuperset(params):
            return None
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or name not in self._tools:
            return None
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return None
        meta = params.get("_meta")
        if isinstance(meta, dict) and "progressToken" in meta:
            return None  # progress goes out through the SDK's session (notifications/progress)
        return Call(rid, correlation_key(rid), name, arguments, meta)

    @staticmethod
    def legacy_meta(call: Call) -> bool:
        """A handshake-era call: ``_meta`` at most a progress token (an envelope is the SDK's to refuse)."""
        return call.meta is None or (isinstance(call.meta, dict) and set(call.meta) <= {"progressToken"})

    def modern_version(self, call: Call, headers: Mapping[str, str] | None = None) -> str | None:
        """The 2026-07-28-era version ``call`` is served at, or None when the SDK must answer it.

        The SDK's classifier judges the envelope (and, over HTTP, the routing headers
        against it and the body); what it accepted once, with the same routing headers
        and tool name, is recognised by equality.
        """
        meta = call.meta
        if not isinstance(meta, dict):
            return None
        envelope = {k: v for k, v in meta.items() if k != "progressToken"}
        if not ENVELOPE_KEYS.issuperset(envelope):
            return None
        # The headers and the body's tool name are compared with each other: both are in the key.
        routing = None if headers is None else (*(headers.get(h) for h in _ROUTING_HEADERS), call.name)
        if (routing, envelope) not in self._accepted:
            params = {"name": call.name, "arguments": call.arguments, "_meta": meta}
            route = classify_inbound_request({"method": "tools/call", "params": params}, headers=headers)
            if isinstance(route, InboundLadderRejection) or not plain(route.protocol_version):
                return None
            self._accepted = [(routing, envelope), *self._accepted[:15]]
        version = envelope[PROTOCOL_VERSION_META_KEY]
        return version if isinstance(version, str) else None

    async def answer(self, call: Call, version: str) -> dict[str, Any]:
        """The JSON-RPC answer to ``call`` (``result`` or ``error``), as the SDK's tools/call handler gives it.

        Never raises but for cancellation: whatever goes wrong becomes an answer, so no
        client waits for one that never comes.
        """
        if self._context is None:
            # What MCPServer.call_tool builds for a call without a request, built once: it holds
            # no per-call state (pgmcp's tools take their caller from current_principal).
            self._context = Context(
                mcp_server=self.server, subscriptions=getattr(self.server, "_subscriptions", None)
            )
        try:
            result = await self.server.call_tool(call.name, call.arguments, self._context)
        except MCPError as exc:
            error = exc.error.model_dump(by_alias=True, mode="json", exclude_none=True)
            return {"jsonrpc": "2.0", "id": call.id, "error": error}
        except Exception as exc:  # what the SDK's handler turns into an error result
            log.exception("tool_call_failed", tool=call.name)
            result = CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        try:
            dumped = _dump(result, version)
        except Exception:  # a result the SDK's sieve refuses: the SDK answers that with an internal error
            log.exception("tool_result_invalid", tool=call.name)
            return {
                "jsonrpc": "2.0",
                "id": call.id,
                "error": {"code": INTERNAL_ERROR, "message": "Internal error"},
            }
        if version in MODERN_PROTOCOL_VERSIONS:
            # The 2026-07-28 era: every result says it is complete and names the server.
            dumped.setdefault("resultType", "complete")
            if dumped.get("_meta") is None:
                if self._stamp is None:
                    self._stamp = self.server._lowlevel_server.server_info_stamp
                dumped["_meta"] = {SERVER_INFO_META_KEY: self._stamp}
        return {"jsonrpc": "2.0", "id": call.id, "result": dumped}


def encode(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message, default=str)
    except TypeError:  # e.g. an integer past 64 bits, which orjson refuses and JSON allows
        return json.dumps(message, default=str, separators=(",", ":")).encode()


def correlation_key(rid: str | int) -> str | int:
    """How the SDK matches ids ("7" and 7 are one request for cancellation)."""

    return coerce_request_id(rid)


def _dump(result: Any, version: str) -> dict[str, Any]:
    """A tool result on the wire: our own results directly, anything else as the SDK shapes it."""

    texts = [c for c in result.content if type(c) is TextContent and c.annotations is None and c.meta is None]
    if type(result) is CallToolResult and result.meta is None and len(texts) == len(result.content):
        # Keys in the order of the SDK's surface models, so the bytes on the wire are the SDK's too.
        out: dict[str, Any] = {"content": [{"text": c.text, "type": "text"} for c in texts]}
        out["isError"] = result.is_error
        if version in MODERN_PROTOCOL_VERSIONS:
            out["resultType"] = "complete"
        if result.structured_content is not None:
            out["structuredContent"] = result.structured_content
        return out

    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if version not in MODERN_PROTOCOL_VERSIONS:
        dumped.pop("resultType", None)
    return dict(methods.serialize_server_result("tools/call", version, dumped))


def negotiated(params: Any) -> str | None:
    """The protocol version the SDK settles on at ``initialize``, if our results travel unchanged in it."""

    try:
        requested = InitializeRequestParams.model_validate(params or {}, by_name=False).protocol_version
    except ValidationError:
        return None  # the SDK refuses this initialize
    version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    return version if plain(version) else None


_PLAIN: dict[str, bool] = {}


def plain(version: str) -> bool:
    """True when the SDK's result sieve for ``version`` leaves our tool results as they are, key order included."""
    known = _PLAIN.get(version)
    if known is None:
        modern = version in MODERN_PROTOCOL_VERSIONS
        samples: list[dict[str, Any]] = [
            {
                "content": [{"text": "x", "type": "text"}],
                "isError": error,
                **({"resultType": "complete"} if modern else {}),
                **({} if error else {"structuredContent": {"a": [1, None]}}),
            }
            for error in (False, True)
        ]
        try:
            known = all(
                encode(methods.serialize_server_result("tools/call", version, dict(s))) == encode(s)
                for s in samples
            )
        except Exception:
            known = False
        _PLAIN[version] = known
    return known


def _intercepted(server: Any) -> bool:
    """Whether SDK extensions, cache hints or extra middleware want to see every tools/call."""
    if getattr(server, "_extensions", ()):
        return True
    lowlevel = getattr(server, "_lowlevel_server", None)
    if lowlevel is None or getattr(lowlevel, "cache_hints", {}).get("tools/call") is not None:
        return True
    return any(type(m).__name__ not in _SDK_MIDDLEWARE for m in getattr(lowlevel, "middleware", ()))
