"""compare_tables: row counts and a checksum per key range, computed in each database.

1. The source's key distribution gives the chunk boundaries: the lowest key of each
   of ``chunks`` equal parts (``ntile`` over the key order).
2. Each database groups its rows by those boundaries (chunk *i* holds the keys from
   boundary *i* up to, not including, boundary *i+1*; the first chunk is open below,
   the last above) and returns per chunk the row count and the sum of a 64-bit hash
   of every row's text (the first 16 hex digits of ``md5(ROW(columns)::text)``).
   Summing needs no sort and no memory per row, and unlike XOR a duplicated row
   still counts; a changed value, a missing or an extra row changes the sum.
3. Chunks whose count or sum differ are named by their key range.

No row crosses the wire: only the boundaries (at most ``chunks`` keys) and one line
per chunk and side. Both queries are pgmcp's own SQL over quoted identifiers, run
through ``Executor.query`` (the read path: policy, READ ONLY, QUERY_TIMEOUT, history).
Text is compared under each database's own collation, and values by their text as
each database prints it (both sessions use UTC and ISO dates), so ``numeric`` 1.5
and 1.50 differ, as they do to an application.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pgmcp.db.copy import quote_ident
from pgmcp.db.execute import Executor
from pgmcp.errors import DatabaseError, InvalidInput

__all__ = ["compare_tables", "split_table"]

MAX_CHUNKS = 100

_TABLE_COLUMNS = """
SELECT a.attname::text AS name
  FROM pg_attribute a
 WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relname = $2)
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""


def split_table(name: str) -> tuple[str, str]:
    """``"schema.table"`` or ``"table"`` (schema ``public``) as ``(schema, table)``."""
    schema, dot, table = name.partition(".")
    if not dot:
        return "public", name
    if not schema or not table:
        raise InvalidInput(f"Table name {name!r} must be 'table' or 'schema.table'")
    return schema, table


def _key_list(key: str | Sequence[str]) -> list[str]:
    keys = [key] if isinstance(key, str) else list(key)
    if not keys or any(not k for k in keys):
        raise InvalidInput("key must name at least one column (a list for a composite key)")
    if len(set(keys)) != len(keys):
        raise InvalidInput("key names a column twice")
    return keys


async def _columns(executor: Executor, connection_id: str, schema: str, table: str) -> list[str]:
    (rows,) = await executor.catalog(
        connection_id, [(_TABLE_COLUMNS, (schema, table))], tool="compare_tables"
    )
    if not rows:
        raise DatabaseError(
            f'Table "{schema}.{table}" does not exist on connection {connection_id!r}', sqlstate="42P01"
        )
    return [r["name"] for r in rows]


def _chunk_sums_sql(relation: str, keys: list[str], columns: list[str], boundaries: int) -> str:
    key_sql = ", ".join(quote_ident(k) for k in keys)
    if boundaries == 0:
        bucket = "0"
    else:
        width = len(keys)
        terms = []
        for b in range(boundaries):
            params = ", ".join(f"${b * width + i + 1}" for i in range(width))
            left, right = (key_sql, params) if width == 1 else (f"ROW({key_sql})", f"ROW({params})")
            terms.append(f"({left} >= {right})::int")
        bucket = " + ".join(terms)
    row = ", ".join(quote_ident(c) for c in columns)
    return (
        "SELECT pgmcp_chunk, count(*) AS row_count, "
        "sum(('x' || substr(md5(pgmcp_row), 1, 16))::bit(64)::bigint)::text AS checksum "
        f"FROM (SELECT {bucket} AS pgmcp_chunk, ROW({row})::text AS pgmcp_row FROM {relation}) AS pgmcp_rows "
        "GROUP BY pgmcp_chunk ORDER BY pgmcp_chunk"
    )


async def compare_tables(
    executor: Executor,
    source_connection_id: str,
    source_table: str,
    target_connection_id: str,
    target_table: str,
    key: str | Sequence[str],
    columns: Sequence[str] | None,
    chunks: int,
) -> dict[str, Any]:
    """``counts``, ``chunks``, ``matching_chunks``, ``differing_chunks`` and ``identical``."""
    if not 1 <= chunks <= MAX_CHUNKS:
        raise InvalidInput(f"chunks must be between 1 and {MAX_CHUNKS}, got {chunks}")
    keys = _key_list(key)
    source_schema, source_name = split_table(source_table)
    target_schema, target_name = split_table(target_table)
    if columns is None:
        columns = await _columns(executor, source_connection_id, source_schema, source_name)
    elif not columns:
        raise InvalidInput("columns, when given, must name at least one column")
    columns = list(columns)
    source_rel = f"{quote_ident(source_schema)}.{quote_ident(source_name)}"
    target_rel = f"{quote_ident(target_schema)}.{quote_ident(target_name)}"
    key_sql = ", ".join(quote_ident(k) for k in keys)
    # The lowest key of each of `chunks` equal parts of the source, in key order.
    bounds_sql = (
        f"SELECT DISTINCT ON (pgmcp_chunk) {key_sql} FROM "
        f"(SELECT {key_sql}, ntile({chunks}) OVER (ORDER BY {key_sql}) AS pgmcp_chunk FROM {source_rel}) AS s "
        f"WHERE ({' AND '.join(f'{quote_ident(k)} IS NOT NULL' for k in keys)}) "
        f"ORDER BY pgmcp_chunk, {key_sql}"
    )
    bounds = await executor.query(source_connection_id, bounds_sql, fetch_size=chunks, tool="compare_tables")
    names = [c["name"] for c in bounds.columns]
    lowest = [[row[n] for n in names] for row in bounds.rows]
    boundaries = lowest[1:]  # chunk 0 is open below: it also takes target keys under the source's lowest
    params = [value for bound in boundaries for value in bound]
    src, dst = await asyncio.gather(
        executor.query(
            source_connection_id,
            _chunk_sums_sql(source_rel, keys, columns, len(boundaries)),
            params,
            fetch_size=len(boundaries) + 2,
            tool="compare_tables",
        ),
        executor.query(
            target_connection_id,
            _chunk_sums_sql(target_rel, keys, columns, len(boundaries)),
            params,
            fetch_size=len(boundaries) + 2,
            tool="compare_tables",
        ),
    )

    def by_chunk(rows: list[dict[str, Any]]) -> dict[int | None, tuple[int, str]]:
        return {r["pgmcp_chunk"]: (int(r["row_count"]), str(r["checksum"])) for r in rows}

    source_chunks, target_chunks = by_chunk(src.rows), by_chunk(dst.rows)

    def shown(bound: list[Any] | None) -> Any:
        if bound is None:
            return None
        return bound[0] if len(keys) == 1 else bound

    differing: list[dict[str, Any]] = []
    total = len(boundaries) + 1
    matching = 0
    for index in range(total):
        s, t = source_chunks.get(index, (0, "")), target_chunks.get(index, (0, ""))
        if s == t:
            matching += 1
            continue
        differing.append(
            {
                "from_key": shown(boundaries[index - 1]) if index > 0 else None,
                "to_key": shown(boundaries[index]) if index < len(boundaries) else None,
                "source_count": s[0],
                "target_count": t[0],
            }
        )
    # Rows whose key is NULL compare as one chunk of their own.
    s_null, t_null = source_chunks.get(None, (0, "")), target_chunks.get(None, (0, ""))
    if s_null != t_null:
        differing.append(
            {
                "from_key": None,
                "to_key": None,
                "source_count": s_null[0],
                "target_count": t_null[0],
                "null_keys": True,
            }
        )
    counts = {
        "source": sum(n for n, _ in source_chunks.values()),
        "target": sum(n for n, _ in target_chunks.values()),
    }
    return {
        "counts": counts,
        "chunks": total,
        "matching_chunks": matching,
        "differing_chunks": differing,
        "identical": not differing and counts["source"] == counts["target"],
    }
