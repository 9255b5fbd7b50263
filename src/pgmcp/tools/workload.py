"""get_top_queries: the statements that cost the database most, from ``pg_stat_statements``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.errors import ExtensionMissing
from pgmcp.intelligence.candidates import quote_ident
from pgmcp.tools import ConnectionId

SortBy = Literal["total_time", "mean_time", "calls", "rows", "shared_blks_read"]

_EXTENSION = """
SELECT e.extversion AS version, n.nspname AS schema,
       current_setting('shared_preload_libraries') AS preload,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available,
       current_database() AS database
  FROM (SELECT 1) AS one
  LEFT JOIN pg_extension e ON e.extname = 'pg_stat_statements'
  LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
"""

# The statements of the current database; columns named as PostgreSQL 13+ (1.8+) name them,
# total_time / mean_time before that.
_TOP = """
SELECT query, calls, {total} AS total_time_ms, {mean} AS mean_time_ms, rows,
       shared_blks_hit, shared_blks_read,
       CASE WHEN sum({total}) OVER () > 0 THEN 100 * {total} / sum({total}) OVER () ELSE 0 END
         AS percent_of_total_time
  FROM {schema}.pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY {order} DESC NULLS LAST, {total} DESC
 LIMIT $1
"""

_ORDER = {
    "total_time": "total_time_ms",
    "mean_time": "mean_time_ms",
    "calls": "calls",
    "rows": "rows",
    "shared_blks_read": "shared_blks_read",
}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


async def top_statements(
    app: AppContext, connection_id: str, sort_by: str, limit: int, *, tool: str
) -> list[dict[str, Any]]:
    """The ``limit`` statements of ``pg_stat_statements`` with the most ``sort_by``.

    Raises:
        ExtensionMissing: the extension is not preloaded or not created, with the steps to fix it.
    """
    ((info,),) = await app.executor.catalog(connection_id, [(_EXTENSION, ())], tool=tool)
    preloaded = "pg_stat_statements" in (info["preload"] or "")
    if info["version"] is None or not preloaded:
        steps = []
        if not info["available"]:
            steps.append(
                "install the PostgreSQL contrib modules on the database server (Debian: postgresql-contrib)"
            )
        if not preloaded:
            steps.append(
                "add pg_stat_statements to shared_preload_libraries in postgresql.conf "
                "(shared_preload_libraries = 'pg_stat_statements') and restart PostgreSQL"
            )
        if info["version"] is None:
            steps.append(
                f'run CREATE EXTENSION pg_stat_statements; in database "{info["database"]}" as a superuser'
            )
        numbered = "; ".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
        raise ExtensionMissing(
            f"{tool} needs the pg_stat_statements extension, which is not available in database "
            f'"{info["database"]}". To enable it: {numbered}',
            extension="pg_stat_statements",
        )
    new = _version(info["version"]) >= (1, 8)
    sql = _TOP.format(
        total="total_exec_time" if new else "total_time",
        mean="mean_exec_time" if new else "mean_time",
        schema=quote_ident(info["schema"]),
        order=_ORDER[sort_by],
    )
    (rows,) = await app.executor.catalog(connection_id, [(sql, (limit,))], tool=tool)
    return [
        {
            "query": r["query"],
            "calls": int(r["calls"]),
            "total_time_ms": round(float(r["total_time_ms"]), 3),
            "mean_time_ms": round(float(r["mean_time_ms"]), 3),
            "rows": int(r["rows"]),
            "shared_blks_hit": int(r["shared_blks_hit"]),
            "shared_blks_read": int(r["shared_blks_read"]),
            "percent_of_total_time": round(float(r["percent_of_total_time"]), 2),
        }
        for r in rows
    ]


class WorkloadTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def get_top_queries(
        self,
        connection_id: ConnectionId,
        sort_by: Annotated[SortBy, Field(description="What to rank by.")] = "total_time",
        limit: Annotated[int, Field(ge=1, le=100, description="How many statements.")] = 10,
    ) -> dict[str, Any]:
        """The costliest statements, from pg_stat_statements."""
        queries = await top_statements(self.app, connection_id, sort_by, limit, tool="get_top_queries")
        warnings: list[str] = []
        if not queries:
            warnings.append("pg_stat_statements has recorded no statements in this database yet.")
        return {"success": True, "sort_by": sort_by, "queries": queries, "warnings": warnings}
