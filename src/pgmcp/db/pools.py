"""Opening and closing one connection's pool: TLS, the SSH tunnel, the first connection, the
role's privileges, and the hosts ``add_connection`` may reach.

- A pool opens with no connection (``min_size=0``); every connection it opens takes a slot
  of the registry's :class:`~pgmcp.db.limits.ConnectionLimiter` (``MAX_CONNECTIONS``) and,
  through a tunnel, dials the forward's current local port.
- :func:`first_connection` opens the first one at once, so a bad host, password or
  certificate is reported by ``add_connection`` (TLS errors worded by :mod:`pgmcp.db.tls`).
- ``ALLOWED_DB_HOSTS`` (names, globs or CIDRs, checked after resolution) bounds what a
  runtime connection may reach (:func:`check_host_allowed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import ssl
from collections.abc import Callable
from typing import Any

import asyncpg

from pgmcp.config import ConnectionSpec, Settings
from pgmcp.db import privileges as role_privileges
from pgmcp.db._driver import proxy_attached
from pgmcp.db.connection import Connection, PgMcpConnection
from pgmcp.db.limits import ConnectionLimiter, watch
from pgmcp.db.privileges import Privileges
from pgmcp.db.tls import describe_tls_error, ssl_arg
from pgmcp.db.tunnel import LOCAL_HOST, SshTunnel
from pgmcp.errors import ConnectionFailed, LimitExceeded, QueryBlocked, from_postgres, mask_secrets
from pgmcp.logs import get_logger

__all__ = [
    "SERVER_SETTINGS",
    "check_host_allowed",
    "close_pool",
    "first_connection",
    "inspect_privileges",
    "open_pool",
]

log = get_logger("pgmcp.db")

# Sent in the startup packet, so they are the session's defaults: they survive RESET ALL
# and beat ALTER ROLE/DATABASE ... SET. standard_conforming_strings must be on, or
# 'a\' would end a literal differently for PostgreSQL than for the policy's parser.
SERVER_SETTINGS = {"standard_conforming_strings": "on", "TimeZone": "UTC", "application_name": "pgmcp"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    from pgmcp.db import convert

    setup = getattr(convert, "setup_connection_codecs", None)
    if setup is not None:
        await setup(conn)


def open_pool(
    settings: Settings,
    limiter: ConnectionLimiter,
    spec: ConnectionSpec,
    password: str | None,
    size: int,
    tunnel: SshTunnel | None = None,
) -> asyncpg.Pool:
    """A pool that opens no connection yet: each one it opens takes a slot of ``limiter``
    (and, through a tunnel, dials the forward's current local port)."""
    tls = ssl_arg(
        host=spec.host,
        mode=spec.ssl_mode or settings.db_ssl_mode,
        # One CA for every connection unless a connection names its own; a client
        # certificate identifies one user, so it is never borrowed from DB_SSL_CERT.
        root_cert=spec.ssl_root_cert or settings.db_ssl_root_cert,
        cert=spec.ssl_cert,
        key=spec.ssl_key,
        server_hostname=spec.host if tunnel is not None else None,
    )
    return asyncpg.create_pool(
        host=LOCAL_HOST if tunnel is not None else spec.host,
        port=spec.port,
        user=spec.user,
        password=password,
        database=spec.database,
        ssl=tls,
        min_size=0,
        max_size=size,
        timeout=settings.connection_timeout,
        command_timeout=None,
        max_inactive_connection_lifetime=settings.pool_idle_timeout,
        connect=limiter.connector(spec.connection_id, tunnel.connect if tunnel is not None else None),
        init=_init_connection,
        connection_class=PgMcpConnection,
        statement_cache_size=256,
        server_settings=SERVER_SETTINGS,
    )


async def first_connection(
    settings: Settings,
    spec: ConnectionSpec,
    pool: asyncpg.Pool,
    limit_exceeded: Callable[[str, float], LimitExceeded],
) -> None:
    """Open the pool and its first connection, so a bad host or password is reported by add().

    Raises:
        LimitExceeded: ``limit_exceeded(connection_id, timeout)``, when the time went waiting
            for a slot under MAX_CONNECTIONS.
        ConnectionFailed: the database could not be reached within ``CONNECTION_TIMEOUT``.
    """
    timeout = settings.connection_timeout
    with watch() as wait:
        try:
            async with asyncio.timeout(timeout):
                await pool
                await pool.release(await pool.acquire())
        except TimeoutError:
            if wait.for_slot:
                raise limit_exceeded(spec.connection_id, timeout) from None
            log.warning(
                "connection_failed", connection_id=spec.connection_id, host=spec.host, error="timeout"
            )
            raise ConnectionFailed(
                f"Could not connect to {spec.host}:{spec.port}/{spec.database} within "
                f"CONNECTION_TIMEOUT={timeout:g} seconds"
            ) from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ssl.SSLError) as exc:
            err = from_postgres(exc)
            mode = spec.ssl_mode or settings.db_ssl_mode
            message = describe_tls_error(exc, mode) or mask_secrets(str(exc).strip() or type(exc).__name__)
            log.warning("connection_failed", connection_id=spec.connection_id, host=spec.host, error=message)
            raise ConnectionFailed(
                f"Could not connect to {spec.host}:{spec.port}/{spec.database}: {message}"
            ) from err


async def inspect_privileges(settings: Settings, conn: Connection, raw: Any = None) -> Privileges:
    """The login role's privileges (logged once); raises the refusal of REFUSE_SUPERUSER or
    READONLY_ROLE (``query_blocked``)."""
    if raw is None:
        async with conn.pool.acquire(timeout=settings.connection_timeout) as c:
            found = await role_privileges.inspect(c, settings, conn.connection_id)
    else:
        found = await role_privileges.inspect(raw, settings, conn.connection_id)
    if found.warning:
        log.warning(
            "risky_privileges", connection_id=conn.connection_id, **found.as_dict(), warning=found.warning
        )
    if found.refusal:
        log.error("connection_refused", connection_id=conn.connection_id, error=found.refusal)
    role_privileges.refuse(found)
    return found


async def close_pool(settings: Settings, conn: Connection) -> None:
    """Close ``conn``'s pool (its warm connection first, once its COMMIT is back) and its tunnel."""
    if conn.warm_commit is not None:
        await asyncio.wait((conn.warm_commit,), timeout=settings.connection_timeout + 1)
    warm, conn.warm, conn.warm_commit = conn.warm, None, None
    if proxy_attached(warm):
        with contextlib.suppress(Exception):
            await conn.pool.release(warm, timeout=settings.connection_timeout)
    try:
        await asyncio.wait_for(conn.pool.close(), timeout=5)
    except (TimeoutError, Exception):
        conn.pool.terminate()
    if conn.tunnel is not None:
        await conn.tunnel.close()


async def check_host_allowed(settings: Settings, host: str, *, resolve: bool = True) -> None:
    """Refuse (``query_blocked``, reason ``host_not_allowed``) a host outside ALLOWED_DB_HOSTS.

    With ``resolve`` false (the database host behind an SSH tunnel, resolved by the SSH
    server) a name matches by name or glob, and only a literal address by CIDR.
    """
    allowed = settings.allowed_db_hosts
    if "*" in allowed:
        return
    lowered = host.lower()
    networks = []
    for entry in allowed:
        if fnmatch.fnmatch(lowered, entry.lower()):
            return
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.ip_network(entry, strict=False))
    if networks and not resolve:
        # A name the SSH server resolves: only a literal address can be matched here.
        with contextlib.suppress(ValueError):
            if any(ipaddress.ip_address(host) in n for n in networks):
                return
    elif networks and not host.startswith("/"):
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None),
                timeout=settings.connection_timeout,
            )
        except (OSError, TimeoutError):
            infos = []
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
        # Every address the name resolves to must be allowed, so DNS cannot smuggle one in.
        if addresses and all(any(a in n for n in networks) for a in addresses):
            return
    raise QueryBlocked(
        f"Host '{host}' is not in ALLOWED_DB_HOSTS; add_connection may only reach the hosts the operator allowed",
        reason="host_not_allowed",
    )
