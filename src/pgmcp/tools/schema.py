"""list_schemas, list_tables, get_table_schema: from the catalogs, identifiers only as parameters."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.errors import DatabaseError
from pgmcp.tools import ConnectionId

SchemaName = Annotated[str, Field(min_length=1, description="Schema name.")]

_LIST_SCHEMAS = """
SELECT n.nspname AS schema_name,
       pg_get_userbyid(n.nspowner) AS owner,
       (SELECT count(*) FROM pg_class c
         WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))::int AS table_count
  FROM pg_namespace n
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'
   AND has_schema_privilege(n.oid, 'USAGE')
 ORDER BY n.nspname
"""

_LIST_TABLES = """
SELECT c.relname AS table_name,
       n.nspname AS schema,
       CASE c.relkind WHEN 'r' THEN 'BASE TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW'
                      WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' END AS table_type,
       CASE WHEN c.relkind IN ('r', 'p', 'm') THEN
            CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END END AS row_estimate,
       CASE WHEN c.relkind IN ('r', 'p', 'm') THEN pg_total_relation_size(c.oid) END AS size_bytes,
       obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
 ORDER BY c.relname
 LIMIT $2
"""

_TABLE_OID = """
SELECT c.oid, c.relkind,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate,
       obj_description(c.oid, 'pg_class') AS comment
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS = """
SELECT a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS "default",
       col_description(a.attrelid, a.attnum) AS comment
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""

_PRIMARY_KEY = """
SELECT a.attname
  FROM pg_constraint con
  CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
 WHERE con.conrelid = {oid} AND con.contype = 'p'
 ORDER BY k.ord
"""

_INDEXES = """
SELECT ic.relname AS name,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k.ord::int + 1, true)
               FROM generate_subscripts(i.indkey, 1) AS k(ord)
              WHERE k.ord < i.indnkeyatts
              ORDER BY k.ord) AS columns,
       i.indisunique AS "unique",
       pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = {oid}
 ORDER BY ic.relname
"""

_FOREIGN_KEYS = """
SELECT con.conname AS name,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns,
       rn.nspname AS referenced_schema,
       rc.relname AS referenced_table,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
         AS referenced_columns
  FROM pg_constraint con
  JOIN pg_class rc ON rc.oid = con.confrelid
  JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE con.conrelid = {oid} AND con.contype = 'f'
 ORDER BY con.conname
"""


# The table's oid, looked up from the two parameters in each query, so that all five
# queries run in one transaction and one round of the catalog.
_OID = (
    "(SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = $1 AND c.relname = $2)"
)


class SchemaTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def list_schemas(self, connection_id: ConnectionId) -> dict[str, Any]:
        """List the schemas you can use, with owner and table count."""
        (rows,) = await self.app.executor.catalog(connection_id, [(_LIST_SCHEMAS, ())], tool="list_schemas")
        return {"success": True, "schemas": [dict(r) for r in rows]}

    async def list_tables(
        self,
        connection_id: ConnectionId,
        schema: SchemaName = "public",
        limit: Annotated[int, Field(ge=1, le=10000, description="Most tables, by name.")] = 500,
    ) -> dict[str, Any]:
        """List tables and views of a schema with type, row estimate, size and comment."""
        (rows,) = await self.app.executor.catalog(
            connection_id, [(_LIST_TABLES, (schema, limit + 1))], tool="list_tables"
        )
        payload: dict[str, Any] = {
            "success": True,
            "schema": schema,
            "tables": [dict(r) for r in rows[:limit]],
        }
        if len(rows) > limit:
            payload["truncated"] = True
            payload["hint"] = (
                f"More than {limit} tables in {schema}: use search_objects(pattern=...) to find the ones you need."
            )
        return payload

    async def get_table_schema(
        self,
        connection_id: ConnectionId,
        table_name: Annotated[str, Field(min_length=1, description="Table or view name.")],
        schema: SchemaName = "public",
    ) -> dict[str, Any]:
        """A table's columns (type, nullable, default, comment), primary key, indexes, foreign keys."""
        found, columns, primary_key, indexes, foreign_keys = await self.app.executor.catalog(
            connection_id,
            [
                (_TABLE_OID, (schema, table_name)),
                (_COLUMNS.format(oid=_OID), (schema, table_name)),
                (_PRIMARY_KEY.format(oid=_OID), (schema, table_name)),
                (_INDEXES.format(oid=_OID), (schema, table_name)),
                (_FOREIGN_KEYS.format(oid=_OID), (schema, table_name)),
            ],
            tool="get_table_schema",
        )
        if not found:
            raise DatabaseError(
                f'Table "{schema}.{table_name}" does not exist; use list_tables to see the tables of a schema',
                sqlstate="42P01",
            )
        return {
            "success": True,
            "table_name": table_name,
            "schema": schema,
            "comment": found[0]["comment"],
            "columns": [dict(r) for r in columns],
            "primary_key": [r["attname"] for r in primary_key],
            "indexes": [{**dict(r), "columns": list(r["columns"])} for r in indexes],
            "foreign_keys": [
                {
                    **dict(r),
                    "columns": list(r["columns"]),
                    "referenced_columns": list(r["referenced_columns"]),
                }
                for r in foreign_keys
            ],
            "row_estimate": found[0]["row_estimate"],
        }
