"""The query history and the blocked statements, as the tools and the console read them.

The Monitor keeps each entry as a tuple (cheaper on the hot path, under its
lock); these functions turn the entries into the dicts callers see.

A history entry: ``(epoch, connection_id, query, query_type, duration_ms,
success, row_count, error_type, tool, principal, id)``. A blocked entry:
``(epoch, connection_id, reason, message, query, tool, principal)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BLOCKED_HISTORY_SIZE",
    "QueryRecord",
    "blocked_rows",
    "console_row",
    "history_row",
    "iso",
    "pick",
]

#: How many recent blocked statements the console lists (they are not in the query history).
BLOCKED_HISTORY_SIZE = 200


def iso(epoch: float) -> str:
    """``epoch`` as ISO 8601 UTC with a ``Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class QueryRecord:
    """One query in the history (``get_query_history``)."""

    connection_id: str
    query: str | None
    query_type: str
    duration_ms: float
    success: bool
    row_count: int | None
    timestamp: str  # ISO 8601, UTC
    error_type: str | None = None
    tool: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "query": self.query,
            "query_type": self.query_type,
            "duration_ms": self.duration_ms,
            "success": self.success,
            "row_count": self.row_count,
            "timestamp": self.timestamp,
            "error_type": self.error_type,
            "tool": self.tool,
        }


def pick(
    newest_first: Iterable[tuple[Any, ...]], connection_id: str | None, min_duration_ms: float, limit: int
) -> list[tuple[Any, ...]]:
    """At most ``limit`` entries of ``connection_id`` (any when None) taking ``min_duration_ms`` or more."""
    picked: list[tuple[Any, ...]] = []
    for entry in newest_first:
        if (connection_id is None or entry[1] == connection_id) and entry[4] >= min_duration_ms:
            picked.append(entry)
            if len(picked) >= limit:
                break
    return picked


def history_row(entry: tuple[Any, ...]) -> dict[str, Any]:
    """One entry as ``get_query_history`` shows it."""
    epoch, conn, text, qtype, dur, ok, rows, err, tool, _, _ = entry
    return QueryRecord(conn, text, qtype, round(dur, 3), ok, rows, iso(epoch), err, tool).as_dict()


def console_row(entry: tuple[Any, ...]) -> dict[str, Any]:
    """One entry as the console shows it: :func:`history_row` plus ``principal`` and ``id``."""
    return {**history_row(entry), "principal": entry[9], "id": entry[10]}


def blocked_rows(newest_first: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Blocked entries as the console shows them."""
    return [
        {
            "connection_id": conn,
            "reason": reason,
            "message": message,
            "query": text,
            "tool": tool,
            "principal": principal,
            "timestamp": iso(epoch),
        }
        for epoch, conn, reason, message, text, tool, principal in newest_first
    ]
