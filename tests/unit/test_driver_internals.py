"""The private asyncpg API pgmcp uses (for speed, or where no public one exists) is still there, shaped as pgmcp calls it.

Every use is in src/pgmcp/db/_driver.py, each with what it saves; no other module of
src/pgmcp reaches for ``._protocol`` or ``._prepare`` (checked below).

pyproject.toml bounds asyncpg to the releases these were checked on; when a new
release moves one of them, the failing test names the attribute and the place in
pgmcp that uses it, so an upgrade cannot break a release silently. The shapes are
checked first (no database needed), then what pgmcp relies on them to do, on the
real PostgreSQL.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import asyncpg.pgproto.pgproto
import asyncpg.pool
import asyncpg.prepared_stmt
import asyncpg.protocol
import asyncpg.protocol.protocol
import pytest
from packaging.requirements import Requirement

from pgmcp.db._driver import fetch_at_most, prepare_cached, proxy_attached
from pgmcp.db.connection import PgMcpConnection
from tests.conftest import PgServer

ROOT = Path(__file__).resolve().parents[2]
VERSION = importlib.metadata.version("asyncpg")


def _params(fn: Callable[..., object]) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _slots(cls: type) -> set[str]:
    return {slot for klass in cls.__mro__ for slot in getattr(klass, "__slots__", ())}


# (what, where pgmcp uses it, check): each check returns None when the internal is as pgmcp uses it.
INTERNALS: list[tuple[str, str, Callable[[], str | None]]] = [
    (
        "Connection._prepare(query, *, use_cache=...)",
        "db/_driver.py prepare_cached: the statement cache, one Parse per distinct query",
        lambda: (
            None
            if _params(asyncpg.Connection._prepare)[:2] == ["self", "query"]
            and inspect.signature(asyncpg.Connection._prepare).parameters["use_cache"].kind
            is inspect.Parameter.KEYWORD_ONLY
            else f"signature is {inspect.signature(asyncpg.Connection._prepare)}"
        ),
    ),
    (
        "Connection._protocol",
        "db/_driver.py fetch_at_most: bind_execute on the connection's protocol",
        lambda: None if "_protocol" in _slots(asyncpg.Connection) else "no _protocol slot",
    ),
    (
        "Protocol.bind_execute(state, args, portal_name, limit, return_extra, timeout)",
        "db/_driver.py fetch_at_most: Bind + Execute(limit) on the unnamed portal, one round trip",
        lambda: (
            None
            if _params(asyncpg.protocol.Protocol.bind_execute)
            == ["self", "state", "args", "portal_name", "limit", "return_extra", "timeout"]
            else f"signature is {inspect.signature(asyncpg.protocol.Protocol.bind_execute)}"
        ),
    ),
    (
        "Protocol.get_settings().add_python_codec(oid, name, schema, infos, kind, encoder, decoder, format)",
        "db/_driver.py add_text_codec (setup_connection_codecs): pseudo-types (anyarray ...) read as text, no catalog trip",
        lambda: (
            None
            if hasattr(asyncpg.protocol.Protocol, "get_settings")
            and _params(asyncpg.protocol.protocol.ConnectionSettings.add_python_codec)
            == [
                "self",
                "typeoid",
                "typename",
                "typeschema",
                "typeinfos",
                "typekind",
                "encoder",
                "decoder",
                "format",
            ]
            else "get_settings or ConnectionSettings.add_python_codec reshaped"
        ),
    ),
    (
        "PreparedStatement._state",
        "db/_driver.py fetch_at_most: the prepared statement's protocol state",
        lambda: None if "_state" in _slots(asyncpg.prepared_stmt.PreparedStatement) else "no _state slot",
    ),
    (
        "PoolConnectionProxy._con",
        "db/_driver.py proxy_attached: whether the pool proxy still holds its connection (the warm connection)",
        lambda: (
            None
            if "_con" in _slots(asyncpg.pool.PoolConnectionProxy)
            and "self._con" in inspect.getsource(asyncpg.pool.PoolConnectionProxy._detach)
            else "_con is no longer the proxy's connection, dropped on detach"
        ),
    ),
    (
        "Connection.reset() asks get_reset_query()",
        "db/_driver.py ResetWhenDirty.get_reset_query: the reset round trip skipped on clean release",
        lambda: (
            None
            if "get_reset_query" in inspect.getsource(asyncpg.Connection.reset)
            else "Connection.reset no longer calls get_reset_query"
        ),
    ),
    (
        "Connection subclasses may add __slots__ (connection_class=PgMcpConnection)",
        "db/_driver.py ResetWhenDirty: __slots__ = ('_pgmcp_dirty',)",
        lambda: (
            None if "__weakref__" in _slots(asyncpg.Connection) else "Connection lost its __slots__ layout"
        ),
    ),
    (
        "Pool._holders, each with is_connected(), is_idle(), terminate()",
        "db/_driver.py close_one_idle: one idle connection closed for a call waiting under MAX_CONNECTIONS",
        lambda: (
            None
            if "_holders" in _slots(asyncpg.pool.Pool)
            and all(
                callable(getattr(asyncpg.pool.PoolConnectionHolder, m, None))
                for m in ("is_connected", "is_idle", "terminate")
            )
            else "Pool._holders or PoolConnectionHolder's is_connected/is_idle/terminate reshaped"
        ),
    ),
    (
        "asyncpg.pgproto.pgproto: infinity_date, negative_infinity_date, infinity_datetime, "
        "negative_infinity_datetime, UUID",
        "db/_driver.py INFINITY_DATE ... PGPROTO_UUID: ±infinity told apart by identity; the uuid class",
        lambda: (
            None
            if all(
                hasattr(asyncpg.pgproto.pgproto, n)
                for n in (
                    "infinity_date",
                    "negative_infinity_date",
                    "infinity_datetime",
                    "negative_infinity_datetime",
                    "UUID",
                )
            )
            else "a sentinel or the UUID class is gone from asyncpg.pgproto.pgproto"
        ),
    ),
]


@pytest.mark.parametrize(("what", "where", "check"), INTERNALS, ids=[i[0].split("(")[0] for i in INTERNALS])
def test_private_asyncpg_api_is_as_pgmcp_uses_it(
    what: str, where: str, check: Callable[[], str | None]
) -> None:
    problem = check()
    assert problem is None, (
        f"asyncpg {VERSION} changed {what} ({problem}); pgmcp uses it in src/pgmcp/{where}. "
        "Adapt that use (or fall back to the public API) before widening the asyncpg range in pyproject.toml."
    )


def test_the_installed_asyncpg_is_in_the_range_these_were_checked_on() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = next(
        Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "asyncpg"
    )
    assert wanted.specifier.contains(VERSION), f"asyncpg {VERSION} is outside {wanted}"
    assert any(s.operator == "<" for s in wanted.specifier), f"{wanted} has no upper bound"


# --- what pgmcp relies on them to do, on the real database ---------------------------------------


@pytest.fixture
async def pgmcp_conn(module_db: PgServer) -> AsyncIterator[PgMcpConnection]:
    conn = await asyncpg.connect(module_db.dsn(), connection_class=PgMcpConnection)
    try:
        yield conn
    finally:
        await conn.close()


async def test_cached_prepare_parses_a_query_once(pgmcp_conn: PgMcpConnection) -> None:
    first = await prepare_cached(pgmcp_conn, "SELECT $1::int + 1 AS n")
    second = await prepare_cached(pgmcp_conn, "SELECT $1::int + 1 AS n")
    assert first._state is second._state, "asyncpg's statement cache did not answer the second prepare"


async def test_bind_execute_reads_at_most_the_limit_in_one_round_trip(pgmcp_conn: PgMcpConnection) -> None:
    stmt = await prepare_cached(pgmcp_conn, "SELECT n FROM generate_series(1, $1::int) AS n")
    async with pgmcp_conn.transaction():
        rows = await fetch_at_most(pgmcp_conn, stmt, [10], 3)
        assert [r["n"] for r in rows] == [1, 2, 3]
        # The unnamed portal leaves nothing behind: the next statement on the connection just runs.
        assert await pgmcp_conn.fetchval("SELECT 42") == 42
    rows = await fetch_at_most(pgmcp_conn, stmt, [2], 5)
    assert [r["n"] for r in rows] == [1, 2]


async def test_pseudo_type_columns_come_back_as_text(module_db: PgServer) -> None:
    """setup_connection_codecs' private codec: an anyarray column (pg_stats) is read, as text."""
    from pgmcp.db.convert import setup_connection_codecs

    conn = await asyncpg.connect(module_db.dsn())
    try:
        await setup_connection_codecs(conn)
        await conn.execute("ANALYZE pg_catalog.pg_class")  # this test database's own statistics
        value = await conn.fetchval(
            "SELECT histogram_bounds FROM pg_stats WHERE tablename = 'pg_class' AND attname = 'relname'"
        )
        assert isinstance(value, str) and value.startswith("{"), value
    finally:
        await conn.close()


async def test_the_pool_proxy_detaches_on_release_and_resets_only_when_dirty(module_db: PgServer) -> None:
    pool = await asyncpg.create_pool(
        module_db.dsn(), min_size=1, max_size=1, connection_class=PgMcpConnection
    )
    try:
        proxy = await pool.acquire()
        assert proxy_attached(proxy)
        raw = proxy._con
        await proxy.execute("SET application_name = 'dirty'")
        raw.mark_dirty()
        await pool.release(proxy)
        assert not proxy_attached(proxy), "a released proxy still holds its connection"
        async with pool.acquire() as again:
            # The full reset ran (RESET ALL): the session setting is gone.
            assert await again.fetchval("SHOW application_name") != "dirty"
    finally:
        await pool.close()


def test_a_changed_internal_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    async def moved(self: object, query: str, name: str | None = None, use_cache: bool = False) -> None:
        return None

    monkeypatch.setattr(asyncpg.Connection, "_prepare", moved)
    what, _, check = INTERNALS[0]
    assert what.startswith("Connection._prepare")
    assert check() is not None, "a positional use_cache went unnoticed"


def test_no_module_but_the_driver_module_uses_asyncpg_internals() -> None:
    """``._protocol`` and ``._prepare`` appear in src/pgmcp only in db/_driver.py (the grep of issue 20)."""
    src = ROOT / "src" / "pgmcp"
    pattern = re.compile(r"\._protocol\b|\._prepare\b|\._holders\b|\._con\b|pgproto")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(src.rglob("*.py"))
        if path != src / "db" / "_driver.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders, "asyncpg internals outside src/pgmcp/db/_driver.py:\n" + "\n".join(offenders)
