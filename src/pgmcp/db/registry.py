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
- TLS (``ssl_mode`` and certificate files) is :mod:`pgmcp.db.tls`; SSH tunnels, owned by
  their ``Connection`` and reopened on demand, are :mod:`pgmcp.db.tunnel`.
- Health is probed in the background every ``HEALTH_CHECK_INTERVAL`` seconds
  (and on demand by ``test_connection``); ``/health`` only reads the cache, so
  it answers at once even when a database hangs.
- A pool recovers by itself after its database restarts: asyncpg reconnects on
  the next acquire, and broken connections are discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from pgmcp.config import ConnectionSpec, Settings, resolve_password
from pgmcp.db import privileges as role_privileges
from pgmcp.db import session
from pgmcp.db.limits import ConnectionLimiter, watch
from pgmcp.db.privileges import Privileges
from pgmcp.db.tls import describe_tls_error, ssl_arg
from pgmcp.db.tunnel import LOCAL_HOST, SshTunnel
from pgmcp.errors import (
    ConnectionFailed,
    ConnectionNotFound,
    InvalidInput,
    LimitExceeded,
    PgMcpError,
    QueryBlocked,
    from_postgres,
    mask_secrets,
)
from pgmcp.logs import get_logger

__all__ = ["Connection", "ConnectionRegistry", "PgMcpConnection"]

log = get_logger("pgmcp.db")


class PgMcpConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection whose release skips asyncpg's reset round trip when it is clean.

    Every call's transaction ends with the session reset in the same round trip
    (``db/session.py``). Only a connection marked dirty (a failure, a cancellation,
    a reset that could not finish) gets the full reset when it goes back to the pool.
    """

    __slots__ = ("_pgmcp_dirty",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pgmcp_dirty = False

    def mark_dirty(self) -> None:
        self._pgmcp_dirty = True

    def get_reset_query(self) -> str:
        if self._pgmcp_dirty:
            self._pgmcp_dirty = False
            return session.full_reset()
        return ""


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
        idle = min(self.pool.get_idle_size() + _attached(self.warm), opened)
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


# Sent in the startup packet, so they are the session's defaults: they survive RESET ALL
# and beat ALTER ROLE/DATABASE ... SET. standard_conforming_strings must be on, or
# 'a\' would end a literal differently for PostgreSQL than for the policy's parser.
SERVER_SETTINGS = {"standard_conforming_strings": "on", "TimeZone": "UTC", "application_name": "pgmcp"}


async def _init_connection(conn: asyncpg.Connection) -> None:
    from pgmcp.db import convert

    setup = getattr(convert, "setup_connection_codecs", None)
    if setup is not None:
        await setup(conn)


class ConnectionRegistry:
    """Named pools, opened in the server's lifespan and closed with it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._connections: dict[str, Connection] = {}
        self._lock = asyncio.Lock()
        self._probe_task: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()
        self._commits: dict[int, asyncio.Task[None]] = {}  # id(connection) -> its commit_after_answer
        self.on_change: list[Callable[[], None]] = []
        self.limiter = ConnectionLimiter(settings.max_connections, self._make_room)

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
                await self._check_host_allowed(spec.ssh_host)
                await self._check_host_allowed(spec.host, resolve=False)
            else:
                await self._check_host_allowed(spec.host)
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
                pool = self._open_pool(spec, password, size, tunnel)
                try:
                    await self._first_connection(spec, pool)
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
        if raw is None:
            async with conn.pool.acquire(timeout=self._settings.connection_timeout) as c:
                found = await role_privileges.inspect(c, self._settings, conn.connection_id)
        else:
            found = await role_privileges.inspect(raw, self._settings, conn.connection_id)
        if found.warning:
            log.warning(
                "risky_privileges", connection_id=conn.connection_id, **found.as_dict(), warning=found.warning
            )
        if found.refusal:
            log.error("connection_refused", connection_id=conn.connection_id, error=found.refusal)
        role_privileges.refuse(found)
        return found

    async def remove(self, connection_id: str) -> None:
        async with self._lock:
            conn = self.get(connection_id)
            del self._connections[connection_id]
        await self._close_pool(conn)
        log.info("connection_removed", connection_id=connection_id)

    def _open_pool(
        self, spec: ConnectionSpec, password: str | None, size: int, tunnel: SshTunnel | None = None
    ) -> asyncpg.Pool:
        """A pool that opens no connection yet: each one it opens takes a slot of the limiter
        (and, through a tunnel, dials the forward's current local port)."""
        tls = ssl_arg(
            host=spec.host,
            mode=spec.ssl_mode or self._settings.db_ssl_mode,
            # One CA for every connection unless a connection names its own; a client
            # certificate identifies one user, so it is never borrowed from DB_SSL_CERT.
            root_cert=spec.ssl_root_cert or self._settings.db_ssl_root_cert,
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
            timeout=self._settings.connection_timeout,
            command_timeout=None,
            max_inactive_connection_lifetime=self._settings.pool_idle_timeout,
            connect=self.limiter.connector(
                spec.connection_id, tunnel.connect if tunnel is not None else None
            ),
            init=_init_connection,
            connection_class=PgMcpConnection,
            statement_cache_size=256,
            server_settings=SERVER_SETTINGS,
        )

    async def _first_connection(self, spec: ConnectionSpec, pool: asyncpg.Pool) -> None:
        """Open the pool and its first connection, so a bad host or password is reported by add()."""
        timeout = self._settings.connection_timeout
        with watch() as wait:
            try:
                async with asyncio.timeout(timeout):
                    await pool
                    await pool.release(await pool.acquire())
            except TimeoutError:
                if wait.for_slot:
                    raise self._limit_exceeded(spec.connection_id, timeout) from None
                log.warning(
                    "connection_failed", connection_id=spec.connection_id, host=spec.host, error="timeout"
                )
                raise ConnectionFailed(
                    f"Could not connect to {spec.host}:{spec.port}/{spec.database} within "
                    f"CONNECTION_TIMEOUT={timeout:g} seconds"
                ) from None
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ssl.SSLError) as exc:
                err = from_postgres(exc)
                mode = spec.ssl_mode or self._settings.db_ssl_mode
                message = describe_tls_error(exc, mode) or mask_secrets(
                    str(exc).strip() or type(exc).__name__
                )
                log.warning(
                    "connection_failed", connection_id=spec.connection_id, host=spec.host, error=message
                )
                raise ConnectionFailed(
                    f"Could not connect to {spec.host}:{spec.port}/{spec.database}: {message}"
                ) from err

    def _limit_exceeded(self, connection_id: str, timeout: float) -> LimitExceeded:
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

    def _make_room(self) -> bool:
        """Close one idle connection, so its slot goes to a connection attempt waiting for one.

        First a connection parked in asyncpg's pool (of the pool with the most of them), then
        a warm one. A pool whose own calls wait for one of its connections keeps its idle ones:
        they are about to be handed out. asyncpg has no public call to close one idle
        connection, so this walks its holders (what its own idle timeout closes, the same way).
        """
        pools = sorted(self._connections.values(), key=lambda c: c.pool.get_idle_size(), reverse=True)
        for c in pools:
            if c.pool.get_idle_size() == 0 or c.waiting > self.limiter.waiting_for(c.connection_id):
                continue
            for holder in getattr(c.pool, "_holders", ()):
                if holder.is_connected() and holder.is_idle():
                    holder.terminate()
                    return True
        for c in self._connections.values():
            warm = c.warm
            if _attached(warm) and (c.warm_commit is None or c.warm_commit.done()):
                c.warm, c.warm_commit = None, None
                warm.terminate()  # detaches the proxy and frees its holder
                return True
        return False

    async def _close_pool(self, conn: Connection) -> None:
        if conn.warm_commit is not None:
            await asyncio.wait((conn.warm_commit,), timeout=self._settings.connection_timeout + 1)
        warm, conn.warm, conn.warm_commit = conn.warm, None, None
        if _attached(warm):
            with contextlib.suppress(Exception):
                await conn.pool.release(warm, timeout=self._settings.connection_timeout)
        try:
            await asyncio.wait_for(conn.pool.close(), timeout=5)
        except (TimeoutError, Exception):
            conn.pool.terminate()
        if conn.tunnel is not None:
            await conn.tunnel.close()

    async def _check_host_allowed(self, host: str, *, resolve: bool = True) -> None:
        allowed = self._settings.allowed_db_hosts
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
                    timeout=self._settings.connection_timeout,
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

    # --- health -----------------------------------------------------------------

    async def probe(self, conn: Connection, *, timeout: float) -> Health:
        """Run ``SELECT version()`` on one connection and update its cached health."""
        before = conn.health.is_healthy
        stats = conn.pool_stats()
        if stats["idle_connections"] == 0 and (stats["open"] >= conn.pool_size or self.limiter.full):
            # Every connection is serving a call. Waiting for one would report a busy pool as a
            # dead database, and fail Kubernetes probes exactly when load peaks. A database that
            # stops answering those calls is caught by their deadline, which frees the pool.
            return conn.health
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout), self.acquire(conn) as c:
                version = await c.fetchval("SELECT current_setting('server_version')")
            conn.health = Health(
                is_healthy=True,
                latency_ms=round((time.perf_counter() - start) * 1000, 3),
                last_checked=_now(),
                server_version=version,
            )
        except TimeoutError:
            conn.health = Health(
                is_healthy=False,
                last_checked=_now(),
                error=f"no answer within {timeout:g} seconds",
                server_version=conn.health.server_version,
            )
        except Exception as exc:  # the probe must never raise: it reports
            err = from_postgres(exc)
            conn.health = Health(
                is_healthy=False,
                last_checked=_now(),
                error=str(err),
                server_version=conn.health.server_version,
            )
        if before is True and not conn.health.is_healthy:
            log.warning("connection_failed", connection_id=conn.connection_id, error=conn.health.error)
        elif before is False and conn.health.is_healthy:
            log.info(
                "connection_recovered", connection_id=conn.connection_id, latency_ms=conn.health.latency_ms
            )
        return conn.health

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

    # --- lifespan ---------------------------------------------------------------

    async def close(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        if self._releasing:  # connections of abandoned calls, being cancelled and reset
            await asyncio.wait(set(self._releasing), timeout=self._settings.connection_timeout + 1)
        conns = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(self._close_pool(c) for c in conns), return_exceptions=True)

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
        if raw is not None and not _reusable(raw):
            # A connection lost while warm went back to asyncpg's pool already (its proxy is
            # detached); a closed one, or one whose COMMIT failed, is handed back to be reset
            # or replaced.
            if _attached(raw):
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
                raise self._limit_exceeded(conn.connection_id, timeout) from None
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
                and (commit is not None or _reusable(raw))
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
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

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
            self._make_room()


def _reusable(raw: PgMcpConnection) -> bool:
    """Clean enough to hand to the next call without asyncpg's reset: open, outside a
    transaction, and never marked dirty (what the reset would have had to undo)."""
    return (
        _attached(raw)
        and not raw.is_closed()
        and not raw.is_in_transaction()
        and not getattr(raw, "_pgmcp_dirty", True)
    )


def _attached(raw: Any) -> bool:
    """Whether ``raw`` (asyncpg's pool proxy) still holds its connection: asyncpg detaches the
    proxy when the connection is lost, and takes the connection back itself."""
    return raw is not None and getattr(raw, "_con", None) is not None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
