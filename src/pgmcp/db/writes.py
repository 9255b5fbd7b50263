"""The write paths of the Executor: ``execute_transaction`` (several statements, all or
none) and ``batch_execute`` (one statement per parameter row, pipelined), each in one
READ WRITE transaction unless every statement is a read.

Both are :class:`~pgmcp.db.execute.Executor` methods (``Executor.transaction``,
``Executor.batch``); the code is here, run with the executor's policy check, transactions,
error mapping and reporting.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pgmcp.db._driver import prepare_cached
from pgmcp.db.convert import convert_params, rows_converter
from pgmcp.db.failures import StatementFailed
from pgmcp.db.reading import encode_capped, status_count
from pgmcp.db.results import BatchResult, TransactionResult
from pgmcp.errors import InvalidInput, LimitExceeded, PgMcpError
from pgmcp.security import Decision

if TYPE_CHECKING:
    from pgmcp.db.execute import Executor

__all__ = ["PROGRESS_CHUNK", "run_batch", "run_transaction"]

PROGRESS_CHUNK = 1000  # batch rows per executemany when the caller asked for progress

# Rows inserted, updated or deleted so far by this transaction, in every table.
_XACT_CHANGES = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_xact_all_tables"
)


async def run_transaction(
    ex: Executor,
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
    conn = ex.registry.get(connection_id)
    if not queries:
        raise InvalidInput("queries must contain at least one {query, params} item")
    if len(queries) > ex.settings.max_transaction_queries:
        raise LimitExceeded(
            f"{len(queries)} queries exceed MAX_TRANSACTION_QUERIES={ex.settings.max_transaction_queries}"
        )
    decisions: list[Decision] = []
    for index, (query, _) in enumerate(queries):
        try:
            decisions.append(await ex.check(conn, query, tool=tool))
        except PgMcpError as refused:
            raise StatementFailed(index, refused) from None
    readonly = ex.readonly_for(conn) or all(d.is_read for d in decisions)
    fetch_limit = ex.settings.default_fetch_size
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    index = 0
    try:
        async with ex.transactions.open(
            conn, readonly=readonly, rollback=rollback, statements=len(queries)
        ) as c:
            for index, (query, params) in enumerate(queries):
                step_started = time.perf_counter()
                try:
                    stmt = await prepare_cached(c, query)
                    args = convert_params(list(params), stmt.get_parameters())
                    attributes = stmt.get_attributes()
                    if attributes:
                        records = await stmt.fetch(*args)
                        rows, _ = encode_capped(
                            attributes, records[:fetch_limit], ex.settings.max_result_bytes
                        )
                        count = status_count(stmt.get_statusmsg())
                        item: dict[str, Any] = {
                            "row_count": count if count is not None else len(records),
                            "rows": rows,
                        }
                        if len(records) > fetch_limit:
                            item["truncated"] = True
                    else:
                        await stmt.fetch(*args)
                        item = {"row_count": status_count(stmt.get_statusmsg()) or 0}
                except Exception as exc:
                    failure = ex.failed(
                        conn,
                        exc,
                        query=query,
                        query_type=decisions[index].query_type,
                        started=step_started,
                        tool=tool,
                    )
                    raise StatementFailed(index, failure) from exc
                ex.record(
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
        failure = ex.error_for(exc)
        raise StatementFailed(index, failure) from exc
    warnings = [w for d in decisions for w in d.warnings]
    return TransactionResult(
        results=results, duration_ms=round((time.perf_counter() - started) * 1000, 3), warnings=warnings
    )


async def run_batch(
    ex: Executor,
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
    conn = ex.registry.get(connection_id)
    if not params_list:
        raise InvalidInput("params_list must contain at least one parameter row")
    if len(params_list) > ex.settings.max_batch_size:
        raise LimitExceeded(
            f"params_list has {len(params_list)} rows, above MAX_BATCH_SIZE={ex.settings.max_batch_size}; "
            "split it into several batch_execute calls"
        )
    decision = await ex.check(conn, query, tool=tool)
    readonly = ex.readonly_for(conn) or decision.is_read
    started = time.perf_counter()
    try:
        async with ex.transactions.open(
            conn, readonly=readonly, rollback=rollback, statements=len(params_list) + 2
        ) as c:
            stmt = await prepare_cached(c, query)
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
        failure = ex.failed(
            conn, exc, query=query, query_type=decision.query_type, started=started, tool=tool
        )
        raise failure from (None if failure is exc else exc)
    affected = int(after) - int(before)
    duration_ms = ex.record(
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
