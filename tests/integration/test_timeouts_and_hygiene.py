"""QUERY_TIMEOUT, cancelled calls, and what a pooled connection looks like after a failure.

The pool has one connection (``DB_POOL_SIZE=1``), so every call runs on the same
backend and whatever a failed call left behind would meet the next caller. After
each kind of failure — the database's ``statement_timeout``, a client that gives
up and cancels, an error in the middle of a transaction, a refusal, a bad
parameter — the next call works and the backend is as a fresh one: session
settings at their defaults, not in a transaction, no advisory locks, cursors,
prepared statements of a caller, listened channels or temporary tables.

The session is inspected between calls, on the pooled connection itself
(``registry.acquire()``, outside any transaction): inside a call ``statement_timeout``
is the server's own ``SET LOCAL`` of QUERY_TIMEOUT, which is the point of it, so
``execute_query`` can only show that value, not the session's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, running
from tests.integration.proc import pgmcp_env, serve_http

SESSION_SETTINGS = (
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "search_path",
    "default_transaction_read_only",
    "transaction_read_only",
    "role",
    "TimeZone",
    "application_name",
    "standard_conforming_strings",
    "work_mem",
)


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL)")
        await conn.execute("INSERT INTO ledger SELECT g, g FROM generate_series(1, 10) g")
        # A writer the policy cannot see into, mislabelled STABLE so that the catalog layer lets it
        # through (a VOLATILE one is refused on read paths): only the READ ONLY transaction stops it.
        await conn.execute(
            "CREATE FUNCTION sneaky() RETURNS int LANGUAGE plpgsql STABLE AS "
            "$$ BEGIN INSERT INTO ledger VALUES (99, 1); RETURN 1; END $$"
        )
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
async def defaults(db: PgServer) -> dict[str, str]:
    """The session settings a fresh connection of pgmcp's kind gets from this server."""
    conn = await asyncpg.connect(
        db.dsn(),
        server_settings={"TimeZone": "UTC", "application_name": "pgmcp", "standard_conforming_strings": "on"},
    )
    try:
        return {name: await conn.fetchval("SELECT current_setting($1)", name) for name in SESSION_SETTINGS}
    finally:
        await conn.close()


async def sleepers(db: PgServer, seconds: int) -> list[int]:
    """Backends still running ``SELECT pg_sleep(seconds)`` (any state but idle)."""
    conn = await asyncpg.connect(db.dsn())
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query LIKE $2 "
            "AND pid <> pg_backend_pid()",
            db.database,
            f"%pg_sleep({seconds})%",
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


async def wait_until_gone(db: PgServer, seconds: int, within: float = 3.0) -> float:
    """Seconds until no backend runs ``pg_sleep(seconds)``; fails after ``within``."""
    started = time.perf_counter()
    while True:
        left = await sleepers(db, seconds)
        elapsed = time.perf_counter() - started
        if not left:
            return elapsed
        assert elapsed < within, f"pg_sleep({seconds}) still running on {left} after {elapsed:.1f} s"
        await asyncio.sleep(0.05)


async def backend_pid(client: Client) -> int:
    data = await call_ok(
        client, "execute_query", connection_id="default", query="SELECT pg_backend_pid() AS pid"
    )
    return int(data["rows"][0]["pid"])


async def session_state(app: AppContext, db: PgServer) -> dict[str, Any]:
    """What the pooled connection carries between calls, read on that very connection."""
    pooled = app.registry.get("default")
    assert pooled.pool.get_size() == 1
    # The connection the next call gets (the warm one, when the last call left it clean).
    async with app.registry.acquire(pooled) as raw:
        settings = {name: await raw.fetchval("SELECT current_setting($1)", name) for name in SESSION_SETTINGS}
        pid = await raw.fetchval("SELECT pg_backend_pid()")
        state = {
            "pid": pid,
            "in_transaction": raw.is_in_transaction(),
            "settings": settings,
            # The unnamed portal is this very query's.
            "cursors": await raw.fetch("SELECT name, statement FROM pg_cursors WHERE name <> ''"),
            "caller_prepared": await raw.fetch(
                "SELECT name, statement FROM pg_prepared_statements WHERE name NOT LIKE '\\_\\_asyncpg\\_%'"
            ),
            "listening": await raw.fetchval("SELECT count(*) FROM pg_listening_channels()"),
            "temp_relations": await raw.fetchval(
                "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
            ),
        }
    conn = await asyncpg.connect(db.dsn())
    try:
        state["advisory_locks"] = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid
        )
        activity = await conn.fetchrow(
            "SELECT state, backend_xid, backend_xmin FROM pg_stat_activity WHERE pid = $1", pid
        )
    finally:
        await conn.close()
    state["activity"] = (activity["state"], activity["backend_xid"]) if activity else None
    return state


def assert_clean(state: dict[str, Any], defaults: dict[str, str], pid: int, after: str) -> None:
    assert state["pid"] == pid, f"after {after} the pool opened a new backend ({pid} -> {state['pid']})"
    assert state["settings"] == defaults, f"session settings changed after {after}"
    assert state["in_transaction"] is False, after
    assert state["activity"] == ("idle", None), f"backend not idle after {after}: {state['activity']}"
    assert state["cursors"] == [], after
    assert state["caller_prepared"] == [], after
    assert state["listening"] == 0, after
    assert state["temp_relations"] == 0, after
    assert state["advisory_locks"] == 0, after


async def test_a_runaway_query_stops_at_query_timeout_on_the_server_and_the_pool_survives(
    db: PgServer, defaults: dict[str, str]
) -> None:
    async with running(db, query_timeout=2, db_pool_size=1) as (app, client):
        pid = await backend_pid(client)
        inside = await call_ok(
            client,
            "execute_query",
            connection_id="default",
            query="SELECT current_setting('statement_timeout') AS t",
        )
        assert inside["rows"] == [{"t": "2s"}], (
            "each call runs under SET LOCAL statement_timeout = QUERY_TIMEOUT"
        )
        assert_clean(await session_state(app, db), defaults, pid, "a successful call")

        started = time.perf_counter()
        data = await call_err(
            client, "execute_query", "timeout", connection_id="default", query="SELECT pg_sleep(60)"
        )
        elapsed = time.perf_counter() - started
        assert data["error"] == "Query timeout after 2 seconds"
        assert 1.9 <= elapsed < 6, elapsed
        await wait_until_gone(db, 60)
        assert (await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one"))[
            "rows"
        ] == [{"one": 1}]
        assert_clean(await session_state(app, db), defaults, pid, "a statement timeout")
        history = (await call_ok(client, "get_query_history", limit=2))["queries"]
        assert history[1]["query"] == "SELECT pg_sleep(60)"
        assert history[1]["success"] is False


async def test_every_tool_that_runs_sql_is_bounded_by_query_timeout(
    db: PgServer, defaults: dict[str, str], conn: asyncpg.Connection
) -> None:
    async with running(db, query_timeout=2, db_pool_size=1) as (app, client):
        pid = await backend_pid(client)
        runaway: list[tuple[str, dict[str, Any]]] = [
            (
                "execute_transaction",
                {
                    "queries": [
                        {"query": "UPDATE ledger SET amount = amount + 1000", "params": []},
                        {"query": "SELECT pg_sleep(61)", "params": []},
                    ]
                },
            ),
            ("batch_execute", {"query": "SELECT pg_sleep($1)", "params_list": [[0], [61]]}),
            ("explain_query", {"query": "SELECT pg_sleep(61)", "analyze": True}),
        ]
        for tool, arguments in runaway:
            started = time.perf_counter()
            data = await call_err(client, tool, "timeout", connection_id="default", **arguments)
            assert time.perf_counter() - started < 6, tool
            assert "Query timeout after 2 seconds" in data["error"], data
            await wait_until_gone(db, 61)
            assert_clean(await session_state(app, db), defaults, pid, f"a timeout in {tool}")
        # The UPDATE before the runaway statement was rolled back with it.
        assert await conn.fetchval("SELECT sum(amount) FROM ledger") == 55


async def test_a_cancelled_call_stops_its_query_and_leaves_the_connection_clean(
    db: PgServer, defaults: dict[str, str], conn: asyncpg.Connection
) -> None:
    """In-process: the client gives up (asyncio.wait_for) and the server-side statement is cancelled."""
    async with running(db, query_timeout=60, db_pool_size=1) as (app, client):
        pid = await backend_pid(client)
        for tool, arguments in [
            ("execute_query", {"query": "SELECT pg_sleep(30)"}),
            (
                "execute_transaction",
                {"queries": [{"query": "UPDATE ledger SET amount = 0"}, {"query": "SELECT pg_sleep(30)"}]},
            ),
        ]:
            task = asyncio.ensure_future(client.call_tool(tool, {"connection_id": "default", **arguments}))
            await wait_for_sleeper(db, 30)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(task, 0.2)
            gone = await wait_until_gone(db, 30)
            assert gone < 3
            ok = await call_ok(
                client, "execute_query", connection_id="default", query="SELECT sum(amount) AS s FROM ledger"
            )
            assert ok["rows"] == [{"s": 55}], "the cancelled transaction's UPDATE was rolled back"
            assert_clean(await session_state(app, db), defaults, pid, f"a cancelled {tool}")
        metrics = await call_ok(client, "get_metrics")
        # A call the client abandoned is counted as cancelled, not as a success.
        assert metrics["tool_calls"]["execute_transaction"] == {"cancelled": 1}
        assert metrics["tool_calls"]["execute_query"]["cancelled"] == 1


async def wait_for_sleeper(db: PgServer, seconds: int, within: float = 5.0) -> None:
    deadline = time.perf_counter() + within
    while not await sleepers(db, seconds):
        assert time.perf_counter() < deadline, f"pg_sleep({seconds}) never started"
        await asyncio.sleep(0.02)


async def test_a_cancelled_http_request_stops_its_query(db: PgServer, tmp_path: Path) -> None:
    """Over real Streamable HTTP: the client abandons a call; the server cancels the statement."""
    with serve_http(pgmcp_env(db, DB_POOL_SIZE="1", QUERY_TIMEOUT="60"), tmp_path) as server:
        async with Client(server.mcp_url) as client:
            task = asyncio.ensure_future(
                client.call_tool(
                    "execute_query", {"connection_id": "default", "query": "SELECT pg_sleep(29)"}
                )
            )
            await wait_for_sleeper(db, 29)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(task, 0.2)
            assert await wait_until_gone(db, 29) < 3
            result = await client.call_tool(
                "execute_query", {"connection_id": "default", "query": "SELECT 2 AS two"}
            )
            assert result.structured_content is not None
            assert result.structured_content["rows"] == [{"two": 2}]
    levels = {(line["level"], line["event"]) for line in server.logs()}
    errors = sorted(event for level, event in levels if level in ("ERROR", "CRITICAL"))
    assert errors == [], f"a client giving up is not an error of the server: {errors}"


async def test_failures_that_reach_the_database_leave_nothing_behind(
    db: PgServer, defaults: dict[str, str], conn: asyncpg.Connection
) -> None:
    async with running(db, query_timeout=5, db_pool_size=1) as (app, client):
        pid = await backend_pid(client)
        failures: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
            (
                "a constraint violation after a write",
                lambda: call_err(
                    client,
                    "execute_transaction",
                    "database_error",
                    connection_id="default",
                    queries=[
                        {"query": "UPDATE ledger SET amount = amount * 2"},
                        {"query": "INSERT INTO ledger VALUES (1, 1)"},
                    ],
                ),
            ),
            (
                "a division by zero in a read",
                lambda: call_err(
                    client, "execute_query", "database_error", connection_id="default", query="SELECT 1/0"
                ),
            ),
            (
                "a parameter that does not fit its type",
                lambda: call_err(
                    client,
                    "execute_query",
                    "invalid_input",
                    connection_id="default",
                    query="SELECT * FROM ledger WHERE id = $1",
                    params=["not a number"],
                ),
            ),
            (
                "a missing table",
                lambda: call_err(
                    client,
                    "execute_query",
                    "database_error",
                    connection_id="default",
                    query="SELECT * FROM nope",
                ),
            ),
            (
                "a write refused in a read-only transaction by the database",
                lambda: call_err(
                    client,
                    "execute_query",
                    "database_error",
                    connection_id="default",
                    query="SELECT sneaky()",
                ),
            ),
            (
                "refusals of session-state statements",
                lambda: refuse_all(client),
            ),
        ]
        for what, failure in failures:
            await failure()
            ok = await call_ok(
                client, "execute_query", connection_id="default", query="SELECT sum(amount) AS s FROM ledger"
            )
            assert ok["rows"] == [{"s": 55}], what
            assert_clean(await session_state(app, db), defaults, pid, what)


async def refuse_all(client: Client) -> dict[str, Any]:
    """The statements that would change a pooled session; the policy refuses each one."""
    data: dict[str, Any] = {}
    for sql in (
        "SET statement_timeout = 0",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT pg_advisory_lock(7)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "PREPARE mine AS SELECT 1",
        "LISTEN ch",
        "CREATE TEMP TABLE shadow (id int)",
        "SET ROLE postgres",
        "BEGIN",
    ):
        for tool in ("execute_query", "execute_transaction"):
            arguments: dict[str, Any] = (
                {"query": sql} if tool == "execute_query" else {"queries": [{"query": sql}]}
            )
            data = await call_err(client, tool, "query_blocked", connection_id="default", **arguments)
    return data
