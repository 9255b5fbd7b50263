"""The handbook's ``connection_manager``: registered connections, and pools whose reads obey the policy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pgmcp.errors import LimitExceeded

if TYPE_CHECKING:
    from pgmcp.extension.api import PostgreSQLMCPServer

__all__ = ["ConnectionManager", "GuardedConnection", "GuardedPool"]


class GuardedConnection:
    """What ``async with pool.acquire() as conn`` yields: asyncpg's read methods, through the policy.

    Every call is its own ``READ ONLY`` transaction on a pooled connection (asyncpg
    without an explicit transaction is autocommit per statement too). Rows are
    dicts of JSON values (``dict(row)`` works as with asyncpg records). For writes
    use :meth:`PostgreSQLMCPServer.execute_transaction`.
    """

    def __init__(self, server: PostgreSQLMCPServer, connection_id: str) -> None:
        self._server = server
        self.connection_id = connection_id

    async def fetch(self, query: str, *args: Any, fetch_size: int | None = None) -> list[dict[str, Any]]:
        """All rows of one read statement.

        Raises:
            LimitExceeded: more than ``fetch_size`` (``DEFAULT_FETCH_SIZE``) rows, or more
                than ``MAX_RESULT_BYTES``: aggregate, page, or use ``execute_query`` and
                look at ``truncated``. Plus everything :meth:`PostgreSQLMCPServer.execute_query` raises.
        """
        result = await self._server.execute_query(self.connection_id, query, args, fetch_size=fetch_size)
        if result.truncated:
            raise LimitExceeded(
                f"Result of fetch() is larger than allowed ({result.truncated_reason}); "
                "aggregate or page the query, or use execute_query and check truncated"
            )
        return result.rows

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        """The first row, or None."""
        result = await self._server.execute_query(self.connection_id, query, args, fetch_size=1)
        return result.rows[0] if result.rows else None

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """One value of the first row (``column`` by position), or None without rows."""
        row = await self.fetchrow(query, *args)
        return None if row is None else list(row.values())[column]


class GuardedPool(GuardedConnection):
    """The handbook's ``connection_manager.get_pool(id)``: a pool whose connections obey the policy."""

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[GuardedConnection]:
        """``async with pool.acquire() as conn``; no pool slot is held between statements."""
        yield GuardedConnection(self._server, self.connection_id)


class ConnectionManager:
    """The registered connections, as the handbook's ``connection_manager``. Never shows a password."""

    def __init__(self, server: PostgreSQLMCPServer) -> None:
        self._server = server

    def get_pool(self, connection_id: str) -> GuardedPool | None:
        """A :class:`GuardedPool` for ``connection_id``, or None when no such connection is registered.

        Its ``fetch``/``fetchrow``/``fetchval`` run through the execute path (policy,
        timeout, READ ONLY, caps, metrics); there is no raw asyncpg pool in this API.
        """
        if connection_id not in self._server._context.registry:
            return None
        return GuardedPool(self._server, connection_id)

    def connection_ids(self) -> list[str]:
        """The ids of the registered connections."""
        return [c.connection_id for c in self._server._context.registry.all()]

    def describe(self, connection_id: str) -> dict[str, Any]:
        """What ``list_connections`` shows for one connection.

        Raises:
            ConnectionNotFound: no such connection.
        """
        return self._server._context.registry.get(connection_id).describe()

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._server._context.registry
