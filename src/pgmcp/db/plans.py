"""Plans and hypothetical indexes inside one call of the execute path (``Executor.plan_session``,
run by :func:`run_plan_session`), and ``Executor.explain`` (:func:`run_explain`).

A :class:`PlanSession` is what a tool gets instead of a connection: it can
EXPLAIN the statements the policy already passed as reads, run pgmcp's own
catalog SQL, and create hypothetical indexes with ``hypopg``. Hypothetical
indexes are session state, not transactional: the executor resets them
(``hypopg_reset()``) before the transaction ends, and a call that fails after
creating one closes its connection rather than hand the session back to the
pool with them.

Normalised statements (``pg_stat_statements`` shows ``WHERE id = $1``) are
planned as generic plans: ``PREPARE`` with the server's inferred parameter
types, ``plan_cache_mode = force_generic_plan`` and ``EXPLAIN EXECUTE`` with
NULLs, which the generic plan never looks at. That works on every version
(``EXPLAIN (GENERIC_PLAN)`` exists only from PostgreSQL 16).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import orjson

from pgmcp.db._driver import prepare_cached
from pgmcp.db.connection import PgMcpConnection
from pgmcp.db.convert import convert_params
from pgmcp.errors import InvalidInput, LimitExceeded, PgMcpError, QueryBlocked, from_postgres
from pgmcp.security import Decision

if TYPE_CHECKING:
    from pgmcp.db.execute import Executor

__all__ = ["PlanSession", "run_explain", "run_plan_session"]

T = TypeVar("T")

_names = itertools.count(1)


def _plan_document(raw: Any) -> dict[str, Any]:
    document = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    if isinstance(document, list) and document:
        document = document[0]
    return document if isinstance(document, dict) else {}


class PlanSession:
    """EXPLAIN and hypothetical indexes for statements the policy passed (see module docstring)."""

    def __init__(self, conn: PgMcpConnection, allowed: Sequence[str], *, verbose: bool = False) -> None:
        self._conn = conn
        #: The statements the policy passed: the only ones :meth:`explain` accepts.
        self.allowed = frozenset(allowed)
        self._options = "VERBOSE, FORMAT JSON" if verbose else "FORMAT JSON"
        self._hypothetical = False
        self._named_statements: list[str] = []
        self._hypopg: bool | None = None

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """pgmcp's own SQL (catalog and statistics views), identifiers only as parameters."""
        rows: list[asyncpg.Record] = await self._guarded(lambda: self._conn.fetch(sql, *args))
        return rows

    async def explain(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """The plan document (``{"Plan": …}``) of an allowed statement; a generic plan if it has
        ``$n`` placeholders and no ``params``.

        Raises:
            DatabaseError: PostgreSQL could not plan it (the session stays usable).
        """
        if query not in self.allowed:
            raise InvalidInput("internal: a statement the policy did not check cannot be explained")
        text = query.strip().rstrip(";").strip()
        document: dict[str, Any] = await self._guarded(lambda: self._explain(text, params))
        return document

    async def _explain(self, text: str, params: Sequence[Any]) -> dict[str, Any]:
        sql = f"EXPLAIN ({self._options}) {text}"
        if params:
            stmt = await prepare_cached(self._conn, sql)
            args = convert_params(list(params), stmt.get_parameters())
            return _plan_document(await stmt.fetchval(*args))
        stmt = await prepare_cached(self._conn, sql)
        if not stmt.get_parameters():
            return _plan_document(await stmt.fetchval())
        # Placeholders without values: a generic plan of a prepared statement.
        name = f"pgmcp_plan_{next(_names)}"
        await self._conn.fetch("SET LOCAL plan_cache_mode = force_generic_plan")
        await self._conn.fetch(f"PREPARE {name} AS {text}")
        # PREPARE is not undone by a rollback: until DEALLOCATE, reset() must run.
        self._named_statements.append(name)
        nulls = ", ".join(["NULL"] * len(stmt.get_parameters()))
        raw = await self._conn.fetchval(f"EXPLAIN ({self._options}) EXECUTE {name}({nulls})")
        await self._conn.fetch(f"DEALLOCATE {name}")
        self._named_statements.remove(name)
        return _plan_document(raw)

    @property
    def dirty(self) -> bool:
        """Session state this call left behind (hypothetical indexes, prepared statements)."""
        return self._hypothetical or bool(self._named_statements)

    async def has_hypopg(self) -> bool:
        """Whether the ``hypopg`` extension is created in this database."""
        if self._hypopg is None:
            rows = await self.fetch("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
            self._hypopg = bool(rows)
        return self._hypopg

    async def hypothetical_index(self, definition: str) -> tuple[int, str, int | None]:
        """Create a hypothetical index from a CREATE INDEX statement pgmcp built.

        Returns ``(oid, name, estimated_size_bytes)``; the name is what plans show.
        """
        self._hypothetical = True
        rows = await self.fetch("SELECT indexrelid, indexname FROM hypopg_create_index($1)", definition)
        oid, name = int(rows[0]["indexrelid"]), str(rows[0]["indexname"])
        size = await self.fetch("SELECT hypopg_relation_size($1::oid)::bigint AS size", oid)
        return oid, name, int(size[0]["size"]) if size and size[0]["size"] is not None else None

    async def drop_hypothetical(self, oid: int) -> None:
        await self.fetch("SELECT hypopg_drop_index($1::oid)", oid)

    async def reset(self) -> None:
        """Forget every hypothetical index (``hypopg_reset()``) and prepared statement of this call."""
        if self._hypothetical:
            await self._conn.fetch("SELECT hypopg_reset()")
            self._hypothetical = False
        for name in list(self._named_statements):
            await self._conn.fetch(f"DEALLOCATE {name}")
            self._named_statements.remove(name)

    async def _guarded(self, run: Any) -> Any:
        # A savepoint per statement: one statement PostgreSQL refuses (a normalised
        # query whose parameter type cannot be inferred) must not abort the others, nor
        # the transaction in which hypopg_reset() still has to run.
        await self._conn.execute("SAVEPOINT pgmcp_plan")
        try:
            result = await run()
        except asyncpg.PostgresError as exc:
            await self._conn.execute("ROLLBACK TO SAVEPOINT pgmcp_plan")
            failure: PgMcpError = from_postgres(exc)
            raise failure from exc
        await self._conn.execute("RELEASE SAVEPOINT pgmcp_plan")
        return result


async def run_explain(
    ex: Executor,
    connection_id: str,
    query: str,
    params: Sequence[Any] = (),
    *,
    analyze: bool = False,
    tool: str = "explain_query",
) -> tuple[Any, Decision, float]:
    """``Executor.explain``: EXPLAIN (FORMAT JSON) the statement; with ``analyze`` it runs, in a
    transaction always rolled back."""
    conn = ex.registry.get(connection_id)
    options = "ANALYZE, BUFFERS, VERBOSE, FORMAT JSON" if analyze else "VERBOSE, FORMAT JSON"
    sql = f"EXPLAIN ({options}) {query.strip().rstrip(';')}"
    decision = await ex.check(conn, sql, tool=tool)
    readonly = decision.is_read or ex.readonly_for(conn)
    started = time.perf_counter()
    try:
        async with ex.transactions.open(conn, readonly=readonly, rollback=True) as c:
            stmt = await prepare_cached(c, sql)
            args = convert_params(list(params), stmt.get_parameters())
            raw = await stmt.fetchval(*args)
    except Exception as exc:
        failure = ex.failed(conn, exc, query=sql, query_type="EXPLAIN", started=started, tool=tool)
        raise failure from (None if failure is exc else exc)
    duration_ms = ex.record(
        conn, query=sql, query_type="EXPLAIN", started=started, success=True, row_count=1, tool=tool
    )
    plan = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return plan, decision, duration_ms


async def run_plan_session(
    ex: Executor,
    connection_id: str,
    queries: Sequence[str],
    body: Callable[[PlanSession], Awaitable[T]],
    *,
    tool: str,
    skip_refused: bool = False,
    statements: int = 1,
    verbose: bool = False,
) -> tuple[T, list[tuple[str, PgMcpError]]]:
    """``Executor.plan_session``: check every query as a read, then run ``body`` with a
    :class:`PlanSession` in one READ ONLY transaction, always rolled back."""
    conn = ex.registry.get(connection_id)
    allowed: list[str] = []
    refused: list[tuple[str, PgMcpError]] = []
    for query in queries:
        try:
            await ex.check(conn, query, require_read=True, tool=tool)
        except (QueryBlocked, LimitExceeded) as exc:
            if not skip_refused:
                raise
            refused.append((query, exc))
            continue
        allowed.append(query)
    started = time.perf_counter()
    try:
        async with ex.transactions.open(conn, readonly=True, rollback=True, statements=statements) as c:
            session = PlanSession(c, allowed, verbose=verbose)
            try:
                result = await body(session)
                await session.reset()
            except BaseException:
                if session.dirty:
                    # Hypothetical indexes outlive a rollback: this session must not be reused.
                    c.terminate()
                raise
    except Exception as exc:
        failure = ex.failed(conn, exc, query=tool, query_type="EXPLAIN", started=started, tool=tool)
        raise failure from (None if failure is exc else exc)
    ex.record(
        conn,
        query=tool,
        query_type="EXPLAIN",
        started=started,
        success=True,
        row_count=len(allowed),
        tool=tool,
    )
    return result, refused
