"""SIGTERM/SIGINT (every Kubernetes rollout) and SIGKILL: nothing half committed, nothing left behind.

On SIGTERM or SIGINT pgmcp stops accepting new calls (over HTTP ``/readyz``
turns 503 while the port stays open), lets in-flight calls finish for up to
SHUTDOWN_GRACE_SECONDS, then cancels and rolls back what
remains, closes its pools and exits 0. A SIGKILL cannot be handled: the
database itself rolls back the open transaction. Every test checks the table.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from typing import Any

import asyncpg
import httpx2
import pytest

from tests.conftest import PgServer
from tests.integration.faults import PgmcpProcess, RawHttp, StdioPeer, backends, wait_until

_ids = itertools.count(1)


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE shutdown_items (id int PRIMARY KEY, note text)")
    finally:
        await conn.close()
    return module_db


async def _present(db: PgServer, row_id: int) -> bool:
    conn = await asyncpg.connect(db.dsn())
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM shutdown_items WHERE id = $1", row_id))
    finally:
        await conn.close()


async def _sleeping(db: PgServer, marker: str) -> list[dict[str, Any]]:
    return await backends(db.dsn(), query_like=f"%{marker}%", database=db.database)


async def _no_pgmcp_backends(db: PgServer) -> None:
    async def gone() -> bool:
        rows = await backends(db.dsn(), database=db.database)
        return not [r for r in rows if r["application_name"] == "pgmcp"]

    await wait_until(gone, timeout=5, what="pgmcp's connections closed")


def _transaction(row_id: int, sleep: float) -> list[dict[str, Any]]:
    return [
        {"query": "INSERT INTO shutdown_items (id, note) VALUES ($1, 'in flight')", "params": [row_id]},
        {"query": f"SELECT pg_sleep({sleep})"},
    ]


# --- HTTP ----------------------------------------------------------------------------

GRACE = 1.5
SHORT = 0.3  # finishes within the grace period
LONG = 6  # would finish long after it


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"]
)
async def test_http_shutdown_finishes_short_calls_refuses_new_ones_and_rolls_back_the_rest(
    db: PgServer, sig: signal.Signals
) -> None:
    short_id, long_id = next(_ids), next(_ids)
    process = PgmcpProcess(db, SHUTDOWN_GRACE_SECONDS=GRACE)
    peer = RawHttp(process.url)
    try:
        await process.wait_healthy()
        await peer.initialize()
        short = asyncio.create_task(
            peer.call_tool(
                "execute_transaction", connection_id="default", queries=_transaction(short_id, SHORT)
            )
        )
        long = asyncio.create_task(
            peer.call_tool(
                "execute_transaction", connection_id="default", queries=_transaction(long_id, LONG)
            )
        )

        async def both_running() -> bool:
            return len(await _sleeping(db, "pg_sleep(")) >= 2

        await wait_until(both_running, timeout=10, what="both calls running")
        signalled = time.monotonic()
        process.signal(sig)
        await asyncio.sleep(0.2)
        # Draining: the port stays open for the probes, /readyz says 503 (a load balancer stops
        # routing here), /livez stays 200, and new calls are refused while the in-flight ones run.
        async with httpx2.AsyncClient() as http:
            ready = await http.get(f"{process.url}/readyz", timeout=2)
            live = await http.get(f"{process.url}/livez", timeout=2)
        assert ready.status_code == 503 and ready.json()["status"] == "draining", ready.text
        assert live.status_code == 200, live.text
        refused = await peer.call_tool("execute_query", connection_id="default", query="SELECT 1")
        assert refused["error_type"] == "connection_failed" and "shutting down" in refused["error"], refused
        finished = await asyncio.wait_for(short, timeout=10)
        assert finished["success"] is True, finished
        assert finished["committed"] is True
        code = await process.wait_exit(timeout=GRACE + 6)
        stopped_after = time.monotonic() - signalled
        with pytest.raises((httpx2.TransportError, AssertionError)):  # cut off, never answered
            await asyncio.wait_for(long, timeout=5)
        assert code == 0, process.logs()
        # The grace period, then cancel: well before the long statement would have ended.
        assert GRACE - 0.2 <= stopped_after < GRACE + 4, stopped_after
        records = process.log_records()
        assert "server_stopped" in [r.get("event") for r in records]
        assert "request_cancelled" in [r.get("event") for r in records]
        # uvicorn's one line saying it cancelled the request is expected; a traceback is not.
        errors = [r for r in records if r.get("level") == "ERROR" and "graceful shutdown" not in r["event"]]
        assert not errors, errors
    finally:
        await peer.aclose()
        process.stop()
    assert await _present(db, short_id), "the call that finished within the grace period must have committed"
    assert not await _present(db, long_id), "a transaction cut off by shutdown must be rolled back"
    assert not await _sleeping(db, f"pg_sleep({LONG})"), "the statement must be cancelled in the database"
    await _no_pgmcp_backends(db)


@pytest.mark.slow
async def test_http_grace_below_one_second_is_honoured(db: PgServer) -> None:
    """SHUTDOWN_GRACE_SECONDS=0.5 once became uvicorn's 0, i.e. "wait forever"."""
    row_id = next(_ids)
    process = PgmcpProcess(db, SHUTDOWN_GRACE_SECONDS=0.5)
    peer = RawHttp(process.url)
    try:
        await process.wait_healthy()
        await peer.initialize()
        task = asyncio.create_task(
            peer.call_tool("execute_transaction", connection_id="default", queries=_transaction(row_id, LONG))
        )
        await wait_until(lambda: _sleeping(db, f"pg_sleep({LONG})"), timeout=10, what="call running")
        signalled = time.monotonic()
        process.signal(signal.SIGTERM)
        assert await process.wait_exit(timeout=LONG) == 0
        assert time.monotonic() - signalled < 4
        with pytest.raises((httpx2.TransportError, AssertionError)):
            await asyncio.wait_for(task, timeout=5)
    finally:
        await peer.aclose()
        process.stop()
    assert not await _present(db, row_id)


async def test_sigkill_in_the_middle_of_a_transaction_commits_nothing(db: PgServer) -> None:
    row_id = next(_ids)
    process = PgmcpProcess(db, MCP_STATELESS="true")
    peer = RawHttp(process.url, stateless=True)
    try:
        await process.wait_healthy()
        task = asyncio.create_task(
            peer.call_tool("execute_transaction", connection_id="default", queries=_transaction(row_id, 3))
        )
        await wait_until(lambda: _sleeping(db, "pg_sleep(3)"), timeout=10, what="call running")
        process.signal(signal.SIGKILL)
        assert await process.wait_exit(timeout=5) == -signal.SIGKILL
        with pytest.raises(httpx2.TransportError):
            await asyncio.wait_for(task, timeout=5)
        # The INSERT ran but was never committed; the backend notices the lost client and
        # aborts the transaction at the latest when pg_sleep returns.
        assert not await _present(db, row_id)
        await _no_pgmcp_backends(db)
        assert not await _present(db, row_id)
    finally:
        await peer.aclose()
        process.stop()


# --- stdio -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"]
)
async def test_stdio_shutdown_finishes_short_calls_refuses_new_ones_and_rolls_back_the_rest(
    db: PgServer, sig: signal.Signals
) -> None:
    short_id, long_id = next(_ids), next(_ids)
    process = PgmcpProcess(db, stdio=True, SHUTDOWN_GRACE_SECONDS=GRACE)
    try:
        peer = StdioPeer(process)
        peer.initialize()
        short = peer.call_tool(
            "execute_transaction", {"connection_id": "default", "queries": _transaction(short_id, SHORT)}
        )
        peer.call_tool(
            "execute_transaction", {"connection_id": "default", "queries": _transaction(long_id, LONG)}
        )

        async def both_running() -> bool:
            return len(await _sleeping(db, "pg_sleep(")) >= 2

        await wait_until(both_running, timeout=10, what="both calls running")
        signalled = time.monotonic()
        process.signal(sig)
        await asyncio.sleep(0.1)
        # A call arriving during the grace period is refused with a sentence, not silently dropped.
        late = peer.call_tool("execute_query", {"connection_id": "default", "query": "SELECT 1"})
        answers: dict[int | None, dict[str, Any] | None] = {short: None, late: None}
        deadline = time.monotonic() + 10
        while any(v is None for v in answers.values()) and time.monotonic() < deadline:
            message = await asyncio.to_thread(peer.receive, max(deadline - time.monotonic(), 0.1))
            if message.get("id") in answers:
                answers[message["id"]] = message
        assert answers[short] is not None and answers[late] is not None, answers
        finished = StdioPeer.tool_payload(answers[short])
        assert finished["success"] is True, finished
        refused = StdioPeer.tool_payload(answers[late])
        assert refused["success"] is False
        assert refused["error_type"] == "connection_failed"
        assert "shutting down" in refused["error"], refused
        assert await process.wait_exit(timeout=GRACE + 6) == 0, process.logs()
        assert GRACE - 0.2 <= time.monotonic() - signalled < GRACE + 4
        records = process.log_records()
        assert "server_draining" in [r.get("event") for r in records]
        assert not [r for r in records if r.get("level") == "ERROR"], [
            r for r in records if r.get("level") == "ERROR"
        ]
    finally:
        process.stop()
    assert await _present(db, short_id)
    assert not await _present(db, long_id)
    assert not await _sleeping(db, f"pg_sleep({LONG})")
    await _no_pgmcp_backends(db)
