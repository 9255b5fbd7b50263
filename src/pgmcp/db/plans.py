"""Plans and hypothetical indexes inside one call of the execute path (``Executor.plan_session``).

A :class:`PlanSession` is what a tool gets instead of a connection: it can
EXPLAIN the statements the policy already passed as reads, run pgmcp's own
catalog SQL, and create hypothetical indexes with ``hypopg``. Hypothetical
indexes are session state, not transactional: the executor resets them
(``hypopg_reset()``) before the transaction ends, and a call that fails after
creating one closes its connection rather than hand the session back to the
pool with them.

Normalised statements (``pg_stat_statements`` shows ``WHERE id = $1``) are
planned as generic plans: ``PREPARE`` with the server's inferred parameter
types, ``plan_cache_mode = force_generic_plan`` and ``EXPLAIN EXECUTE`` with
NULLs, which the generic plan never looks at. That works on every version
(``EXPLAIN (GENERIC_PLAN)`` exists only from PostgreSQL 16).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from pgmcp.db.convert import convert_params
from pgmcp.db.registry import PgMcpConnection
from pgmcp.errors import InvalidInput, PgMcpError, from_postgres

__all__ = ["PlanSession"]

_names = itertools.count(1)


def _plan_document(raw: Any) -> dict[str, Any]:
    document = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    if isinstance(document, list) and document:
        document = document[0]
    return document if isinstance(document, dict) else {}


class PlanSession:
    """EXPLAIN and hypothetical indexes for statements the policy passed (see module docstring)."""

    def __init__(self, conn: PgMcpConnection, allowed: Sequence[str], *, verbose: bool = False) -> None:
        self._conn = conn
        #: The statements the policy passed: the only ones :meth:`explain` accepts.
        self.allowed = frozenset(allowed)
        self._options = "VERBOSE, FORMAT JSON" if verbose else "FORMAT JSON"
        self._hypothetical = False
        self._prepared: list[str] = []
        self._hypopg: bool | None = None

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """pgmcp's own SQL (catalog and statistics views), identifiers only as parameters."""
        rows: list[asyncpg.Record] = await self._guarded(lambda: self._conn.fetch(sql, *args))
        return rows

    async def explain(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """The plan document (``{"Plan": …}``) of an allowed statement; a generic plan if it has
        ``$n`` placeholders and no ``params``.

        Raises:
            DatabaseError: PostgreSQL could not plan it (the session stays usable).
        """
        if query not in self.allowed:
            raise InvalidInput("internal: a statement the policy did not check cannot be explained")
        text = query.strip().rstrip(";").strip()
        document: dict[str, Any] = await self._guarded(lambda: self._explain(text, params))
        return document

    async def _explain(self, text: str, params: Sequence[Any]) -> dict[str, Any]:
        sql = f"EXPLAIN ({self._options}) {text}"
        if params:
            stmt = await self._conn._prepare(sql, use_cache=True)
            args = convert_params(list(params), stmt.get_parameters())
            return _plan_document(await stmt.fetchval(*args))
        stmt = await self._conn._prepare(sql, use_cache=True)
        if not stmt.get_parameters():
            return _plan_document(await stmt.fetchval())
        # Placeholders without values: a generic plan of a prepared statement.
        name = f"pgmcp_plan_{next(_names)}"
        await self._conn.fetch("SET LOCAL plan_cache_mode = force_generic_plan")
        await self._conn.fetch(f"PREPARE {name} AS {text}")
        # PREPARE is not undone by a rollback: until DEALLOCATE, reset() must run.
        self._prepared.append(name)
        nulls = ", ".join(["NULL"] * len(stmt.get_parameters()))
        raw = await self._conn.fetchval(f"EXPLAIN ({self._options}) EXECUTE {name}({nulls})")
        await self._conn.fetch(f"DEALLOCATE {name}")
        self._prepared.remove(name)
        return _plan_document(raw)

    @property
    def dirty(self) -> bool:
        """Session state this call left behind (hypothetical indexes, prepared statements)."""
        return self._hypothetical or bool(self._prepared)

    async def has_hypopg(self) -> bool:
        """Whether the ``hypopg`` extension is created in this database."""
        if self._hypopg is None:
            rows = await self.fetch("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
            self._hypopg = bool(rows)
        return self._hypopg

    async def hypothetical_index(self, definition: str) -> tuple[int, str, int | None]:
        """Create a hypothetical index from a CREATE INDEX statement pgmcp built.

        Returns ``(oid, name, estimated_size_bytes)``; the name is what plans show.
        """
        self._hypothetical = True
        rows = await self.fetch("SELECT indexrelid, indexname FROM hypopg_create_index($1)", definition)
        oid, name = int(rows[0]["indexrelid"]), str(rows[0]["indexname"])
        size = await self.fetch("SELECT hypopg_relation_size($1::oid)::bigint AS size", oid)
        return oid, name, int(size[0]["size"]) if size and size[0]["size"] is not None else None

    async def drop_hypothetical(self, oid: int) -> None:
        await self.fetch("SELECT hypopg_drop_index($1::oid)", oid)

    async def reset(self) -> None:
        """Forget every hypothetical index (``hypopg_reset()``) and prepared statement of this call."""
        if self._hypothetical:
            await self._conn.fetch("SELECT hypopg_reset()")
            self._hypothetical = False
        for name in list(self._prepared):
            await self._conn.fetch(f"DEALLOCATE {name}")
            self._prepared.remove(name)

    async def _guarded(self, run: Any) -> Any:
        # A savepoint per statement: one statement PostgreSQL refuses (a normalised
        # query whose parameter type cannot be inferred) must not abort the others, nor
        # the transaction in which hypopg_reset() still has to run.
        await self._conn.execute("SAVEPOINT pgmcp_plan")
        try:
            result = await run()
        except asyncpg.PostgresError as exc:
            await self._conn.execute("ROLLBACK TO SAVEPOINT pgmcp_plan")
            failure: PgMcpError = from_postgres(exc)
            raise failure from exc
        await self._conn.execute("RELEASE SAVEPOINT pgmcp_plan")
        return result
