"""The stdio fast path: one session's ``tools/call`` lines, taken before the SDK reads them.

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

from mcp.types import CONNECTION_CLOSED
from mcp_types import PROTOCOL_VERSION_META_KEY

from pgmcp.fastpath.calls import (
    Call,
    FastCalls,
    correlation_key,
    encode,
    loads,
    negotiated,
    request_id,
)

__all__ = ["ToolCallFastPath"]


class ToolCallFastPath:
    """Takes the eligible ``tools/call`` lines of one stdio session (see :mod:`pgmcp.fastpath`).

    ``write`` puts one answer (bytes, newline included) on the wire without waiting;
    ``drain`` waits until the wire has taken it.
    """

    def __init__(
        self, server: Any, write: Callable[[bytes], None], drain: Callable[[], Awaitable[None]]
    ) -> None:
        self._calls = FastCalls(server)
        self._write = write
        self._drain = drain
        self._enabled = self._calls.enabled
        self._era: str | None = None  # "legacy" or "modern", decided by the client's first request
        # Legacy era: the version negotiated at initialize, if our results travel in it as they are.
        self._version: str | None = None
        self._initialized = False
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
        msg = loads(line)
        if msg is None or msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
            return
        if request_id(msg.get("id")) is None:
            return  # a notification (or not a request at all): the era is still open
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
        msg = loads(line)
        if msg is None:
            return
        method = msg.get("method")
        if method == "initialize" and request_id(msg.get("id")) is not None:
            self._version = negotiated(msg.get("params"))
        elif method == "notifications/initialized" and "id" not in msg and self._version is not None:
            self._initialized = True

    # --- the calls ----------------------------------------------------------------------------------

    def _call(self, line: bytes) -> bool:
        call = self._calls.parse(line)
        if call is None:
            return False
        if self._era == "legacy":
            version = self._version if self._initialized and FastCalls.legacy_meta(call) else None
        else:
            version = self._calls.modern_version(call)
        if version is None or call.key in self._running:  # a duplicate id in flight: the SDK's rules apply
            return False
        self._running[call.key] = asyncio.get_running_loop().create_task(self._run(call, version))
        return True

    def _cancel(self, line: bytes) -> bool:
        msg = loads(line)
        if msg is None or msg.get("method") != "notifications/cancelled":
            return False
        params = msg.get("params")
        rid = request_id(params.get("requestId")) if isinstance(params, dict) else None
        key = correlation_key(rid) if rid is not None else None
        task = self._running.get(key) if key is not None else None
        if key is None or task is None:
            return False  # not ours: the SDK's request, or already answered
        self._cancelled.add(key)
        task.cancel()
        return True

    async def _run(self, call: Call, version: str) -> None:
        answered = False
        try:
            data = encode(await self._calls.answer(call, version)) + b"\n"
            answered = True
            self._write(data)
            await self._drain()
        except asyncio.CancelledError:
            if not answered and call.key not in self._cancelled:
                closed = {"code": CONNECTION_CLOSED, "message": "Connection closed"}
                with contextlib.suppress(Exception):
                    self._write(encode({"jsonrpc": "2.0", "id": call.id, "error": closed}) + b"\n")
            raise
        finally:
            self._running.pop(call.key, None)
            self._cancelled.discard(call.key)
