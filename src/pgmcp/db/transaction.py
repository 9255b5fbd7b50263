"""The transaction every statement of the execute path runs in, from BEGIN to its end.

In one round trip: ``BEGIN ... READ ONLY`` (or ``READ WRITE``), ``SET LOCAL
statement_timeout`` from ``QUERY_TIMEOUT`` so the server itself stops runaway work, and
on a read ``SET LOCAL ROLE`` to ``READONLY_ROLE`` when it is set. The end commits or rolls
back (a read never commits) with the session reset in the same round trip
(``db/session.py``). A deadline of QUERY_TIMEOUT per statement plus CONNECTION_TIMEOUT
catches a database that stops answering altogether; a pooled connection the database
dropped while idle is replaced once, before anything of the caller's ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from pgmcp.config import Settings
from pgmcp.db import session
from pgmcp.db.connection import Connection, PgMcpConnection
from pgmcp.db.failures import is_stale, no_answer, pgmcp_error
from pgmcp.db.privileges import refuse, set_role_sql
from pgmcp.db.registry import ConnectionRegistry

__all__ = ["Transactions", "begin_texts"]


def begin_texts(settings: Settings) -> dict[bool, str]:
    """The BEGIN of a read-only (``True``) and of a read-write (``False``) transaction, with
    its ``SET LOCAL``s: our own text, one round trip each. READONLY_ROLE: reads meet that
    role's grants."""
    timeout = f"SET LOCAL statement_timeout = {int(settings.query_timeout * 1000)}"
    role = f"; {set_role_sql(settings.readonly_role)}" if settings.readonly_role else ""
    return {
        True: f"BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; {timeout}{role}",
        False: f"BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; {timeout}",
    }


class Transactions:
    """Opens the execute path's transactions on the registry's pooled connections."""

    def __init__(self, settings: Settings, registry: ConnectionRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.begin = begin_texts(settings)

    @contextlib.asynccontextmanager
    async def open(
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
        begin = self.begin[readonly]
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
                            if attempt == 1 and is_stale(exc):
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
                    raise no_answer(deadline, in_doubt) from None
                except Exception as exc:
                    if phase == "COMMIT" and not (rollback or readonly) and is_stale(exc):
                        raise no_answer(
                            None, True, pgmcp_error(exc, query_timeout=self.settings.query_timeout)
                        ) from exc
                    raise
                return
