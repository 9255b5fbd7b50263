"""The HTTP fast path: 2026-07-28 ``tools/call`` POSTs to ``/mcp``, answered before the SDK's app.

The SDK's modern entry (``mcp.server._streamable_http_modern.handle_modern_request``)
checks, in order: transport security (Content-Type, Host, Origin), the method,
the Accept header, the body, the JSON-RPC shape, duplicated routing headers, the
envelope against the routing headers, and ``Mcp-Param-*`` headers against the
tool's schema. :class:`HttpFastPath` runs the same checks with the SDK's own
functions and hands the request to the SDK, body replayed, whenever one of them
fails or anything is unusual (an ``Mcp-Param-*`` header, a body without a length
or over ``MCP_MAX_REQUEST_BYTES``), so every refusal is still the SDK's.

Like the SDK, a client that disconnects cancels its call (asyncpg cancels the
statement, the transaction rolls back), and a call still running after 15 s is
answered as an event stream with keep-alive pings when the server streams
(stateful mode), so no proxy idles the connection out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any, cast

# The SDK's modern entry's own deferral window and event-stream headers, so ours match.
from mcp.server._streamable_http_modern import _SSE_HEADERS, _SSE_PING_INTERVAL
from mcp.server.streamable_http import check_accept_headers
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, find_duplicated_routing_header
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgmcp.auth import ANONYMOUS, Principal, current_principal
from pgmcp.fastpath.calls import Call, FastCalls, encode

__all__ = ["HttpFastPath"]


class HttpFastPath:
    """ASGI layer in front of the SDK's app; ``server`` is the PgMcpServer whose ``streamable_http_app`` it wraps."""

    def __init__(self, app: ASGIApp, server: Any, *, path: str = "/mcp") -> None:
        self.app = app
        self._calls = FastCalls(server)
        self._manager = server._lowlevel_server.session_manager
        self._security = TransportSecurityMiddleware(self._manager.security_settings)
        self._path = path
        self._versions = {v.encode() for v in MODERN_PROTOCOL_VERSIONS}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = self._candidate(scope)
        if headers is None:
            await self.app(scope, receive, send)
            return
        call, version, body = await self._eligible(scope, headers, receive)
        if body is _GONE:
            return  # the client left before its request was complete: nobody to answer
        if call is None or version is None:
            await self.app(scope, _replay(body, receive) if body is not None else receive, send)
            return
        state = scope.get("state") or {}
        principal = state.get("pgmcp_principal")
        token = current_principal.set(principal if isinstance(principal, Principal) else ANONYMOUS)
        try:
            await self._serve(call, version, receive, send)
        finally:
            current_principal.reset(token)

    def _candidate(self, scope: Scope) -> _Headers | None:
        """A POST to /mcp routed to the modern entry for tools/call: its headers (first value of each)."""
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self._path:
            return None
        if not self._calls.enabled:
            return None
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        version = method = None
        for name, value in raw:
            if name == b"mcp-protocol-version":
                version = value
            elif name == b"mcp-method":
                method = value
            elif name.startswith(b"mcp-param-"):
                return None  # declared-header validation: the SDK's
        if method != b"tools/call" or version not in self._versions:
            return None
        return _Headers(raw)

    async def _eligible(
        self, scope: Scope, headers: _Headers, receive: Receive
    ) -> tuple[Call | None, str | None, bytes | None]:
        """The call and its protocol version, or Nones and the body read so far (None: nothing read)."""
        manager = self._manager
        # The SDK's checks read only ``request.headers``; a plain mapping serves them.
        if await self._security.validate_request(cast(Request, headers), is_post=True):
            return None, None, None
        has_json, has_sse = check_accept_headers(cast(Request, headers))
        if not has_json or not (manager.json_response or has_sse):
            return None, None, None
        length = headers.headers.get("content-length", "")
        if not length.isdigit() or int(length) > manager.max_request_body_size:
            return None, None, None
        if find_duplicated_routing_header(headers.pairs) is not None:
            return None, None, None
        body = await _body(receive)
        if body is _GONE:
            return None, None, body
        call = self._calls.parse(body)
        version = None if call is None else self._calls.modern_version(call, headers=headers.headers)
        return call, version, body

    async def _serve(self, call: Call, version: str, receive: Receive, send: Send) -> None:
        running = asyncio.ensure_future(self._calls.answer(call, version))
        gone = asyncio.ensure_future(_disconnected(receive))
        streaming = False
        timeout = None if self._manager.json_response else _SSE_PING_INTERVAL
        try:
            while True:
                done, _ = await asyncio.wait(
                    {running, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if running in done:
                    break
                if gone in done:
                    running.cancel()  # the client gave up: the statement stops, the transaction rolls back
                    with contextlib.suppress(asyncio.CancelledError):
                        await running
                    return
                if not streaming:
                    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                    streaming = True
                await send({"type": "http.response.body", "body": b": ping\r\n\r\n", "more_body": True})
            message = running.result()
            body = sdk_json(message)
            if streaming:
                event = b"event: message\r\ndata: " + body + b"\r\n\r\n"
                await send({"type": "http.response.body", "body": event, "more_body": False})
                return
            status = 200
            if "error" in message:
                status = ERROR_CODE_HTTP_STATUS.get(message["error"].get("code"), 200)
            # In the order the SDK's JSONResponse sends them.
            headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            gone.cancel()
            if not running.done():
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running


# Where orjson and the SDK's ``json.dumps`` may write the same value differently: a float below
# 1e-4 (``0.00001`` / ``1e-05``, ``1e-7`` / ``1e-07``). Also matches some strings: those take json.dumps.
_FLOAT_FORMS = re.compile(rb"[0-9]e-|0\.0000")


def sdk_json(message: dict[str, Any]) -> bytes:
    """``message`` as the bytes the SDK's modern HTTP entry sends (``json.dumps``, ASCII only).

    orjson writes the same bytes, four to seven times faster, unless the message holds
    a character outside printable ASCII (json.dumps escapes it) or a small float; then
    json.dumps itself. tests/integration/test_fast_path_differential.py compares the two.
    """
    body = encode(message)
    if body.isascii() and b"\x7f" not in body and _FLOAT_FORMS.search(body) is None:
        return body
    return json.dumps(message, separators=(",", ":"), default=str).encode()


class _Headers:
    """A request's headers as the SDK's checks read them (``.headers.get``), decoded once."""

    __slots__ = ("headers", "pairs")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
        self.headers: dict[str, str] = {}
        for key, value in self.pairs:
            self.headers.setdefault(key, value)  # the first of repeated headers, as Starlette reads them


_GONE = b"\0gone"  # not a body: the client disconnected while sending it


async def _body(receive: Receive) -> bytes:
    """The request body (its length is checked first), or ``_GONE`` when the client disconnected."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return _GONE
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the SDK's app after the fast path read the body: the body first, then the wire."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
