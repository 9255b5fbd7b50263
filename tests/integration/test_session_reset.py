"""A pooled session goes back exactly as it was opened, after every call, success or failure.

One pooled connection (``DB_POOL_SIZE=1``), so both calls run on the same backend. The first
call runs a function the test created: labelled ``IMMUTABLE`` (the policy lets it through,
as it would any function a database owner wrote), its body (through a volatile helper) changes every kind of session
state a call can leave behind — the role (``set_config('role', …)``: ``RESET ALL`` does not
undo it), a setting, a session advisory lock, ``LISTEN``, a SQL ``PREPARE``, the random seed,
a ``WITH HOLD`` cursor and, where the transaction may write, a temporary table and a
sequence's ``currval`` — then returns or raises. The second call, and the pooled session
read directly afterwards, see none of it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, running

SEED = 0.42


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> AsyncIterator[tuple[PgServer, str]]:
    role = f"pgmcp_leak_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
        await conn.execute(f'GRANT "{role}" TO current_user')
        await conn.execute("CREATE TABLE sink (x int)")
        await conn.execute("CREATE SEQUENCE leak_seq")
        # PostgreSQL refuses LISTEN, PREPARE … in a non-volatile function's own SQL, but not in
        # a volatile function it calls: the label is the owner's word, nothing checks it.
        await conn.execute(
            f"""
            CREATE FUNCTION leak_helper(writable boolean) RETURNS int LANGUAGE plpgsql AS $fn$
            BEGIN
                PERFORM set_config('role', '{role}', false);
                PERFORM set_config('work_mem', '1234kB', false);
                PERFORM pg_advisory_lock(4201);
                EXECUTE 'LISTEN pgmcp_leak';
                EXECUTE 'PREPARE leak_p AS SELECT 1';
                EXECUTE 'DECLARE leak_c CURSOR WITH HOLD FOR SELECT 1';
                PERFORM setseed({SEED});
                IF writable THEN
                    CREATE TEMP TABLE leak_t (x int);
                    PERFORM nextval('leak_seq');
                END IF;
                RETURN 1;
            END $fn$
            """
        )
        await conn.execute(
            """
            CREATE FUNCTION leave_state(fail boolean, writable boolean) RETURNS int
            LANGUAGE plpgsql IMMUTABLE AS $fn$
            BEGIN
                PERFORM leak_helper(writable);
                IF fail THEN
                    RAISE EXCEPTION 'the call fails after changing the session';
                END IF;
                RETURN 1;
            END $fn$
            """
        )
        await conn.execute(f'GRANT ALL ON sink, leak_seq TO "{role}"')
        yield module_db, role
    finally:
        await conn.execute(f'DROP OWNED BY "{role}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.close()


async def seeded_random(db: PgServer) -> float:
    """What ``random()`` returns right after ``setseed(SEED)``: the value a leaked seed gives."""
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute(f"SELECT setseed({SEED})")
        return float(await conn.fetchval("SELECT random()"))
    finally:
        await conn.close()


async def first_call(client: Client, tool: str, fail: bool) -> None:
    f = "true" if fail else "false"
    calls: dict[str, tuple[dict[str, Any], str]] = {
        "execute_query": ({"query": f"SELECT leave_state({f}, false) AS x"}, "database_error"),
        "execute_transaction": (
            {
                "queries": [
                    {"query": "INSERT INTO sink VALUES (1)"},
                    {"query": f"SELECT leave_state({f}, true) AS x"},
                ]
            },
            "database_error",
        ),
        "batch_execute": (
            {"query": "INSERT INTO sink SELECT leave_state($1, true)", "params_list": [[fail]]},
            "database_error",
        ),
        "explain_query": ({"query": f"SELECT leave_state({f}, false)", "analyze": True}, "database_error"),
    }
    arguments, error_type = calls[tool]
    if fail:
        data = await call_err(client, tool, error_type, connection_id="default", **arguments)
        assert "the call fails after changing the session" in data["error"], data
    else:
        await call_ok(client, tool, connection_id="default", **arguments)


async def pooled_state(app: AppContext) -> dict[str, Any]:
    """What the next call would get, read on the pooled connection itself."""
    pooled = app.registry.get("default")
    async with app.registry.acquire(pooled) as raw:
        state = {
            "pid": await raw.fetchval("SELECT pg_backend_pid()"),
            "user": await raw.fetchval("SELECT current_user::text || '/' || session_user::text"),
            "work_mem": await raw.fetchval("SELECT current_setting('work_mem')"),
            "advisory_locks": await raw.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            ),
            "listening": await raw.fetchval("SELECT count(*) FROM pg_listening_channels()"),
            "sql_prepared": await raw.fetchval("SELECT count(*) FROM pg_prepared_statements WHERE from_sql"),
            "cursors": await raw.fetchval("SELECT count(*) FROM pg_cursors WHERE name <> ''"),
            "temp_relations": await raw.fetchval(
                "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()"
            ),
        }
        try:
            state["lastval"] = await raw.fetchval("SELECT lastval()")
        except asyncpg.ObjectNotInPrerequisiteStateError:
            state["lastval"] = None  # "lastval is not yet defined in this session"
    return state


@pytest.mark.parametrize("tool", ["execute_query", "execute_transaction", "batch_execute", "explain_query"])
async def test_the_next_call_gets_the_session_as_it_was_opened(tool: str, db: tuple[PgServer, str]) -> None:
    server, role = db
    leaked_random = await seeded_random(server)
    async with running(server, db_pool_size=1) as (app, client):
        clean = await pooled_state(app)
        assert clean["user"] == f"{server.user}/{server.user}"
        for fail in (False, True):
            await first_call(client, tool, fail)
            second = await call_ok(
                client,
                "execute_query",
                connection_id="default",
                query="SELECT pg_backend_pid() AS pid, current_user::text AS who, "
                "current_setting('work_mem') AS work_mem, random() AS r",
            )
            (row,) = second["rows"]
            after = f"{tool} ({'failed' if fail else 'succeeded'})"
            assert row["pid"] == clean["pid"], (
                f"{after}: the pool opened a new backend, the test proves nothing"
            )
            assert row["who"] == server.user, (
                f"{after}: the next call ran as {row['who']} (role {role} leaked)"
            )
            assert row["work_mem"] == clean["work_mem"], after
            assert row["r"] != leaked_random, f"{after}: the next call's random() follows the leaked seed"
            state = await pooled_state(app)
            assert state == clean, f"{after}: the session carries {state} instead of {clean}"
        if tool in ("execute_transaction", "batch_execute"):
            # The successful write committed (and only it): its effect on the data stays.
            assert await server_count(server) >= 1


async def server_count(db: PgServer) -> int:
    conn = await asyncpg.connect(db.dsn())
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sink"))
    finally:
        await conn.close()
