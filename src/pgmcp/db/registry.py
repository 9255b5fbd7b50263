"""The connection registry: named asyncpg pools, their limits, TLS, tunnels, and their health.

- ``MAX_CONNECTIONS`` caps the connections actually open, all pools together
  (:mod:`pgmcp.db.limits`); ``pool_size`` is each pool's own ceiling. Pools
  open with one connection, grow on demand, and close connections idle for
  ``POOL_IDLE_TIMEOUT`` seconds (the warm connection stays: the one call's worth
  a pool keeps open). With the cap reached, a call waits up to
  ``CONNECTION_TIMEOUT`` while an idle connection of another pool is closed to
  make room, then fails with ``limit_exceeded`` naming what holds the connections.
- ``ALLOWED_DB_HOSTS`` (names, globs or CIDRs, checked after resolution) and
  ``ALLOW_RUNTIME_CONNECTIONS`` bound what ``add_connection`` may reach, so a
  caller cannot use the server to probe the network. Through an SSH tunnel both the
  ``ssh_host`` and the database ``host`` must be allowed; ``host`` is matched as the SSH
  server will see it (by name or glob, or as an address in a CIDR), never resolved here.
- Opening and closing a pool (TLS, tunnel, first connection, privileges, allowed hosts) is
  :mod:`pgmcp.db.pools`; TLS (``ssl_mode`` and certificate files) :mod:`pgmcp.db.tls`; SSH
  tunnels, owned by their ``Connection`` and reopened on demand, :mod:`pgmcp.db.tunnel`; the
  per-connection record and the pools' connection class :mod:`pgmcp.db.connection`.
- Health is probed in the background every ``HEALTH_CHECK_INTERVAL`` seconds
  (and on demand by ``test_connection``; :mod:`pgmcp.db.health`); ``/health`` only reads
  the cache, so it answers at once even when a database hangs.
- Lending a connection to a call (``acquire``: the warm connection, a read's ROLLBACK after
  the answer, the release, room under MAX_CONNECTIONS) is :mod:`pgmcp.db.lending`; here are
  the lookup, ``add`` and ``remove``, the probe loop and the lifespan.
- A pool recovers by itself after its database restarts: asyncpg reconnects on
  the next acquire, and broken connections are discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pgmcp.config import ConnectionSpec, Settings, resolve_password
from pgmcp.db import health, pools
from pgmcp.db.connection import Connection, Health, PgMcpConnection
from pgmcp.db.lending import Lender
from pgmcp.db.privileges import Privileges
from pgmcp.db.tunnel import SshTunnel
from pgmcp.errors import (
    ConnectionFailed,
    ConnectionNotFound,
    InvalidInput,
    LimitExceeded,
    QueryBlocked,
)
from pgmcp.logs import get_logger

# Connection and PgMcpConnection live in db/connection.py; imported from here as ever.
__all__ = ["Connection", "ConnectionRegistry", "PgMcpConnection"]

log = get_logger("pgmcp.db")


class ConnectionRegistry:
    """Named pools, opened in the server's lifespan and closed with it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connections: dict[str, Connection] = {}
        self._lock = asyncio.Lock()
        self._probe_task: asyncio.Task[None] | None = None
        self.on_change: list[Callable[[], None]] = []
        self._lender = Lender(settings, self._connections)
        self.limiter = self._lender.limiter

    # --- lookup ---------------------------------------------------------------

    def get(self, connection_id: str) -> Connection:
        try:
            return self._connections[connection_id]
        except KeyError:
            raise ConnectionNotFound(connection_id) from None

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def all(self) -> list[Connection]:
        return list(self._connections.values())

    def pool_stats(self) -> dict[str, dict[str, int]]:
        return {cid: c.pool_stats() for cid, c in self._connections.items()}

    def health_snapshot(self) -> dict[str, dict[str, Any]]:
        return {cid: c.health.as_dict() for cid, c in self._connections.items()}

    def open_connections(self) -> int:
        """Connections open (or being opened) across every pool: what MAX_CONNECTIONS caps."""
        return self.limiter.open

    # --- add / remove -----------------------------------------------------------

    async def add(
        self, spec: ConnectionSpec, *, source: str = "runtime", replace: bool = False
    ) -> tuple[Connection, str | None]:
        """Open a pool for ``spec`` and register it.

        Returns the connection and a note (e.g. that the pool size was reduced).

        Raises:
            InvalidInput: the id is taken (and ``replace`` is false) or the spec is unusable.
            QueryBlocked: runtime connections are disabled or the host is not allowed.
            LimitExceeded: every one of ``MAX_CONNECTIONS`` stayed busy for ``CONNECTION_TIMEOUT``.
            ConnectionFailed: the database could not be reached within ``CONNECTION_TIMEOUT``.
        """
        settings = self._settings
        if source == "runtime":
            if not settings.allow_runtime_connections:
                raise QueryBlocked(
                    "Runtime connections are disabled (ALLOW_RUNTIME_CONNECTIONS=false); "
                    "declare connections in MCP_CONFIG_FILE instead",
                    reason="runtime_connections_disabled",
                )
            if spec.ssh_host:
                await pools.check_host_allowed(settings, spec.ssh_host)
                await pools.check_host_allowed(settings, spec.host, resolve=False)
            else:
                await pools.check_host_allowed(settings, spec.host)
        password = resolve_password(spec)
        async with self._lock:
            existing = self._connections.get(spec.connection_id)
            if existing is not None and not replace:
                raise InvalidInput(
                    f"Connection '{spec.connection_id}' already exists; remove_connection it first "
                    "or choose another connection_id"
                )
            size = spec.pool_size if spec.pool_size is not None else settings.default_pool_size
            note = None
            if size > settings.max_connections:
                note = (
                    f"pool_size {size} is more than MAX_CONNECTIONS={settings.max_connections}: "
                    f"the pool never holds more than {settings.max_connections} connections"
                )
            tunnel = SshTunnel(spec, timeout=settings.connection_timeout) if spec.ssh_host else None
            try:
                pool = pools.open_pool(settings, self.limiter, spec, password, size, tunnel)
                try:
                    await pools.first_connection(settings, spec, pool, self._lender.limit_exceeded)
                except (ConnectionFailed, LimitExceeded) as exc:
                    if source == "runtime":
                        with contextlib.suppress(Exception):
                            pool.terminate()
                        raise
                    # A declared connection whose database is down at start-up stays registered
                    # with an empty pool: calls fail with connection_failed until the database
                    # answers, then the pool fills by itself.
                    log.warning("connection_failed", connection_id=spec.connection_id, error=str(exc))
            except BaseException:
                if tunnel is not None:
                    await tunnel.close()
                raise
            conn = Connection(spec=spec, pool=pool, pool_size=size, source=source, tunnel=tunnel)
            if pool.get_size():  # a pool that is open (not the empty one of a database down)
                try:
                    conn.privileges = await self.inspect_privileges(conn)
                except BaseException:
                    await self._close_pool(conn)  # and its tunnel
                    raise
            if existing is not None:
                await self._close_pool(existing)
            self._connections[spec.connection_id] = conn
        await self.probe(conn, timeout=settings.connection_timeout)
        log.info(
            "connection_added",
            connection_id=spec.connection_id,
            host=spec.host,
            database=spec.database,
            pool_size=size,
            readonly=spec.readonly,
            source=source,
            **(conn.privileges.as_dict() if conn.privileges is not None else {}),
        )
        return conn, note

    async def inspect_privileges(self, conn: Connection, raw: Any = None) -> Privileges:
        """The login role's privileges (logged once); raises the refusal of REFUSE_SUPERUSER or
        READONLY_ROLE (``query_blocked``)."""
        return await pools.inspect_privileges(self._settings, conn, raw)

    async def remove(self, connection_id: str) -> None:
        async with self._lock:
            conn = self.get(connection_id)
            del self._connections[connection_id]
        await self._close_pool(conn)
        log.info("connection_removed", connection_id=connection_id)

    async def _close_pool(self, conn: Connection) -> None:
        await pools.close_pool(self._settings, conn)

    # --- health -----------------------------------------------------------------

    async def probe(self, conn: Connection, *, timeout: float) -> Health:
        """Run the version query on one connection and update its cached health (db/health.py)."""
        return await health.probe(conn, timeout=timeout, acquire=self.acquire, limiter=self.limiter)

    async def probe_all(self, timeout: float | None = None) -> None:
        probe_timeout = timeout if timeout is not None else min(5.0, self._settings.connection_timeout)
        await asyncio.gather(*(self.probe(c, timeout=probe_timeout) for c in self.all()))

    async def _probe_loop(self) -> None:
        interval = self._settings.health_check_interval
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await self.probe_all()

    def start_probing(self) -> None:
        if self._probe_task is None:
            self._probe_task = asyncio.create_task(self._probe_loop(), name="pgmcp-health-probe")

    # --- lending a connection to a call (db/lending.py) --------------------------------

    def acquire(self, conn: Connection) -> AbstractAsyncContextManager[PgMcpConnection]:
        """A pooled connection within ``CONNECTION_TIMEOUT``, or ``limit_exceeded`` naming the pool."""
        return self._lender.acquire(conn)

    def commit_after_answer(self, conn: Connection, raw: PgMcpConnection, sql: str) -> None:
        """End a READ ONLY transaction with ``sql`` and the session reset without the caller
        waiting for it (:meth:`pgmcp.db.lending.Lender.commit_after_answer`). Call it last,
        inside :meth:`acquire`."""
        self._lender.commit_after_answer(conn, raw, sql)

    # --- lifespan ---------------------------------------------------------------

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        if self._lender.releasing:  # connections of abandoned calls, being cancelled and reset
            await asyncio.wait(set(self._lender.releasing), timeout=self._settings.connection_timeout + 1)
        conns = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(self._close_pool(c) for c in conns), return_exceptions=True)
