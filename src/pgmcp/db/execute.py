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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import orjson

from pgmcp.auth import current_call, current_principal
from pgmcp.config import Settings
from pgmcp.db import session
from pgmcp.db.catalog import CatalogCache
from pgmcp.db.convert import column_info, convert_params, make_row_encoder, rows_converter
from pgmcp.db.plans import PlanSession
from pgmcp.db.privileges import refuse, set_role_sql
from pgmcp.db.registry import Connection, ConnectionRegistry, PgMcpConnection
from pgmcp.errors import (
    ConnectionFailed,
    DatabaseError,
    InvalidInput,
    LimitExceeded,
    PgMcpError,
    QueryBlocked,
    QueryTimeout,
    from_postgres,
)
from pgmcp.monitoring import Monitor
from pgmcp.security import Decision, Policy
from pgmcp.security.functions import FunctionCatalog

__all__ = ["BatchResult", "Executor", "QueryResult", "TransactionResult"]

JsonRow = dict[str, Any]
T = TypeVar("T")


@dataclass
class QueryResult:
    columns: list[dict[str, str]]
    rows: list[JsonRow]
    row_count: int
    truncated: bool
    duration_ms: float
    truncated_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class TransactionResult:
    results: list[dict[str, Any]]
    duration_ms: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    rows_affected: int
    batch_size: int
    duration_ms: float
    warnings: list[str] = field(default_factory=list)


class StatementFailed(PgMcpError):
    """A statement of a transaction failed; carries the index and the underlying error."""

    def __init__(self, index: int, error: PgMcpError) -> None:
        super().__init__(f"Query {index} failed: {error}")
        self.index = index
        self.error = error
        self.error_type = error.error_type  # type: ignore[misc]
        # error.extra may say that a COMMIT's outcome is unknown (connection lost while committing).
        self.extra = {"committed": False, "rolled_back": True, "failed_index": index, **error.extra}


async def _prepare(conn: PgMcpConnection, query: str) -> asyncpg.prepared_stmt.PreparedStatement:
    # asyncpg's public prepare() always parses anew; the cached variant saves a
    # round trip on every repeated query (prepared-statement reuse).
    return await conn._prepare(query, use_cache=True)


def _is_stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection itself is gone (not that the statement failed)."""
    if isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | ConnectionError,
    ):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in {"57P01", "57P02"}


def _no_answer(deadline: float | None, in_doubt: bool, cause: PgMcpError | None = None) -> PgMcpError:
    """The error of a call whose database stopped answering (or vanished) mid-transaction."""
    if deadline is not None:
        err: PgMcpError = QueryTimeout(
            f"The database did not answer within {deadline:g} seconds (QUERY_TIMEOUT per statement plus "
            "CONNECTION_TIMEOUT): it may be hung or unreachable. The connection was closed"
        )
    else:
        err = cause or ConnectionFailed("Connection to the database failed")
    if in_doubt:
        # The COMMIT was sent and no answer came back: only the database knows whether it took effect.
        err = type(err)(
            f"{str(err).rstrip('.')}; the COMMIT was sent but its outcome is unknown: check the data "
            "before retrying"
        )
        err.extra = {"committed": None, "rolled_back": False, "commit_outcome": "unknown"}
    else:
        err = type(err)(f"{str(err).rstrip('.')}; nothing was committed") if deadline is not None else err
    return err


async def _fetch_at_most(
    conn: PgMcpConnection, stmt: asyncpg.prepared_stmt.PreparedStatement, args: Sequence[Any], limit: int
) -> list[asyncpg.Record]:
    """At most ``limit`` rows of ``stmt`` in one round trip: Bind and Execute(limit) on the unnamed portal.

    What asyncpg's cursor sends too, but its named portal then costs a second round
    trip to close; the unnamed one needs none (COMMIT or the next statement drops it).
    Never more than ``limit`` rows are read, whatever the result's size.
    """
    rows: list[asyncpg.Record]
    rows, _status, _completed = await conn._protocol.bind_execute(stmt._state, args, "", limit, True, None)
    return rows


def _status_count(status: str | None) -> int | None:
    """Rows affected from a command tag such as ``INSERT 0 3`` or ``UPDATE 2``."""
    if not status:
        return None
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None


class Executor:
    """Runs statements for the tools; owns timeouts, transactions, caps and reporting."""

    def __init__(
        self, settings: Settings, registry: ConnectionRegistry, policy: Policy, monitor: Monitor
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.policy = policy
        self.monitor = monitor
        self._timeout_ms = int(settings.query_timeout * 1000)
        # The catalog's queries get what one statement of a call gets (see _transaction's deadline).
        self._catalog_deadline = settings.query_timeout + settings.connection_timeout
        self.catalogs = CatalogCache(registry, timeout=self._catalog_deadline)
        # Our own text, one round trip each. READONLY_ROLE: reads meet that role's grants.
        timeout = f"SET LOCAL statement_timeout = {self._timeout_ms}"
        role = f"; {set_role_sql(settings.readonly_role)}" if settings.readonly_role else ""
        self._begin = {
            True: f"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; {timeout}{role}",
            False: f"BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; {timeout}",
        }

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
                raise _no_answer(self._catalog_deadline, False) from None
            except Exception as exc:
                # A pooled connection lost while it sat idle (a restart, a dropped SSH tunnel):
                # the catalog check only reads, so one retry on a fresh connection is safe, and
                # its failure (if the database is really gone) says why.
                if attempt == 1 and _is_stale(exc):
                    continue
                raise self._fail(exc) from exc
        raise AssertionError("unreachable")  # the loop returns or raises

    # --- transactions ----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _transaction(
        self,
        conn: Connection,
        *,
        readonly: bool,
        rollback: bool = False,
        statements: int = 1,
        answer_before_commit: bool = False,
    ) -> AsyncIterator[PgMcpConnection]:
        """A transaction on a pooled connection, committed (or rolled back) when the body ends.

        READ ONLY transactions always roll back. With ``answer_before_commit`` their ROLLBACK
        and session reset are sent without waiting for them
        (``ConnectionRegistry.commit_after_answer``): the body has read everything, and nothing
        it did depends on the transaction's end. This takes a round trip off the caller's latency.
        """
        begin = self._begin[readonly]
        # The database stops each statement at QUERY_TIMEOUT; this deadline is for a database
        # that stops answering altogether (hung, or the network gone), where statement_timeout
        # never fires and the call would otherwise wait forever.
        deadline = self.settings.query_timeout * max(statements, 1) + self.settings.connection_timeout
        for attempt in (1, 2):
            async with self.registry.acquire(conn) as c:
                phase = "BEGIN"
                try:
                    async with asyncio.timeout(deadline) as budget:
                        try:
                            if conn.privileges is None:  # the database was down when the pool opened
                                conn.privileges = await self.registry.inspect_privileges(conn, c)
                            elif conn.privileges.refusal:
                                refuse(conn.privileges)
                            await c.execute(begin)
                        except Exception as exc:
                            # A pooled connection the database dropped while it sat idle (a restart)
                            # can still look open for a moment. Nothing of the caller's has run yet,
                            # so one retry on a fresh connection is safe.
                            if attempt == 1 and _is_stale(exc):
                                # Lost already (an SSH tunnel dropped): asyncpg has detached
                                # the proxy, and terminate() on it would raise.
                                with contextlib.suppress(asyncpg.InterfaceError):
                                    c.terminate()
                                continue
                            raise
                        phase = "statement"
                        try:
                            yield c
                        except BaseException:
                            with contextlib.suppress(Exception):
                                if not c.is_closed():
                                    await c.execute("ROLLBACK")
                            raise
                        phase = "COMMIT"
                        # A read never commits. The session reset rides in the same round trip
                        # (db/session.py): nothing a function body left reaches the next caller.
                        if answer_before_commit and readonly:
                            self.registry.commit_after_answer(conn, c, "ROLLBACK")
                        else:
                            await session.end_transaction(c, "ROLLBACK" if rollback or readonly else "COMMIT")
                except TimeoutError:
                    if not budget.expired():
                        raise
                    c.terminate()  # its state is unknown; the database rolls back what was open
                    in_doubt = phase == "COMMIT" and not (rollback or readonly)
                    raise _no_answer(deadline, in_doubt) from None
                except Exception as exc:
                    if phase == "COMMIT" and not (rollback or readonly) and _is_stale(exc):
                        raise _no_answer(None, True, self._fail(exc)) from exc
                    raise
                return

    def _failed(
        self, conn: Connection, exc: BaseException, *, query: str, query_type: str, started: float, tool: str
    ) -> PgMcpError:
        """The pgmcp error for ``exc``, recorded as a failed query (metrics, logs, history)."""
        failure = self._fail(exc)
        self._record(
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

    def _fail(self, exc: BaseException) -> PgMcpError:
        if isinstance(exc, asyncpg.InternalClientError) and not isinstance(exc, PgMcpError):
            if "cannot switch to state" in str(exc) or "another operation" in str(exc):
                # asyncpg's protocol state machine tripped over a connection the server dropped
                # ("cannot switch to state 12; another operation (2) is in progress").
                return ConnectionFailed(
                    f"Connection to the database failed: the server ended the session mid-call ({exc}); "
                    "retry the call"
                )
            # Anything else is the driver failing to read a result (a type it cannot decode):
            # the connection is fine, and a retry would fail the same way.
            return DatabaseError(
                f"The driver could not read this result ({exc}); cast the column to text (column::text)"
            )
        return from_postgres(exc, timeout_seconds=self.settings.query_timeout)

    def _record(
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
        size = self._fetch_size(fetch_size)
        decision = await self.check(conn, query, require_read=require_read, tool=tool)
        readonly = decision.is_read or self.readonly_for(conn)
        started = time.perf_counter()
        try:
            async with self._transaction(conn, readonly=readonly, answer_before_commit=True) as c:
                stmt = await _prepare(c, query)
                args = convert_params(list(params), stmt.get_parameters())
                attributes = stmt.get_attributes()
                records: list[asyncpg.Record] = []
                if attributes:
                    records = await _fetch_at_most(c, stmt, args, size + 1)
                    row_count_db = None
                else:
                    await stmt.fetch(*args)
                    row_count_db = _status_count(stmt.get_statusmsg())
        except Exception as exc:
            failure = self._failed(
                conn, exc, query=query, query_type=decision.query_type, started=started, tool=tool
            )
            raise failure from (None if failure is exc else exc)
        more = len(records) > size
        rows, byte_capped = self._encode(attributes, records[:size])
        truncated = more or byte_capped
        row_count = len(rows) if attributes else (row_count_db or 0)
        duration_ms = self._record(
            conn,
            query=query,
            query_type=decision.query_type,
            started=started,
            success=True,
            row_count=row_count,
            tool=tool,
        )
        reason = None
        if byte_capped:
            reason = (
                f"the result reached MAX_RESULT_BYTES={self.settings.max_result_bytes}; "
                "select fewer columns or page with keyset pagination "
                "(WHERE <order key> > <last value seen> ORDER BY <order key> LIMIT n)"
            )
        elif more:
            reason = (
                f"more than fetch_size={size} rows exist; page with keyset pagination "
                "(WHERE <order key> > <last value seen> ORDER BY <order key> LIMIT n) or aggregate"
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

    def _fetch_size(self, fetch_size: int | None) -> int:
        size = self.settings.default_fetch_size if fetch_size is None else fetch_size
        if size < 1:
            raise InvalidInput(f"fetch_size must be at least 1, got {size}")
        if size > self.settings.max_fetch_size:
            raise LimitExceeded(
                f"fetch_size {size} is above MAX_FETCH_SIZE={self.settings.max_fetch_size}; page through the result"
            )
        return size

    def _encode(
        self, attributes: Sequence[Any], records: Sequence[asyncpg.Record]
    ) -> tuple[list[JsonRow], bool]:
        if not records:
            return [], False
        encode: Callable[[asyncpg.Record], JsonRow] = make_row_encoder(attributes)
        budget = self.settings.max_result_bytes
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

    # --- execute_transaction ----------------------------------------------------

    async def transaction(
        self,
        connection_id: str,
        queries: Sequence[tuple[str, Sequence[Any]]],
        *,
        tool: str = "execute_transaction",
        rollback: bool = False,
    ) -> TransactionResult:
        """Run the statements in one transaction: all commit, or none does.

        Every statement is checked by the policy before the first one runs. With
        ``rollback`` the transaction is always rolled back: a preview (confirm.py).

        Raises:
            StatementFailed: with ``index`` of the failing statement (the database is unchanged).
        """
        conn = self.registry.get(connection_id)
        if not queries:
            raise InvalidInput("queries must contain at least one {query, params} item")
        if len(queries) > self.settings.max_transaction_queries:
            raise LimitExceeded(
                f"{len(queries)} queries exceed MAX_TRANSACTION_QUERIES={self.settings.max_transaction_queries}"
            )
        decisions: list[Decision] = []
        for index, (query, _) in enumerate(queries):
            try:
                decisions.append(await self.check(conn, query, tool=tool))
            except PgMcpError as refused:
                raise StatementFailed(index, refused) from None
        readonly = self.readonly_for(conn) or all(d.is_read for d in decisions)
        fetch_limit = self.settings.default_fetch_size
        results: list[dict[str, Any]] = []
        started = time.perf_counter()
        index = 0
        try:
            async with self._transaction(
                conn, readonly=readonly, rollback=rollback, statements=len(queries)
            ) as c:
                for index, (query, params) in enumerate(queries):
                    step_started = time.perf_counter()
                    try:
                        stmt = await _prepare(c, query)
                        args = convert_params(list(params), stmt.get_parameters())
                        attributes = stmt.get_attributes()
                        if attributes:
                            records = await stmt.fetch(*args)
                            rows, _ = self._encode(attributes, records[:fetch_limit])
                            count = _status_count(stmt.get_statusmsg())
                            item: dict[str, Any] = {
                                "row_count": count if count is not None else len(records),
                                "rows": rows,
                            }
                            if len(records) > fetch_limit:
                                item["truncated"] = True
                        else:
                            await stmt.fetch(*args)
                            item = {"row_count": _status_count(stmt.get_statusmsg()) or 0}
                    except Exception as exc:
                        failure = self._failed(
                            conn,
                            exc,
                            query=query,
                            query_type=decisions[index].query_type,
                            started=step_started,
                            tool=tool,
                        )
                        raise StatementFailed(index, failure) from exc
                    self._record(
                        conn,
                        query=query,
                        query_type=decisions[index].query_type,
                        started=step_started,
                        success=True,
                        row_count=item["row_count"],
                        tool=tool,
                    )
                    results.append(item)
        except StatementFailed:
            raise
        except Exception as exc:
            # COMMIT itself failed (deferred constraint, serialization, lost connection).
            failure = self._fail(exc)
            raise StatementFailed(index, failure) from exc
        warnings = [w for d in decisions for w in d.warnings]
        return TransactionResult(
            results=results, duration_ms=round((time.perf_counter() - started) * 1000, 3), warnings=warnings
        )

    # --- batch_execute --------------------------------------------------------------

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
        """Run one statement for every parameter row, pipelined, in one transaction (all or nothing).

        With ``rollback`` the transaction is always rolled back (a preview, confirm.py);
        with ``progress`` the rows go in chunks of PROGRESS_CHUNK, reported as (done, total).
        """
        conn = self.registry.get(connection_id)
        if not params_list:
            raise InvalidInput("params_list must contain at least one parameter row")
        if len(params_list) > self.settings.max_batch_size:
            raise LimitExceeded(
                f"params_list has {len(params_list)} rows, above MAX_BATCH_SIZE={self.settings.max_batch_size}; "
                "split it into several batch_execute calls"
            )
        decision = await self.check(conn, query, tool=tool)
        readonly = self.readonly_for(conn) or decision.is_read
        started = time.perf_counter()
        try:
            async with self._transaction(
                conn, readonly=readonly, rollback=rollback, statements=len(params_list) + 2
            ) as c:
                stmt = await _prepare(c, query)
                rows = rows_converter(stmt.get_parameters())(params_list)
                before = await c.fetchval(_XACT_CHANGES) if not readonly else 0
                if progress is None:
                    await stmt.executemany(rows)
                else:
                    for start in range(0, len(rows), PROGRESS_CHUNK):
                        await stmt.executemany(rows[start : start + PROGRESS_CHUNK])
                        await progress(min(start + PROGRESS_CHUNK, len(rows)), len(rows))
                after = await c.fetchval(_XACT_CHANGES) if not readonly else 0
        except Exception as exc:
            failure = self._failed(
                conn, exc, query=query, query_type=decision.query_type, started=started, tool=tool
            )
            raise failure from (None if failure is exc else exc)
        affected = int(after) - int(before)
        duration_ms = self._record(
            conn,
            query=query,
            query_type=decision.query_type,
            started=started,
            success=True,
            row_count=affected,
            tool=tool,
        )
        return BatchResult(
            rows_affected=affected,
            batch_size=len(params_list),
            duration_ms=round(duration_ms, 3),
            warnings=list(decision.warnings),
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
        conn = self.registry.get(connection_id)
        options = "ANALYZE, BUFFERS, VERBOSE, FORMAT JSON" if analyze else "VERBOSE, FORMAT JSON"
        sql = f"EXPLAIN ({options}) {query.strip().rstrip(';')}"
        decision = await self.check(conn, sql, tool=tool)
        readonly = decision.is_read or self.readonly_for(conn)
        started = time.perf_counter()
        try:
            async with self._transaction(conn, readonly=readonly, rollback=True) as c:
                stmt = await _prepare(c, sql)
                args = convert_params(list(params), stmt.get_parameters())
                raw = await stmt.fetchval(*args)
        except Exception as exc:
            failure = self._failed(conn, exc, query=sql, query_type="EXPLAIN", started=started, tool=tool)
            raise failure from (None if failure is exc else exc)
        duration_ms = self._record(
            conn, query=sql, query_type="EXPLAIN", started=started, success=True, row_count=1, tool=tool
        )
        plan = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
        return plan, decision, duration_ms

    # --- catalog (our own SQL, not a caller's) -----------------------------------

    async def catalog(
        self, connection_id: str, queries: Sequence[tuple[str, Sequence[Any]]], *, tool: str
    ) -> list[list[asyncpg.Record]]:
        """Run pgmcp's own catalog queries (identifiers only as parameters) in one READ ONLY transaction."""
        conn = self.registry.get(connection_id)
        started = time.perf_counter()
        results: list[list[asyncpg.Record]] = []
        try:
            async with self._transaction(conn, readonly=True, answer_before_commit=True) as c:
                for sql, args in queries:
                    results.append(await c.fetch(sql, *args))
        except Exception as exc:
            failure = self._failed(conn, exc, query=tool, query_type="CATALOG", started=started, tool=tool)
            raise failure from (None if failure is exc else exc)
        self._record(
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
        conn = self.registry.get(connection_id)
        allowed: list[str] = []
        refused: list[tuple[str, PgMcpError]] = []
        for query in queries:
            try:
                await self.check(conn, query, require_read=True, tool=tool)
            except (QueryBlocked, LimitExceeded) as exc:
                if not skip_refused:
                    raise
                refused.append((query, exc))
                continue
            allowed.append(query)
        started = time.perf_counter()
        try:
            async with self._transaction(conn, readonly=True, rollback=True, statements=statements) as c:
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
            failure = self._failed(conn, exc, query=tool, query_type="EXPLAIN", started=started, tool=tool)
            raise failure from (None if failure is exc else exc)
        self._record(
            conn,
            query=tool,
            query_type="EXPLAIN",
            started=started,
            success=True,
            row_count=len(allowed),
            tool=tool,
        )
        return result, refused


# Statement kinds that cannot create, replace or drop a function, operator or cast.
_KINDS_WITHOUT_DDL = frozenset({"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE", "EXPLAIN", "SHOW"})
PROGRESS_CHUNK = 1000  # batch rows per executemany when the caller asked for progress

_SIZE_CHUNK = 64  # rows sized per orjson call against MAX_RESULT_BYTES

# Rows inserted, updated or deleted so far by this transaction, in every table.
_XACT_CHANGES = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_xact_all_tables"
)
