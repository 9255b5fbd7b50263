"""Result models of the database-intelligence tools: analyze_db_health, get_top_queries,
recommend_indexes, get_activity.

As in :mod:`pgmcp.models`, lists of objects are advertised as plain arrays; the item
models below document their fields for Python users and the docs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from pgmcp.models import Objects, _Result

__all__ = [
    "ActivityResult",
    "DbHealthResult",
    "Finding",
    "IndexRecommendation",
    "RecommendIndexesResult",
    "TopQueriesResult",
    "TopQuery",
]

Severity = Literal["info", "warning", "critical"]


class Finding(BaseModel):
    """One problem analyze_db_health found."""

    check: str
    severity: Severity
    object: str
    metric: dict[str, Any]
    message: str


class DbHealthResult(_Result):
    checks: list[str]
    findings: Objects
    summary: dict[str, str]
    warnings: list[str]


class TopQuery(BaseModel):
    query: str
    calls: int
    total_time_ms: float
    mean_time_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    percent_of_total_time: float


class TopQueriesResult(_Result):
    sort_by: str
    queries: Objects
    warnings: list[str]


class IndexRecommendation(BaseModel):
    table: str
    columns: list[str]
    using: str
    definition: str
    estimated_size_bytes: int | None
    queries: list[dict[str, Any]]
    improvement: float | None
    verified: bool


class RecommendIndexesResult(_Result):
    recommendations: Objects
    hypopg: bool
    analyzed_queries: int
    warnings: list[str]


class ActivityResult(_Result):
    sessions: Objects
    blocking: Objects
    long_transactions: Objects
    locks: Objects
    warnings: list[str]
