"""Result models of the migration tools (copy_data, compare_schemas, compare_tables).

As in :mod:`pgmcp.models`, lists of objects are advertised as plain arrays; the
item models document their fields for Python users.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from pgmcp.models import JsonValue, Objects

__all__ = [
    "ChunkDifference",
    "CompareSchemasResult",
    "CompareTablesResult",
    "CopyDataResult",
    "SchemaDifference",
]


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    success: bool


class CopyDataResult(_Result):
    """Also ``rows_read`` and ``rows_skipped`` (``on_conflict='skip'``)."""

    rows_copied: int
    duration_ms: float
    rows_per_second: float
    committed: bool


class SchemaDifference(BaseModel):
    """One difference: ``kind`` such as ``missing_table``, ``type_changed``, ``missing_index``."""

    table: str
    kind: str
    detail: str
    source: Any = None
    target: Any = None


class CompareSchemasResult(_Result):
    differences: Objects
    identical: bool


class ChunkDifference(BaseModel):
    """A key range whose rows differ: ``from_key`` inclusive, ``to_key`` exclusive (null: unbounded)."""

    from_key: JsonValue
    to_key: JsonValue
    source_count: int
    target_count: int


class Counts(BaseModel):
    source: int
    target: int


class CompareTablesResult(_Result):
    """Also ``chunks``, the number of key ranges compared."""

    counts: Counts
    matching_chunks: int
    differing_chunks: Objects
    identical: bool
