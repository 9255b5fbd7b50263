"""execute_query, execute_transaction, batch_execute."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, Field

from pgmcp.app import AppContext
from pgmcp.confirm import confirm_batch, confirm_transaction
from pgmcp.errors import InvalidInput
from pgmcp.progress import Progress, current_progress
from pgmcp.tools import ConnectionId, Params, ParamValue

Sql = Annotated[str, Field(min_length=1, description="One SQL statement; use $1, $2 … for values.")]


class TransactionQuery(BaseModel):
    query: Sql
    params: Params = []


class QueryTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def execute_query(
        self,
        connection_id: ConnectionId,
        query: Annotated[
            str, Field(min_length=1, description="One read statement (SELECT, WITH, VALUES, SHOW, EXPLAIN).")
        ],
        params: Params = [],  # noqa: B006 - pydantic copies defaults
        fetch_size: Annotated[
            int | None, Field(ge=1, description="Most rows to return (default DEFAULT_FETCH_SIZE).")
        ] = None,
    ) -> dict[str, Any]:
        """Run one read-only statement and return its rows: at most fetch_size; truncated=true
        says more exist (page with WHERE key > last_key ORDER BY key LIMIT n)."""
        running = self.app.executor.query(connection_id, query, params or (), fetch_size=fetch_size)
        progress = current_progress.get()
        result = await (running if progress is None else _reporting_elapsed(running, progress, self.app))
        payload: dict[str, Any] = {
            "success": True,
            "columns": result.columns,
            "rows": result.rows,
            "row_count": result.row_count,
            "truncated": result.truncated,
            "duration_ms": result.duration_ms,
        }
        if result.truncated_reason:
            payload["hint"] = f"Result truncated: {result.truncated_reason}."
        if result.warnings:
            payload["warnings"] = result.warnings
        return payload

    async def execute_transaction(
        self,
        connection_id: ConnectionId,
        queries: Annotated[
            list[TransactionQuery],
            Field(min_length=1, description="Statements to run in order: {query, params}."),
        ],
    ) -> dict[str, Any]:
        """Run statements in one transaction: all commit or none (failed_index names the failing one)."""
        items: list[tuple[str, Sequence[Any]]] = []
        for i, item in enumerate(queries):
            query = getattr(item, "query", None)
            params = getattr(item, "params", None)
            if isinstance(item, dict):
                query, params = item.get("query"), item.get("params")
            if not isinstance(query, str) or not query.strip():
                raise InvalidInput(f"queries[{i}].query must be a non-empty SQL string")
            items.append((query, params or ()))
        await confirm_transaction(self.app.executor, connection_id, items)
        result = await self.app.executor.transaction(connection_id, items)
        payload: dict[str, Any] = {
            "success": True,
            "results": result.results,
            "committed": True,
            "duration_ms": result.duration_ms,
        }
        if result.warnings:
            payload["warnings"] = result.warnings
        return payload

    async def batch_execute(
        self,
        connection_id: ConnectionId,
        query: Sql,
        params_list: Annotated[
            list[list[ParamValue]], Field(min_length=1, description="One parameter list per execution.")
        ],
    ) -> dict[str, Any]:
        """Run one statement per parameter list, pipelined in one transaction (all or nothing)."""
        await confirm_batch(self.app.executor, connection_id, query, params_list)
        progress = current_progress.get()
        chunks = None if progress is None else (lambda done, total: progress(done, total, None))
        result = await self.app.executor.batch(connection_id, query, params_list, progress=chunks)
        payload: dict[str, Any] = {
            "success": True,
            "rows_affected": result.rows_affected,
            "batch_size": result.batch_size,
            "duration_ms": result.duration_ms,
            "committed": True,
        }
        if result.warnings:
            payload["warnings"] = result.warnings
        return payload


async def _reporting_elapsed(running: Coroutine[Any, Any, Any], progress: Progress, app: AppContext) -> Any:
    """Await ``running``, reporting the seconds elapsed every PROGRESS_INTERVAL (no total: it is unknown)."""
    interval = app.settings.progress_interval
    started = time.monotonic()
    task = asyncio.ensure_future(running)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            elapsed = round(time.monotonic() - started, 1)
            await progress(elapsed, None, f"running for {elapsed:g} s")
    finally:
        if not task.done():
            task.cancel()
