"""What the execute path returns to the tools: one query's rows, a transaction's results, a batch's count."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BatchResult", "JsonRow", "QueryResult", "TransactionResult"]

JsonRow = dict[str, Any]


@dataclass
class QueryResult:
    columns: list[dict[str, str]]
    rows: list[JsonRow]
    row_count: int
    truncated: bool
    duration_ms: float
    truncated_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class TransactionResult:
    results: list[dict[str, Any]]
    duration_ms: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    rows_affected: int
    batch_size: int
    duration_ms: float
    warnings: list[str] = field(default_factory=list)
