"""A million-row table and a runaway query: bounded rows, bounded bytes, bounded memory, bounded time.

SPEC §3: ``execute_query`` reads through a server-side cursor and never holds
more than ``fetch_size`` (+1) rows; the response stays under
``MAX_RESULT_BYTES``; the server's memory does not grow with the table's size.
SPEC §4: ``QUERY_TIMEOUT`` is enforced by the database, the backend stops, and
the connection is usable afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psutil
import pytest
from mcp import Client

from pgmcp.app import AppContext
from tests.conftest import PgServer
from tests.integration.harness import ServerInTask, call_err, call_ok, running
from tests.integration.proc import pgmcp_env, serve_http

ROWS = 1_000_000
MAX_RESULT_BYTES = 1_048_576


def json_size(value: object) -> int:
    """Bytes of the compact JSON the server sends."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.fixture(scope="module")
async def big(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            f"""
            CREATE UNLOGGED TABLE big AS
            SELECT g AS id,
                   md5(g::text) AS name,
                   (g % 1000) * 1.25 AS amount,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
                   'row ' || g || ' of the big table' AS note
            FROM generate_series(1, {ROWS}) AS g;
            ALTER TABLE big ADD PRIMARY KEY (id);
            ANALYZE big;
            """
        )
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
async def server(big: PgServer) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(big) as pair:
        yield pair


@pytest.fixture
def client(server: tuple[AppContext, Client]) -> Client:
    return server[1]


@pytest.mark.slow
async def test_fetch_size_100_returns_100_rows_of_a_million_fast(client: Client) -> None:
    started = time.perf_counter()
    data = await call_ok(
        client, "execute_query", connection_id="default", query="SELECT * FROM big", fetch_size=100
    )
    elapsed = time.perf_counter() - started
    assert data["row_count"] == 100
    assert len(data["rows"]) == 100
    assert data["truncated"] is True
    assert [c["name"] for c in data["columns"]] == ["id", "name", "amount", "created_at", "note"]
    assert data["rows"][0].keys() == {"id", "name", "amount", "created_at", "note"}
    # Reading a million rows takes seconds; reading 101 through a cursor takes milliseconds.
    assert elapsed < 2.0, elapsed
    assert data["duration_ms"] < 1000


@pytest.mark.slow
async def test_default_fetch_size_truncates_with_a_keyset_hint(client: Client) -> None:
    data = await call_ok(client, "execute_query", connection_id="default", query="SELECT * FROM big")
    assert data["row_count"] == 1000  # DEFAULT_FETCH_SIZE
    assert data["truncated"] is True
    assert "keyset" in data["hint"]
    assert json_size(data["rows"]) <= MAX_RESULT_BYTES


@pytest.mark.slow
async def test_wide_rows_stop_at_max_result_bytes(client: Client) -> None:
    data = await call_ok(
        client,
        "execute_query",
        connection_id="default",
        query="SELECT id, repeat(name, 40) AS wide FROM big ORDER BY id",
    )
    # 1,000 rows of 1,280 characters would be 1.3 MB: the byte cap stops earlier.
    assert 0 < data["row_count"] < 1000
    assert data["truncated"] is True
    assert "MAX_RESULT_BYTES" in data["hint"]
    assert "keyset" in data["hint"]
    assert json_size(data["rows"]) <= MAX_RESULT_BYTES
    assert [r["id"] for r in data["rows"]] == list(range(1, data["row_count"] + 1))


@pytest.mark.slow
async def test_server_memory_does_not_grow_with_the_table(big: PgServer, tmp_path: Path) -> None:
    """pgmcp as its own process over HTTP, so the RSS measured is the server's alone."""
    with serve_http(pgmcp_env(big, DB_POOL_SIZE="2"), tmp_path) as server:
        process = psutil.Process(server.pid)
        async with Client(server.mcp_url) as client:
            args = {"connection_id": "default", "query": "SELECT * FROM big"}
            first = await client.call_tool("execute_query", args)  # warm up code paths and caches
            assert first.structured_content is not None
            assert first.structured_content["truncated"] is True
            baseline = process.memory_info().rss
            for _ in range(5):
                result = await client.call_tool("execute_query", args)
                assert result.structured_content is not None
                assert result.structured_content["row_count"] == 1000
            for fetch_size in (10_000, 50_000):
                result = await client.call_tool("execute_query", {**args, "fetch_size": fetch_size})
                assert result.structured_content is not None
                assert result.structured_content["truncated"] is True  # by bytes, long before 50,000 rows
            grown = process.memory_info().rss - baseline
    assert grown < 30 * 1024 * 1024, f"RSS grew by {grown / 1024 / 1024:.1f} MB"


# --- QUERY_TIMEOUT -----------------------------------------------------------------------------


async def active_sleepers(db: PgServer) -> int:
    conn = await asyncpg.connect(db.dsn())
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(5)%'"
        )
    finally:
        await conn.close()
    return count


async def test_query_timeout_is_enforced_by_the_database_and_the_pool_survives(module_db: PgServer) -> None:
    async with running(module_db, query_timeout=1, db_pool_size=1) as (_, client):
        started = time.perf_counter()
        data = await call_err(
            client, "execute_query", "timeout", connection_id="default", query="SELECT pg_sleep(5)"
        )
        elapsed = time.perf_counter() - started
        assert data["error"] == "Query timeout after 1 seconds"
        assert 0.9 <= elapsed < 3.0, elapsed
        assert await active_sleepers(module_db) == 0, "the statement must stop on the server"
        # The pool has one connection: the next call uses the same pool and works.
        ok = await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
        assert ok["rows"] == [{"one": 1}]
        history = await call_ok(client, "get_query_history", limit=2)
        assert history["queries"][1]["query"] == "SELECT pg_sleep(5)"
        assert history["queries"][1]["success"] is False


async def test_query_timeout_inside_a_transaction_rolls_everything_back(module_db: PgServer) -> None:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS timeout_probe (id int)")
        async with running(module_db, query_timeout=1, db_pool_size=1) as (_, client):
            started = time.perf_counter()
            data = await call_err(
                client,
                "execute_transaction",
                "timeout",
                connection_id="default",
                queries=[
                    {"query": "INSERT INTO timeout_probe VALUES ($1)", "params": [1]},
                    {"query": "SELECT pg_sleep(5)", "params": []},
                ],
            )
            assert time.perf_counter() - started < 3.0
            assert data["failed_index"] == 1
            assert data["rolled_back"] is True
            assert "Query timeout after 1 seconds" in data["error"]
            assert await conn.fetchval("SELECT count(*) FROM timeout_probe") == 0
            await asyncio.sleep(0)
            assert await active_sleepers(module_db) == 0
            ok = await call_ok(
                client,
                "execute_transaction",
                connection_id="default",
                queries=[{"query": "INSERT INTO timeout_probe VALUES ($1)", "params": [2]}],
            )
            assert ok["committed"] is True
            assert await conn.fetchval("SELECT count(*) FROM timeout_probe") == 1
    finally:
        await conn.close()
