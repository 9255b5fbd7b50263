"""copy_data, compare_schemas, compare_tables: move and verify data between connections,
without the rows passing through the model (the handbook's scenario 2)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.db.copy import MAX_BATCH_ROWS, DataCopier
from pgmcp.progress import current_progress
from pgmcp.tools import ConnectionId
from pgmcp.tools.schema_diff import compare_schemas
from pgmcp.tools.table_diff import MAX_CHUNKS, compare_tables

SchemaName = Annotated[str, Field(min_length=1, description="Schema name.")]
TableName = Annotated[str, Field(min_length=1, description="Table name, or schema.table.")]


class MigrationTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app
        self.copier = DataCopier(app.executor)

    async def copy_data(
        self,
        source_connection_id: ConnectionId,
        query: Annotated[
            str,
            Field(
                min_length=1,
                description="One read statement on the source whose rows are copied; transform here "
                "(SELECT id, lower(trim(email)), … FROM …). No $n parameters.",
            ),
        ],
        target_connection_id: ConnectionId,
        target_table: Annotated[str, Field(min_length=1, description="Existing table on the target.")],
        columns: Annotated[
            list[str] | dict[str, str] | None,
            Field(
                description="Target columns for the query's columns: a list by position, or "
                "{query column: target column}. Default: the target's columns in order."
            ),
        ] = None,
        target_schema: SchemaName = "public",
        on_conflict: Annotated[
            Literal["error", "skip"],
            Field(
                description="'error': a duplicate key fails the copy; 'skip': rows whose key exists are skipped."
            ),
        ] = "error",
        batch_rows: Annotated[
            int,
            Field(ge=1, le=MAX_BATCH_ROWS, description="Rows per COPY batch (and progress notification)."),
        ] = 10000,
    ) -> dict[str, Any]:
        """Copy the rows of a query on one connection into a table on another, inside the server:
        streamed with COPY, in one target transaction (all rows or none), progress per batch.

        The query is checked as execute_query on the source; the target as an INSERT into the table."""

        reporter = current_progress.get()

        async def report(rows: int) -> None:
            # A client gone meanwhile is the cancellation's business, not a reason to fail the copy.
            with contextlib.suppress(Exception):
                await reporter(rows, None, f"{rows} rows copied")  # type: ignore[misc]

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
        source_connection_id: ConnectionId,
        target_connection_id: ConnectionId,
        source_schema: SchemaName = "public",
        target_schema: SchemaName = "public",
        tables: Annotated[
            list[str] | None, Field(description="Only these tables (default: every table of the schema).")
        ] = None,
    ) -> dict[str, Any]:
        """Compare two schemas table by table: tables, columns (type, nullability, default),
        primary keys, unique constraints, foreign keys and indexes present on one side only or differing."""
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
        source_connection_id: ConnectionId,
        source_table: TableName,
        target_connection_id: ConnectionId,
        target_table: TableName,
        key: Annotated[
            str | list[str], Field(description="Key column (a list for a composite key) ordering the rows.")
        ],
        columns: Annotated[
            list[str] | None, Field(description="Columns to compare (default: every column of the source).")
        ] = None,
        chunks: Annotated[int, Field(ge=1, le=MAX_CHUNKS, description="Key ranges to checksum.")] = 16,
    ) -> dict[str, Any]:
        """Compare the rows of two tables without moving them: counts, and a checksum per key range
        computed in each database; differing_chunks names the key ranges that differ."""
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
