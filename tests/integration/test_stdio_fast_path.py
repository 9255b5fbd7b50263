"""tools/call over stdio without the SDK's dispatcher (src/pgmcp/fastpath.py) answers as the SDK does.

The same conversation goes to two real ``pgmcp serve --transport stdio``
processes, one with MCP_STDIO_FAST_PATH=false (every message through the SDK),
and the answers are compared, in both protocol eras: the 2025 handshake and the
2026-07-28 per-request envelope the official Python client sends. Then what the
fast path must keep from the SDK: calls pipelined on one session, a cancelled
call never answered, calls running at end of input answered ``Connection closed``
with their transactions rolled back, and which lines it leaves to the SDK.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest

from pgmcp.app import open_app
from pgmcp.fastpath import ToolCallFastPath
from pgmcp.server import build_server
from tests.conftest import PgServer
from tests.integration.faults import PgmcpProcess, StdioPeer, backends, wait_until
from tests.integration.harness import settings_for, without_timings

ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "fast-path-tests", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
TYPES_QUERY = (
    "SELECT 1::int AS i, 9007199254740993::bigint AS big, 'x<y'::text AS t, 1.50::numeric(4,2) AS n, "
    "DATE '2024-02-29' AS d, TIMESTAMPTZ '2024-02-29 12:00:00+00' AS ts, '{\"a\": [1, null]}'::jsonb AS j, "
    "NULL::int AS z, ARRAY[1, 2] AS arr, '\\x01ff'::bytea AS b, 'NaN'::float8 AS nan, interval '1 day 2 hours' AS iv"
)
# (tool, arguments): successes, tool errors, argument errors, an unknown tool.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("execute_query", {"connection_id": "default", "query": TYPES_QUERY}),
    (
        "execute_query",
        {"connection_id": "default", "query": "SELECT n FROM fast_rows WHERE n > $1", "params": [1]},
    ),
    ("execute_query", {"connection_id": "default", "query": "DROP TABLE fast_rows"}),
    ("execute_query", {"connection_id": "default", "query": "SELECT 1; SELECT 2"}),
    ("execute_query", {"connection_id": "nowhere", "query": "SELECT 1"}),
    ("execute_query", {"connection_id": "default", "query": "SELECT 1/0"}),
    ("execute_query", {"connection_id": 5, "query": ["SELECT 1"]}),
    ("execute_query", {"connection_id": "default"}),
    (
        "execute_transaction",
        {"connection_id": "default", "queries": [{"query": "SELECT n FROM fast_rows ORDER BY n"}]},
    ),
    ("batch_execute", {"connection_id": "default", "query": "SELECT $1::int", "params_list": [[1], [2]]}),
    ("list_tables", {"connection_id": "default"}),
    ("get_table_schema", {"connection_id": "default", "table_name": "fast_rows"}),
    ("explain_query", {"connection_id": "default", "query": "SELECT * FROM fast_rows"}),
    ("list_connections", {}),
    ("drop_everything", {}),
]


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE fast_rows (n int PRIMARY KEY); INSERT INTO fast_rows VALUES (1), (2), (3)"
        )
        await conn.execute("CREATE TABLE fast_walked (id int PRIMARY KEY)")
    finally:
        await conn.close()
    return module_db


def _open(peer: StdioPeer, era: str) -> None:
    if era == "legacy":
        peer.initialize()
    else:
        discovered = peer.response(peer.send("server/discover", {"_meta": ENVELOPE}), timeout=30)
        assert "result" in discovered, discovered


def _call(peer: StdioPeer, era: str, tool: str, arguments: dict[str, Any]) -> int | None:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if era == "modern":
        params["_meta"] = ENVELOPE
    return peer.send("tools/call", params)


async def _conversation(db: PgServer, era: str, fast: bool) -> list[dict[str, Any]]:
    process = PgmcpProcess(db, stdio=True, MCP_STDIO_FAST_PATH=str(fast).lower(), MCP_LOG_LEVEL="WARNING")
    try:
        peer = StdioPeer(process)
        await asyncio.to_thread(_open, peer, era)
        answers = []
        for tool, arguments in CALLS:
            request = _call(peer, era, tool, arguments)
            answers.append(await asyncio.to_thread(peer.response, request, 20))
        return answers
    finally:
        process.stop()


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_fast_path_answers_every_call_as_the_sdk_does(db: PgServer, era: str) -> None:
    sdk, fast = await asyncio.gather(_conversation(db, era, fast=False), _conversation(db, era, fast=True))
    for (tool, arguments), expected, got in zip(CALLS, sdk, fast, strict=True):
        assert without_timings(got) == without_timings(expected), (tool, arguments)
    # The conversation is worth comparing: results, tool errors and argument errors all occur.
    payloads = [StdioPeer.tool_payload(m) for m in fast if "result" in m]
    # An unknown tool is a protocol error (-32602), on both paths alike.
    assert [m["error"]["code"] for m in fast if "error" in m] == [-32602]
    assert payloads[0]["rows"] == [
        {
            "i": 1,
            "big": "9007199254740993",  # above 2**53: a string, so no client rounds it
            "t": "x<y",
            "n": "1.50",
            "d": "2024-02-29",
            "ts": "2024-02-29T12:00:00+00:00",
            "j": {"a": [1, None]},
            "z": None,
            "arr": [1, 2],
            "b": "Af8=",
            "nan": "NaN",
            "iv": "1 day 02:00:00",
        }
    ]
    kinds = [p.get("error_type") for p in payloads]
    assert {"query_blocked", "invalid_input", "connection_not_found", "database_error"} <= set(kinds), kinds
    if era == "modern":
        assert fast[0]["result"]["resultType"] == "complete"
        assert (
            fast[0]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
            == "postgresql-mcp-server"
        )


async def test_pipelined_calls_are_answered_by_id_while_a_slow_one_runs(db: PgServer) -> None:
    process = PgmcpProcess(db, stdio=True, MCP_LOG_LEVEL="WARNING")
    try:
        peer = StdioPeer(process)
        await asyncio.to_thread(peer.initialize)
        slow = peer.call_tool(
            "execute_query", {"connection_id": "default", "query": "SELECT pg_sleep(0.5) AS s"}
        )
        quick = [
            peer.call_tool("execute_query", {"connection_id": "default", "query": f"SELECT {i} AS i"})
            for i in range(20)
        ]
        answers: dict[Any, dict[str, Any]] = {}
        while len(answers) < 21:
            message = await asyncio.to_thread(peer.receive, 20)
            answers[message["id"]] = message
        order = list(answers)
        assert order.index(slow) == 20, "the slow call held up the quick ones"
        for i, request in enumerate(quick):
            assert StdioPeer.tool_payload(answers[request])["rows"] == [{"i": i}]
    finally:
        process.stop()


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "sdk"])
async def test_end_of_input_answers_running_calls_connection_closed_and_rolls_back(
    db: PgServer, fast: bool
) -> None:
    process = PgmcpProcess(db, stdio=True, MCP_STDIO_FAST_PATH=str(fast).lower(), QUERY_TIMEOUT=120)
    seconds = 61 if fast else 62
    try:
        peer = StdioPeer(process)
        await asyncio.to_thread(peer.initialize)
        request = peer.call_tool(
            "execute_transaction",
            {
                "connection_id": "default",
                "queries": [
                    {"query": "INSERT INTO fast_walked (id) VALUES ($1)", "params": [seconds]},
                    {"query": f"SELECT pg_sleep({seconds})"},
                ],
            },
        )

        async def sleeping() -> bool:
            rows = await backends(db.dsn(), query_like=f"%pg_sleep({seconds})%", database=db.database)
            return any(r["state"] != "idle" for r in rows)

        await wait_until(sleeping, timeout=10, what="the call running")
        assert process.proc.stdin is not None
        process.proc.stdin.close()  # end of input; the client still reads
        answer = await asyncio.to_thread(peer.response, request, 10)
        assert answer["error"] == {"code": -32000, "message": "Connection closed"}, answer
        assert await process.wait_exit(timeout=15) == 0, process.logs()
    finally:
        process.stop()
    conn = await asyncpg.connect(db.dsn())
    try:
        assert await conn.fetchval("SELECT count(*) FROM fast_walked WHERE id = $1", seconds) == 0
    finally:
        await conn.close()


# --- which lines the fast path takes (in process, on the real database) ---------------------------


class Wire:
    """What the fast path writes, by request id."""

    def __init__(self) -> None:
        self.answers: dict[Any, dict[str, Any]] = {}
        self.arrived = asyncio.Event()

    def write(self, data: bytes) -> None:
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        message = orjson.loads(data)
        self.answers[message["id"]] = message
        self.arrived.set()

    async def drain(self) -> None:
        return None

    async def answer(self, request_id: Any) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while request_id not in self.answers:
                self.arrived.clear()
                await self.arrived.wait()
        return self.answers[request_id]


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _tools_call(request_id: Any, name: str = "execute_query", **params: Any) -> bytes:
    body = {"name": name, "arguments": {"connection_id": "default", "query": "SELECT 1 AS one"}, **params}
    return _line({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": body})


INITIALIZE = _line(
    {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
)
INITIALIZED = _line({"jsonrpc": "2.0", "method": "notifications/initialized"})


@pytest.fixture
async def fast(db: PgServer) -> AsyncIterator[tuple[ToolCallFastPath, Wire]]:
    async with open_app(settings_for(db)) as app:
        wire = Wire()
        path = ToolCallFastPath(build_server(app), wire.write, wire.drain)
        yield path, wire
        await path.close()


async def test_only_calls_after_the_handshake_take_the_fast_path(fast: tuple[ToolCallFastPath, Wire]) -> None:
    path, wire = fast
    assert not path.take(_tools_call(1)), "before initialize the SDK answers (and refuses)"
    assert not path.take(INITIALIZE)
    assert not path.take(_tools_call(2)), "before notifications/initialized"
    assert not path.take(INITIALIZED)
    assert path.take(_tools_call(3))
    answer = await wire.answer(3)
    assert answer["result"]["structuredContent"]["rows"] == [{"one": 1}]
    assert answer["result"]["isError"] is False and "resultType" not in answer["result"]


async def test_lines_the_fast_path_leaves_to_the_sdk(fast: tuple[ToolCallFastPath, Wire]) -> None:
    path, wire = fast
    path.take(INITIALIZE)
    path.take(INITIALIZED)
    envelope_on_legacy = _tools_call(10, _meta=ENVELOPE)
    extra_param = _tools_call(11, task={"ttl": 1000})
    unknown_tool = _tools_call(12, name="drop_everything")
    not_an_object = _line(
        {
            "jsonrpc": "2.0",
            "id": 13,
            "method": "tools/call",
            "params": {"name": "execute_query", "arguments": [1]},
        }
    )
    deep = _line(
        {
            "jsonrpc": "2.0",
            "id": 14,
            "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": {
                    "connection_id": "default",
                    "query": "SELECT $1",
                    "params": [json.loads("[" * 300 + "]" * 300)],
                },
            },
        }
    )
    bool_id = _tools_call(True)
    not_json = b'{"jsonrpc": "2.0", "id": 15, "method": "tools/call", "params": \n'
    for line in (envelope_on_legacy, extra_param, unknown_tool, not_an_object, deep, bool_id, not_json):
        assert not path.take(line), line[:80]
    # A progress token wants notifications/progress, which go out through the SDK's session.
    assert not path.take(_tools_call(16, _meta={"progressToken": "p"}))
    # Wide is fine (a 5,000-row batch); only nesting past the SDK's parser limit is left to it.
    batch = {"connection_id": "default", "query": "SELECT $1::int", "params_list": [[i] for i in range(5000)]}
    assert path.take(
        _line(
            {
                "jsonrpc": "2.0",
                "id": 18,
                "method": "tools/call",
                "params": {"name": "batch_execute", "arguments": batch},
            }
        )
    )
    assert (await wire.answer(18))["result"]["structuredContent"]["batch_size"] == 5000
    assert set(wire.answers) == {18}


async def test_a_cancelled_call_is_never_answered_and_a_duplicate_id_goes_to_the_sdk(
    fast: tuple[ToolCallFastPath, Wire],
) -> None:
    path, wire = fast
    path.take(INITIALIZE)
    path.take(INITIALIZED)
    slow = _line(
        {
            "jsonrpc": "2.0",
            "id": "s1",
            "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": {"connection_id": "default", "query": "SELECT pg_sleep(30)"},
            },
        }
    )
    assert path.take(slow)
    assert not path.take(slow), "a second request with an id still in flight is the SDK's to judge"
    await asyncio.sleep(0.2)
    cancel = {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": "s1", "reason": "stop"},
    }
    assert path.take(_line(cancel))
    assert not path.take(_line({**cancel, "params": {"requestId": "other"}})), "not ours: the SDK's"
    assert path.take(_tools_call(17))
    await wire.answer(17)
    await asyncio.sleep(0.2)
    assert "s1" not in wire.answers


async def test_modern_calls_need_an_envelope_the_sdk_accepts(fast: tuple[ToolCallFastPath, Wire]) -> None:
    path, wire = fast
    assert not path.take(
        _line({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": ENVELOPE}})
    )
    assert path.take(_tools_call(2, _meta=ENVELOPE))
    result = (await wire.answer(2))["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"] == {
        "io.modelcontextprotocol/serverInfo": {
            "name": "postgresql-mcp-server",
            "version": result["_meta"]["io.modelcontextprotocol/serverInfo"]["version"],
        }
    }
    unsupported = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    no_capabilities = {k: v for k, v in ENVELOPE.items() if not k.endswith("clientCapabilities")}
    extra_meta = {**ENVELOPE, "io.modelcontextprotocol/logLevel": "debug"}
    for meta in (unsupported, no_capabilities, extra_meta, None):
        params = {"_meta": meta} if meta is not None else {}
        assert not path.take(_tools_call(3, **params)), meta
