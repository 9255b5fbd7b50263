"""Bad input at the protocol edge: a clear error for each, and the next call works.

Over real HTTP and real stdio (subprocesses): malformed JSON, messages that are
not JSON-RPC, invalid UTF-8, 100,000 nested arrays, bodies over
MCP_MAX_REQUEST_BYTES, unknown tools and methods, params_list over
MAX_BATCH_SIZE. After each one a normal call must succeed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.integration.faults import PgmcpProcess, RawHttp, StdioPeer

MAX_BYTES = 256 * 1024
MAX_BATCH = 100
NESTED = b"[" * 100_000 + b"]" * 100_000  # 200 kB: under MAX_BYTES, so it reaches the parser


def _call(request_id: int, name: str, arguments: dict[str, Any]) -> bytes:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return json.dumps(body).encode()


def _nested_param_call(request_id: int, depth_bytes: bytes) -> bytes:
    head = _call(
        request_id, "execute_query", {"connection_id": "default", "query": "SELECT $1::text", "params": []}
    )
    return head.replace(b'"params": []', b'"params": [' + depth_bytes + b"]")


# (name, raw message, accepted JSON-RPC error codes or None for a tool result, expected error_type).
# Two codes where the SDK's HTTP transport and JSON-RPC 2.0's letter differ (the stdio edge is ours).
BAD_MESSAGES: list[tuple[str, bytes, set[int] | None, str | None]] = [
    ("malformed_json", b'{"jsonrpc": "2.0", "id": 7, "method": ', {-32700}, None),
    ("not_json_rpc", b"[1, 2, 3]", {-32600, -32602}, None),
    ("invalid_utf8", b'\xff\xfe{"jsonrpc": "2.0"}', {-32700}, None),
    ("nested_100000_arrays", _nested_param_call(8, NESTED), {-32700}, None),
    ("nested_500_arrays", _nested_param_call(9, b"[" * 500 + b"]" * 500), {-32600, -32700}, None),
    ("unknown_method", b'{"jsonrpc": "2.0", "id": 10, "method": "no/such_method"}', {-32601}, None),
    ("unknown_tool", _call(11, "drop_everything", {}), {-32602}, None),
    (
        "params_list_over_max_batch_size",
        _call(
            12,
            "batch_execute",
            {
                "connection_id": "default",
                "query": "INSERT INTO edge_rows (n) VALUES ($1)",
                "params_list": [[i] for i in range(MAX_BATCH + 1)],
            },
        ),
        None,
        "limit_exceeded",
    ),
    (
        "wrong_argument_types",
        _call(13, "execute_query", {"connection_id": 5, "query": ["SELECT 1"]}),
        None,
        "invalid_input",
    ),
]


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute("CREATE TABLE edge_rows (n int NOT NULL)")
    finally:
        await conn.close()
    return module_db


async def _rows(db: PgServer) -> int:
    conn = await asyncpg.connect(db.dsn())
    try:
        return int(await conn.fetchval("SELECT count(*) FROM edge_rows"))
    finally:
        await conn.close()


SETTINGS = {"MCP_MAX_REQUEST_BYTES": MAX_BYTES, "MAX_BATCH_SIZE": MAX_BATCH, "MCP_LOG_LEVEL": "WARNING"}


# --- HTTP ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def http(db: PgServer) -> AsyncIterator[RawHttp]:
    process = PgmcpProcess(db, **SETTINGS)
    peer = RawHttp(process.url)
    try:
        await process.wait_healthy()
        await peer.initialize()
        yield peer
    finally:
        await peer.aclose()
        process.stop()


def _assert_error(message: dict[str, Any], codes: set[int] | None, error_type: str | None) -> None:
    if codes is not None:
        assert message.get("error", {}).get("code") in codes, message
        assert len(message["error"]["message"]) > 5, message
    else:
        payload = StdioPeer.tool_payload(message)
        assert message["result"]["isError"] is True
        assert payload["success"] is False
        assert payload["error_type"] == error_type, payload
        assert "Traceback" not in payload["error"]


@pytest.mark.parametrize(
    ("name", "raw", "code", "error_type"), BAD_MESSAGES, ids=[m[0] for m in BAD_MESSAGES]
)
async def test_http_bad_message_gets_a_clear_error_and_the_next_call_works(
    http: RawHttp, db: PgServer, name: str, raw: bytes, code: set[int] | None, error_type: str | None
) -> None:
    before = await _rows(db)
    response = await http.post(raw)
    assert response.status_code in (200, 400), (response.status_code, response.text[:300])
    _assert_error(RawHttp.message(response), code, error_type)
    ok = await http.call_tool("execute_query", connection_id="default", query="SELECT 1 AS one")
    assert ok["rows"] == [{"one": 1}]
    assert await _rows(db) == before


async def test_http_body_over_mcp_max_request_bytes_is_refused_with_413(http: RawHttp, db: PgServer) -> None:
    big = _call(
        20, "execute_query", {"connection_id": "default", "query": "SELECT '" + "x" * MAX_BYTES + "'"}
    )
    response = await http.post(big)
    assert response.status_code == 413, response.text[:200]
    assert "too large" in response.text.lower()
    ok = await http.call_tool("execute_query", connection_id="default", query="SELECT 1 AS one")
    assert ok["rows"] == [{"one": 1}]


async def test_http_batch_at_max_batch_size_is_accepted_and_written(http: RawHttp, db: PgServer) -> None:
    before = await _rows(db)
    data = await http.call_tool(
        "batch_execute",
        connection_id="default",
        query="INSERT INTO edge_rows (n) VALUES ($1)",
        params_list=[[i] for i in range(MAX_BATCH)],
    )
    assert data["rows_affected"] == MAX_BATCH, data
    assert await _rows(db) == before + MAX_BATCH


# --- stdio ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stdio(db: PgServer) -> Iterator[StdioPeer]:
    process = PgmcpProcess(db, stdio=True, **SETTINGS)
    try:
        peer = StdioPeer(process)
        peer.initialize()
        yield peer
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("name", "raw", "code", "error_type"), BAD_MESSAGES, ids=[m[0] for m in BAD_MESSAGES]
)
async def test_stdio_bad_line_gets_a_clear_error_and_the_next_call_works(
    stdio: StdioPeer, db: PgServer, name: str, raw: bytes, code: set[int] | None, error_type: str | None
) -> None:
    before = await _rows(db)
    stdio.send_raw(raw + b"\n")
    message = await asyncio.to_thread(stdio.receive, 10)
    _assert_error(message, code, error_type)
    # The request's id comes back whenever the line is JSON at all (even when the message is refused,
    # e.g. nested too deeply for the SDK); null only when the id cannot be read.
    expected_id = {"unknown_method": 10, "unknown_tool": 11, "params_list_over_max_batch_size": 12}
    expected_id |= {"wrong_argument_types": 13, "nested_500_arrays": 9}
    assert message.get("id") == expected_id.get(name), message
    follow = stdio.call_tool("execute_query", {"connection_id": "default", "query": "SELECT 1 AS one"})
    ok = StdioPeer.tool_payload(await asyncio.to_thread(stdio.response, follow, 10))
    assert ok["rows"] == [{"one": 1}]
    assert await _rows(db) == before
