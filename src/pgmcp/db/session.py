"""A pooled session goes back exactly as it was opened: the text that ends every call.

Every call's transaction ends with one simple-query string of our own text, in one round
trip (SECURITY.md, "Session reset"):

    ROLLBACK (every READ ONLY transaction) or COMMIT;
    RESET SESSION AUTHORIZATION; RESET ROLE;      -- role and session_user (RESET ALL skips both)
    RESET ALL;                                    -- every other setting
    UNLISTEN *; CLOSE ALL;                        -- LISTEN, WITH HOLD cursors
    DISCARD TEMP; DISCARD SEQUENCES;              -- temporary objects, currval/lastval
    SELECT pg_advisory_unlock_all(), setseed(r),  -- session advisory locks, random()'s seed
           <check>                                -- SQL-level prepared statements left?

The utility statements cost next to nothing; the ``SELECT`` is most of the measured cost
(benchmarks/README.md). ``DEALLOCATE ALL`` is not used: it would also drop asyncpg's own
cache of our prepared statements. Those are protocol-level (``from_sql`` false in
``pg_prepared_statements``); a statement a function body prepared with ``EXECUTE 'PREPARE …'``
is ``from_sql``. The check makes the string fail — with a marker only this process knows —
when such a statement exists, and :func:`end_transaction` then sends :func:`full_reset`,
whose ``DO`` block deallocates exactly those. So the common case pays one cheap check and
the rare one a second round trip.

After ``ROLLBACK``/``COMMIT`` the rest of the string runs in one implicit transaction, so
the check failing undoes the reset statements before it too: :func:`full_reset` repeats them.
``setseed`` gets a fresh random seed per call: a seed a caller set would otherwise make the
next caller's ``random()`` predictable.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from pgmcp.db.connection import PgMcpConnection

__all__ = ["end_text", "end_transaction", "full_reset", "is_leftover_marker"]

# Only this process knows it: a deferred trigger cannot fake "the check failed".
_MARKER = f"pgmcp-reset-{secrets.token_hex(8)}"

_RESET = (
    "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; UNLISTEN *; CLOSE ALL; "
    "DISCARD TEMP; DISCARD SEQUENCES"
)

# A cast of a non-constant text to int fails only when a row exists (a constant in a CASE
# branch would be folded, and fail, at plan time).
_CHECK = (
    "(SELECT count(*) FROM pg_catalog.pg_prepared_statement() p "
    f"WHERE p.from_sql AND ('{_MARKER}:' || p.name)::int IS NULL)"
)

_DEALLOCATE = (
    "DO $pgmcp$DECLARE n text; BEGIN "
    "FOR n IN SELECT name FROM pg_catalog.pg_prepared_statements WHERE from_sql LOOP "
    "EXECUTE format('DEALLOCATE %I', n); END LOOP; END$pgmcp$"
)


def _seed() -> str:
    # setseed takes a double in [-1, 1]; 52 random bits are all a double can carry there.
    return repr(secrets.randbits(52) / (1 << 51) - 1.0)


def full_reset() -> str:
    """Everything, unconditionally, outside a transaction (asyncpg's reset on release rolls
    back first): after a failed call, or when the fast check found a prepared statement."""
    return (
        f"{_RESET}; SELECT pg_catalog.pg_advisory_unlock_all(), pg_catalog.setseed({_seed()}); {_DEALLOCATE};"
    )


def end_text(end: str) -> str:
    """The one string that ends a call's transaction (``end`` is ``ROLLBACK`` or ``COMMIT``)."""
    return (
        f"{end}; {_RESET}; SELECT pg_catalog.pg_advisory_unlock_all(), "
        f"pg_catalog.setseed({_seed()}), {_CHECK}"
    )


def is_leftover_marker(exc: BaseException) -> bool:
    """Whether ``exc`` is the fast check saying a SQL-level prepared statement was left."""
    return isinstance(exc, asyncpg.PostgresError) and _MARKER in str(exc)


async def end_transaction(raw: PgMcpConnection, end: str) -> None:
    """End the transaction and reset the session; a reset that fails marks it for asyncpg's.

    Raises what ``ROLLBACK``/``COMMIT`` raise (a deferred constraint, a lost connection);
    when the transaction ended but the reset could not finish, the connection is marked
    dirty so the pool's reset (:func:`full_reset`) runs before anyone reuses it.
    """
    try:
        await raw.execute(end_text(end))
    except asyncpg.PostgresError as exc:
        if not is_leftover_marker(exc):
            raise
        try:
            await raw.execute(full_reset())
        except Exception:
            raw.mark_dirty()
