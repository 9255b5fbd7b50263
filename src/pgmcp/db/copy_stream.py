"""One copy_data run's byte stream: the source's ``COPY … TO STDOUT`` output cut into
batches at line ends, each batch a ``COPY … FROM STDIN`` on the target, and how a failure
of either side reads (naming the failing row where PostgreSQL said which).

:class:`CopyRun` holds one copy's state (which side is working, rows so far); the order
of a copy, its policies and transactions are :mod:`pgmcp.db.copy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from pgmcp.config import Settings
from pgmcp.db._driver import prepare_cached
from pgmcp.db.connection import Connection, PgMcpConnection
from pgmcp.db.reading import status_count
from pgmcp.errors import DatabaseError, InvalidInput, PgMcpError, QueryTimeout, mask_secrets

__all__ = ["CopyRun", "Progress", "quote_ident"]

_CHUNKS_IN_FLIGHT = 8
_STAGE = "pgmcp_copy_stage"
_TARGET_COLUMNS = """
SELECT a.attname AS name, a.attgenerated <> '' AS generated
  FROM pg_attribute a
 WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = $1 AND c.relname = $2)
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""
_LINE = re.compile(r"\bline (\d+)")

Progress = Callable[[int], Awaitable[None]]


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class _SourceFailed(Exception):
    """The source's COPY failed; raised inside the target's COPY so that it is aborted too."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Stalled(Exception):
    """The source sent nothing for QUERY_TIMEOUT seconds."""


class _Batches:
    """The source's text rows, cut into batches of ``size`` rows at line ends."""

    def __init__(self, queue: asyncio.Queue[Any], size: int, stall: float) -> None:
        self._queue = queue
        self._size = size
        self._stall = stall
        self._pending = b""
        self._exhausted = False
        self.moved_at = time.monotonic()

    async def _next(self) -> bytes | None:
        if self._pending:
            chunk, self._pending = self._pending, b""
            return chunk
        if self._exhausted:
            return None
        try:
            item = await asyncio.wait_for(self._queue.get(), self._stall)
        except TimeoutError:
            raise _Stalled from None
        if item is None:
            self._exhausted = True
            return None
        if isinstance(item, _SourceFailed):
            self._exhausted = True
            raise item
        return bytes(item)

    async def first(self) -> bytes | None:
        """The first bytes of the next batch, or None once the source has ended."""
        return await self._next()

    async def batch(self, chunk: bytes) -> AsyncIterator[bytes]:
        """The bytes of one batch, starting with ``chunk``; the rest waits for the next batch."""
        need = self._size
        while True:
            lines = chunk.count(b"\n")
            if lines >= need:
                cut = _after_line(chunk, need)
                self._pending = chunk[cut:]
                yield chunk[:cut]
                return
            need -= lines
            yield chunk
            nxt = await self._next()
            if nxt is None:
                return
            chunk = nxt


def _after_line(chunk: bytes, n: int) -> int:
    """The offset just after the ``n``-th line end in ``chunk``."""
    pos = -1
    for _ in range(n):
        pos = chunk.index(b"\n", pos + 1)
    return pos + 1


def _position(exc: BaseException) -> int | None:
    """The line (row) of a COPY's error context: ``COPY t, line 5, column x: …``."""
    context = getattr(exc, "context", None)
    match = _LINE.search(context or "")
    return int(match.group(1)) if match else None


def _reworded(err: PgMcpError, message: str) -> PgMcpError:
    err.args = (mask_secrets(message),)
    return err


class CopyRun:
    """The state of one copy: which side is working, rows so far, and how a failure reads."""

    def __init__(
        self,
        settings: Settings,
        fail: Callable[[BaseException], PgMcpError],
        source: Connection,
        target: Connection,
        schema: str,
        table: str,
        batch_rows: int,
        progress: Progress | None,
    ) -> None:
        self.settings = settings
        self.fail = fail  # the executor's error mapping (Executor.error_for)
        self.committing = False
        self.source = source
        self.target = target
        self.schema = schema
        self.table = table
        self.batch_rows = batch_rows
        self.progress = progress
        self.side = "target"
        self.rows_copied = 0  # rows in the target (after ON CONFLICT DO NOTHING)
        self.rows_done = 0  # rows of the source the target has taken, whole batches
        self.rows_read = 0
        self.batch_start = 0
        self.extra: dict[str, Any] = {}

    @property
    def where(self) -> str:
        return f"{self.schema}.{self.table}"

    async def target_columns(self, t: PgMcpConnection) -> list[tuple[str, bool]]:
        rows = await t.fetch(_TARGET_COLUMNS, self.schema, self.table)
        if not rows:
            raise DatabaseError(
                f'Table "{self.where}" does not exist on connection {self.target.connection_id!r}; '
                "create it first (copy_data writes into an existing table)",
                sqlstate="42P01",
            )
        return [(r["name"], bool(r["generated"])) for r in rows]

    async def describe(self, s: PgMcpConnection, statement: str) -> list[str]:
        stmt = await prepare_cached(s, statement)
        if stmt.get_parameters():
            raise InvalidInput("copy_data's query takes no $n parameters: write the values into the SQL")
        names = [a.name for a in stmt.get_attributes()]
        if not names:
            raise InvalidInput("copy_data's query must return rows (a SELECT, VALUES or TABLE)")
        return names

    async def stream(
        self, s: PgMcpConnection, t: PgMcpConnection, statement: str, mapped: list[str], skip: bool
    ) -> None:
        settings = self.settings
        queue: asyncio.Queue[Any] = asyncio.Queue(_CHUNKS_IN_FLIGHT)
        batches = _Batches(queue, self.batch_rows, settings.query_timeout)
        into_table, into_schema, into_columns = self.table, self.schema, mapped
        target = f"{quote_ident(self.schema)}.{quote_ident(self.table)}"
        cols = ", ".join(quote_ident(c) for c in mapped)
        if skip:
            await t.execute(
                f"CREATE TEMP TABLE {_STAGE} ON COMMIT DROP AS SELECT {cols} FROM {target} WITH NO DATA"
            )
            into_table, into_schema, into_columns = _STAGE, "pg_temp", list(mapped)
            merge = (
                f"INSERT INTO {target} ({cols}) SELECT {cols} FROM pg_temp.{_STAGE} ON CONFLICT DO NOTHING"
            )

        async def produce() -> None:
            try:
                status = await s.copy_from_query(f"\n{statement}\n", output=queue.put, format="text")
            except Exception as exc:
                await queue.put(_SourceFailed(exc))
                return
            self.rows_read = status_count(status) or 0
            await queue.put(None)

        producer = asyncio.get_running_loop().create_task(produce())
        batch_timeout = settings.query_timeout + settings.connection_timeout
        try:
            while True:
                self.side = "source"
                first = await batches.first()
                if first is None:
                    break
                self.side = "target"
                self.batch_start = self.rows_done
                status = await t.copy_to_table(
                    into_table,
                    schema_name=into_schema,
                    columns=into_columns,
                    source=batches.batch(first),
                    format="text",
                    timeout=batch_timeout,
                )
                taken = status_count(status) or 0
                if skip:
                    inserted = status_count(await t.execute(merge, timeout=batch_timeout)) or 0
                    await t.execute(f"TRUNCATE pg_temp.{_STAGE}", timeout=batch_timeout)
                else:
                    inserted = taken
                self.rows_done += taken
                self.rows_copied += inserted
                if self.progress is not None:
                    await self.progress(self.rows_done)
            self.side = "source"
            self.committing = False
            await producer  # it has put its end (None) in the queue: this only collects it
        finally:
            if not producer.done():
                # The target failed: stop the source's COPY (asyncpg cancels it in the database;
                # the source's transaction then rolls back).
                producer.cancel()
                with contextlib.suppress(BaseException):
                    await producer

    def failure(self, exc: BaseException) -> PgMcpError:
        """The pgmcp error of a failed copy, naming the failing row where PostgreSQL said which."""
        ex_fail = self.fail
        nothing = "nothing was committed: the target table is as before"
        if isinstance(exc, _SourceFailed):
            self.side = "source"
            err = ex_fail(exc.cause)
            if isinstance(err, QueryTimeout):
                # The source's COPY runs under COPY_TIMEOUT, not QUERY_TIMEOUT.
                return QueryTimeout(
                    f"Query timeout: the copy reached COPY_TIMEOUT={self.settings.copy_timeout:g} seconds "
                    f"after {self.rows_done} rows; {nothing}"
                )
            return _reworded(
                err, f"The source query failed after {self.rows_done} rows were copied: {err}; {nothing}"
            )
        if isinstance(exc, _Stalled):
            self.side = "source"
            return QueryTimeout(
                f"Query timeout: the source sent no rows for {self.settings.query_timeout:g} seconds "
                f"(QUERY_TIMEOUT) after {self.rows_done} rows; {nothing}"
            )
        if isinstance(exc, PgMcpError):
            return exc
        err = ex_fail(exc)
        if self.side == "source":
            return _reworded(err, f"{err} (on the source connection {self.source.connection_id!r})")
        if self.committing:
            return _reworded(err, f"The COMMIT of the copy into {self.where} failed: {err}; {nothing}")
        line = _position(exc)
        if line is not None:
            row = self.batch_start + line
            self.extra = {"failed_row": row}
            return _reworded(
                err,
                f"Row {row} of the query's result could not be copied into {self.where}: {err}; {nothing}",
            )
        if self.batch_start or self.rows_done:
            first, last = self.batch_start + 1, self.batch_start + self.batch_rows
            return _reworded(err, f"Copying rows {first}–{last} into {self.where} failed: {err}; {nothing}")
        return _reworded(err, f"Copying into {self.where} failed: {err}; {nothing}")
