"""The warm connection: the last clean connection kept out of asyncpg's pool for the next call.

It saves asyncpg's acquire + release (~0.1 ms of CPU a call) and must change
nothing else: calls in a row share it, a connection the database killed while
warm is replaced without the caller noticing, pool statistics count it as idle,
removing the connection closes it at once, and a call that failed never leaves
its connection warm.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.faults import backends, wait_until
from tests.integration.harness import ServerInTask, call, call_ok

POOL = 3


@pytest.fixture(scope="module")
async def server(module_db: PgServer) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(module_db, db_pool_size=POOL, connection_timeout=5) as pair:
        yield pair


async def _add_connection(client: Client, db: PgServer, connection_id: str) -> None:
    await call_ok(
        client,
        "add_connection",
        connection_id=connection_id,
        host=db.host,
        port=db.port,
        database=db.database,
        user=db.user,
        ssl_mode="disable",
    )


async def _pid(client: Client) -> int:
    data = await call_ok(
        client, "execute_query", connection_id="default", query="SELECT pg_backend_pid() AS pid"
    )
    return int(data["rows"][0]["pid"])


async def test_calls_in_a_row_share_the_warm_connection_and_it_counts_as_idle(
    server: tuple[AppContext, Client],
) -> None:
    app, client = server
    pids = {await _pid(client) for _ in range(5)}
    assert len(pids) == 1, pids
    conn = app.registry.get("default")
    assert conn.warm is not None
    stats = conn.pool_stats()
    assert stats["idle_connections"] == stats["open"] == 1 and stats["active_connections"] == 0, stats


async def test_a_warm_connection_the_database_killed_is_replaced_unnoticed(
    server: tuple[AppContext, Client], module_db: PgServer
) -> None:
    app, client = server
    victim = await _pid(client)
    admin = await asyncpg.connect(module_db.dsn())
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
    finally:
        await admin.close()
    data = await call_ok(
        client, "execute_query", connection_id="default", query="SELECT pg_backend_pid() AS pid"
    )
    assert data["rows"][0]["pid"] != victim
    stats = app.registry.get("default").pool_stats()
    assert stats["open"] <= POOL and stats["idle_connections"] <= stats["open"], stats


async def test_a_failed_call_does_not_leave_its_connection_warm(server: tuple[AppContext, Client]) -> None:
    app, client = server
    conn = app.registry.get("default")
    await _pid(client)
    failed = await call(client, "execute_query", connection_id="default", query="SELECT 1/0")
    assert failed["error_type"] == "database_error"
    assert conn.warm is None, "the failed call's connection must go through asyncpg's reset"
    # The next call works and leaves its (clean) connection warm again.
    assert (await call_ok(client, "execute_query", connection_id="default", query="SELECT 2 AS two"))[
        "rows"
    ] == [{"two": 2}]
    assert conn.warm is not None


async def test_removing_a_connection_closes_its_warm_connection_at_once(
    server: tuple[AppContext, Client], module_db: PgServer
) -> None:
    app, client = server
    await _add_connection(client, module_db, "extra")
    extra = await call_ok(
        client, "execute_query", connection_id="extra", query="SELECT pg_backend_pid() AS pid"
    )
    pid = extra["rows"][0]["pid"]
    assert app.registry.get("extra").warm is not None
    started = time.monotonic()
    await call_ok(client, "remove_connection", connection_id="extra")
    assert time.monotonic() - started < 2, "pool.close() waited for a connection nobody would release"

    async def gone() -> bool:
        return pid not in {b["pid"] for b in await backends(module_db.dsn(), database=module_db.database)}

    await wait_until(gone, timeout=5, what="the warm connection closed")


# --- answered before the read-only COMMIT returns -----------------------------------------------


async def test_a_read_is_answered_before_its_commit_and_the_next_call_waits_for_it(
    server: tuple[AppContext, Client],
) -> None:
    app, _ = server
    conn = app.registry.get("default")
    first = await app.executor.query(
        "default", "SELECT pg_backend_pid() AS pid, txid_current_if_assigned() AS x"
    )
    # The answer is here while the COMMIT has not even been sent: the connection is still in
    # its READ ONLY transaction, held warm behind the COMMIT's task.
    assert conn.warm is not None and conn.warm.is_in_transaction()
    assert conn.warm_commit is not None and not conn.warm_commit.done()
    assert first.rows[0]["x"] is None  # read-only: no transaction id, nothing to commit
    second = await app.executor.query("default", "SELECT pg_backend_pid() AS pid, now() AS started")
    assert second.rows[0]["pid"] == first.rows[0]["pid"], "the next call reuses the connection"
    third = await app.executor.query("default", "SELECT now() AS started")
    # A fresh transaction each time: had the next call run inside the first one's (COMMIT
    # not yet done), now() would repeat.
    assert third.rows[0]["started"] != second.rows[0]["started"]
    await conn.warm_commit
    assert not conn.warm.is_in_transaction()


async def test_a_commit_lost_after_the_answer_costs_the_next_call_nothing(
    server: tuple[AppContext, Client],
) -> None:
    app, client = server
    conn = app.registry.get("default")
    answered = await app.executor.query("default", "SELECT 41 + 1 AS answer")
    assert answered.rows == [{"answer": 42}]
    conn.warm.terminate()  # the connection dies between the answer and its COMMIT
    commit = conn.warm_commit
    assert commit is not None
    await commit  # fails inside, logged, never raised
    data = await call_ok(client, "execute_query", connection_id="default", query="SELECT 2 AS two")
    assert data["rows"] == [{"two": 2}]
    stats = conn.pool_stats()
    assert stats["open"] <= POOL and stats["active_connections"] == 0, stats


async def test_writes_and_explain_still_wait_for_their_commit(
    server: tuple[AppContext, Client], module_db: PgServer
) -> None:
    app, _ = server
    conn = app.registry.get("default")
    admin = await asyncpg.connect(module_db.dsn())
    try:
        await admin.execute("CREATE TABLE IF NOT EXISTS warm_probe (id int)")
        await app.executor.transaction("default", [("INSERT INTO warm_probe VALUES (1)", [])])
        # Answered only once committed: another session sees the row at once.
        assert await admin.fetchval("SELECT count(*) FROM warm_probe") == 1
    finally:
        await admin.close()
    assert conn.warm is None or not conn.warm.is_in_transaction()
    await app.executor.explain("default", "SELECT 1")
    assert conn.warm is None or not conn.warm.is_in_transaction()


async def test_removing_a_connection_waits_for_a_commit_in_flight(
    server: tuple[AppContext, Client], module_db: PgServer
) -> None:
    app, client = server
    await _add_connection(client, module_db, "brief")
    await app.executor.query("brief", "SELECT 1")
    commit = app.registry.get("brief").warm_commit
    assert commit is not None and not commit.done()
    await app.registry.remove("brief")
    assert commit.done() and commit.exception() is None, "the COMMIT finished before the pool closed"


async def test_the_next_call_waits_for_the_reset_sent_after_the_answer(
    server: tuple[AppContext, Client], module_db: PgServer
) -> None:
    app, _ = server
    admin = await asyncpg.connect(module_db.dsn())
    try:
        await admin.execute(
            "CREATE OR REPLACE FUNCTION sneaky() RETURNS int LANGUAGE sql AS "
            "$$ SELECT length(set_config('search_path', 'evil', false)) $$"
        )
    finally:
        await admin.close()
    conn = app.registry.get("default")
    first = await app.executor.query("default", "SELECT sneaky() AS x, pg_backend_pid() AS pid")
    assert conn.warm_commit is not None and not conn.warm_commit.done(), "COMMIT; RESET ALL still to come"
    shown = await app.executor.query(
        "default", "SELECT current_setting('search_path') AS search_path, pg_backend_pid() AS pid"
    )
    # The same session, once its reset was back: the setting the function made is gone.
    assert shown.rows[0]["pid"] == first.rows[0]["pid"]
    assert shown.rows[0]["search_path"] != "evil"
