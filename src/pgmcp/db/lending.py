"""Lending a pooled connection to one call, under ``MAX_CONNECTIONS``.

- :meth:`Lender.acquire` hands out the warm connection (the last one a call returned
  clean, kept out of asyncpg's pool: its acquire + release cost 0.07–0.14 ms of CPU per
  call) or one from asyncpg's pool within ``CONNECTION_TIMEOUT``, and takes it back:
  kept warm, released, or (for a call abandoned mid-statement) cancelled, rolled back and
  released in the background.
- :meth:`Lender.commit_after_answer` ends a READ ONLY transaction without the caller
  waiting for its ROLLBACK and session reset.
- With the cap reached, :meth:`Lender.make_room` closes an idle connection of another
  pool for a call waiting for a slot; one that waits in vain gets ``limit_exceeded``
  naming what holds the connections (:meth:`Lender.limit_exceeded`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg

from pgmcp.config import Settings
from pgmcp.db import session
from pgmcp.db._driver import close_one_idle, proxy_attached
from pgmcp.db.connection import Connection, PgMcpConnection, reusable
from pgmcp.db.limits import ConnectionLimiter, watch
from pgmcp.errors import ConnectionFailed, LimitExceeded, PgMcpError, from_postgres, mask_secrets
from pgmcp.logs import get_logger

__all__ = ["Lender"]

log = get_logger("pgmcp.db")


class Lender:
    """Lends the connections of the registry's pools (``connections``, shared with it) to calls."""

    def __init__(self, settings: Settings, connections: dict[str, Connection]) -> None:
        self._settings = settings
        self._connections = connections
        self.releasing: set[asyncio.Task[None]] = set()  # connections of abandoned calls, being reset
        self._commits: dict[int, asyncio.Task[None]] = {}  # id(connection) -> its commit_after_answer
        self.limiter = ConnectionLimiter(settings.max_connections, self.make_room)

    def limit_exceeded(self, connection_id: str, timeout: float) -> LimitExceeded:
        """The ``limit_exceeded`` of a call that waited ``timeout`` for a slot under MAX_CONNECTIONS,
        naming the pools that hold the connections."""
        held = []
        for cid, n in self.limiter.holders().items():
            other = self._connections.get(cid)
            busy = other.pool_stats()["active_connections"] if other is not None else n
            held.append(f"'{cid}' {n} ({busy} busy)")
        return LimitExceeded(
            f"No connection for '{connection_id}' within CONNECTION_TIMEOUT={timeout:g} seconds: all "
            f"MAX_CONNECTIONS={self.limiter.max_connections} connections are open and busy, held by "
            f"{', '.join(held) or 'calls being connected'}; retry later, raise MAX_CONNECTIONS "
            "or lower the load"
        )

    def make_room(self) -> bool:
        """Close one idle connection, so its slot goes to a connection attempt waiting for one.

        First a connection parked in asyncpg's pool (of the pool with the most of them), then
        a warm one. A pool whose own calls wait for one of its connections keeps its idle ones:
        they are about to be handed out. asyncpg has no public call to close one idle
        connection: ``_driver.close_one_idle`` closes it the way asyncpg's idle timeout does.
        """
        by_idle = sorted(self._connections.values(), key=lambda c: c.pool.get_idle_size(), reverse=True)
        for c in by_idle:
            if c.pool.get_idle_size() == 0 or c.waiting > self.limiter.waiting_for(c.connection_id):
                continue
            if close_one_idle(c.pool):
                return True
        for c in self._connections.values():
            warm = c.warm
            if proxy_attached(warm) and (c.warm_commit is None or c.warm_commit.done()):
                c.warm, c.warm_commit = None, None
                warm.terminate()  # detaches the proxy and frees its holder
                return True
        return False

    @contextlib.asynccontextmanager
    async def acquire(self, conn: Connection) -> AsyncIterator[PgMcpConnection]:
        """A pooled connection within ``CONNECTION_TIMEOUT``, or ``limit_exceeded`` naming the pool."""
        timeout = self._settings.connection_timeout
        while conn.warm is not None and conn.warm_commit is not None and not conn.warm_commit.done():
            # The previous call was answered before its read-only COMMIT came back; that takes
            # a round trip, less than asyncpg's acquire. Waiting never cancels the COMMIT, and
            # another call may take the connection meanwhile (then the pool serves this one).
            await asyncio.wait((conn.warm_commit,))
        raw, conn.warm, conn.warm_commit = conn.warm, None, None
        wait = None
        if raw is not None and not reusable(raw):
            # A connection lost while warm went back to asyncpg's pool already (its proxy is
            # detached); a closed one, or one whose COMMIT failed, is handed back to be reset
            # or replaced.
            if proxy_attached(raw):
                await self._release(conn, raw)
            raw = None
        try:
            if raw is None:
                conn.waiting += 1
                try:
                    with watch() as wait:
                        raw = await conn.pool.acquire(timeout=timeout)
                finally:
                    conn.waiting -= 1
        except TimeoutError:
            if wait is not None and wait.for_slot:
                raise self.limit_exceeded(conn.connection_id, timeout) from None
            if conn.pool.get_size() < conn.pool_size:
                # asyncpg hands out a free slot at once, so a slot without a connection means
                # the time went into connecting: the database is slow or hung, not the pool full.
                raise ConnectionFailed(
                    f"Could not connect to {conn.spec.host}:{conn.spec.port}/{conn.spec.database} for "
                    f"'{conn.connection_id}' within CONNECTION_TIMEOUT={timeout:g} seconds"
                ) from None
            raise LimitExceeded(
                f"No connection of pool '{conn.connection_id}' became free within "
                f"CONNECTION_TIMEOUT={timeout:g} seconds (pool size {conn.pool_size}); retry later "
                "or raise the pool size"
            ) from None
        except PgMcpError:
            raise
        except Exception as exc:
            raise from_postgres(exc) from exc
        abandoned = False
        try:
            yield raw
        except BaseException as exc:
            # A connection lost mid-call (database restart) is already detached from its
            # proxy: nothing to reset, and the original error must reach the caller.
            with contextlib.suppress(AttributeError):
                raw.mark_dirty()
            abandoned = isinstance(exc, asyncio.CancelledError | TimeoutError)
            raise
        finally:
            commit = self._commits.pop(id(raw), None)
            if abandoned:
                # The caller gave up mid-statement (client gone, deadline passed, shutdown):
                # asyncpg cancels the statement in the database and the reset rolls back; let
                # that finish in the background so a slow or hung server cannot hold the caller.
                self._in_background(self._release(conn, raw, abandoned=True))
            elif (
                conn.warm is None
                and not conn.waiting
                and not self.limiter.waiting
                and self._connections.get(conn.connection_id) is conn
                and (commit is not None or reusable(raw))
            ):
                conn.warm, conn.warm_commit = raw, commit
            elif commit is not None:
                self._in_background(self._release_after(conn, raw, commit))
            else:
                await self._release(conn, raw)

    def commit_after_answer(self, conn: Connection, raw: PgMcpConnection, sql: str) -> None:
        """End a READ ONLY transaction whose rows are all read with ``sql`` (``ROLLBACK``) and
        the session reset (``session.end_transaction``), without making the caller wait for it:
        the answer goes out while the database rolls back and resets.

        Nothing a read-only transaction did depends on its end, so the caller's result stands
        whatever the ROLLBACK does. The connection is handed to the next call (or to the pool)
        only once the reset is back; if it fails, the connection is reset in full or replaced.
        Call it last, inside ``acquire``.
        """
        self._commits[id(raw)] = asyncio.get_running_loop().create_task(self._commit(conn, raw, sql))

    async def _commit(self, conn: Connection, raw: PgMcpConnection, sql: str) -> None:
        try:
            async with asyncio.timeout(self._settings.connection_timeout):
                await session.end_transaction(raw, sql)
        except Exception as exc:  # also TimeoutError: a database that stopped answering
            with contextlib.suppress(AttributeError):  # detached: the connection is gone already
                raw.mark_dirty()
                if isinstance(exc, TimeoutError):
                    raw.terminate()
            log.warning(
                "read_only_commit_failed",
                connection_id=conn.connection_id,
                error=mask_secrets(str(exc).strip() or type(exc).__name__),
            )

    async def _release_after(
        self, conn: Connection, raw: PgMcpConnection, commit: asyncio.Task[None]
    ) -> None:
        await asyncio.wait((commit,))
        await self._release(conn, raw)

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that ``close`` waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)

    async def _release(self, conn: Connection, raw: PgMcpConnection, *, abandoned: bool = False) -> None:
        """Return a connection; one that cannot be cancelled and reset within CONNECTION_TIMEOUT is closed."""
        if abandoned:
            # Roll back ourselves once asyncpg's cancel has landed: its reset would do it too,
            # but logs an asyncio ERROR ("Resetting connection with an active transaction").
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._settings.connection_timeout):
                    while raw.is_in_transaction():
                        try:
                            await raw.execute("ROLLBACK")
                        except asyncpg.InterfaceError:  # the cancelled statement is still winding down
                            await asyncio.sleep(0.01)
        try:
            await conn.pool.release(raw, timeout=self._settings.connection_timeout)
        except (Exception, asyncio.CancelledError) as exc:  # asyncpg has terminated it already
            log.warning(
                "connection_discarded", connection_id=conn.connection_id, error=str(exc) or type(exc).__name__
            )
        if self.limiter.waiting:
            # A call elsewhere waits for a slot under MAX_CONNECTIONS: this connection, idle
            # now, is closed so that call can open one.
            self.make_room()
