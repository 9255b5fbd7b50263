"""copy_data, compare_schemas, compare_tables: move and verify data between connections,
without the rows passing through the model (the handbook's scenario 2)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.confirm import Plan, _ask, needs_confirmation, plan_digest
from pgmcp.db.copy import MAX_BATCH_ROWS, DataCopier
from pgmcp.db.execute import Executor
from pgmcp.progress import current_progress
from pgmcp.tools.schema_diff import compare_schemas
from pgmcp.tools.table_diff import MAX_CHUNKS, compare_tables

# Short descriptions: tools/list stays small, and the parameter names say most of it.
Conn = Annotated[str, Field(min_length=1, max_length=128, description="A connection id.")]
Table = Annotated[str, Field(min_length=1, description="Table, or schema.table.")]
Schema = Annotated[str, Field(min_length=1, description="Schema.")]


class MigrationTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app
        self.copier = DataCopier(app.executor)

    async def copy_data(
        self,
        source_connection_id: Conn,
        query: Annotated[str, Field(min_length=1, description="A read; transform in it. No $n.")],
        target_connection_id: Conn,
        target_table: Annotated[str, Field(min_length=1, description="Existing target table.")],
        columns: Annotated[
            list[str] | dict[str, str] | None,
            Field(description="Target columns: list by position, or {query column: target column}."),
        ] = None,
        target_schema: Schema = "public",
        on_conflict: Annotated[
            Literal["error", "skip"], Field(description="skip: rows whose key exists are left out.")
        ] = "error",
        batch_rows: Annotated[
            int, Field(ge=1, le=MAX_BATCH_ROWS, description="Rows per COPY batch.")
        ] = 10000,
    ) -> dict[str, Any]:
        """Copy a query's rows into another database's table."""

        reporter = current_progress.get()

        async def report(rows: int) -> None:
            # A client gone meanwhile is the cancellation's business, not a reason to fail the copy.
            with contextlib.suppress(Exception):
                await reporter(rows, None, f"{rows} rows copied")  # type: ignore[misc]

        async def confirm(statement: str) -> None:
            await confirm_copy(
                self.app.executor,
                source_connection_id,
                statement,
                target_connection_id,
                f"{target_schema}.{target_table}",
                [query, target_schema, target_table, columns, on_conflict],
            )

        result = await self.copier.copy(
            source_connection_id,
            query,
            target_connection_id,
            target_table,
            columns=columns,
            target_schema=target_schema,
            on_conflict=on_conflict,
            batch_rows=batch_rows,
            progress=report if reporter is not None else None,
            before_run=confirm if self.app.settings.confirm_writes != "never" else None,
        )
        payload: dict[str, Any] = {
            "success": True,
            "rows_copied": result.rows_copied,
            "rows_read": result.rows_read,
            "rows_skipped": result.rows_skipped,
            "duration_ms": result.duration_ms,
            "rows_per_second": result.rows_per_second,
            "committed": True,
        }
        if result.warnings:
            payload["warnings"] = result.warnings
        return payload

    async def compare_schemas(
        self,
        source_connection_id: Conn,
        target_connection_id: Conn,
        source_schema: Schema = "public",
        target_schema: Schema = "public",
        tables: Annotated[list[str] | None, Field(description="Only these tables.")] = None,
    ) -> dict[str, Any]:
        """Differences of two schemas: tables, columns, keys, indexes."""
        differences = await compare_schemas(
            self.app.executor,
            source_connection_id,
            target_connection_id,
            source_schema,
            target_schema,
            tables,
        )
        return {"success": True, "differences": differences, "identical": not differences}

    async def compare_tables(
        self,
        source_connection_id: Conn,
        source_table: Table,
        target_connection_id: Conn,
        target_table: Table,
        key: Annotated[str | list[str], Field(description="Key column(s).")],
        columns: Annotated[list[str] | None, Field(description="Columns to compare (default: all).")] = None,
        chunks: Annotated[int, Field(ge=1, le=MAX_CHUNKS, description="Key ranges.")] = 16,
    ) -> dict[str, Any]:
        """Compare two tables by checksums per key range."""
        result = await compare_tables(
            self.app.executor,
            source_connection_id,
            source_table,
            target_connection_id,
            target_table,
            key,
            columns,
            chunks,
        )
        return {"success": True, **result}


async def confirm_copy(
    executor: Executor,
    source_connection_id: str,
    statement: str,
    target_connection_id: str,
    target: str,
    arguments: list[Any],
) -> None:
    """CONFIRM_WRITES for copy_data: the preview counts the query's rows on the source (nothing is
    written anywhere to count them), and the person is asked about the INSERT into the target.

    Raises what :func:`pgmcp.confirm.confirm_batch` raises.
    """
    settings = executor.settings
    preview = await executor.query(
        source_connection_id,
        f"SELECT count(*) AS n FROM (\n{statement}\n) AS pgmcp_copy",
        fetch_size=1,
        tool="copy_data (preview)",
    )
    rows = int(preview.rows[0]["n"])
    if not needs_confirmation(settings.confirm_writes, {"INSERT"}, (rows,), settings.confirm_rows_threshold):
        return
    tool = "copy_data"
    await _ask(
        Plan(
            tool=tool,
            connection_id=target_connection_id,
            statements=(
                f"INSERT INTO {target} the rows of, on connection '{source_connection_id}': {statement}",
            ),
            counts=(rows,),
            digest=plan_digest(tool, target_connection_id, [source_connection_id, *arguments]),
            kinds=("INSERT",),
        )
    )
