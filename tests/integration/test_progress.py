"""notifications/progress: batch_execute reports its chunks, a long execute_query its elapsed seconds."""

from __future__ import annotations

import asyncpg
import pytest
from mcp import Client, StdioServerParameters

from pgmcp.app import open_app
from pgmcp.server import build_server
from tests.conftest import PgServer
from tests.integration.harness import payload, running, settings_for
from tests.integration.proc import PGMCP, pgmcp_env


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS items (n int PRIMARY KEY)")
    finally:
        await conn.close()
    return module_db


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_batch_of_10000_rows_reports_increasing_progress_ending_at_total(
    db: PgServer, mode: str
) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    offset = 0 if mode == "legacy" else 10_000
    arguments = {
        "connection_id": "default",
        "query": "INSERT INTO items VALUES ($1)",
        "params_list": [[offset + i] for i in range(10_000)],
    }
    async with open_app(settings_for(db)) as app, Client(build_server(app), mode=mode) as client:
        result = await client.call_tool("batch_execute", arguments, progress_callback=on_progress)
    assert payload(result)["rows_affected"] == 10_000
    assert len(seen) >= 5, seen
    progress = [p for p, _ in seen]
    assert progress == sorted(progress) and len(set(progress)) == len(progress)
    assert seen[-1] == (10_000, 10_000)
    assert all(total == 10_000 for _, total in seen)


async def test_a_call_without_a_progress_token_gets_no_notifications_and_the_same_answer(
    db: PgServer,
) -> None:
    async with running(db) as (_, client):
        result = await client.call_tool(
            "batch_execute",
            {"connection_id": "default", "query": "SELECT $1::int", "params_list": [[1], [2]]},
        )
    assert payload(result)["batch_size"] == 2


async def test_a_long_execute_query_reports_elapsed_seconds(db: PgServer) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with running(db, progress_interval=0.2) as (_, client):
        result = await client.call_tool(
            "execute_query",
            {"connection_id": "default", "query": "SELECT pg_sleep(1.1)"},
            progress_callback=on_progress,
        )
    assert payload(result)["row_count"] == 1
    assert len(seen) >= 3, seen
    assert [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
    assert all(total is None for _, total, _ in seen)
    assert seen[0][2] is not None and "running for" in seen[0][2]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_progress_over_stdio_with_the_fast_path_on(db: PgServer, mode: str) -> None:
    """The stdio fast path steps aside for a call with a progressToken: the SDK sends the notifications."""
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    offset = 20_000 if mode == "legacy" else 30_000
    env = pgmcp_env(db, MCP_STDIO_FAST_PATH="true", DB_POOL_SIZE="2")
    server = StdioServerParameters(command=PGMCP, args=["serve", "--transport", "stdio"], env=env)
    async with Client(server, mode=mode) as client:
        result = await client.call_tool(
            "batch_execute",
            {
                "connection_id": "default",
                "query": "INSERT INTO items VALUES ($1)",
                "params_list": [[offset + i] for i in range(5_000)],
            },
            progress_callback=on_progress,
        )
    assert payload(result)["rows_affected"] == 5_000
    assert [p for p, _ in seen] == [1000, 2000, 3000, 4000, 5000]
    assert {t for _, t in seen} == {5000}
