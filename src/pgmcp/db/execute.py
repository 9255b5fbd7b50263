"""The one execute path. Every tool that touches a database goes through here.

For every call, in this order:

1. the policy decides (``security.Policy.check``), with the function catalog of the
   target database (``db.catalog``: in memory in steady state); a refusal is counted,
   logged and raised before any connection is taken for the statement;
2. a pooled connection is acquired within ``CONNECTION_TIMEOUT``;
3. one transaction opens, ``READ ONLY`` when the tool, the connection or
   ``READONLY_MODE`` asks for it, with ``SET LOCAL statement_timeout`` from
   ``QUERY_TIMEOUT`` so the server itself stops runaway work, and on a read path
   ``SET LOCAL ROLE`` to ``READONLY_ROLE`` when it is set — all sent in a single round trip;
4. parameters are converted to the types PostgreSQL inferred for ``$1``, ``$2`` …;
5. the statement runs through the extended protocol (never the simple one, so a
   stacked ``; COMMIT; DROP …`` cannot end the transaction) from the prepared-
   statement cache; rows are read through a portal, at most ``fetch_size`` + 1;
6. the transaction commits, or rolls back: always for ``explain_query`` and every READ ONLY
   transaction (a read never commits); the session reset rides in the same round trip
   (``db/session.py``). ``execute_query`` and the catalog tools do not wait for a READ ONLY
   transaction's end, their rows are all read by then (the connection is reused only once
   it is back);
7. rows become JSON values, capped at ``MAX_RESULT_BYTES``;
8. duration, outcome and row count go to the monitor (metrics, logs, history).

A failure or cancellation rolls back and marks the connection for the full reset
(role, settings, cursors, advisory locks, LISTEN, temporary objects, prepared
statements of SQL) before it returns to the pool.

Here: the policy check and the reads (``query``, ``explain``, ``catalog``, ``plan_session``).
The transaction is :mod:`pgmcp.db.transaction`, the writes :mod:`pgmcp.db.writes`, reading
and capping rows :mod:`pgmcp.db.reading`, error mapping :mod:`pgmcp.db.failures`, the result
dataclasses :mod:`pgmcp.db.results`, asyncpg's private fast paths :mod:`pgmcp.db._driver`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from pgmcp.auth import current_call, current_principal
from pgmcp.config import Settings
from pgmcp.db import plans, reading, writes
from pgmcp.db._driver import fetch_at_most, prepare_cached
from pgmcp.db.catalog import CatalogCache
from pgmcp.db.connection import Connection
from pgmcp.db.convert import column_info, convert_params
from pgmcp.db.failures import StatementFailed, is_stale, no_answer, pgmcp_error
from pgmcp.db.plans import PlanSession
from pgmcp.db.reading import encode_capped, status_count, truncated_reason
from pgmcp.db.registry import ConnectionRegistry
from pgmcp.db.results import BatchResult, JsonRow, QueryResult, TransactionResult
from pgmcp.db.transaction import Transactions
from pgmcp.db.writes import PROGRESS_CHUNK
from pgmcp.errors import LimitExceeded, PgMcpError, QueryBlocked
from pgmcp.monitoring import Monitor
from pgmcp.security import Decision, Policy
from pgmcp.security.functions import FunctionCatalog

# The results (db/results.py), StatementFailed (db/failures.py) and PROGRESS_CHUNK
# (db/writes.py) are imported from here as ever.
__all__ = [
    "PROGRESS_CHUNK",
    "BatchResult",
    "Executor",
    "JsonRow",
    "QueryResult",
    "StatementFailed",
    "TransactionResult",
]

T = TypeVar("T")


class Executor:
    """Runs statements for the tools; owns timeouts, transactions, caps and reporting."""

    def __init__(
        self, settings: Settings, registry: ConnectionRegistry, policy: Policy, monitor: Monitor
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.policy = policy
        self.monitor = monitor
        # The catalog's queries get what one statement of a call gets (see Transactions.open's deadline).
        self._catalog_deadline = settings.query_timeout + settings.connection_timeout
        self.catalogs = CatalogCache(registry, timeout=self._catalog_deadline)
        # BEGIN ... COMMIT or ROLLBACK of every call (db/transaction.py).
        self.transactions = Transactions(settings, registry)

    # --- policy ---------------------------------------------------------------

    def readonly_for(self, conn: Connection) -> bool:
        """Read-only for this call: READONLY_MODE, the connection's flag, or a read-only caller."""
        return self.settings.readonly_mode or conn.readonly or current_principal.get().readonly

    async def check(self, conn: Connection, query: str, *, require_read: bool = False, tool: str) -> Decision:
        """The policy's decision on ``query`` for ``conn``, judged with the catalog of its database.

        In steady state the catalog is in memory (no I/O). Otherwise the parser's checks run
        first, so a refusal never waits for the database, then the catalog is checked or
        loaded (:mod:`pgmcp.db.catalog`) and the statement judged again with it.
        """
        call = current_call.get()
        if call is not None:
            call.queries.append(query)
        readonly = self.readonly_for(conn)
        try:
            catalog = self.catalogs.fresh(conn)
            if catalog is None:
                self.policy.check(query, readonly=readonly, require_read=require_read)
                catalog = await self._catalog(conn, verify=False)
            decision = self.policy.check(query, readonly=readonly, require_read=require_read, catalog=catalog)
            if decision.unknown_functions:  # perhaps created since the catalog was read: look again
                catalog = await self._catalog(conn, verify=True)
                decision = self.policy.check(
                    query, readonly=readonly, require_read=require_read, catalog=catalog
                )
        except QueryBlocked as exc:
            if call is not None:
                call.blocked_reason = exc.reason
            self.monitor.record_blocked(
                connection_id=conn.connection_id,
                reason=exc.reason,
                query_type=None,
                message=str(exc),
                query=query,
            )
            raise
        except LimitExceeded as exc:
            if call is not None:
                call.blocked_reason = "max_query_length"
            self.monitor.record_blocked(
                connection_id=conn.connection_id,
                reason="max_query_length",
                query_type=None,
                message=str(exc),
                query=None,
            )
            raise
        if not decision.kinds <= _KINDS_WITHOUT_DDL:
            self.catalogs.note_ddl()  # it may create or replace functions: judge the next calls afresh
        if call is not None:
            call.kinds.extend(decision.kinds)
        return decision

    async def _catalog(self, conn: Connection, *, verify: bool) -> FunctionCatalog:
        for attempt in (1, 2):
            try:
                return await (self.catalogs.verify(conn) if verify else self.catalogs.get(conn))
            except PgMcpError:
                raise
            except TimeoutError:
                raise no_answer(self._catalog_deadline, False) from None
            except Exception as exc:
                # A pooled connection lost while it sat idle (a restart, a dropped SSH tunnel):
                # the catalog check only reads, so one retry on a fresh connection is safe, and
                # its failure (if the database is really gone) says why.
                if attempt == 1 and is_stale(exc):
                    continue
                raise self.error_for(exc) from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    def failed(
        self, conn: Connection, exc: BaseException, *, query: str, query_type: str, started: float, tool: str
    ) -> PgMcpError:
        """The pgmcp error for ``exc``, recorded as a failed query (metrics, logs, history)."""
        failure = self.error_for(exc)
        self.record(
            conn,
            query=query,
            query_type=query_type,
            started=started,
            success=False,
            row_count=None,
            error_type=failure.error_type,
            tool=tool,
        )
        return failure

    def error_for(self, exc: BaseException) -> PgMcpError:
        """The pgmcp error for a driver or server error (db/failures.py ``pgmcp_error``)."""
        return pgmcp_error(exc, query_timeout=self.settings.query_timeout)

    def record(
        self,
        conn: Connection,
        *,
        query: str,
        query_type: str,
        started: float,
        success: bool,
        row_count: int | None,
        error_type: str | None = None,
        tool: str,
    ) -> float:
        """Count one statement (metrics, logs, history) and return its duration in ms since ``started``."""
        duration_ms = (time.perf_counter() - started) * 1000
        self.monitor.record_query(
            connection_id=conn.connection_id,
            query_type=query_type,
            duration_ms=duration_ms,
            success=success,
            row_count=row_count,
            query=query,
            error_type=error_type,
            tool=tool,
        )
        return duration_ms

    # --- execute_query ----------------------------------------------------------

    async def query(
        self,
        connection_id: str,
        query: str,
        params: Sequence[Any] = (),
        *,
        fetch_size: int | None = None,
        tool: str = "execute_query",
        require_read: bool = True,
    ) -> QueryResult:
        """Run one read statement in a READ ONLY transaction; at most ``fetch_size`` rows come back.

        Raises:
            ConnectionNotFound, QueryBlocked, LimitExceeded, InvalidInput,
            QueryTimeout, ConnectionFailed, DatabaseError.
        """
        conn = self.registry.get(connection_id)
        size = reading.fetch_size(self.settings, fetch_size)
        decision = await self.check(conn, query, require_read=require_read, tool=tool)
        readonly = decision.is_read or self.readonly_for(conn)
        started = time.perf_counter()
        try:
            async with self.transactions.open(conn, readonly=readonly, answer_before_commit=True) as c:
                stmt = await prepare_cached(c, query)
                args = convert_params(list(params), stmt.get_parameters())
                attributes = stmt.get_attributes()
                records: list[asyncpg.Record] = []
                if attributes:
                    records = await fetch_at_most(c, stmt, args, size + 1)
                    row_count_db = None
                else:
                    await stmt.fetch(*args)
                    row_count_db = status_count(stmt.get_statusmsg())
        except Exception as exc:
            failure = self.failed(
                conn, exc, query=query, query_type=decision.query_type, started=started, tool=tool
            )
            raise failure from (None if failure is exc else exc)
        more = len(records) > size
        rows, byte_capped = encode_capped(attributes, records[:size], self.settings.max_result_bytes)
        truncated = more or byte_capped
        row_count = len(rows) if attributes else (row_count_db or 0)
        duration_ms = self.record(
            conn,
            query=query,
            query_type=decision.query_type,
            started=started,
            success=True,
            row_count=row_count,
            tool=tool,
        )
        reason = truncated_reason(
            byte_capped=byte_capped, more=more, max_result_bytes=self.settings.max_result_bytes, size=size
        )
        return QueryResult(
            columns=column_info(attributes),
            rows=rows,
            row_count=row_count,
            truncated=truncated,
            duration_ms=round(duration_ms, 3),
            truncated_reason=reason,
            warnings=list(decision.warnings),
        )

    # --- execute_transaction, batch_execute (db/writes.py) --------------------------

    async def transaction(
        self,
        connection_id: str,
        queries: Sequence[tuple[str, Sequence[Any]]],
        *,
        tool: str = "execute_transaction",
        rollback: bool = False,
    ) -> TransactionResult:
        """Run the statements in one transaction: all commit, or none does (``writes.run_transaction``).

        Raises:
            StatementFailed: with ``index`` of the failing statement (the database is unchanged).
        """
        return await writes.run_transaction(self, connection_id, queries, tool=tool, rollback=rollback)

    async def batch(
        self,
        connection_id: str,
        query: str,
        params_list: Sequence[Sequence[Any]],
        *,
        tool: str = "batch_execute",
        rollback: bool = False,
        progress: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> BatchResult:
        """Run one statement for every parameter row, pipelined, in one transaction (all or nothing;
        ``writes.run_batch``)."""
        return await writes.run_batch(
            self, connection_id, query, params_list, tool=tool, rollback=rollback, progress=progress
        )

    # --- explain_query ------------------------------------------------------------

    async def explain(
        self,
        connection_id: str,
        query: str,
        params: Sequence[Any] = (),
        *,
        analyze: bool = False,
        tool: str = "explain_query",
    ) -> tuple[Any, Decision, float]:
        """EXPLAIN (FORMAT JSON) the statement; with ``analyze`` it runs, in a transaction always rolled back."""
        return await plans.run_explain(self, connection_id, query, params, analyze=analyze, tool=tool)

    # --- catalog (our own SQL, not a caller's) -----------------------------------

    async def catalog(
        self, connection_id: str, queries: Sequence[tuple[str, Sequence[Any]]], *, tool: str
    ) -> list[list[asyncpg.Record]]:
        """Run pgmcp's own catalog queries (identifiers only as parameters) in one READ ONLY transaction."""
        conn = self.registry.get(connection_id)
        started = time.perf_counter()
        results: list[list[asyncpg.Record]] = []
        try:
            async with self.transactions.open(conn, readonly=True, answer_before_commit=True) as c:
                for sql, args in queries:
                    results.append(await c.fetch(sql, *args))
        except Exception as exc:
            failure = self.failed(conn, exc, query=tool, query_type="CATALOG", started=started, tool=tool)
            raise failure from (None if failure is exc else exc)
        self.record(
            conn,
            query=tool,
            query_type="CATALOG",
            started=started,
            success=True,
            row_count=len(results[0]) if results else 0,
            tool=tool,
        )
        return results

    # --- plans with hypothetical indexes (recommend_indexes, explain_query) --------

    async def plan_session(
        self,
        connection_id: str,
        queries: Sequence[str],
        body: Callable[[PlanSession], Awaitable[T]],
        *,
        tool: str,
        skip_refused: bool = False,
        statements: int = 1,
        verbose: bool = False,
    ) -> tuple[T, list[tuple[str, PgMcpError]]]:
        """Run ``body`` with a :class:`PlanSession` for ``queries`` in one READ ONLY transaction,
        always rolled back.

        Every query is checked by the policy as a read first, as ``execute_query`` would check
        it; a refusal raises (or, with ``skip_refused``, is returned beside the result). The
        hypothetical indexes ``body`` creates are reset before the transaction ends; if the
        call fails after creating one, the connection is closed instead of pooled.

        Raises:
            QueryBlocked, LimitExceeded: a query the policy refuses (unless ``skip_refused``).
            QueryTimeout, ConnectionFailed, DatabaseError.
        """
        return await plans.run_plan_session(
            self,
            connection_id,
            queries,
            body,
            tool=tool,
            skip_refused=skip_refused,
            statements=statements,
            verbose=verbose,
        )


# Statement kinds that cannot create, replace or drop a function, operator or cast.
_KINDS_WITHOUT_DDL = frozenset({"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE", "EXPLAIN", "SHOW"})
