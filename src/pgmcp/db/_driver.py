"""Every use of asyncpg's private API, in one place.

pgmcp goes below asyncpg's public API only here, each time where it pays (figures
from benchmarks/README.md) or where no public call exists. Nothing else in
``src/pgmcp`` touches ``._protocol``, ``._prepare`` or another underscore name of
asyncpg; ``tests/unit/test_driver_internals.py`` checks that every internal used
here is still shaped as used on the installed asyncpg (pyproject.toml bounds the
releases checked), that it does what pgmcp relies on, and that no other module
reaches for ``._protocol`` or ``._prepare``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import asyncpg.prepared_stmt
from asyncpg.pgproto import pgproto as _pgproto

__all__ = [
    "INFINITY_DATE",
    "INFINITY_DATETIME",
    "NEGATIVE_INFINITY_DATE",
    "NEGATIVE_INFINITY_DATETIME",
    "PGPROTO_UUID",
    "ResetWhenDirty",
    "add_text_codec",
    "close_one_idle",
    "fetch_at_most",
    "prepare_cached",
    "proxy_attached",
]

# asyncpg's codec module (``asyncpg.pgproto.pgproto``, not part of its documented API).
# asyncpg returns these very objects for PostgreSQL's +/-infinity dates and timestamps; a
# real 9999-12-31 is a different object, so identity tells them apart (db/convert/codecs.py,
# values.py). No public name exists for them.
INFINITY_DATE: Any = _pgproto.infinity_date
NEGATIVE_INFINITY_DATE: Any = _pgproto.negative_infinity_date
INFINITY_DATETIME: Any = _pgproto.infinity_datetime
NEGATIVE_INFINITY_DATETIME: Any = _pgproto.negative_infinity_datetime
# The class of the uuid values asyncpg decodes (its own fast UUID, a uuid.UUID subclass):
# keyed exactly in the encoders' type table, one dict lookup per value instead of an
# isinstance walk.
PGPROTO_UUID: type[Any] = type(_pgproto.UUID(b"\x00" * 16))


async def prepare_cached(conn: asyncpg.Connection, query: str) -> asyncpg.prepared_stmt.PreparedStatement:
    """``query`` prepared through asyncpg's statement cache: one Parse per distinct query text.

    Private: ``Connection._prepare(query, use_cache=True)``. The public ``prepare()``
    always parses anew, so every tool call would pay a Parse/Describe round trip before
    its Bind; from the cache a repeated query pays none. Not measured on its own: it saves
    one round trip per repeated call, and one round trip is ~0.1 ms at idle (the
    ``fetch_at_most`` row of benchmarks/README.md, "What changed").
    """
    stmt: asyncpg.prepared_stmt.PreparedStatement = await conn._prepare(query, use_cache=True)
    return stmt


async def fetch_at_most(
    conn: asyncpg.Connection,
    stmt: asyncpg.prepared_stmt.PreparedStatement,
    args: Sequence[Any],
    limit: int,
) -> list[asyncpg.Record]:
    """At most ``limit`` rows of ``stmt`` in one round trip: Bind and Execute(limit) on the unnamed portal.

    Private: ``conn._protocol.bind_execute(stmt._state, args, "", limit, True, None)``.
    What asyncpg's cursor sends too, but its named portal then costs a second round
    trip to close; the unnamed one needs none (COMMIT or the next statement drops it).
    Never more than ``limit`` rows are read, whatever the result's size. Measured:
    3 round trips per query instead of 4, −1 round trip (~0.1 ms at idle) per query
    (benchmarks/README.md, "What changed", the ``db/_driver.py`` ``fetch_at_most`` row).
    """
    rows: list[asyncpg.Record]
    rows, _status, _completed = await conn._protocol.bind_execute(stmt._state, args, "", limit, True, None)
    return rows


def proxy_attached(raw: Any) -> bool:
    """Whether ``raw`` (asyncpg's pool proxy) still holds its connection.

    Private: ``PoolConnectionProxy._con``, which asyncpg sets to None when it detaches
    the proxy (the connection was lost, or released). No public call says so, and the
    warm connection (kept for the next call instead of asyncpg's acquire + release,
    0.07–0.14 ms of CPU per call; ``executor.query`` CPU 0.37 → 0.27 ms, benchmarks/README.md)
    must know whether asyncpg has taken its connection back already.
    """
    return raw is not None and getattr(raw, "_con", None) is not None


def close_one_idle(pool: asyncpg.Pool) -> bool:
    """Close one idle connection parked in ``pool``; whether there was one.

    Private: ``Pool._holders``. asyncpg has no public call to close one idle
    connection; its own ``max_inactive_connection_lifetime`` closes them this way,
    holder by holder. Not a speed-up: MAX_CONNECTIONS (db/limits.py) needs a slot freed
    at once for a call waiting under the cap, not after POOL_IDLE_TIMEOUT.
    """
    for holder in getattr(pool, "_holders", ()):
        if holder.is_connected() and holder.is_idle():
            holder.terminate()
            return True
    return False


def add_text_codec(
    conn: asyncpg.Connection,
    oid: int,
    name: str,
    encoder: Callable[[Any], Any],
    decoder: Callable[[Any], Any],
) -> None:
    """Read and write the type ``oid`` (in pg_catalog) as PostgreSQL's text, without a catalog query.

    Private: ``conn._protocol.get_settings().add_python_codec(...)``. The public
    ``set_type_codec`` looks the type up in the catalog (a round trip per type, on every
    new connection) and refuses the polymorphic pseudo-types (``anyarray`` …) that
    columns of ``pg_stats`` have; their OIDs are fixed in every PostgreSQL, so the
    codec is installed directly. Without it asyncpg fails the whole statement
    ("could not resolve query result types").
    """
    settings = conn._protocol.get_settings()
    settings.add_python_codec(oid, name, "pg_catalog", [], "scalar", encoder, decoder, "text")


class ResetWhenDirty(asyncpg.Connection):  # type: ignore[misc]
    """A connection whose release skips asyncpg's reset round trip unless marked dirty.

    Relies on asyncpg's internals: ``Connection.reset()`` (what the pool runs on
    release) sends ``get_reset_query()``'s text and skips the round trip when it is
    empty. Every pgmcp call already ends its transaction with the session reset in the
    same round trip (db/session.py), so asyncpg's own reset would only repeat it, one more
    round trip per call (~0.1 ms at idle, as in benchmarks/README.md's ``fetch_at_most``
    row; the reset's own cost is its "session reset" table). A subclass says what the full reset is
    (:meth:`dirty_reset_query`); ``__slots__`` keeps asyncpg's slotted layout.
    """

    __slots__ = ("_pgmcp_dirty",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pgmcp_dirty = False

    def mark_dirty(self) -> None:
        """The next release sends the full reset (a failure, a cancellation, a reset that did not finish)."""
        self._pgmcp_dirty = True

    @abc.abstractmethod
    def dirty_reset_query(self) -> str:
        """The text of the full reset a dirty connection gets on release (db.connection's subclass)."""

    def get_reset_query(self) -> str:
        if self._pgmcp_dirty:
            self._pgmcp_dirty = False
            return self.dirty_reset_query()
        return ""
