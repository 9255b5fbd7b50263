"""Progress a tool reports while it runs (``notifications/progress`` at the MCP edge).

The edge sets :data:`current_progress` for a call whose request carried a
``progressToken``; a tool checks it and reports ``(progress, total, message)``.
No ``mcp`` import: tools and the execute path may use it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

__all__ = ["Progress", "current_progress"]

Progress = Callable[[float, float | None, str | None], Awaitable[None]]

#: None when the caller did not ask for progress (no progressToken).
current_progress: ContextVar[Progress | None] = ContextVar("pgmcp_progress", default=None)
