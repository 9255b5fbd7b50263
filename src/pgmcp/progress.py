"""Progress of the running tool call, for tools that move many rows (``copy_data``).

The MCP edge (``pgmcp.server.register_tool``) puts the SDK's reporter of the
current request here; a tool calls :func:`report` as its work advances. When the
client sent no ``progressToken`` (or the call came without a request context,
as over a fast path), the SDK's reporter does nothing and neither does this: a
tool never needs to know whether anyone listens.

A leaf: it imports nothing of pgmcp, and nothing of ``mcp`` (only server.py does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

__all__ = ["Reporter", "current_reporter", "report"]

#: ``reporter(progress, total, message)``: the SDK's ``Context.report_progress``.
Reporter = Callable[[float, float | None, str | None], Awaitable[None]]

current_reporter: ContextVar[Reporter | None] = ContextVar("pgmcp_progress", default=None)


async def report(progress: float, total: float | None = None, message: str | None = None) -> None:
    """Send ``notifications/progress`` for the current call, if its client asked for them.

    Never raises: a client that went away while the work goes on is the
    cancellation's business, not a reason to fail the work.
    """
    reporter = current_reporter.get()
    if reporter is None:
        return
    with contextlib.suppress(Exception):
        await reporter(progress, total, message)
