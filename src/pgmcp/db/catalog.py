"""The function catalog of each connection: loaded from its database, cached, kept fresh.

The policy judges functions by what the target database's own ``pg_proc``,
``pg_operator`` and ``pg_cast`` say (:mod:`pgmcp.security.functions`). This
module loads those facts into a :class:`~pgmcp.security.functions.FunctionCatalog`
per connection and decides when to look again.

Freshness, without a round trip per call
----------------------------------------
* The catalog of a connection is loaded at start-up (:meth:`CatalogCache.preload`,
  best effort) or by its first call (four queries, one round trip each, ~10 ms for
  a stock database's ~3,300 functions).
* In steady state :meth:`CatalogCache.get` answers from memory. At most every
  :data:`CHECK_INTERVAL` seconds one call pays a **fingerprint** query (one round
  trip, a scan of ``pg_proc``, ``pg_operator`` and ``pg_cast``: row counts and the
  sum of their ``xmin``, which changes with every CREATE, CREATE OR REPLACE, ALTER
  and DROP of a function, operator or cast); only a changed fingerprint reloads.
* A statement this server lets through that can change the catalog (DDL through
  ``execute_transaction`` etc.) makes every call look again for :data:`DDL_WINDOW`
  seconds (:meth:`CatalogCache.note_ddl`), so "create, then call" through the server
  is judged by the new catalog.
* A statement that calls a function the cached catalog does not know makes its
  call look again once (:meth:`CatalogCache.verify`): the function may be new.

What remains: DDL by another client is seen within :data:`CHECK_INTERVAL`
seconds; a volatile overload or ``CREATE OR REPLACE`` of a known name made
elsewhere inside that window is judged by the old facts. The role
(``READONLY_ROLE``) and the READ ONLY transaction still stand behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from pgmcp.security.functions import FunctionCatalog

if TYPE_CHECKING:
    from pgmcp.db.connection import Connection, PgMcpConnection
    from pgmcp.db.registry import ConnectionRegistry

__all__ = ["CHECK_INTERVAL", "DDL_WINDOW", "CatalogCache", "load_catalog"]

CHECK_INTERVAL: Final = 2.0  # seconds between fingerprint checks in steady state
DDL_WINDOW: Final = 5.0  # seconds after a DDL statement during which every call checks

# Callable from SQL and volatile: a function taking `internal` or returning a trigger or
# handler type cannot be called by a statement, so it does not count.
# An aggregate counts as volatile when one of its support functions is (CREATE AGGREGATE
# takes no volatility of its own).
_FUNCTIONS: Final = """
SELECT p.proname, n.nspname,
       (p.provolatile = 'v' OR EXISTS (
            SELECT FROM pg_catalog.pg_aggregate a JOIN pg_catalog.pg_proc f
              ON f.oid IN (a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggmtransfn, a.aggminvtransfn,
                           a.aggmfinalfn)
            WHERE a.aggfnoid = p.oid AND f.provolatile = 'v'))
         AND NOT ('pg_catalog.internal'::pg_catalog.regtype::oid = ANY (p.proargtypes::oid[]))
         AND p.prorettype NOT IN (SELECT t.oid FROM pg_catalog.pg_type t
                                  WHERE t.typtype = 'p' AND (t.typname = 'trigger' OR t.typname = 'event_trigger'
                                        OR t.typname LIKE '%handler')),
       p.pronargs::int, p.pronargdefaults::int, p.provariadic <> 0
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind IN ('f', 'a', 'w')
"""
_VOLATILE_OPERATORS: Final = """
SELECT o.oprname, n.nspname, p.proname
FROM pg_catalog.pg_operator o
JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
WHERE p.provolatile = 'v'
"""
_VOLATILE_CASTS_AND_TYPES: Final = """
SELECT t.typname, n.nspname, p.proname, 'cast'
FROM pg_catalog.pg_cast c
JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc
WHERE p.provolatile = 'v'
UNION ALL
SELECT t.typname, n.nspname, p.proname, 'input'
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN pg_catalog.pg_proc p ON p.oid = t.typinput
WHERE p.provolatile = 'v'
UNION ALL
SELECT DISTINCT t.typname, '', '', 'type' FROM pg_catalog.pg_type t
"""
FINGERPRINT: Final = """
SELECT (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_catalog.pg_proc)
    || '/' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_catalog.pg_operator)
    || '/' || (SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_catalog.pg_cast)
"""


async def load_catalog(c: PgMcpConnection) -> tuple[FunctionCatalog, str]:
    """The catalog of the database ``c`` is connected to, and its fingerprint."""
    fingerprint = str(await c.fetchval(FINGERPRINT))
    functions = await c.fetch(_FUNCTIONS)
    operators = await c.fetch(_VOLATILE_OPERATORS)
    casts_and_types = await c.fetch(_VOLATILE_CASTS_AND_TYPES)
    catalog = FunctionCatalog.from_rows(
        functions=[(r[0], r[1], bool(r[2]), r[3], r[4], r[5]) for r in functions],
        operators=[(r[0], r[1], r[2]) for r in operators],
        casts=[(r[0], r[1], r[2]) for r in casts_and_types if r[3] == "cast"],
        inputs=[(r[0], r[1], r[2]) for r in casts_and_types if r[3] == "input"],
        types=[r[0] for r in casts_and_types if r[3] == "type"],
    )
    return catalog, fingerprint


@dataclass
class _Entry:
    conn: Connection
    catalog: FunctionCatalog
    fingerprint: str
    checked_at: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class CatalogCache:
    """One :class:`FunctionCatalog` per connection, refreshed as the module docstring says."""

    def __init__(self, registry: ConnectionRegistry, *, timeout: float) -> None:
        self._registry = registry
        self._timeout = timeout  # for the queries of one load or check (a database may hang)
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, asyncio.Lock] = {}  # one first load per connection at a time
        self._ddl_until = 0.0
        self.loads = 0  # full loads (tests, benchmarks)
        self.checks = 0  # fingerprint queries

    def fresh(self, conn: Connection) -> FunctionCatalog | None:
        """The catalog for ``conn`` if it needs no look at the database now (steady state), else None."""
        entry = self._entries.get(conn.connection_id)
        if entry is None or entry.conn is not conn:
            return None
        now = time.monotonic()
        if now - entry.checked_at < CHECK_INTERVAL and now >= self._ddl_until:
            return entry.catalog
        return None

    async def get(self, conn: Connection) -> FunctionCatalog:
        """The catalog for ``conn``: from memory in steady state, checked or loaded when due.

        Raises TimeoutError when the database does not answer within ``timeout``, and the
        errors of :meth:`ConnectionRegistry.acquire` and asyncpg.
        """
        catalog = self.fresh(conn)
        if catalog is not None:
            return catalog
        return await self._refresh(conn, self._entries.get(conn.connection_id), time.monotonic())

    async def verify(self, conn: Connection) -> FunctionCatalog:
        """The catalog for ``conn`` after a fingerprint check now (a name was unknown)."""
        return await self._refresh(conn, self._entries.get(conn.connection_id), time.monotonic(), force=True)

    async def preload(self, conns: Iterable[Connection], *, timeout: float) -> None:
        """Load the catalogs of the connections known at start, so no first call waits for one.

        Best effort: a database that did not answer the start-up probe, or does not answer
        now, is loaded by its first call instead.
        """
        for conn in conns:
            if not conn.health.is_healthy:
                continue
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await self.get(conn)

    def note_ddl(self) -> None:
        """A statement that may change functions, operators or casts is about to run."""
        self._ddl_until = time.monotonic() + DDL_WINDOW

    async def _refresh(
        self, conn: Connection, entry: _Entry | None, started: float, *, force: bool = False
    ) -> FunctionCatalog:
        if entry is None or entry.conn is not conn:
            async with self._loading.setdefault(conn.connection_id, asyncio.Lock()):
                entry = self._entries.get(conn.connection_id)
                if entry is not None and entry.conn is conn:
                    return entry.catalog  # loaded by a call that held the lock first
                async with self._registry.acquire(conn) as c, self._bounded(c):
                    catalog, fingerprint = await load_catalog(c)
                self.loads += 1
                self._entries[conn.connection_id] = _Entry(conn, catalog, fingerprint, started)
                return catalog
        async with entry.lock:
            # Another call may have checked while this one waited for the lock.
            if entry.checked_at >= started and not force:
                return entry.catalog
            async with self._registry.acquire(conn) as c, self._bounded(c):
                fingerprint = str(await c.fetchval(FINGERPRINT))
                self.checks += 1
                if fingerprint != entry.fingerprint:
                    entry.catalog, entry.fingerprint = await load_catalog(c)
                    self.loads += 1
            entry.checked_at = time.monotonic()
            return entry.catalog

    @contextlib.asynccontextmanager
    async def _bounded(self, c: PgMcpConnection) -> AsyncIterator[None]:
        """At most ``timeout`` seconds for the queries; a connection that does not answer is closed."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except TimeoutError:
            c.terminate()  # its state is unknown; the pool replaces it
            raise
