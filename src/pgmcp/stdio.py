"""stdio on the event loop: the pipes an MCP client launches us with, served without threads.

The SDK's stdio transport reads and writes through anyio's thread-backed files:
two worker-thread hand-offs per call, the largest per-call CPU cost over stdio in
the profile (benchmarks/README.md). :func:`open_stdio_pipes` serves stdin/stdout
from asyncio when they are pipes or sockets (with 1 MiB pipe buffers), and
:class:`AnswerBadLines` answers a line that is not JSON-RPC with a JSON-RPC error
instead of dropping it. ``pgmcp.mcp_server.PgMcpServer.run_stdio_async`` uses both
and falls back to the SDK's transport for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from pgmcp.fastpath import ToolCallFastPath
from pgmcp.logs import get_logger

__all__ = ["AnswerBadLines", "open_stdio_pipes"]

log = get_logger("pgmcp.stdio")

_PIPE_SIZE = 1 << 20
_CLOSE_TIMEOUT = 2.0  # seconds for the last answers to drain at shutdown
_STDIO_LINE_LIMIT = 1 << 30  # one JSON-RPC message per line; the client is our parent, not a stranger


class _PipeLines:
    """The stdin side for the SDK's ``stdio_server``: an async iterator of text lines.

    With a fast path set, the lines it takes (``tools/call``, see
    :mod:`pgmcp.fastpath`) never reach the SDK; at the end of the input its calls
    still running are cancelled and answered before the SDK sees the end.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.fast: ToolCallFastPath | None = None
        self.last = b""

    def __aiter__(self) -> _PipeLines:
        return self

    async def __anext__(self) -> str:
        while True:
            line: bytes = await self._reader.readline()
            if not line:
                if self.fast is not None:
                    await self.fast.close()
                raise StopAsyncIteration
            if self.fast is not None and self.fast.take(line):
                continue
            self.last = line
            return line.decode("utf-8", errors="replace")


class AnswerBadLines:
    """The read side of stdio, answering the lines the SDK cannot parse instead of dropping them.

    The SDK passes a line that is not JSON, not a JSON-RPC message, or nested too
    deeply as an exception, which the session ignores: the client waits for an
    answer for ever. JSON-RPC 2.0 wants a Parse error (-32700) or an Invalid Request
    (-32600), with the request's id when it can be read (null otherwise). The SDK
    reads one line at a time and hands over each result before reading the next,
    so the line behind an exception is the last one read.
    """

    def __init__(self, inner: Any, write: Any, lines: _PipeLines) -> None:
        self._inner = inner
        self._write = write
        self._lines = lines

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            await self._answer(item)

    async def _answer(self, exc: Exception) -> None:
        import json

        from mcp.shared.message import SessionMessage
        from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError

        reason = str(exc).splitlines()[0][:200]
        if isinstance(exc, ValidationError) and exc.errors():
            reason = str(exc.errors(include_input=False)[0].get("msg", reason))[:200]
        request_id: str | int | None = None
        try:
            decoded = json.loads(getattr(self._lines, "last", b"") or b"null")
        except (ValueError, RecursionError):
            code, message = PARSE_ERROR, f"Parse error: {reason}"
        else:
            code, message = INVALID_REQUEST, f"Invalid Request: {reason}"
            candidate = decoded.get("id") if isinstance(decoded, dict) else None
            if isinstance(candidate, str | int) and not isinstance(candidate, bool):
                request_id = candidate
        log.warning("invalid_message", transport="stdio", code=code, reason=reason)
        error = JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))
        await self._write.send(SessionMessage(error))

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> AnswerBadLines:
        return self

    async def __anext__(self) -> Any:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AnswerBadLines:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await self._inner.__aexit__(*exc)


class _PipeOut:
    """The stdout side for the SDK's ``stdio_server``: ``write`` then ``flush`` per message."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()

    def write_bytes(self, data: bytes) -> None:
        """One whole message, queued at once (so it never interleaves with another)."""
        self._writer.write(data)

    async def close(self) -> None:
        self._writer.close()
        # Bounded: a client that stopped reading must not hold up shutdown.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_TIMEOUT)


async def open_stdio_pipes() -> tuple[_PipeLines, _PipeOut, Callable[[], None]] | None:
    """Private duplicates of fd 0 and 1 served by asyncio, or None when they are not pipes/sockets.

    Returns the line reader, the writer and a function that points fd 0 and 1 back
    at the wire (they point at /dev/null and stderr until then).
    """
    import os
    import stat
    import sys

    if sys.platform == "win32":
        return None
    import fcntl

    try:
        if not all(
            stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) for mode in (os.fstat(0).st_mode, os.fstat(1).st_mode)
        ):
            return None
        in_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        out_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:
        return None
    for fd in (in_fd, out_fd):
        # A 64 KiB pipe takes a large result in many write/wake-up rounds; 1 MiB (the
        # unprivileged maximum) takes most in one. Best effort: sockets have no such size.
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_STDIO_LINE_LIMIT)
    in_file, out_file = os.fdopen(in_fd, "rb", buffering=0), os.fdopen(out_fd, "wb", buffering=0)
    read_transport: asyncio.ReadTransport | None = None
    try:
        # The transports own the duplicates and close them.
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), in_file
        )
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, out_file)
    except (OSError, ValueError):
        if read_transport is not None:
            read_transport.close()
        else:
            in_file.close()
        out_file.close()
        for fd in (0, 1):  # the SDK's transport reads and writes them blocking, from threads
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
        return None
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    # Divert the standard descriptors while the private duplicates carry the wire.
    saved_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    saved_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)

    def restore() -> None:
        read_transport.close()
        for saved, fd in ((saved_in, 0), (saved_out, 1)):
            with contextlib.suppress(OSError):
                os.dup2(saved, fd)
                os.close(saved)

    return _PipeLines(reader), _PipeOut(writer), restore
