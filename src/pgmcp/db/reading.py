"""Reading a result: how many rows a call may ask for, rows capped by ``MAX_RESULT_BYTES``,
rows affected from a command tag, and the hint a truncated result carries."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import orjson

from pgmcp.config import Settings
from pgmcp.db.convert import make_row_encoder
from pgmcp.db.results import JsonRow
from pgmcp.errors import InvalidInput, LimitExceeded

__all__ = ["encode_capped", "fetch_size", "status_count", "truncated_reason"]

_SIZE_CHUNK = 64  # rows sized per orjson call against MAX_RESULT_BYTES

_KEYSET = "page with keyset pagination (WHERE <order key> > <last value seen> ORDER BY <order key> LIMIT n)"


def status_count(status: str | None) -> int | None:
    """Rows affected from a command tag such as ``INSERT 0 3`` or ``UPDATE 2``."""
    if not status:
        return None
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None


def fetch_size(settings: Settings, requested: int | None) -> int:
    """The rows a call reads: ``requested`` or DEFAULT_FETCH_SIZE, at most MAX_FETCH_SIZE.

    Raises:
        InvalidInput: below 1.
        LimitExceeded: above MAX_FETCH_SIZE.
    """
    size = settings.default_fetch_size if requested is None else requested
    if size < 1:
        raise InvalidInput(f"fetch_size must be at least 1, got {size}")
    if size > settings.max_fetch_size:
        raise LimitExceeded(
            f"fetch_size {size} is above MAX_FETCH_SIZE={settings.max_fetch_size}; page through the result"
        )
    return size


def encode_capped(
    attributes: Sequence[Any], records: Sequence[asyncpg.Record], budget: int
) -> tuple[list[JsonRow], bool]:
    """``records`` as JSON rows, as many as fit in ``budget`` bytes of JSON (at least one);
    and whether rows were left out."""
    if not records:
        return [], False
    encode: Callable[[asyncpg.Record], JsonRow] = make_row_encoder(attributes)
    used = 0
    rows: list[JsonRow] = []
    # Sized a chunk at a time: one orjson call per chunk instead of per row (a third of
    # the encoding time of a 1,000-row result). Only the chunk that crosses the budget is
    # sized row by row, so at most one chunk beyond MAX_RESULT_BYTES is ever encoded.
    for start in range(0, len(records), _SIZE_CHUNK):
        chunk = [encode(record) for record in records[start : start + _SIZE_CHUNK]]
        size = len(orjson.dumps(chunk, default=str)) - 1  # == sum(len(row's JSON) + 1)
        if used + size <= budget:
            used += size
            rows.extend(chunk)
            continue
        for row in chunk:
            used += len(orjson.dumps(row, default=str)) + 1
            if used > budget and rows:
                return rows, True
            rows.append(row)
    return rows, False


def truncated_reason(*, byte_capped: bool, more: bool, max_result_bytes: int, size: int) -> str | None:
    """Why a result was cut, and how to get the rest; None when it was not."""
    if byte_capped:
        return f"the result reached MAX_RESULT_BYTES={max_result_bytes}; select fewer columns or {_KEYSET}"
    if more:
        return f"more than fetch_size={size} rows exist; {_KEYSET} or aggregate"
    return None
