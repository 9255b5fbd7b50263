"""recommend_indexes, and the hypothetical-index plans of explain_query.

Candidates come from each statement's parse tree (:mod:`pgmcp.intelligence.candidates`);
with ``hypopg`` each is created as a hypothetical index and scored by the planner's
cost of the statements it serves, inside one call of the execute path
(:meth:`pgmcp.db.execute.Executor.plan_session`), which resets them before the
session goes back to the pool. No real index is ever created.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import orjson
from pglast import parser
from pydantic import BaseModel, Field

from pgmcp.app import AppContext
from pgmcp.db.plans import PlanSession
from pgmcp.errors import ExtensionMissing, InvalidInput, LimitExceeded, PgMcpError
from pgmcp.intelligence.candidates import (
    Shape,
    TableRef,
    candidates,
    column_uses,
    quote_ident,
    resolve,
)
from pgmcp.tools import ConnectionId
from pgmcp.tools.workload import top_statements

IndexMethod = Literal["btree", "hash", "gist", "gin", "brin", "spgist"]

#: Most statements one recommend_indexes call plans (each is planned once per candidate).
MAX_QUERIES = 20
#: Most candidate indexes tried in one call.
MAX_CANDIDATES = 40

HYPOPG_STEPS = (
    "install hypopg on the database server (Debian: apt-get install postgresql-<version>-hypopg; "
    "or build it from https://github.com/HypoPG/hypopg) and run CREATE EXTENSION hypopg; in this database"
)

_TABLES = """
SELECT r.ord::int AS ord, n.nspname AS schema, c.relname AS name,
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns,
       coalesce((SELECT json_agg(ARRAY(SELECT coalesce(a.attname::text, '')
                                 FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, o)
                                 LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                                WHERE k.o <= i.indnkeyatts ORDER BY k.o))
                   FROM pg_index i WHERE i.indrelid = c.oid AND i.indisvalid AND i.indpred IS NULL),
                '[]')::text AS indexes
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(schema, name, ord)
  JOIN pg_class c ON c.oid = to_regclass(CASE WHEN r.schema IS NULL THEN quote_ident(r.name)
                                              ELSE quote_ident(r.schema) || '.' || quote_ident(r.name) END)
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


class HypotheticalIndex(BaseModel):
    table: Annotated[str, Field(min_length=1, description="Table, optionally schema-qualified.")]
    columns: Annotated[list[str], Field(min_length=1)]
    using: IndexMethod = "btree"


def definition(schema: str, table: str, columns: tuple[str, ...] | list[str], using: str = "btree") -> str:
    cols = ", ".join(quote_ident(c) for c in columns)
    return f"CREATE INDEX ON {quote_ident(schema)}.{quote_ident(table)} USING {using} ({cols})"


def _nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, dict):
        yield plan
        for child in plan.get("Plans", ()):
            yield from _nodes(child)


def uses_index(document: dict[str, Any], name: str) -> bool:
    return any(node.get("Index Name") == name for node in _nodes(document.get("Plan")))


def total_cost(document: dict[str, Any]) -> float:
    return float(document.get("Plan", {}).get("Total Cost", 0.0))


def _is_select(query: str) -> bool:
    try:
        tree = orjson.loads(parser.parse_sql_json(query))
    except parser.ParseError:
        return False
    stmts = tree.get("stmts", ())
    return len(stmts) == 1 and "SelectStmt" in stmts[0].get("stmt", {})


async def tables_of(
    session: PlanSession, refs: list[TableRef]
) -> dict[TableRef, tuple[str, str, list[str], list[list[str]]]]:
    """``{ref: (schema, name, columns, existing index key columns)}`` for the refs that are tables."""
    if not refs:
        return {}
    rows = await session.fetch(_TABLES, [r.schema for r in refs], [r.name for r in refs])
    found: dict[TableRef, tuple[str, str, list[str], list[list[str]]]] = {}
    for row in rows:
        found[refs[row["ord"] - 1]] = (
            row["schema"],
            row["name"],
            list(row["columns"]),
            orjson.loads(row["indexes"]),
        )
    return found


class AdvisorTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def recommend_indexes(
        self,
        connection_id: ConnectionId,
        queries: Annotated[
            list[Annotated[str, Field(min_length=1)]] | None,
            Field(description="Reads to tune (default: pg_stat_statements workload)."),
        ] = None,
        max_indexes: Annotated[int, Field(ge=1, le=20, description="Most indexes to recommend.")] = 5,
    ) -> dict[str, Any]:
        """Index suggestions for queries, costed with hypopg."""
        warnings: list[str] = []
        explicit = queries is not None
        if explicit:
            assert queries is not None
            if not queries:
                raise InvalidInput(
                    "queries must contain at least one statement, or be left out to use the workload"
                )
            if len(queries) > MAX_QUERIES:
                raise LimitExceeded(
                    f"{len(queries)} queries exceed the {MAX_QUERIES} recommend_indexes plans per call"
                )
            texts = list(dict.fromkeys(queries))
        else:
            top = await top_statements(
                self.app, connection_id, "total_time", MAX_QUERIES * 3, tool="recommend_indexes"
            )
            texts = [q["query"] for q in top if _is_select(q["query"])][:MAX_QUERIES]
            if not texts:
                warnings.append("pg_stat_statements has recorded no SELECT statements in this database yet.")
        shapes: dict[str, Shape] = {}
        for text in texts:
            try:
                shapes[text] = column_uses(text)
            except parser.ParseError as exc:
                if explicit:
                    raise InvalidInput(f"Not valid SQL: {exc}") from None
        statements = 4 + len(texts) * 2 + MAX_CANDIDATES * (len(texts) + 3)

        async def body(session: PlanSession) -> tuple[list[dict[str, Any]], bool, int]:
            return await self._advise(session, shapes, max_indexes, warnings, explicit=explicit)

        (recommendations, hypopg, analyzed), refused = await self.app.executor.plan_session(
            connection_id,
            list(shapes),
            body,
            tool="recommend_indexes",
            skip_refused=not explicit,
            statements=statements,
        )
        if refused:
            warnings.append(
                f"{len(refused)} statement(s) of the workload were skipped: the policy refuses them."
            )
        return {
            "success": True,
            "recommendations": recommendations,
            "hypopg": hypopg,
            "analyzed_queries": analyzed,
            "warnings": warnings,
        }

    async def _advise(
        self,
        session: PlanSession,
        shapes: dict[str, Shape],
        max_indexes: int,
        warnings: list[str],
        *,
        explicit: bool,
    ) -> tuple[list[dict[str, Any]], bool, int]:
        allowed = {q: s for q, s in shapes.items() if q in session.allowed}
        refs = list(dict.fromkeys(t for s in allowed.values() for t in s.distinct_tables))
        tables = await tables_of(session, refs)
        columns_of = {ref: info[2] for ref, info in tables.items()}
        if not explicit:
            # Statements of the workload that read no user table (catalog queries of clients,
            # pgmcp's own) have nothing to index.
            allowed = {q: s for q, s in allowed.items() if any(t in tables for t in s.distinct_tables)}
        before: dict[str, float] = {}
        unplanned = 0
        for query in allowed:
            try:
                before[query] = total_cost(await session.explain(query))
            except PgMcpError as exc:
                unplanned += 1
                if explicit:
                    warnings.append(f"Could not plan {query[:80]!r}: {exc}")
        if unplanned and not explicit:
            warnings.append(
                f"{unplanned} statement(s) of the workload could not be planned without their constants "
                "(PostgreSQL cannot infer a type for a $n): pass them in queries with values to include them."
            )
        # Candidate -> the statements it may serve.
        wanted: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        for query in before:
            for cand in candidates(resolve(allowed[query], columns_of)):
                schema, name, _cols, existing = tables[cand.table]
                if any(list(cand.columns) == ix[: len(cand.columns)] for ix in existing):
                    continue  # an existing index already starts with these columns
                wanted.setdefault((schema, name, cand.columns), []).append(query)
        if len(wanted) > MAX_CANDIDATES:
            warnings.append(f"Only the first {MAX_CANDIDATES} of {len(wanted)} candidate indexes were tried.")
        tried = list(wanted.items())[:MAX_CANDIDATES]
        hypopg = await session.has_hypopg()
        if not hypopg:
            warnings.append(
                "hypopg is not installed in this database, so the candidates below are not verified "
                f"(verified: false) and have no cost estimate after the index. To verify them: {HYPOPG_STEPS}."
            )
            unverified = [
                {
                    "table": f"{schema}.{name}",
                    "columns": list(cols),
                    "using": "btree",
                    "definition": definition(schema, name, cols),
                    "estimated_size_bytes": None,
                    "queries": [{"query": q, "cost_before": before[q], "cost_after": None} for q in served],
                    "improvement": None,
                    "verified": False,
                }
                for (schema, name, cols), served in tried
            ]
            return unverified[:max_indexes], False, len(before)
        scored: list[dict[str, Any]] = []
        for (schema, name, cols), served in tried:
            statement = definition(schema, name, cols)
            oid, index_name, size = await session.hypothetical_index(statement)
            rows: list[dict[str, Any]] = []
            for query in dict.fromkeys(served):
                plan = await session.explain(query)
                if uses_index(plan, index_name):
                    rows.append(
                        {"query": query, "cost_before": before[query], "cost_after": total_cost(plan)}
                    )
            await session.drop_hypothetical(oid)
            cost_before = sum(r["cost_before"] for r in rows)
            cost_after = sum(r["cost_after"] for r in rows)
            if not rows or cost_before <= 0:
                continue
            improvement = 1 - cost_after / cost_before
            if improvement < self.app.settings.index_advisor_min_improvement:
                continue
            scored.append(
                {
                    "table": f"{schema}.{name}",
                    "columns": list(cols),
                    "using": "btree",
                    "definition": statement,
                    "estimated_size_bytes": size,
                    "queries": rows,
                    "improvement": round(improvement, 4),
                    "verified": True,
                }
            )
        scored.sort(key=lambda r: (-r["improvement"], len(r["columns"]), r["estimated_size_bytes"] or 0))
        chosen: list[dict[str, Any]] = []
        for rec in scored:
            # An index whose columns lead one already chosen on the same table adds little.
            if any(
                c["table"] == rec["table"] and c["columns"][: len(rec["columns"])] == rec["columns"]
                for c in chosen
            ):
                continue
            chosen.append(rec)
            if len(chosen) == max_indexes:
                break
        return chosen, True, len(before)

    async def explain_hypothetical(
        self,
        connection_id: str,
        query: str,
        params: list[Any],
        indexes: list[HypotheticalIndex],
    ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """The plan of ``query`` without and with the hypothetical ``indexes``.

        Raises:
            ExtensionMissing: hypopg is not created in the database.
            InvalidInput: a table or column that does not exist.
        """

        async def body(session: PlanSession) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
            if not await session.has_hypopg():
                raise ExtensionMissing(
                    f"hypothetical_indexes need the hypopg extension, which this database lacks: {HYPOPG_STEPS}",
                    extension="hypopg",
                )
            refs = [_table_ref(ix.table) for ix in indexes]
            tables = await tables_of(session, list(dict.fromkeys(refs)))
            plain = await session.explain(query, params)
            made: list[dict[str, Any]] = []
            for ix, ref in zip(indexes, refs, strict=True):
                if ref not in tables:
                    raise InvalidInput(f'hypothetical_indexes: table "{ix.table}" does not exist')
                schema, name, columns, _ = tables[ref]
                missing = [c for c in ix.columns if c not in columns]
                if missing:
                    raise InvalidInput(
                        f'hypothetical_indexes: "{ix.table}" has no column {", ".join(missing)}'
                    )
                statement = definition(schema, name, ix.columns, ix.using)
                _oid, index_name, size = await session.hypothetical_index(statement)
                made.append({"definition": statement, "name": index_name, "estimated_size_bytes": size})
            hypothetical = await session.explain(query, params)
            for item in made:
                item["used"] = uses_index(hypothetical, item["name"])
            return plain, hypothetical, made

        result, _ = await self.app.executor.plan_session(
            connection_id, [query], body, tool="explain_query", statements=4 + 2 * len(indexes), verbose=True
        )
        return result


def _table_ref(table: str) -> TableRef:
    schema, _, name = table.rpartition(".")
    return TableRef(schema or None, name)


__all__ = ["AdvisorTools", "HypotheticalIndex", "definition", "total_cost", "uses_index"]
