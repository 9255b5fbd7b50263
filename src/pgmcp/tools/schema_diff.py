"""compare_schemas: the catalogs of two schemas, table by table, and what differs.

Everything is read with pgmcp's own catalog SQL (identifiers only as parameters)
through ``Executor.catalog``, one READ ONLY transaction per side, both sides at once.
Indexes and foreign keys are matched by what they are (columns, method, predicate;
referenced table and columns, actions), not by name, since names often differ
between two databases built by different tools; a difference still names them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pgmcp.db.execute import Executor

__all__ = ["compare_schemas"]

# $1: schema, $2: table names (NULL: every table of the schema).
_TABLES = """
SELECT c.relname AS table_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND ($2::text[] IS NULL OR c.relname = ANY ($2::text[]))
 ORDER BY 1
"""

_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       NOT a.attnotnull AS nullable,
       pg_get_expr(d.adbin, d.adrelid) AS "default"
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND ($2::text[] IS NULL OR c.relname = ANY ($2::text[]))
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY c.relname, a.attnum
"""

_CONSTRAINTS = """
SELECT c.relname AS table_name, con.conname AS name, con.contype::text AS type,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
              ORDER BY k.ord) AS columns,
       rn.nspname AS referenced_schema, rc.relname AS referenced_table,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
              ORDER BY k.ord) AS referenced_columns,
       con.confupdtype::text AS on_update, con.confdeltype::text AS on_delete
  FROM pg_constraint con
  JOIN pg_class c ON c.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class rc ON rc.oid = con.confrelid
  LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f')
   AND ($2::text[] IS NULL OR c.relname = ANY ($2::text[]))
 ORDER BY c.relname, con.conname
"""

# Indexes that back no primary key, unique or exclusion constraint (those are compared as constraints).
_INDEXES = """
SELECT c.relname AS table_name, ic.relname AS name, i.indisunique AS "unique", am.amname AS method,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k.ord::int + 1, true)
               FROM generate_subscripts(i.indkey, 1) AS k(ord)
              WHERE k.ord < i.indnkeyatts ORDER BY k.ord) AS columns,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k.ord::int + 1, true)
               FROM generate_subscripts(i.indkey, 1) AS k(ord)
              WHERE k.ord >= i.indnkeyatts ORDER BY k.ord) AS include,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam
  JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
   AND ($2::text[] IS NULL OR c.relname = ANY ($2::text[]))
   AND NOT EXISTS (SELECT 1 FROM pg_constraint con
                    WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                      AND con.contype IN ('p', 'u', 'x'))
 ORDER BY c.relname, ic.relname
"""

_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass
class _Table:
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    primary_key: list[str] | None = None
    unique: dict[tuple[str, ...], str] = field(default_factory=dict)  # columns -> constraint name
    foreign_keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # signature -> description
    indexes: dict[str, str] = field(default_factory=dict)  # signature -> index name


async def _read_side(
    executor: Executor, connection_id: str, schema: str, tables: Sequence[str] | None
) -> dict[str, _Table]:
    args = (schema, list(tables) if tables else None)
    found, columns, constraints, indexes = await executor.catalog(
        connection_id,
        [(_TABLES, args), (_COLUMNS, args), (_CONSTRAINTS, args), (_INDEXES, args)],
        tool="compare_schemas",
    )
    out = {r["table_name"]: _Table() for r in found}
    for r in columns:
        if r["table_name"] in out:
            out[r["table_name"]].columns[r["name"]] = {
                "data_type": r["data_type"],
                "nullable": r["nullable"],
                "default": r["default"],
            }
    for r in constraints:
        table = out.get(r["table_name"])
        if table is None:
            continue
        cols = list(r["columns"])
        if r["type"] == "p":
            table.primary_key = cols
        elif r["type"] == "u":
            table.unique[tuple(cols)] = r["name"]
        else:
            # The referenced table's schema only when it is not the compared schema itself.
            ref = (
                r["referenced_table"]
                if r["referenced_schema"] == schema
                else (f"{r['referenced_schema']}.{r['referenced_table']}")
            )
            signature = (
                f"({', '.join(cols)}) REFERENCES {ref} ({', '.join(r['referenced_columns'])})"
                f" ON UPDATE {_ACTIONS.get(r['on_update'], r['on_update'])}"
                f" ON DELETE {_ACTIONS.get(r['on_delete'], r['on_delete'])}"
            )
            table.foreign_keys[signature] = {"name": r["name"], "definition": signature}
    for r in indexes:
        table = out.get(r["table_name"])
        if table is None:
            continue
        signature = f"{'UNIQUE ' if r['unique'] else ''}{r['method']} ({', '.join(r['columns'])})"
        if r["include"]:
            signature += f" INCLUDE ({', '.join(r['include'])})"
        if r["predicate"]:
            signature += f" WHERE {r['predicate']}"
        table.indexes[signature] = r["name"]
    return out


def _diff_table(name: str, src: _Table, dst: _Table) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(kind: str, detail: str, source: Any, target: Any) -> None:
        out.append({"table": name, "kind": kind, "detail": detail, "source": source, "target": target})

    for col, s in src.columns.items():
        t = dst.columns.get(col)
        if t is None:
            add("missing_column", f"column {col} ({s['data_type']}) is missing in the target", s, None)
            continue
        if s["data_type"] != t["data_type"]:
            add(
                "type_changed",
                f"column {col}: {s['data_type']} in the source, {t['data_type']} in the target",
                s["data_type"],
                t["data_type"],
            )
        if s["nullable"] != t["nullable"]:

            def word(nullable: bool) -> str:
                return "nullable" if nullable else "NOT NULL"

            add(
                "nullability_changed",
                f"column {col}: {word(s['nullable'])} in the source, {word(t['nullable'])} in the target",
                s["nullable"],
                t["nullable"],
            )
        if s["default"] != t["default"]:
            add(
                "default_changed",
                f"column {col}: default {s['default']} in the source, {t['default']} in the target",
                s["default"],
                t["default"],
            )
    for col, t in dst.columns.items():
        if col not in src.columns:
            add("extra_column", f"column {col} ({t['data_type']}) exists only in the target", None, t)
    if src.primary_key != dst.primary_key:
        add(
            "primary_key_changed",
            f"primary key {src.primary_key} in the source, {dst.primary_key} in the target",
            src.primary_key,
            dst.primary_key,
        )
    for cols, cname in src.unique.items():
        if cols not in dst.unique:
            add(
                "missing_unique",
                f"unique constraint {cname} ({', '.join(cols)}) is missing in the target",
                {"name": cname, "columns": list(cols)},
                None,
            )
    for cols, cname in dst.unique.items():
        if cols not in src.unique:
            add(
                "extra_unique",
                f"unique constraint {cname} ({', '.join(cols)}) exists only in the target",
                None,
                {"name": cname, "columns": list(cols)},
            )
    for sig, fk in src.foreign_keys.items():
        if sig not in dst.foreign_keys:
            add("missing_foreign_key", f"foreign key {fk['name']} {sig} is missing in the target", fk, None)
    for sig, fk in dst.foreign_keys.items():
        if sig not in src.foreign_keys:
            add("extra_foreign_key", f"foreign key {fk['name']} {sig} exists only in the target", None, fk)
    for sig, iname in src.indexes.items():
        if sig not in dst.indexes:
            add(
                "missing_index",
                f"index {iname} {sig} is missing in the target",
                {"name": iname, "definition": sig},
                None,
            )
    for sig, iname in dst.indexes.items():
        if sig not in src.indexes:
            add(
                "extra_index",
                f"index {iname} {sig} exists only in the target",
                None,
                {"name": iname, "definition": sig},
            )
    return out


async def compare_schemas(
    executor: Executor,
    source_connection_id: str,
    target_connection_id: str,
    source_schema: str,
    target_schema: str,
    tables: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """The differences between two schemas (``[]`` when identical), table by table, in name order."""
    src, dst = await asyncio.gather(
        _read_side(executor, source_connection_id, source_schema, tables),
        _read_side(executor, target_connection_id, target_schema, tables),
    )
    differences: list[dict[str, Any]] = []
    for name in sorted(set(src) | set(dst) | set(tables or ())):
        s, t = src.get(name), dst.get(name)
        if s is None and t is None:
            differences.append(
                {
                    "table": name,
                    "kind": "not_found",
                    "detail": f"table {name} exists on neither side",
                    "source": None,
                    "target": None,
                }
            )
        elif t is None:
            differences.append(
                {
                    "table": name,
                    "kind": "missing_table",
                    "detail": f"table {name} is missing in the target schema {target_schema}",
                    "source": sorted(s.columns) if s else None,
                    "target": None,
                }
            )
        elif s is None:
            differences.append(
                {
                    "table": name,
                    "kind": "extra_table",
                    "detail": f"table {name} exists only in the target schema {target_schema}",
                    "source": None,
                    "target": sorted(t.columns),
                }
            )
        else:
            differences.extend(_diff_table(name, s, t))
    return differences
