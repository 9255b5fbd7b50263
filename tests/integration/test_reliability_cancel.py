"""The client walks away mid-call: the statement stops in the database, the connection comes back clean.

tests/integration/test_timeouts_and_hygiene.py covers the official client
giving up (in-process and over the 2026 HTTP protocol). These are the other
ways a client leaves: an HTTP connection simply closed (a legacy 2025-06-18
session, and stateless JSON mode as run behind a load balancer), a stdio
client that sends ``notifications/cancelled``, and one that is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx2
import pytest

from tests.conftest import PgServer
from tests.integration.faults import PgmcpProcess, RawHttp, StdioPeer, backends, wait_until

_seconds = itertools.count(41)  # a distinct pg_sleep per test, to find its backend


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE walked (id int PRIMARY KEY)")
    finally:
        await conn.close()
    return module_db


async def _running(db: PgServer, seconds: int) -> list[dict[str, Any]]:
    rows = await backends(db.dsn(), query_like=f"%pg_sleep({seconds})%", database=db.database)
    return [r for r in rows if r["state"] != "idle"]


async def _stopped_within(db: PgServer, seconds: int, within: float) -> None:
    async def gone() -> bool:
        return not await _running(db, seconds)

    await wait_until(gone, timeout=within, what=f"pg_sleep({seconds}) cancelled in the database")


async def _walked(db: PgServer) -> int:
    conn = await asyncpg.connect(db.dsn())
    try:
        return int(await conn.fetchval("SELECT count(*) FROM walked"))
    finally:
        await conn.close()


def _write_then_sleep(seconds: int) -> dict[str, Any]:
    return {
        "connection_id": "default",
        "queries": [
            {"query": "INSERT INTO walked (id) VALUES ($1)", "params": [seconds]},
            {"query": f"SELECT pg_sleep({seconds})"},
        ],
    }


async def _assert_pool_clean(process: PgmcpProcess, db: PgServer, peer: RawHttp) -> None:
    """With one pooled connection: it is idle, outside any transaction, and serves the next call."""

    async def idle_again() -> bool:
        ours = [b for b in await backends(db.dsn(), database=db.database) if b["application_name"] == "pgmcp"]
        return len(ours) == 1 and ours[0]["state"] == "idle" and not ours[0]["in_xact"]

    await wait_until(idle_again, timeout=5, what="the pooled connection idle and outside a transaction")
    data = await peer.call_tool("execute_query", connection_id="default", query="SELECT 2 AS two")
    assert data["rows"] == [{"two": 2}], data


@contextlib.asynccontextmanager
async def _http_server(db: PgServer, **settings: Any) -> AsyncIterator[PgmcpProcess]:
    process = PgmcpProcess(db, DB_POOL_SIZE=1, QUERY_TIMEOUT=120, **settings)
    try:
        await process.wait_healthy()
        yield process
    finally:
        process.stop()


async def test_stateless_http_a_closed_connection_cancels_the_statement_and_rolls_back(db: PgServer) -> None:
    """Behind a load balancer (MCP_STATELESS=true) closing the connection is the only way to give up."""
    seconds = next(_seconds)
    async with _http_server(db, MCP_STATELESS="true") as process:
        peer = RawHttp(process.url, stateless=True)
        walker = RawHttp(process.url, stateless=True)
        try:
            call = asyncio.create_task(walker.call_tool("execute_transaction", **_write_then_sleep(seconds)))
            await wait_until(lambda: _running(db, seconds), timeout=10, what="the call running")
            call.cancel()  # the client goes away: its HTTP connection closes, nothing else is said
            with contextlib.suppress(asyncio.CancelledError, httpx2.HTTPError):
                await call
            await walker.aclose()
            await _stopped_within(db, seconds, within=5)
            await _assert_pool_clean(process, db, peer)
        finally:
            await peer.aclose()
        records = process.log_records()
    assert await _walked(db) == 0, "the abandoned transaction's INSERT must be rolled back"
    assert "request_abandoned" in [r.get("event") for r in records]
    errors = [r for r in records if r.get("level") in ("ERROR", "CRITICAL")]
    assert not errors, f"a client walking away is not a server error: {errors}"


async def test_stateless_http_notifications_cancelled_stops_the_call_served_by_the_same_process(
    db: PgServer,
) -> None:
    """The TypeScript client keeps the call's POST open and sends notifications/cancelled in another POST."""
    seconds = next(_seconds)
    async with _http_server(db, MCP_STATELESS="true") as process:
        peer = RawHttp(process.url, stateless=True)
        walker = RawHttp(process.url, stateless=True)
        try:
            call = asyncio.create_task(walker.call_tool("execute_transaction", **_write_then_sleep(seconds)))
            await wait_until(lambda: _running(db, seconds), timeout=10, what="the call running")
            side = RawHttp(process.url, stateless=True)
            try:
                ack = await side.post(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": walker._ids, "reason": "user pressed stop"},
                    }
                )
                assert ack.status_code == 202, ack.text
            finally:
                await side.aclose()
            await _stopped_within(db, seconds, within=5)
            # The call's POST is answered (empty: no JSON-RPC response for a cancelled request).
            with contextlib.suppress(AssertionError, ValueError, httpx2.HTTPError):
                await asyncio.wait_for(call, 5)
            assert call.done()
            await walker.aclose()
            await _assert_pool_clean(process, db, peer)
        finally:
            await peer.aclose()
        records = process.log_records()
    assert await _walked(db) == 0, "the cancelled transaction's INSERT must be rolled back"
    assert "request_cancelled" in [r.get("event") for r in records]
    errors = [r for r in records if r.get("level") in ("ERROR", "CRITICAL")]
    assert not errors, errors


async def test_http_session_notifications_cancelled_stops_the_statement_and_rolls_back(db: PgServer) -> None:
    """A 2025-06-18 session: the spec's way to give up is notifications/cancelled (a dropped
    connection may be resumed, so it does not cancel; QUERY_TIMEOUT still bounds the call)."""
    seconds = next(_seconds)
    async with _http_server(db) as process:
        peer = RawHttp(process.url)
        try:
            await peer.initialize()
            call = asyncio.create_task(peer.call_tool("execute_transaction", **_write_then_sleep(seconds)))
            await wait_until(lambda: _running(db, seconds), timeout=10, what="the call running")
            request_id = peer._ids
            side = RawHttp(process.url)
            side.session_id = peer.session_id
            try:
                ack = await side.post(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": request_id, "reason": "user pressed stop"},
                    }
                )
                assert ack.status_code == 202, ack.text
            finally:
                await side.aclose()
            await _stopped_within(db, seconds, within=5)
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx2.HTTPError, AssertionError):
                await call
            await _assert_pool_clean(process, db, peer)
        finally:
            await peer.aclose()
        records = process.log_records()
    assert await _walked(db) == 0
    errors = [r for r in records if r.get("level") in ("ERROR", "CRITICAL")]
    assert not errors, errors


async def test_stdio_cancelled_stops_the_statement_and_a_killed_client_stops_the_next_one(
    db: PgServer,
) -> None:
    """notifications/cancelled: the statement stops, the one pooled connection serves the next call
    clean. Then the client dies mid-call: the statement stops too and pgmcp exits 0."""
    first, second = next(_seconds), next(_seconds)
    process = PgmcpProcess(db, stdio=True, DB_POOL_SIZE=1, QUERY_TIMEOUT=120)
    try:
        peer = StdioPeer(process)
        peer.initialize()
        request = peer.call_tool("execute_transaction", _write_then_sleep(first))
        await wait_until(lambda: _running(db, first), timeout=10, what="the call running")
        peer.send(
            "notifications/cancelled", {"requestId": request, "reason": "user pressed stop"}, notify=True
        )
        await _stopped_within(db, first, within=5)
        follow = peer.call_tool(
            "execute_query",
            {"connection_id": "default", "query": "SELECT count(*) AS n FROM walked"},
        )
        data = StdioPeer.tool_payload(await asyncio.to_thread(peer.response, follow, 10))
        # Read on the very connection that ran the cancelled INSERT: a leftover transaction would see it.
        assert data["rows"] == [{"n": 0}], data
        assert await _walked(db) == 0

        peer.call_tool("execute_transaction", _write_then_sleep(second))
        await wait_until(lambda: _running(db, second), timeout=10, what="the second call running")
        peer.close_pipes()  # the client process dies: stdin reaches EOF, stdout has no reader
        await _stopped_within(db, second, within=5)
        assert await process.wait_exit(timeout=10) == 0, process.logs()
    finally:
        process.stop()
    assert await _walked(db) == 0

    async def no_backends() -> bool:
        rows = await backends(db.dsn(), database=db.database)
        return not [r for r in rows if r["application_name"] == "pgmcp"]

    await wait_until(no_backends, timeout=5, what="pgmcp's pool closed")
