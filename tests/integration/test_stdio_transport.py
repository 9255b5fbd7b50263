"""The stdio transport pgmcp serves on the event loop (no worker threads) carries any message size.

MCP clients launch the server with pipes; pgmcp reads and writes them through
asyncio rather than the SDK's thread-backed files (see benchmarks/README.md).
A pipe holds 64 KiB and asyncio's line reader stops at 64 KiB by default: these
tests send a request and receive responses well past both, in one session.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import PgServer
from tests.integration.harness import payload
from tests.integration.proc import PGMCP, json_lines, pgmcp_env


async def test_requests_and_responses_larger_than_a_pipe_cross_stdio_intact(
    module_db: PgServer, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)")
    finally:
        await conn.close()
    params = StdioServerParameters(
        command=PGMCP,
        args=["serve", "--transport", "stdio"],
        env=pgmcp_env(module_db, MAX_RESULT_BYTES=str(8 * 1024 * 1024)),
        cwd=str(tmp_path),
    )
    errlog_path = tmp_path / "stdio.stderr"
    rows = [[i, f"{i:05d}" + "é" * 200] for i in range(1500)]  # ~600 KB of JSON in one request line
    with errlog_path.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            inserted = payload(
                await client.call_tool(
                    "batch_execute",
                    {
                        "connection_id": "default",
                        "query": "INSERT INTO notes (id, body) VALUES ($1, $2)",
                        "params_list": rows,
                    },
                )
            )
            assert inserted["rows_affected"] == 1500
            for _ in range(2):  # a second large answer on the same session: the writer drained
                data = payload(
                    await client.call_tool(
                        "execute_query",
                        {
                            "connection_id": "default",
                            "query": "SELECT id, body FROM notes ORDER BY id",
                            "fetch_size": 2000,
                        },
                    )
                )
                assert data["row_count"] == 1500 and data["truncated"] is False
                assert [[r["id"], r["body"]] for r in data["rows"]] == rows
    conn = await asyncpg.connect(module_db.dsn())
    try:
        assert await conn.fetchval("SELECT count(*) FROM notes") == 1500
    finally:
        await conn.close()
    events = [line["event"] for line in json_lines(errlog_path.read_text())]
    assert events.count("tool_call") == 3 and "server_stopped" in events


async def test_stdout_to_a_file_falls_back_to_the_sdk_transport_and_answers(
    module_db: PgServer, tmp_path: Path
) -> None:
    # stdout is not a pipe: the event-loop transport steps aside and the SDK's serves the protocol.
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "file-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": {"connection_id": "default", "query": "SELECT 6 * 7 AS answer"},
            },
        },
    ]
    stdout_path = tmp_path / "responses.jsonl"
    with stdout_path.open("wb") as stdout, (tmp_path / "stderr.log").open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            PGMCP,
            "serve",
            "--transport",
            "stdio",
            stdin=asyncio.subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
            env=pgmcp_env(module_db),
            cwd=str(tmp_path),
        )
    assert proc.stdin is not None
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
        await proc.stdin.drain()
        deadline = time.monotonic() + 60
        while '"id":2' not in stdout_path.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), timeout=60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    answers = {m["id"]: m for m in map(json.loads, stdout_path.read_text().splitlines()) if "id" in m}
    assert answers[2]["result"]["structuredContent"]["rows"] == [{"answer": 42}]
