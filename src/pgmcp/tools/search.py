"""search_objects: find schemas, tables, views, columns, functions and indexes by name, with bounded detail.

Listing every table floods a model's context on a large schema; a search by name answers
with the few objects that matter, at the detail asked for, within a byte cap.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.errors import InvalidInput
from pgmcp.tools import ConnectionId
from pgmcp.tools.schema import SchemaTools

Kind = Literal["schema", "table", "view", "column", "function", "index"]
KINDS: tuple[Kind, ...] = ("schema", "table", "view", "column", "function", "index")
Detail = Literal["names", "summary", "full"]
Kinds = Annotated[list[Kind], Field(min_length=1, description="Object kinds to search.")]
ALL_KINDS: list[Kind] = list(KINDS)  # the default (pydantic copies it per call)

MAX_LIMIT = 1000
FULL_LIMIT = 20  # detail="full" describes each table as get_table_schema does: a catalog round each
# A search answers for a model's context, not a dump: at most this many bytes of objects
# (or MAX_RESULT_BYTES, if smaller).
SEARCH_MAX_BYTES = 32768

_USER_SCHEMA = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
    "AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%' "
    "AND has_schema_privilege(n.oid, 'USAGE') AND ($2::text IS NULL OR n.nspname = $2)"
)

# $1 the ILIKE pattern, $2 the schema (or NULL), $3 the most rows (one more than asked: truncated).
_QUERIES: dict[str, str] = {
    "schema": f"""
SELECT 'schema' AS kind, n.nspname AS schema, n.nspname AS name, NULL::text AS "table",
       obj_description(n.oid, 'pg_namespace') AS comment
  FROM pg_namespace n WHERE {_USER_SCHEMA} AND n.nspname ILIKE $1
 ORDER BY 2 LIMIT $3""",
    "table": f"""
SELECT 'table' AS kind, n.nspname AS schema, c.relname AS name, NULL::text AS "table",
       CASE c.relkind WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'BASE TABLE' END AS type,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate,
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
           AND NOT a.attisdropped)::int AS column_count,
       obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'p', 'f') AND NOT c.relispartition AND c.relname ILIKE $1
 ORDER BY 2, 3 LIMIT $3""",
    "view": f"""
SELECT 'view' AS kind, n.nspname AS schema, c.relname AS name, NULL::text AS "table",
       CASE c.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END AS type,
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
           AND NOT a.attisdropped)::int AS column_count,
       obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_USER_SCHEMA} AND c.relkind IN ('v', 'm') AND c.relname ILIKE $1
 ORDER BY 2, 3 LIMIT $3""",
    "column": f"""
SELECT 'column' AS kind, n.nspname AS schema, a.attname AS name, c.relname AS "table",
       format_type(a.atttypid, a.atttypmod) AS data_type, NOT a.attnotnull AS nullable,
       col_description(c.oid, a.attnum) AS comment
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
   AND a.attnum > 0 AND NOT a.attisdropped AND a.attname ILIKE $1
 ORDER BY 2, 4, 3 LIMIT $3""",
    "function": f"""
SELECT 'function' AS kind, n.nspname AS schema, p.proname AS name, NULL::text AS "table",
       pg_get_function_identity_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result_type,
       obj_description(p.oid, 'pg_proc') AS comment
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_USER_SCHEMA} AND p.proname ILIKE $1
 ORDER BY 2, 3 LIMIT $3""",
    "index": f"""
SELECT 'index' AS kind, n.nspname AS schema, ic.relname AS name, tc.relname AS "table",
       i.indisunique AS "unique", pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class tc ON tc.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = ic.relnamespace
 WHERE {_USER_SCHEMA} AND ic.relname ILIKE $1
 ORDER BY 2, 3 LIMIT $3""",
}

_NAME_KEYS = ("kind", "schema", "name", "table")


def like_pattern(pattern: str) -> str:
    """``pattern`` as an ILIKE pattern: kept when it has ``%`` or ``_``, else a substring search."""
    if "%" in pattern or "_" in pattern:
        return pattern
    escaped = pattern.replace("\\", "\\\\")
    return f"%{escaped}%"


class SearchTools:
    def __init__(self, app: AppContext, schema: SchemaTools) -> None:
        self.app = app
        self.schema = schema

    async def search_objects(
        self,
        connection_id: ConnectionId,
        pattern: Annotated[
            str,
            Field(
                min_length=1,
                max_length=200,
                description="Case-insensitive substring, or a LIKE pattern with % and _.",
            ),
        ],
        kinds: Kinds = ALL_KINDS,
        schema: Annotated[str | None, Field(description="Only this schema.")] = None,
        detail: Annotated[
            Detail,
            Field(
                description="names; summary: + type, row estimate, column count, comment; "
                "full: tables as get_table_schema (≤ 20)."
            ),
        ] = "names",
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Most objects.")] = 50,
    ) -> dict[str, Any]:
        """Find schemas, tables, views, columns, functions, indexes by name (large schemas)."""
        wanted = [k for k in KINDS if k in set(kinds)]
        if not wanted:
            raise InvalidInput(f"kinds must name at least one of {', '.join(KINDS)}")
        if detail == "full":
            limit = min(limit, FULL_LIMIT)
        like = like_pattern(pattern)
        results = await self.app.executor.catalog(
            connection_id,
            [(_QUERIES[k], (like, schema, limit + 1)) for k in wanted],
            tool="search_objects",
        )
        objects: list[dict[str, Any]] = []
        truncated = False
        for rows in results:
            for row in rows:
                if len(objects) == limit:
                    truncated = True
                    break
                item = dict(row)
                objects.append(item if detail != "names" else {k: item[k] for k in _NAME_KEYS})
        for item in objects:
            if item["table"] is None:
                del item["table"]
        if detail == "full":
            for i, item in enumerate(objects):
                if item["kind"] in ("table", "view"):
                    described = await self.schema.get_table_schema(
                        connection_id, item["name"], item["schema"]
                    )
                    described.pop("success", None)
                    objects[i] = {**item, **described}
        cap = min(SEARCH_MAX_BYTES, self.app.settings.max_result_bytes)
        objects, cut = _within(objects, cap)
        payload: dict[str, Any] = {"success": True, "objects": objects, "truncated": truncated or cut}
        if payload["truncated"]:
            payload["hint"] = (
                f"More objects match: narrow the pattern, pass schema or kinds, or raise limit (≤ {MAX_LIMIT})."
            )
        return payload


def _within(objects: list[dict[str, Any]], cap: int) -> tuple[list[dict[str, Any]], bool]:
    """The leading objects whose JSON fits in ``cap`` bytes, and whether any were cut."""
    size = 0
    for i, item in enumerate(objects):
        size += len(orjson.dumps(item, default=str)) + 1
        if size > cap:
            return objects[:i], True
    return objects, False
