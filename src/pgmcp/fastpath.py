"""``tools/call`` answered without the SDK's dispatcher, for a line-based transport (stdio).

The SDK takes a ``tools/call`` through pydantic parsing of the JSON-RPC message,
a memory stream, a dispatcher task, a per-request session and context, an
OpenTelemetry middleware, two validations of the request's params, and a
re-validation and re-dump of the result: ~0.65 ms of CPU a call on this machine,
more than the whole ``execute_query("SELECT 1")`` below it (benchmarks/README.md).
:class:`ToolCallFastPath` answers the calls it can vouch for itself, through the
same ``PgMcpServer.call_tool`` (argument validation, ``invalid_input``, draining,
in-flight count, metrics, audit) and the same result on the wire; every other
message goes to the SDK unchanged.

A call takes the fast path only when all of these hold, otherwise the SDK serves it:

* the session's protocol era is known and live: the client either completed the
  handshake (``initialize``, then ``notifications/initialized``), or opened with a
  request carrying the 2026-07-28 per-request envelope, which the SDK's own
  classifier accepts for this call too;
* the message is a JSON-RPC 2.0 request (int or string id) for ``tools/call`` whose
  params hold only ``name``, ``arguments`` (an object) and a ``_meta`` with at most
  the envelope keys and a ``progressToken`` (pgmcp's tools report no progress);
* the tool was registered through ``pgmcp.server.register_tool``, and no SDK
  extension, cache hint or extra middleware wants to see tool calls;
* the SDK's result sieve for the protocol version leaves our results unchanged.

``notifications/cancelled`` for a fast call cancels it and it is never answered,
as the SDK does. When the input ends or serving stops, running calls are
cancelled (their transactions roll back) and answered ``Connection closed``
(-32000), again as the SDK does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from pgmcp.logs import get_logger

__all__ = ["ToolCallFastPath"]

log = get_logger("pgmcp.fastpath")

# The SDK refuses messages nested ~200 deep (-32600), orjson takes up to 1024. Lines with
# this many brackets (deep, or a large batch_execute) go to the SDK, which decides.
_MAX_BRACKETS = 150
_PARAM_KEYS = frozenset({"name", "arguments", "_meta"})
# The 2026-07-28 per-request envelope (mcp_types' *_META_KEY constants).
_PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
_ENVELOPE_KEYS = frozenset(
    {
        _PROTOCOL_VERSION_KEY,
        "io.modelcontextprotocol/clientInfo",
        "io.modelcontextprotocol/clientCapabilities",
    }
)
_SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
# The SDK's own middleware: tracing spans (no-ops without an OpenTelemetry SDK) and the
# 2026-07-28 requestState seal, which handshake-era calls never carry.
_SDK_MIDDLEWARE = frozenset({"OpenTelemetryMiddleware", "RequestStateBoundary"})
_CONNECTION_CLOSED = -32000  # mcp.types.CONNECTION_CLOSED


def _request_id(value: Any) -> str | int | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value


class ToolCallFastPath:
    """Takes the eligible ``tools/call`` lines of one stdio session (see the module docstring).

    ``write`` puts one answer (bytes, newline included) on the wire without waiting;
    ``drain`` waits until the wire has taken it.
    """

    def __init__(
        self, server: Any, write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]]
    ) -> None:
        self._server = server
        self._write = write
        self._drain = drain
        self._tools: frozenset[str] = frozenset(getattr(server, "fast_tools", ()))
        self._enabled = bool(self._tools) and not _intercepted(server)
        self._era: str | None = None  # "legacy" or "modern", decided by the client's first request
        self._version: str | None = (
            None  # legacy: negotiated at initialize, if our results travel as they are
        )
        self._initialized = False
        self._envelopes: list[dict[str, Any]] = []  # modern envelopes the SDK's classifier accepted
        self._stamp: dict[str, Any] | None = None
        self._running: dict[str | int, asyncio.Task[None]] = {}
        self._cancelled: set[str | int] = set()  # by the peer: never answered

    def take(self, line: bytes) -> bool:
        """Serve ``line`` here (True) or leave it to the SDK (False)."""
        if not self._enabled:
            return False
        if self._era is None:
            self._opening(line)
            return False
        if b'"tools/call"' in line:
            return self._call(line)
        if b'"notifications/cancelled"' in line:
            return self._cancel(line)
        if self._era == "legacy" and not self._initialized:
            self._handshake(line)
        return False

    async def close(self) -> None:
        """Cancel the calls still running; each is answered ``Connection closed`` unless the peer cancelled it."""
        self._enabled = False
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- the session --------------------------------------------------------------------------------

    def _opening(self, line: bytes) -> None:
        """The SDK decides the era on the first request: an envelope opens a modern session."""
        msg = _loads(line)
        if msg is None or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
            return
        if _request_id(msg.get("id")) is None:
            return  # a notification (or not a request at all): the era is still open
        from mcp_types import PROTOCOL_VERSION_META_KEY

        params = msg.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        modern = (
            msg["method"] != "initialize" and isinstance(meta, dict) and PROTOCOL_VERSION_META_KEY in meta
        )
        self._era = "modern" if modern else "legacy"
        if not modern:
            self._handshake(line)

    def _handshake(self, line: bytes) -> None:
        if b'"initialize"' not in line and b'"notifications/initialized"' not in line:
            return
        msg = _loads(line)
        if msg is None:
            return
        method = msg.get("method")
        if method == "initialize" and _request_id(msg.get("id")) is not None:
            self._version = _negotiated(msg.get("params"))
        elif method == "notifications/initialized" and "id" not in msg and self._version is not None:
            self._initialized = True

    # --- the calls ----------------------------------------------------------------------------------

    def _call(self, line: bytes) -> bool:
        if line.count(b"[") + line.count(b"{") > _MAX_BRACKETS:
            return False
        msg = _loads(line)
        if msg is None or msg.get("jsonrpc") != "2.0" or msg.get("method") != "tools/call":
            return False
        rid = _request_id(msg.get("id"))
        params = msg.get("params")
        if rid is None or not isinstance(params, dict) or not _PARAM_KEYS.issuperset(params):
            return False
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or name not in self._tools:
            return False
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return False
        version = self._version_of(params)
        if version is None:
            return False
        key = _key(rid)
        if key in self._running:  # a duplicate id in flight: the SDK's rules apply
            return False
        self._running[key] = asyncio.get_running_loop().create_task(
            self._run(rid, key, name, arguments, version)
        )
        return True

    def _version_of(self, params: dict[str, Any]) -> str | None:
        """The protocol version this call is served at, or None when the SDK must serve it."""
        meta = params.get("_meta")
        if self._era == "legacy":
            if not self._initialized:
                return None
            if meta is not None and not (isinstance(meta, dict) and set(meta) <= {"progressToken"}):
                return None  # an envelope on a legacy session is the SDK's to refuse
            return self._version
        if not isinstance(meta, dict):
            return None
        envelope = {k: v for k, v in meta.items() if k != "progressToken"}
        if not _ENVELOPE_KEYS.issuperset(envelope):
            return None
        if envelope not in self._envelopes:
            from mcp.shared.inbound import InboundLadderRejection, classify_inbound_request

            route = classify_inbound_request({"method": "tools/call", "params": params})
            if isinstance(route, InboundLadderRejection) or not _plain(route.protocol_version):
                return None
            self._envelopes = [envelope, *self._envelopes[:7]]
        version = envelope[_PROTOCOL_VERSION_KEY]
        return version if isinstance(version, str) else None

    def _cancel(self, line: bytes) -> bool:
        msg = _loads(line)
        if msg is None or msg.get("method") != "notifications/cancelled":
            return False
        params = msg.get("params")
        rid = _request_id(params.get("requestId")) if isinstance(params, dict) else None
        key = _key(rid) if rid is not None else None
        task = self._running.get(key) if key is not None else None
        if key is None or task is None:
            return False  # not ours: the SDK's request, or already answered
        self._cancelled.add(key)
        task.cancel()
        return True

    async def _run(
        self, rid: str | int, key: str | int, name: str, arguments: dict[str, Any], version: str
    ) -> None:
        answered = False
        try:
            answer = {"jsonrpc": "2.0", "id": rid, **await self._result(name, arguments, version)}
            data = orjson.dumps(answer, default=str) + b"\n"
            answered = True
            self._write(data)
            await self._drain()
        except asyncio.CancelledError:
            if not answered and key not in self._cancelled:
                closed = {"code": _CONNECTION_CLOSED, "message": "Connection closed"}
                with contextlib.suppress(Exception):
                    self._write(orjson.dumps({"jsonrpc": "2.0", "id": rid, "error": closed}) + b"\n")
            raise
        finally:
            self._running.pop(key, None)
            self._cancelled.discard(key)

    async def _result(self, name: str, arguments: dict[str, Any], version: str) -> dict[str, Any]:
        """``{"result": ...}`` or ``{"error": ...}``, as the SDK's tools/call handler would answer."""
        from mcp.shared.exceptions import MCPError
        from mcp.types import CallToolResult, TextContent

        try:
            result = await self._server.call_tool(name, arguments)
        except MCPError as exc:
            return {"error": exc.error.model_dump(by_alias=True, mode="json", exclude_none=True)}
        except Exception as exc:  # what the SDK's handler turns into an error result
            log.exception("tool_call_failed", tool=name)
            result = CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        dumped = _dump(result, version)
        if version in _modern_versions():
            # The 2026-07-28 era: every result says it is complete and names the server.
            dumped.setdefault("resultType", "complete")
            if dumped.get("_meta") is None:
                if self._stamp is None:
                    self._stamp = self._server._lowlevel_server.server_info_stamp
                dumped["_meta"] = {_SERVER_INFO_KEY: self._stamp}
        return {"result": dumped}


def _dump(result: Any, version: str) -> dict[str, Any]:
    """A tool result on the wire: our own results directly, anything else as the SDK shapes it."""
    from mcp.types import CallToolResult, TextContent

    texts = [c for c in result.content if type(c) is TextContent and c.annotations is None and c.meta is None]
    if type(result) is CallToolResult and result.meta is None and len(texts) == len(result.content):
        out: dict[str, Any] = {"content": [{"type": "text", "text": c.text} for c in texts]}
        if result.structured_content is not None:
            out["structuredContent"] = result.structured_content
        out["isError"] = result.is_error
        return out
    from mcp_types import methods

    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if version not in _modern_versions():
        dumped.pop("resultType", None)
    return dict(methods.serialize_server_result("tools/call", version, dumped))


def _negotiated(params: Any) -> str | None:
    """The protocol version the SDK settles on at ``initialize``, if our results travel unchanged in it."""
    from mcp.types import InitializeRequestParams
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
    from pydantic import ValidationError

    try:
        requested = InitializeRequestParams.model_validate(params or {}, by_name=False).protocol_version
    except ValidationError:
        return None  # the SDK refuses this initialize
    version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    return version if _plain(version) else None


def _modern_versions() -> tuple[str, ...]:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return tuple(MODERN_PROTOCOL_VERSIONS)


_PLAIN: dict[str, bool] = {}


def _plain(version: str) -> bool:
    """True when the SDK's result sieve for ``version`` leaves our tool results as they are."""
    known = _PLAIN.get(version)
    if known is None:
        from mcp_types import methods

        samples: list[dict[str, Any]] = [
            {
                "content": [{"type": "text", "text": "x"}],
                "structuredContent": {"a": [1, None]},
                "isError": False,
            },
            {"content": [{"type": "text", "text": "x"}], "isError": True},
        ]
        if version in _modern_versions():
            samples = [{**sample, "resultType": "complete"} for sample in samples]
        try:
            known = all(methods.serialize_server_result("tools/call", version, dict(s)) == s for s in samples)
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


def _key(rid: str | int) -> str | int:
    from mcp.shared.dispatcher import coerce_request_id

    return coerce_request_id(rid)


def _loads(line: bytes) -> dict[str, Any] | None:
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None
