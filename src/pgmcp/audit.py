"""The audit log: one JSON line per tool call in ``AUDIT_LOG_FILE``, append-only, flushed per record.

Each record: ``time``, ``client`` (token subject, ``token``, ``anonymous`` or
``stdio``), ``tool``, ``connection_id``, ``operations`` (statement kinds),
``query`` (only with ``ENABLE_QUERY_LOGGING=true``), ``duration_ms``,
``rows``, ``outcome`` (``success`` or the error type), ``blocked_reason``.
Never parameter values, never secrets. When the file passes
``AUDIT_LOG_MAX_BYTES`` it is rotated to ``.1`` … ``.5``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from pgmcp.auth import CallInfo
from pgmcp.logs import redact_text

__all__ = ["AuditLog"]

BACKUPS = 5


class AuditLog:
    def __init__(self, path: Path, *, max_bytes: int, include_queries: bool) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._include_queries = include_queries
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8")

    def record(self, call: CallInfo, *, outcome: str, duration_ms: float, rows: int | None) -> None:
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "client": call.principal.subject,
            "tool": call.tool,
            "connection_id": call.connection_id,
            "operations": sorted(set(call.kinds)),
            "duration_ms": round(duration_ms, 3),
            "rows": rows,
            "outcome": outcome,
        }
        if self._include_queries and call.queries:
            # redact_text also masks SQL PASSWORD '...' literals (ALTER ROLE), which mask_secrets does not.
            entry["query"] = redact_text("; ".join(call.queries))
        if call.blocked_reason:
            entry["blocked_reason"] = call.blocked_reason
        self._file.write(orjson.dumps(entry).decode() + "\n")
        self._file.flush()
        if self._file.tell() >= self._max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._file.close()
        for index in range(BACKUPS - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._file.close()
