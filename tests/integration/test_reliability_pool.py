"""More concurrent calls than connections: they queue and complete; past CONNECTION_TIMEOUT, limit_exceeded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.faults import backends
from tests.integration.harness import ServerInTask, call, call_ok

POOL = 2
CONNECTION_TIMEOUT = 1.0


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE queue_items (id int PRIMARY KEY, who text NOT NULL)")
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
async def server(db: PgServer) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(db, db_pool_size=POOL, connection_timeout=CONNECTION_TIMEOUT) as pair:
        yield pair


async def _ids(db: PgServer) -> set[int]:
    conn = await asyncpg.connect(db.dsn())
    try:
        return {r["id"] for r in await conn.fetch("SELECT id FROM queue_items")}
    finally:
        await conn.close()


async def test_many_more_calls_than_connections_queue_and_all_complete(
    server: tuple[AppContext, Client], db: PgServer
) -> None:
    """24 concurrent calls on a pool of 2, each holding its connection 50 ms: all succeed, in turn."""
    app, client = server
    calls = 24
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            call(
                client,
                "execute_transaction",
                connection_id="default",
                queries=[
                    {"query": "INSERT INTO queue_items (id, who) VALUES ($1, 'queued')", "params": [i]},
                    {"query": "SELECT pg_sleep(0.05)"},
                ],
            )
            for i in range(calls)
        )
    )
    elapsed = time.monotonic() - started
    assert [r["success"] for r in results] == [True] * calls, [r for r in results if not r["success"]][:2]
    # They really queued: 24 x 50 ms on 2 connections cannot take less than 0.6 s.
    assert elapsed >= calls * 0.05 / POOL * 0.9, elapsed
    assert await _ids(db) >= set(range(calls))
    stats = app.registry.get("default").pool_stats()
    assert stats == {
        "size": POOL,
        "open": POOL,
        "idle_connections": POOL,
        "active_connections": 0,
        "waiting": 0,
    }, stats
    ours = [b for b in await backends(db.dsn(), database=db.database) if b["application_name"] == "pgmcp"]
    assert len(ours) == POOL, ours


async def test_a_call_that_cannot_get_a_connection_in_time_fails_with_limit_exceeded_naming_the_pool(
    server: tuple[AppContext, Client], db: PgServer
) -> None:
    app, client = server
    holders = [
        asyncio.create_task(
            call(
                client,
                "execute_transaction",
                connection_id="default",
                queries=[
                    {
                        "query": "INSERT INTO queue_items (id, who) VALUES ($1, 'holder')",
                        "params": [1000 + i],
                    },
                    {"query": "SELECT pg_sleep(2.5)"},
                ],
            )
        )
        for i in range(POOL)
    ]

    async def pool_busy() -> bool:
        return app.registry.get("default").pool_stats()["idle_connections"] == 0

    from tests.integration.faults import wait_until

    await wait_until(pool_busy, timeout=5, what="both connections held")
    started = time.monotonic()
    refused = await asyncio.gather(
        *(
            call(
                client,
                "execute_transaction",
                connection_id="default",
                queries=[
                    {
                        "query": "INSERT INTO queue_items (id, who) VALUES ($1, 'refused')",
                        "params": [2000 + i],
                    }
                ],
            )
            for i in range(3)
        ),
        call(client, "execute_query", connection_id="default", query="SELECT 1"),
    )
    elapsed = time.monotonic() - started
    for data in refused:
        assert data["success"] is False
        assert data["error_type"] == "limit_exceeded", data
        assert "pool 'default'" in data["error"], data
        assert f"CONNECTION_TIMEOUT={CONNECTION_TIMEOUT:g}" in data["error"]
    assert CONNECTION_TIMEOUT * 0.9 <= elapsed < CONNECTION_TIMEOUT + 1.0, elapsed

    # The server stays healthy: monitoring answers at once, and the holders finish and commit.
    health = await call_ok(client, "health_check")
    assert health["status"] in {"healthy", "degraded"}
    held = await asyncio.wait_for(asyncio.gather(*holders), timeout=10)
    assert all(h["success"] for h in held), held
    ids = await _ids(db)
    assert {1000, 1001} <= ids, "the holders' writes must be there"
    assert not ids & {2000, 2001, 2002}, "a refused call must not have written anything"
    ok = await call_ok(
        client, "execute_query", connection_id="default", query="SELECT count(*) AS n FROM queue_items"
    )
    assert ok["rows"][0]["n"] == len(ids)
    assert app.registry.get("default").pool_stats() == {
        "size": POOL,
        "open": POOL,
        "idle_connections": POOL,
        "active_connections": 0,
        "waiting": 0,
    }
    metrics = await call_ok(client, "get_metrics")
    assert metrics["pools"]["default"]["size"] == POOL
