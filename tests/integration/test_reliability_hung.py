"""A database that accepts TCP connections and never answers: calls fail in bounded time, /health stays fast.

pgmcp runs as a real HTTP subprocess with CONNECTION_TIMEOUT=2 and
QUERY_TIMEOUT=1; /health is polled from a thread of its own all along.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx2
import psutil
import pytest
from mcp import Client

from tests.conftest import PgServer
from tests.integration.faults import FaultProxy, HealthPoller, HungServer, PgmcpProcess, backends, wait_until
from tests.integration.harness import call, call_err, call_ok

CONNECTION_TIMEOUT = 2.0
QUERY_TIMEOUT = 0.5
HEALTH_FAST_MS = 50.0


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE hung_items (id int PRIMARY KEY, note text)")
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
def wedged_host() -> Iterator[HungServer]:
    with HungServer() as hung:
        yield hung


@pytest.fixture(scope="module")
async def pgmcp(
    db: PgServer, wedged_host: HungServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PgmcpProcess]:
    """pgmcp over HTTP; MCP_CONFIG_FILE also declares 'wedged', whose host never answers."""
    config = tmp_path_factory.mktemp("hung") / "connections.toml"
    config.write_text(
        f'[connections.wedged]\nhost = "127.0.0.1"\nport = {wedged_host.port}\n'
        'database = "app"\nuser = "app"\nssl_mode = "disable"\npool_size = 2\n'
    )
    process = PgmcpProcess(
        db,
        CONNECTION_TIMEOUT=CONNECTION_TIMEOUT,
        QUERY_TIMEOUT=QUERY_TIMEOUT,
        MCP_CONFIG_FILE=str(config),
        MCP_LOG_LEVEL="WARNING",
        DB_POOL_SIZE=4,
    )
    try:
        await process.wait_healthy()
        yield process
    finally:
        process.stop()


@pytest.fixture
def proxy(db: PgServer) -> Iterator[FaultProxy]:
    with FaultProxy(db.host, db.port) as p:
        yield p


def _assert_health_stayed_fast(poller: HealthPoller) -> None:
    assert not poller.failures, poller.failures[:3]
    assert len(poller.latencies_ms) >= 20, "the poller barely ran"
    # The median is the claim (< 50 ms); the maximum only proves /health never waited for the database
    # (the machine is shared, so a single sample may be slow for reasons of its own).
    assert poller.median_ms() < HEALTH_FAST_MS, sorted(poller.latencies_ms)[-5:]
    assert max(poller.latencies_ms) < 1000 * CONNECTION_TIMEOUT / 2, sorted(poller.latencies_ms)[-5:]


async def _health(pgmcp: PgmcpProcess) -> dict[str, Any]:
    """GET /health: the cached probe results, answered without touching a database."""
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{pgmcp.url}/health", timeout=5)
    assert response.status_code in (200, 503)
    data: dict[str, Any] = response.json()
    return data


def _sockets_to(pid: int, port: int) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


async def test_add_connection_to_a_host_that_never_answers_fails_within_connection_timeout(
    pgmcp: PgmcpProcess,
) -> None:
    with HungServer() as hung, HealthPoller(pgmcp.url) as poller:
        async with Client(f"{pgmcp.url}/mcp") as client:
            started = time.monotonic()
            data = await call_err(
                client,
                "add_connection",
                "connection_failed",
                connection_id="wedged_too",
                host="127.0.0.1",
                port=hung.port,
                database="app",
                user="app",
                password="never-shown-pw",
            )
            elapsed = time.monotonic() - started
            assert CONNECTION_TIMEOUT - 0.2 <= elapsed < CONNECTION_TIMEOUT + 1.5, elapsed
            assert f"CONNECTION_TIMEOUT={CONNECTION_TIMEOUT:g}" in data["error"]
            assert "never-shown-pw" not in data["error"]
            assert hung.accepted, "pgmcp never even reached the hung server"
            listed = await call_ok(client, "list_connections")
            assert "wedged_too" not in {c["connection_id"] for c in listed["connections"]}
            assert (await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS x"))[
                "rows"
            ] == [{"x": 1}]
            # The half-open sockets to the hung host were closed, not leaked.
            assert _sockets_to(pgmcp.proc.pid, hung.port) == 0
    _assert_health_stayed_fast(poller)


async def test_a_database_that_stops_answering_fails_calls_in_bounded_time_and_recovers(
    pgmcp: PgmcpProcess, proxy: FaultProxy, db: PgServer
) -> None:
    async with Client(f"{pgmcp.url}/mcp") as client:
        await call_ok(
            client,
            "add_connection",
            connection_id="flaky",
            host="127.0.0.1",
            port=proxy.port,
            database=db.database,
            user=db.user,
            pool_size=2,
            ssl_mode="disable",
        )
        assert (await call_ok(client, "test_connection", connection_id="flaky"))["is_healthy"] is True
        proxy.hang()
        with HealthPoller(pgmcp.url) as poller:
            started = time.monotonic()
            tested = await call(client, "test_connection", connection_id="flaky")
            elapsed = time.monotonic() - started
            assert elapsed < CONNECTION_TIMEOUT + 1, elapsed
            assert tested["is_healthy"] is False, tested
            assert "no answer" in tested["message"]

            started = time.monotonic()
            write = await call(
                client,
                "execute_transaction",
                connection_id="flaky",
                queries=[{"query": "INSERT INTO hung_items (id, note) VALUES (1, 'during the hang')"}],
            )
            elapsed = time.monotonic() - started
            # QUERY_TIMEOUT per statement, plus CONNECTION_TIMEOUT: bounded, never a hang.
            assert elapsed < QUERY_TIMEOUT + CONNECTION_TIMEOUT + 1.5, elapsed
            assert write["success"] is False
            assert write["error_type"] in {"timeout", "connection_failed", "limit_exceeded"}, write
            assert "Traceback" not in write["error"]

            read = await call(client, "execute_query", connection_id="flaky", query="SELECT 1")
            assert read["success"] is False
            assert read["error_type"] in {"timeout", "connection_failed", "limit_exceeded"}, read

            # Other connections are not affected.
            assert (await call_ok(client, "execute_query", connection_id="default", query="SELECT 2 AS y"))[
                "rows"
            ] == [{"y": 2}]
            health = await _health(pgmcp)
            assert health["connections"]["flaky"]["is_healthy"] is False
        _assert_health_stayed_fast(poller)

        proxy.resume()

        async def answers() -> bool:
            data = await call(client, "execute_query", connection_id="flaky", query="SELECT 1 AS one")
            return bool(data["success"])

        await wait_until(
            answers, timeout=CONNECTION_TIMEOUT + 3, interval=0.2, what="recovery after the hang"
        )
        assert (await call_ok(client, "test_connection", connection_id="flaky"))["is_healthy"] is True
        listed = await call_ok(client, "list_connections")
        stats = next(c["pool_stats"] for c in listed["connections"] if c["connection_id"] == "flaky")
        assert stats["size"] <= 2 and stats["active_connections"] == 0, stats
        await call_ok(client, "remove_connection", connection_id="flaky")

    conn = await asyncpg.connect(db.dsn())
    try:
        assert await conn.fetchval("SELECT count(*) FROM hung_items") == 0, (
            "a write made during the hang landed"
        )
    finally:
        await conn.close()

    # Nothing of the hang is left running in the database.
    async def no_leftovers() -> bool:
        rows = await backends(db.dsn(), query_like="%hung_items%", database=db.database)
        return not rows

    await wait_until(no_leftovers, timeout=5, what="no backend left from the hung calls")


async def test_a_declared_connection_whose_database_hangs_at_start_does_not_block_start_up(
    pgmcp: PgmcpProcess,
) -> None:
    """'wedged' (MCP_CONFIG_FILE) never answered: pgmcp started anyway, serves the others, and says why."""
    # Two bounded attempts at start (open the pool, first probe), then serving: not a hang.
    assert pgmcp.startup_seconds < 2 * CONNECTION_TIMEOUT + 15
    async with Client(f"{pgmcp.url}/mcp") as client:
        await call_ok(client, "execute_query", connection_id="default", query="SELECT 1")
        started = time.monotonic()
        data = await call(client, "execute_query", connection_id="wedged", query="SELECT 1")
        assert data["error_type"] == "connection_failed", data
        assert f"CONNECTION_TIMEOUT={CONNECTION_TIMEOUT:g}" in data["error"]
        assert time.monotonic() - started < CONNECTION_TIMEOUT + 1.5
        tested = await call_ok(client, "test_connection", connection_id="wedged")
        assert tested["is_healthy"] is False
        health = await _health(pgmcp)
        assert health["connections"]["wedged"]["is_healthy"] is False
        assert health["connections"]["default"]["is_healthy"] is True
