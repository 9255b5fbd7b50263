"""One named connection: its record, its pool's numbers and health, and the connection class of its pools.

:class:`Connection` is what the registry keeps per ``connection_id`` (spec, pool, cached
health, the warm connection, tunnel, privileges); :class:`PgMcpConnection` is the class
asyncpg opens for every pool, which skips asyncpg's reset round trip on a clean release.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from pgmcp.config import ConnectionSpec
from pgmcp.db import session
from pgmcp.db._driver import ResetWhenDirty, proxy_attached

if TYPE_CHECKING:
    from pgmcp.db.privileges import Privileges
    from pgmcp.db.tunnel import SshTunnel

__all__ = ["Connection", "Health", "PgMcpConnection", "now", "reusable"]


class PgMcpConnection(ResetWhenDirty):
    """A pooled connection whose release skips asyncpg's reset round trip when it is clean.

    Every call's transaction ends with the session reset in the same round trip
    (``db/session.py``). Only a connection marked dirty (a failure, a cancellation,
    a reset that could not finish) gets the full reset when it goes back to the pool.
    """

    __slots__ = ()

    def dirty_reset_query(self) -> str:
        return session.full_reset()


@dataclass
class Health:
    is_healthy: bool | None = None
    latency_ms: float | None = None
    last_checked: str | None = None
    error: str | None = None
    server_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            # None: not probed yet (the health report counts it neither way).
            "is_healthy": self.is_healthy,
            "latency_ms": self.latency_ms,
            "last_checked": self.last_checked,
            "error": self.error,
            "server_version": self.server_version,
        }


@dataclass
class Connection:
    """One named connection: its spec (never its password), pool and cached health."""

    spec: ConnectionSpec
    pool: asyncpg.Pool
    pool_size: int
    source: str  # "env", "config", "runtime", "embedded"
    health: Health = field(default_factory=Health)
    # The last connection a call returned clean, kept out of asyncpg's pool for the next call:
    # asyncpg's acquire + release cost ~0.1 ms of CPU, a fifth of a whole SELECT 1 tool call.
    # Kept only while no call waits for asyncpg's pool, so it never starves a waiter.
    warm: Any = field(default=None, repr=False)
    # The warm connection's read-only COMMIT, still on its way when the call was answered.
    warm_commit: asyncio.Task[None] | None = field(default=None, repr=False)
    waiting: int = field(default=0, repr=False)
    # The SSH tunnel the pool connects through (ssh_host), closed with the pool.
    tunnel: SshTunnel | None = field(default=None, repr=False)
    # The login role's superuser flag and risky memberships, gathered when the pool opens
    # (or by the first call, if the database was down then): db/privileges.py.
    privileges: Privileges | None = field(default=None, repr=False)

    @property
    def connection_id(self) -> str:
        return self.spec.connection_id

    @property
    def readonly(self) -> bool:
        return self.spec.readonly

    def pool_stats(self) -> dict[str, int]:
        """``size`` is the pool's ceiling; ``open`` = idle + active; ``waiting``: calls waiting for one."""
        opened = self.pool.get_size()
        idle = min(self.pool.get_idle_size() + proxy_attached(self.warm), opened)
        return {
            "size": self.pool_size,
            "open": opened,
            "idle_connections": idle,
            "active_connections": opened - idle,
            "waiting": self.waiting,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "host": self.spec.host,
            "port": self.spec.port,
            "database": self.spec.database,
            "user": self.spec.user,
            "readonly": self.readonly,
            "ssl_mode": self.spec.ssl_mode,
            "source": self.source,
            "pool_stats": self.pool_stats(),
            **({"ssh_host": self.spec.ssh_host} if self.spec.ssh_host else {}),
            **(self.privileges.report() if self.privileges is not None else {}),
        }


def reusable(raw: PgMcpConnection) -> bool:
    """Clean enough to hand to the next call without asyncpg's reset: open, outside a
    transaction, and never marked dirty (what the reset would have had to undo)."""
    return (
        proxy_attached(raw)
        and not raw.is_closed()
        and not raw.is_in_transaction()
        and not getattr(raw, "_pgmcp_dirty", True)
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
