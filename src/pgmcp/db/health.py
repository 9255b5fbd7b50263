"""Probing a connection's database: ``SELECT current_setting('server_version')`` within a
timeout, its latency, and the cached :class:`~pgmcp.db.connection.Health` that ``/health``
and ``test_connection`` read.

The registry probes every pool in the background every ``HEALTH_CHECK_INTERVAL`` seconds
(and ``test_connection`` on demand); ``/health`` only reads the cache, so it answers at
once even when a database hangs. A probe never raises: it reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from pgmcp.db.connection import Connection, Health, PgMcpConnection, now
from pgmcp.db.limits import ConnectionLimiter
from pgmcp.errors import from_postgres
from pgmcp.logs import get_logger

__all__ = ["probe"]

log = get_logger("pgmcp.db")

Acquire = Callable[[Connection], AbstractAsyncContextManager[PgMcpConnection]]


async def probe(conn: Connection, *, timeout: float, acquire: Acquire, limiter: ConnectionLimiter) -> Health:
    """Run the version query on one connection of ``conn`` (lent by ``acquire``) and update its cached health.

    A pool whose every connection is serving a call is not probed: its cached health stands.
    """
    before = conn.health.is_healthy
    stats = conn.pool_stats()
    if stats["idle_connections"] == 0 and (stats["open"] >= conn.pool_size or limiter.full):
        # Every connection is serving a call. Waiting for one would report a busy pool as a
        # dead database, and fail Kubernetes probes exactly when load peaks. A database that
        # stops answering those calls is caught by their deadline, which frees the pool.
        return conn.health
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout), acquire(conn) as c:
            version = await c.fetchval("SELECT current_setting('server_version')")
        conn.health = Health(
            is_healthy=True,
            latency_ms=round((time.perf_counter() - start) * 1000, 3),
            last_checked=now(),
            server_version=version,
        )
    except TimeoutError:
        conn.health = Health(
            is_healthy=False,
            last_checked=now(),
            error=f"no answer within {timeout:g} seconds",
            server_version=conn.health.server_version,
        )
    except Exception as exc:  # the probe must never raise: it reports
        err = from_postgres(exc)
        conn.health = Health(
            is_healthy=False,
            last_checked=now(),
            error=str(err),
            server_version=conn.health.server_version,
        )
    if before is True and not conn.health.is_healthy:
        log.warning("connection_failed", connection_id=conn.connection_id, error=conn.health.error)
    elif before is False and conn.health.is_healthy:
        log.info("connection_recovered", connection_id=conn.connection_id, latency_ms=conn.health.latency_ms)
    return conn.health
