"""2026-07-28 tools/call POSTs answered without the SDK's app (src/pgmcp/fastpath/http.py), as the SDK does.

The same POSTs go to two real ``pgmcp serve --transport http`` processes, one
with MCP_HTTP_FAST_PATH=false, in stateful (answers may stream) and stateless
(plain JSON) mode; status, content type and body must match. The POSTs include
everything the SDK refuses before dispatching (Host, Content-Type, Accept,
mismatched or duplicated routing headers, an unsupported version, declared
Mcp-Param headers), which the fast path must leave to it. Then the long call:
past the SDK's 15 s deferral window it is answered as an event stream with pings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx2
import pytest

from pgmcp.app import open_app
from pgmcp.fastpath import http as fast_http
from pgmcp.http import build_http_app
from pgmcp.server import build_server
from tests.conftest import PgServer
from tests.integration.faults import PgmcpProcess
from tests.integration.harness import settings_for, without_timings

VERSION = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "http-fast-path-tests", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _post(
    request_id: int, tool: str, arguments: Any, *, meta: Any = ENVELOPE, **headers: str
) -> tuple[dict[str, str], bytes]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    base = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": VERSION,
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return {**base, **headers}, json.dumps(body).encode()


SELECT = {"connection_id": "default", "query": "SELECT n, 'x<y' AS t FROM quick_rows ORDER BY n"}
POSTS: list[tuple[str, tuple[dict[str, str], bytes]]] = [
    ("select", _post(1, "execute_query", SELECT)),
    ("blocked", _post(2, "execute_query", {"connection_id": "default", "query": "DROP TABLE quick_rows"})),
    ("bad_arguments", _post(3, "execute_query", {"connection_id": 5})),
    ("database_error", _post(4, "execute_query", {"connection_id": "default", "query": "SELECT 1/0"})),
    ("unknown_tool", _post(5, "drop_everything", {})),
    ("list_tables", _post(6, "list_tables", {"connection_id": "default"})),
    ("progress_token", _post(7, "execute_query", SELECT, meta={**ENVELOPE, "progressToken": "p"})),
    ("no_envelope", _post(8, "execute_query", SELECT, meta=None)),
    (
        "unsupported_in_envelope",
        _post(
            9,
            "execute_query",
            SELECT,
            meta={**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"},
        ),
    ),
    ("name_header_mismatch", _post(10, "execute_query", SELECT, **{"mcp-name": "list_tables"})),
    # The same headers as an accepted call, another tool in the body: still a mismatch.
    (
        "body_name_mismatch",
        _post(19, "list_tables", {"connection_id": "default"}, **{"mcp-name": "execute_query"}),
    ),
    ("method_header_mismatch", _post(11, "execute_query", SELECT, **{"mcp-method": "tools/list"})),
    ("foreign_host", _post(12, "execute_query", SELECT, host="evil.example.com")),
    ("foreign_origin", _post(13, "execute_query", SELECT, origin="http://evil.example.com")),
    ("text_plain", _post(14, "execute_query", SELECT, **{"content-type": "text/plain"})),
    ("accept_sse_only", _post(15, "execute_query", SELECT, accept="text/event-stream")),
    ("accept_json_only", _post(16, "execute_query", SELECT, accept="application/json")),
    ("mcp_param_header", _post(17, "execute_query", SELECT, **{"mcp-param-query": "SELECT 2"})),
    ("arguments_not_object", _post(18, "execute_query", [1, 2])),
]


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE quick_rows (n int PRIMARY KEY); INSERT INTO quick_rows VALUES (1), (2)"
        )
    finally:
        await conn.close()
    return module_db


def _seen(response: httpx2.Response) -> dict[str, Any]:
    """Status, media type and the JSON-RPC message (from JSON or from the SSE stream's message event)."""
    media = response.headers.get("content-type", "").split(";")[0]
    text = response.text
    message: Any = text
    if media == "application/json":
        message = json.loads(text)
    elif media == "text/event-stream":
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        message = json.loads(data[-1]) if data else text
    return {"status": response.status_code, "media": media, "message": without_timings(message)}


async def _answers(db: PgServer, fast: bool, stateless: bool) -> list[dict[str, Any]]:
    process = PgmcpProcess(db, MCP_HTTP_FAST_PATH=str(fast).lower(), MCP_STATELESS=str(stateless).lower())
    try:
        await process.wait_healthy()
        async with httpx2.AsyncClient(timeout=30) as http:
            seen = []
            for _, (headers, body) in POSTS:
                seen.append(_seen(await http.post(f"{process.url}/mcp", headers=headers, content=body)))
            # The same header twice: only the raw request can carry it.
            dup = [(k.encode(), v.encode()) for k, v in POSTS[0][1][0].items()] + [
                (b"mcp-name", b"execute_query")
            ]
            seen.append(_seen(await http.post(f"{process.url}/mcp", headers=dup, content=POSTS[0][1][1])))
            return seen
    finally:
        process.stop()


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_http_fast_path_answers_every_post_as_the_sdk_does(db: PgServer, stateless: bool) -> None:
    sdk, fast = await asyncio.gather(_answers(db, False, stateless), _answers(db, True, stateless))
    names = [name for name, _ in POSTS] + ["duplicated_header"]
    for name, expected, got in zip(names, sdk, fast, strict=True):
        assert got == expected, name
    by_name = dict(zip(names, fast, strict=True))
    # The comparison covers answers and refusals alike.
    assert by_name["select"]["status"] == 200 and by_name["select"]["media"] == "application/json"
    assert by_name["select"]["message"]["result"]["structuredContent"]["rows"] == [
        {"n": 1, "t": "x<y"},
        {"n": 2, "t": "x<y"},
    ]
    refused = {name: seen["status"] for name, seen in by_name.items() if seen["status"] != 200}
    assert {"foreign_host", "text_plain", "name_header_mismatch", "duplicated_header"} <= set(refused), (
        refused
    )


# --- a call past the SDK's deferral window (in process, window shortened) ----------------------


@pytest.fixture
async def asgi(db: PgServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx2.AsyncClient]:
    monkeypatch.setattr(fast_http, "_SSE_PING_INTERVAL", 0.2)
    async with open_app(settings_for(db)) as app:
        server = build_server(app)
        transport = httpx2.ASGITransport(app=build_http_app(app, server))
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as client:
            yield client


async def test_a_long_call_streams_keepalive_pings_then_its_answer(asgi: httpx2.AsyncClient) -> None:
    headers, body = _post(
        1, "execute_query", {"connection_id": "default", "query": "SELECT pg_sleep(0.7) AS s"}
    )
    response = await asgi.post("/mcp", headers=headers, content=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.count(": ping\r\n\r\n") >= 2, response.text
    events = [line for line in response.text.split("\r\n") if line.startswith("data: ")]
    assert len(events) == 1
    message = json.loads(events[0][len("data: ") :])
    assert message["id"] == 1 and message["result"]["structuredContent"]["rows"] == [{"s": None}]


async def test_a_quick_call_is_plain_json(asgi: httpx2.AsyncClient) -> None:
    headers, body = _post(2, "execute_query", {"connection_id": "default", "query": "SELECT 1 AS one"})
    response = await asgi.post("/mcp", headers=headers, content=body)
    assert response.headers["content-type"] == "application/json"
    assert response.json()["result"]["structuredContent"]["rows"] == [{"one": 1}]
