"""The fast paths answer byte for byte as the SDK's own dispatcher does: every tool, every error type.

The same requests go to real ``pgmcp serve`` processes, one with the fast paths
on (the default) and one with ``MCP_FAST_PATH=false`` (every message through the
SDK), and the raw answers are compared as bytes: over stdio in both protocol eras
(the 2025-11-25 handshake and the 2026-07-28 per-request envelope), and over
HTTP in the 2026-07-28 era (the only one the HTTP fast path takes), stateful and
stateless, status and headers included. Only what differs between two runs of
the same call is masked first: timings, timestamps, process figures and the
random id of the untrusted-data boundary (:func:`masked`).

Every request is one the fast path takes (checked in process on the same
server), so the comparison is not SDK against SDK; and the requests reach every
tool and every ``error_type`` of pgmcp.errors that a call can provoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import threading
from typing import Any

import asyncpg
import httpx2
import pytest

from pgmcp.app import open_app
from pgmcp.fastpath.calls import FastCalls, negotiated
from pgmcp.server import TOOL_GROUPS, build_server
from tests.conftest import PgServer
from tests.integration.faults import PgmcpProcess, free_port
from tests.integration.harness import settings_for

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "differential-tests", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
SETTINGS = {
    "MCP_LOG_LEVEL": "WARNING",
    "QUERY_TIMEOUT": "1",
    "MAX_FETCH_SIZE": "100",
    "DEFAULT_FETCH_SIZE": "50",
    "MAX_BATCH_SIZE": "3",
    "ALLOW_RUNTIME_CONNECTIONS": "true",
}
CLOSED_PORT = free_port()  # nothing listens there: add_connection fails to connect
TYPES_QUERY = (
    "SELECT 1::int AS i, 9007199254740993::bigint AS big, 'x<y \u00e9\u4e2d'::text AS t, 1.50::numeric(4,2) AS n, "
    "DATE '2024-02-29' AS d, TIMESTAMPTZ '2024-02-29 12:00:00+00' AS ts, '{\"a\": [1, null]}'::jsonb AS j, "
    "NULL::int AS z, ARRAY[1, 2] AS arr, '\\x01ff'::bytea AS b, 'NaN'::float8 AS nan, "
    "interval '1 day 2 hours' AS iv, 1e300::float8 AS huge, 1e-5::float8 AS tiny, 1.5e-7::float4 AS tinier, "
    "E'del\\x7f tab\\t nul-free \\u2028 \\U0001F600' AS odd"
)


def calls(db: PgServer) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """(label, tool, arguments, the error_type expected or None for success), in the order sent."""
    here = {"connection_id": "default"}
    extra = {"connection_id": "extra", "pool_size": 2, **db.spec_args()}
    insert = "INSERT INTO diff_log (note) VALUES ($1)"
    return [
        ("types", "execute_query", {**here, "query": TYPES_QUERY}, None),
        (
            "params",
            "execute_query",
            {**here, "query": "SELECT n FROM diff_rows WHERE n > $1", "params": [1]},
            None,
        ),
        (
            "capped",
            "execute_query",
            {**here, "query": "SELECT n FROM diff_rows ORDER BY n", "fetch_size": 2},
            None,
        ),
        ("blocked", "execute_query", {**here, "query": "DROP TABLE diff_rows"}, "query_blocked"),
        ("two_statements", "execute_query", {**here, "query": "SELECT 1; SELECT 2"}, "query_blocked"),
        (
            "no_connection",
            "execute_query",
            {"connection_id": "nowhere", "query": "SELECT 1"},
            "connection_not_found",
        ),
        ("division", "execute_query", {**here, "query": "SELECT 1/0"}, "database_error"),
        ("timeout", "execute_query", {**here, "query": "SELECT pg_sleep(3)"}, "timeout"),
        (
            "fetch_size_cap",
            "execute_query",
            {**here, "query": "SELECT 1", "fetch_size": 1000},
            "limit_exceeded",
        ),
        ("wrong_types", "execute_query", {"connection_id": 5, "query": ["SELECT 1"]}, "invalid_input"),
        ("missing_query", "execute_query", here, "invalid_input"),
        ("bad_param", "execute_query", {**here, "query": "SELECT $1::int", "params": ["x"]}, "invalid_input"),
        (
            "transaction",
            "execute_transaction",
            {
                **here,
                "queries": [
                    {"query": insert, "params": ["t"]},
                    {"query": "SELECT count(*) > 0 AS any FROM diff_rows"},
                ],
            },
            None,
        ),
        (
            "transaction_fails",
            "execute_transaction",
            {**here, "queries": [{"query": insert, "params": ["u"]}, {"query": "SELECT 1/0"}]},
            "database_error",
        ),
        ("batch", "batch_execute", {**here, "query": insert, "params_list": [["a"], ["b"]]}, None),
        (
            "batch_too_big",
            "batch_execute",
            {**here, "query": insert, "params_list": [["a"]] * 4},
            "limit_exceeded",
        ),
        (
            "batch_blocked",
            "batch_execute",
            {**here, "query": "DROP TABLE diff_rows", "params_list": [[]]},
            "query_blocked",
        ),
        ("schemas", "list_schemas", here, None),
        ("tables", "list_tables", here, None),
        ("table_schema", "get_table_schema", {**here, "table_name": "diff_rows"}, None),
        ("search", "search_objects", {**here, "pattern": "diff_"}, None),
        (
            "explain",
            "explain_query",
            {**here, "query": "SELECT * FROM diff_rows WHERE n = $1", "params": [2]},
            None,
        ),
        ("explain_blocked", "explain_query", {**here, "query": "SELECT 1; SELECT 2"}, "query_blocked"),
        ("explain_utility", "explain_query", {**here, "query": "DROP TABLE diff_rows"}, "database_error"),
        ("connections", "list_connections", {}, None),
        ("test_connection", "test_connection", here, None),
        ("add_connection", "add_connection", extra, None),
        (
            "add_unreachable",
            "add_connection",
            {**extra, "connection_id": "gone", "port": CLOSED_PORT},
            "connection_failed",
        ),
        ("query_added", "execute_query", {"connection_id": "extra", "query": "SELECT 2 AS two"}, None),
        ("remove_connection", "remove_connection", {"connection_id": "extra"}, None),
        ("remove_missing", "remove_connection", {"connection_id": "extra"}, "connection_not_found"),
        ("health", "health_check", {}, None),
        ("metrics", "get_metrics", {}, None),
        ("history", "get_query_history", {"limit": 5}, None),
        ("business", "get_business_metrics", {}, None),
        # The tools of issues 16 and 18, by answers that stay the same from one run to the next
        # (activity, statistics and row counts change between the two processes' runs).
        ("db_health_missing", "analyze_db_health", {"connection_id": "nowhere"}, "connection_not_found"),
        ("top_missing", "get_top_queries", {"connection_id": "nowhere"}, "connection_not_found"),
        (
            "advise_blocked",
            "recommend_indexes",
            {**here, "queries": ["DROP TABLE diff_rows"]},
            "query_blocked",
        ),
        ("activity_missing", "get_activity", {"connection_id": "nowhere"}, "connection_not_found"),
        (
            "compare_schemas",
            "compare_schemas",
            {"source_connection_id": "default", "target_connection_id": "default"},
            None,
        ),
        (
            "compare_tables_missing",
            "compare_tables",
            {
                "source_connection_id": "default",
                "source_table": "diff_rows",
                "target_connection_id": "nowhere",
                "target_table": "diff_rows",
                "key": "n",
            },
            "connection_not_found",
        ),
        (
            "copy_blocked",
            "copy_data",
            {
                "source_connection_id": "default",
                "query": "DROP TABLE diff_rows",
                "target_connection_id": "default",
                "target_table": "diff_rows",
            },
            "query_blocked",
        ),
        # Not a pgmcp tool: the SDK's JSON-RPC error, on both sides.
        ("unknown_tool", "drop_everything", {}, "jsonrpc_error"),
    ]


# What two runs of the same call may differ in (timings, clock, host and process readings, pool
# occupancy at the moment of asking, health verdicts on those readings); all else: the same bytes.
_VOLATILE_KEYS = (
    r"[a-z0-9_]*_ms|[a-z_]*_percent|[a-z_]*_seconds|[a-z_]*_bytes|timestamp|last_checked|started_at|"
    r"slow_queries|warnings|status|pid|load_average|idle_connections|active_connections"
)
_VALUE = r'(?:-?[0-9][0-9.eE+-]*|\\?"[^"\\]*\\?"|null|\[[^\]]*\])'
_MASK = re.compile(rb'(\\?"(?:' + _VOLATILE_KEYS.encode() + rb')\\?":)' + _VALUE.encode())
_TAG = re.compile(rb"untrusted-data-[0-9a-f]{16}")


def masked(data: bytes) -> bytes:
    return _TAG.sub(b"untrusted-data-TAG", _MASK.sub(rb"\1 0", data))


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE diff_rows (n int PRIMARY KEY, label text); "
            "INSERT INTO diff_rows VALUES (1, 'one'), (2, 'two'), (3, 'three'); "
            "CREATE TABLE diff_log (id serial PRIMARY KEY, note text)"
        )
    finally:
        await conn.close()
    return module_db


def _request(rid: int, tool: str, arguments: dict[str, Any], era: str) -> dict[str, Any]:
    params: dict[str, Any] = {"name": tool, "arguments": arguments}
    if era == "modern":
        params["_meta"] = ENVELOPE
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode() + b"\n"


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "differential", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


# --- stdio -------------------------------------------------------------------------------------


class RawStdio:
    """The raw lines pgmcp writes on stdout, as bytes."""

    def __init__(self, process: PgmcpProcess) -> None:
        assert process.proc.stdin is not None and process.proc.stdout is not None
        self.process = process
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, args=(process.proc.stdout,), daemon=True).start()

    def _read(self, stdout: Any) -> None:
        with contextlib.suppress(ValueError, OSError):
            for line in iter(stdout.readline, b""):
                self.lines.put(line)

    def send(self, message: dict[str, Any]) -> None:
        stdin = self.process.proc.stdin
        assert stdin is not None
        stdin.write(_line(message))
        stdin.flush()

    def answer(self, timeout: float = 30) -> bytes:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer within {timeout} s:\n{self.process.logs()}") from None


def _stdio_conversation(db: PgServer, era: str, fast: bool) -> list[bytes]:
    process = PgmcpProcess(db, stdio=True, MCP_FAST_PATH=str(fast).lower(), **SETTINGS)
    try:
        wire = RawStdio(process)
        if era == "legacy":
            wire.send(INITIALIZE)
            wire.answer()
            wire.send(INITIALIZED)
        answers = []
        for rid, (_, tool, arguments, _) in enumerate(calls(db), start=1):
            wire.send(_request(rid, tool, arguments, era))
            answers.append(wire.answer())
        return answers
    finally:
        process.stop()


def _compare(labels: list[str], sdk: list[bytes], fast: list[bytes]) -> None:
    assert len(sdk) == len(fast) == len(labels)
    for label, expected, got in zip(labels, sdk, fast, strict=True):
        mine, theirs = masked(got), masked(expected)
        if mine != theirs:
            at = next(
                (i for i, (x, y) in enumerate(zip(mine, theirs, strict=False)) if x != y),
                min(len(mine), len(theirs)),
            )
            pytest.fail(
                f"{label}: the fast path's answer differs from the SDK's at byte {at} (masked):\n"
                f" fast: ...{mine[max(at - 300, 0) : at + 200]!r}\n  sdk: ...{theirs[max(at - 300, 0) : at + 200]!r}"
            )


def _error_types(answers: list[bytes]) -> list[str | None]:
    kinds: list[str | None] = []
    for raw in answers:
        message = json.loads(raw)
        if "error" in message:
            kinds.append("jsonrpc_error")
            continue
        result = message["result"]
        text = result["content"][0]["text"]
        payload = json.loads(text[text.find("{") : text.rfind("}") + 1])
        kinds.append(None if payload["success"] else payload["error_type"])
    return kinds


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_stdio_fast_path_answers_byte_for_byte_as_the_sdk(db: PgServer, era: str) -> None:
    sdk, fast = await asyncio.gather(
        asyncio.to_thread(_stdio_conversation, db, era, False),
        asyncio.to_thread(_stdio_conversation, db, era, True),
    )
    plan = calls(db)
    _compare([label for label, *_ in plan], sdk, fast)
    # The comparison is worth something: each call came out as intended (success or its error type).
    assert _error_types(fast) == [expected for *_, expected in plan]
    if era == "modern":
        assert json.loads(fast[0])["result"]["resultType"] == "complete"


def test_the_requests_reach_every_tool_and_every_error_type(db: PgServer) -> None:
    plan = calls(db)
    tools = {tool for _, tool, _, _ in plan}
    assert {t for group in TOOL_GROUPS.values() for t in group} <= tools
    # declined and confirmation_required need CONFIRM_WRITES and an eliciting client: not here.
    wanted = {"invalid_input", "connection_not_found", "query_blocked", "timeout", "limit_exceeded"}
    wanted |= {"connection_failed", "database_error", "jsonrpc_error"}
    assert wanted == {kind for *_, kind in plan if kind is not None}


async def test_every_request_is_one_the_fast_path_takes(db: PgServer) -> None:
    """Else the differential would compare the SDK with itself (checked in process, on the same server).

    The unknown tool is the SDK's to answer (it is no registered pgmcp tool); every other call is fast.
    """
    async with open_app(settings_for(db, **{k.lower(): v for k, v in SETTINGS.items()})) as app:
        fast = FastCalls(build_server(app))
        assert fast.enabled
        legacy_version = negotiated(INITIALIZE["params"])
        assert legacy_version == LEGACY
        for rid, (label, tool, arguments, _) in enumerate(calls(db), start=1):
            legacy = fast.parse(_line(_request(rid, tool, arguments, "legacy")))
            modern = fast.parse(_line(_request(rid, tool, arguments, "modern")))
            headers, body = _post(rid, tool, arguments)
            over_http = fast.parse(body)
            if tool == "drop_everything":
                assert legacy is modern is over_http is None
                continue
            assert legacy is not None and FastCalls.legacy_meta(legacy), label
            assert modern is not None and fast.modern_version(modern) == MODERN, label
            assert over_http is not None and fast.modern_version(over_http, headers=headers) == MODERN, label


# --- HTTP (2026-07-28) -------------------------------------------------------------------------


def _post(rid: int, tool: str, arguments: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": tool,
    }
    return headers, json.dumps(_request(rid, tool, arguments, "modern"), ensure_ascii=False).encode()


# Set by uvicorn alike on both; content-length follows the body, whose masked timings vary in length.
_SKIPPED_HEADERS = {"date", "server", "content-length"}


async def _http_conversation(db: PgServer, stateless: bool, fast: bool) -> list[bytes]:
    process = PgmcpProcess(
        db, MCP_FAST_PATH=str(fast).lower(), MCP_STATELESS=str(stateless).lower(), **SETTINGS
    )
    try:
        await process.wait_healthy()
        seen = []
        async with httpx2.AsyncClient(timeout=30) as http:
            for rid, (_, tool, arguments, _) in enumerate(calls(db), start=1):
                headers, body = _post(rid, tool, arguments)
                response = await http.post(f"{process.url}/mcp", headers=headers, content=body)
                head = [f"{k}: {v}" for k, v in response.headers.items() if k not in _SKIPPED_HEADERS]
                seen.append(f"{response.status_code}\n{chr(10).join(head)}\n\n".encode() + response.content)
        return seen
    finally:
        process.stop()


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
async def test_http_fast_path_answers_byte_for_byte_as_the_sdk(db: PgServer, stateless: bool) -> None:
    sdk, fast = await asyncio.gather(
        _http_conversation(db, stateless, False), _http_conversation(db, stateless, True)
    )
    plan = calls(db)
    _compare([label for label, *_ in plan], sdk, fast)
    bodies = [raw.split(b"\n\n", 1)[1] for raw in fast]
    assert _error_types(bodies) == [expected for *_, expected in plan]
    statuses = {label: raw.split(b"\n", 1)[0] for (label, *_), raw in zip(plan, fast, strict=True)}
    assert {label for label, status in statuses.items() if status != b"200"} == {"unknown_tool"}, statuses
