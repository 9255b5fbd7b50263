"""``pgmcp serve`` as a real subprocess over stdio and Streamable HTTP, as MCP clients launch it.

Covers SPEC §1 (console script, ``python -m pgmcp``), §2 (``/mcp`` stateful and
stateless, ``/health``, ``/metrics``, ``/connections``, bearer auth, refusing
an unauthenticated non-loopback bind), §5 (a bad setting stops start-up with one
line) and §7 (JSON logs on stderr, stdout is the protocol's alone), with the
password of ``default`` never showing anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import PgServer
from tests.integration.harness import payload
from tests.integration.proc import (
    PGMCP,
    PYTHON,
    ROOT,
    free_port,
    http_get,
    json_lines,
    pgmcp_env,
    run_cli,
    serve_http,
    spawn,
)

# name -> (parameters, required, (readOnlyHint, destructiveHint, idempotentHint))
READ = (True, False, True)
WRITE = (False, True, False)
EXPECTED: dict[str, tuple[set[str], set[str], tuple[bool, bool, bool]]] = {
    "add_connection": (
        {
            "connection_id",
            "host",
            "port",
            "database",
            "user",
            "password",
            "password_env",
            "pool_size",
            "ssl_mode",
            "ssl_root_cert",
            "ssl_cert",
            "ssl_key",
            "readonly",
            "ssh_host",
            "ssh_port",
            "ssh_user",
            "ssh_key_env",
            "ssh_password_env",
            "ssh_known_hosts",
            "dsn",
        },
        {"connection_id"},  # host, database and user, or a dsn
        (False, False, False),
    ),
    "remove_connection": ({"connection_id"}, {"connection_id"}, (False, True, False)),
    "list_connections": (set(), set(), READ),
    "test_connection": ({"connection_id"}, {"connection_id"}, READ),
    "execute_query": (
        {"connection_id", "query", "params", "fetch_size"},
        {"connection_id", "query"},
        READ,
    ),
    "execute_transaction": ({"connection_id", "queries"}, {"connection_id", "queries"}, WRITE),
    "batch_execute": (
        {"connection_id", "query", "params_list"},
        {"connection_id", "query", "params_list"},
        WRITE,
    ),
    "list_schemas": ({"connection_id"}, {"connection_id"}, READ),
    "list_tables": ({"connection_id", "schema", "limit"}, {"connection_id"}, READ),
    "search_objects": (
        {"connection_id", "pattern", "kinds", "schema", "detail", "limit"},
        {"connection_id", "pattern"},
        READ,
    ),
    "get_table_schema": ({"connection_id", "table_name", "schema"}, {"connection_id", "table_name"}, READ),
    "explain_query": (
        {"connection_id", "query", "params", "analyze"},
        {"connection_id", "query"},
        READ,
    ),
    "health_check": (set(), set(), READ),
    "get_metrics": (set(), set(), READ),
    "get_query_history": ({"connection_id", "min_duration_ms", "limit"}, set(), READ),
}

# Trust authentication ignores a password, so a fake one can be set on 'default' and
# searched for everywhere; against a server that needs one, the real one is searched for.
FAKE_SECRET = "some-secret-value-5f9c2e"
INLINE_SECRET = "inline-secret-value-81d0"
TOKEN = "test-token-0a7e91c4d2"


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2))"
        )
    finally:
        await conn.close()
    return module_db


def secrets_of(db: PgServer) -> list[str]:
    return [db.password or FAKE_SECRET, INLINE_SECRET]


def server_env(db: PgServer, **settings: str) -> dict[str, str]:
    env = pgmcp_env(db, DB_POOL_SIZE="2", **settings)
    if not db.password:
        env["DB_PASSWORD"] = FAKE_SECRET
    return env


def assert_no_secret(db: PgServer, *texts: str) -> None:
    for text in texts:
        for secret in secrets_of(db):
            assert secret not in text, f"secret found in: {text[:500]}"


async def check_tool_list(client: Client) -> list[str]:
    """Assert the SPEC's 14 tools exactly; return the names of any further (extension) tools."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(EXPECTED) <= set(tools), set(EXPECTED) - set(tools)
    for name, tool in tools.items():
        assert tool.annotations is not None, name
        assert tool.annotations.read_only_hint is not None, name
        assert tool.output_schema is not None, name
        assert tool.description, name
        assert tool.input_schema.get("type") == "object", name
    for name, (params, required, (read_only, destructive, idempotent)) in EXPECTED.items():
        tool = tools[name]
        assert tool.annotations is not None
        assert set(tool.input_schema.get("properties", {})) == params, name
        assert set(tool.input_schema.get("required", [])) == required, name
        hints = (
            tool.annotations.read_only_hint,
            tool.annotations.destructive_hint,
            tool.annotations.idempotent_hint,
        )
        assert hints == (read_only, destructive, idempotent), name
    return sorted(n for n, t in tools.items() if n not in EXPECTED and not t.input_schema.get("required"))


async def exercise_every_tool(client: Client, db: PgServer, tag: str) -> list[str]:
    """Call all 14 tools once with real work; return every result's text for secret checks."""
    texts: list[str] = []

    async def ok(tool: str, **arguments: Any) -> dict[str, Any]:
        result = await client.call_tool(tool, arguments)
        texts.extend(c.text for c in result.content if hasattr(c, "text"))
        data = payload(result)
        assert data["success"] is True, (tool, data)
        texts.append(json.dumps(data))
        return data

    extensions = await check_tool_list(client)
    extra = f"extra_{tag}"
    spec = db.spec_args()
    if "password" not in spec:
        spec["password"] = INLINE_SECRET
    added = await ok("add_connection", connection_id=extra, pool_size=1, **spec)
    assert added["pool_stats"]["size"] == 1
    assert (await ok("test_connection", connection_id=extra))["is_healthy"] is True
    listed = await ok("list_connections")
    assert {c["connection_id"] for c in listed["connections"]} == {"default", extra}
    tx = await ok(
        "execute_transaction",
        connection_id=extra,
        queries=[
            {
                "query": "INSERT INTO items (name, price) VALUES ($1, $2) RETURNING id",
                "params": [f"{tag}-a", 1.5],
            }
        ],
    )
    assert tx["committed"] is True
    batch = await ok(
        "batch_execute",
        connection_id="default",
        query="INSERT INTO items (name, price) VALUES ($1, $2)",
        params_list=[[f"{tag}-b", 2], [f"{tag}-c", 299.99]],
    )
    assert batch["rows_affected"] == 2
    rows = await ok(
        "execute_query",
        connection_id="default",
        query="SELECT name, price FROM items WHERE name LIKE $1 ORDER BY name",
        params=[f"{tag}-%"],
    )
    assert rows["rows"] == [
        {"name": f"{tag}-a", "price": "1.50"},
        {"name": f"{tag}-b", "price": "2.00"},
        {"name": f"{tag}-c", "price": "299.99"},
    ]
    assert "public" in {s["schema_name"] for s in (await ok("list_schemas", connection_id=extra))["schemas"]}
    assert "items" in {t["table_name"] for t in (await ok("list_tables", connection_id=extra))["tables"]}
    found = await ok("search_objects", connection_id="default", pattern="item", kinds=["table"])
    assert {"kind": "table", "schema": "public", "name": "items"} in found["objects"]
    schema = await ok("get_table_schema", connection_id="default", table_name="items")
    assert [c["name"] for c in schema["columns"]] == ["id", "name", "price"]
    assert schema["primary_key"] == ["id"]
    plan = await ok(
        "explain_query", connection_id="default", query="SELECT * FROM items WHERE id = $1", params=[1]
    )
    assert plan["summary"]["total_cost"] > 0
    health = await ok("health_check")
    assert health["connections"][extra]["is_healthy"] is True
    assert health["connections"]["default"]["is_healthy"] is True
    metrics = await ok("get_metrics")
    assert metrics["total_queries"] >= 3
    history = await ok("get_query_history", connection_id=extra)
    assert any(q["query"].startswith("INSERT INTO items") for q in history["queries"])
    for name in extensions:  # tools beyond the SPEC's 14 that need no arguments
        await ok(name)
    await ok("remove_connection", connection_id=extra)
    listed = await ok("list_connections")
    assert {c["connection_id"] for c in listed["connections"]} == {"default"}

    conn = await asyncpg.connect(db.dsn())
    try:
        stored = await conn.fetch(
            "SELECT name, price::text AS price FROM items WHERE name LIKE $1 ORDER BY name", f"{tag}-%"
        )
    finally:
        await conn.close()
    assert [(r["name"], r["price"]) for r in stored] == [
        (f"{tag}-a", "1.50"),
        (f"{tag}-b", "2.00"),
        (f"{tag}-c", "299.99"),
    ]
    return texts


async def pgmcp_backends(db: PgServer) -> int:
    conn = await asyncpg.connect(db.dsn())
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgmcp'",
            db.database,
        )
    finally:
        await conn.close()
    return count


# --- stdio -------------------------------------------------------------------------------------


async def test_stdio_lists_and_calls_every_tool_and_logs_json_to_stderr(db: PgServer, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=PGMCP, args=["serve", "--transport", "stdio"], env=server_env(db), cwd=str(tmp_path)
    )
    errlog_path = tmp_path / "stdio.stderr"
    with errlog_path.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            texts = await exercise_every_tool(client, db, "stdio")
    stderr = errlog_path.read_text()
    logs = json_lines(stderr)
    events = [line["event"] for line in logs]
    assert "server_started" in events
    started = next(line for line in logs if line["event"] == "server_started")
    assert started["transport"] == "stdio"
    assert all({"timestamp", "level", "event"} <= set(line) for line in logs)
    assert "Traceback" not in stderr
    assert_no_secret(db, stderr, *texts)
    assert await pgmcp_backends(db) == 0, "pools must be closed when the stdio server exits"


async def _read_message(stdout: asyncio.StreamReader, lines: list[bytes]) -> dict[str, Any]:
    line = await asyncio.wait_for(stdout.readline(), timeout=30)
    assert line, "stdout closed before the answer arrived"
    lines.append(line)
    message: dict[str, Any] = json.loads(line)
    return message


async def test_stdio_stdout_carries_only_json_rpc_and_closing_stdin_exits_0(
    db: PgServer, tmp_path: Path
) -> None:
    stderr_path = tmp_path / "raw.stderr"
    with stderr_path.open("wb") as errfile:
        proc = await asyncio.create_subprocess_exec(
            PGMCP,
            "serve",
            "--transport",
            "stdio",
            env=server_env(db),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errfile,
            cwd=str(tmp_path),
        )
    assert proc.stdin is not None and proc.stdout is not None
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": {"connection_id": "default", "query": "SELECT 41 + 1 AS answer"},
            },
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": {"connection_id": "default", "query": "SELECT 1/0"},
            },
        },
    ]
    lines: list[bytes] = []
    answers: dict[int, dict[str, Any]] = {}
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            await proc.stdin.drain()
            if "id" in request:
                while request["id"] not in answers:
                    message = await _read_message(proc.stdout, lines)
                    if "id" in message:
                        answers[message["id"]] = message
        proc.stdin.close()
        rest = await asyncio.wait_for(proc.stdout.read(), timeout=30)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines.extend(line + b"\n" for line in rest.splitlines())
    assert code == 0, stderr_path.read_text()
    for line in lines:
        message = json.loads(line)  # every stdout line is a protocol message, nothing else
        assert message["jsonrpc"] == "2.0", line
    assert answers[1]["result"]["serverInfo"]["name"] == "postgresql-mcp-server"
    assert set(EXPECTED) <= {t["name"] for t in answers[2]["result"]["tools"]}
    assert answers[3]["result"]["isError"] is False
    assert answers[3]["result"]["structuredContent"]["rows"] == [{"answer": 42}]
    assert answers[4]["result"]["isError"] is True
    assert "structuredContent" not in answers[4]["result"]  # errors: JSON as text only
    assert json.loads(answers[4]["result"]["content"][0]["text"])["error_type"] == "database_error"
    stderr = stderr_path.read_text()
    events = [line["event"] for line in json_lines(stderr)]
    assert "server_started" in events
    assert "server_stopped" in events
    assert_no_secret(db, stderr, *(line.decode() for line in lines))


# --- HTTP --------------------------------------------------------------------------------------


async def test_http_lists_and_calls_every_tool_and_endpoints_never_show_the_password(
    db: PgServer, tmp_path: Path
) -> None:
    with serve_http(server_env(db), tmp_path) as server:
        async with Client(server.mcp_url) as client:
            texts = await exercise_every_tool(client, db, "http")
        status, body = http_get(f"{server.base_url}/health")
        assert status == 200
        health = json.loads(body)
        assert health["status"] in {"healthy", "degraded"}
        assert health["connections"]["default"]["is_healthy"] is True
        status, connections = http_get(f"{server.base_url}/connections")
        assert status == 200
        listed = json.loads(connections)["connections"]
        assert [c["connection_id"] for c in listed] == ["default"]
        assert listed[0]["database"] == db.database
        assert "password" not in connections.lower()
        status, metrics = http_get(f"{server.base_url}/metrics")
        assert status == 200
        samples = prometheus_samples(metrics)
        # execute_query ran one SELECT on 'default'; the batch and the transaction wrote.
        assert samples[("mcp_server_queries_total", ("default", "SELECT", "success"))] >= 1
        assert samples[("mcp_server_queries_total", ("default", "INSERT", "success"))] >= 1
        assert samples[("mcp_server_tool_calls_total", ("success", "execute_query"))] == 1
        assert samples[("mcp_server_tool_calls_total", ("success", "add_connection"))] == 1
        assert samples[("mcp_server_memory_usage_bytes", ())] > 0
        texts += [body, connections, metrics]
    stderr = server.stderr_text()
    logs = server.logs()
    assert any(line["event"] == "server_started" and line["transport"] == "http" for line in logs)
    assert any(line["event"] == "server_stopped" for line in logs)
    assert_no_secret(db, stderr, *texts)
    assert await pgmcp_backends(db) == 0, "pools must be closed after SIGTERM"


def prometheus_samples(text: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """Parsed /metrics: (sample name, label values sorted by label name) -> value."""
    samples: dict[tuple[str, tuple[str, ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(v for _, v in sorted(sample.labels.items()))
            samples[(sample.name, key)] = sample.value
    return samples


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def tools_call(query: str, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "execute_query", "arguments": {"connection_id": "default", "query": query}},
    }


async def test_stateless_http_answers_a_tools_call_without_initialize(db: PgServer, tmp_path: Path) -> None:
    with serve_http(server_env(db, MCP_STATELESS="true"), tmp_path) as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            responses = [
                await http.post(server.mcp_url, json=tools_call(f"SELECT {i} AS i", i), headers=MCP_HEADERS)
                for i in range(3)
            ]
        for i, response in enumerate(responses):
            assert response.status_code == 200, response.text
            assert "mcp-session-id" not in response.headers
            message = response.json()
            assert message["id"] == i
            assert message["result"]["isError"] is False
            assert message["result"]["structuredContent"]["rows"] == [{"i": i}]
        # The SDK client works against a stateless server too.
        async with Client(server.mcp_url) as client:
            result = await client.call_tool(
                "execute_query", {"connection_id": "default", "query": "SELECT 7 AS n"}
            )
            assert payload(result)["rows"] == [{"n": 7}]


async def test_bearer_token_guards_mcp_metrics_and_connections_but_not_health(
    db: PgServer, tmp_path: Path
) -> None:
    with serve_http(server_env(db, MCP_AUTH_TOKEN=TOKEN), tmp_path) as server:
        async with httpx2.AsyncClient(timeout=30) as http:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}):
                response = await http.post(
                    server.mcp_url, json=tools_call("SELECT 1"), headers={**MCP_HEADERS, **headers}
                )
                assert response.status_code == 401, headers
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert response.json()["error_type"] == "unauthorized"
                for path in ("/metrics", "/connections"):
                    assert (await http.get(server.base_url + path, headers=headers)).status_code == 401, path
            good = {"Authorization": f"Bearer {TOKEN}"}
            for path in ("/metrics", "/connections"):
                assert (await http.get(server.base_url + path, headers=good)).status_code == 200, path
            assert (await http.get(server.base_url + "/health")).status_code == 200
        authed = httpx2.AsyncClient(headers=good, timeout=30)
        async with authed, Client(streamable_http_client(server.mcp_url, http_client=authed)) as client:
            result = await client.call_tool(
                "execute_query", {"connection_id": "default", "query": "SELECT 1 AS one"}
            )
            assert payload(result)["rows"] == [{"one": 1}]
    assert TOKEN not in server.stderr_text()


async def test_sigterm_with_a_client_still_connected_exits_0(db: PgServer, tmp_path: Path) -> None:
    with serve_http(server_env(db, SHUTDOWN_GRACE_SECONDS="2"), tmp_path) as server:
        client = Client(server.mcp_url)
        await client.__aenter__()
        try:
            result = await client.call_tool(
                "execute_query", {"connection_id": "default", "query": "SELECT 1 AS one"}
            )
            assert payload(result)["rows"] == [{"one": 1}]
            code = server.stop(signal.SIGTERM, timeout=20)
            assert code == 0, server.stderr_text()
        finally:
            # The server is gone: closing the session may fail, and that is fine.
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)


# --- start-up ----------------------------------------------------------------------------------


def test_non_loopback_host_without_a_token_is_refused_in_one_line(db: PgServer) -> None:
    result = run_cli(["serve", "--transport", "http", "--host", "0.0.0.0", "--port", "0"], server_env(db))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "MCP_AUTH_TOKEN" in lines[0]
    assert "0.0.0.0" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_non_loopback_host_starts_when_unauthenticated_is_allowed_explicitly(
    db: PgServer, tmp_path: Path
) -> None:
    env = server_env(db, MCP_ALLOW_UNAUTHENTICATED="true")
    with serve_http(env, tmp_path, extra_args=("--host", "0.0.0.0")) as server:
        status, _ = http_get(f"{server.base_url}/connections")
        assert status == 200
    assert any(line["event"] == "unauthenticated_http" for line in server.logs())


@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_a_bad_setting_stops_startup_with_one_line_naming_it(db: PgServer, transport: str) -> None:
    result = run_cli(["serve", "--transport", transport], server_env(db, QUERY_TIMEOUT="abc"))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "QUERY_TIMEOUT" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_python_m_pgmcp_help_describes_serve() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "pgmcp", "--help"], capture_output=True, text=True, timeout=60, cwd=str(ROOT)
    )
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout
    serve = subprocess.run(
        [PYTHON, "-m", "pgmcp", "serve", "--help"], capture_output=True, text=True, timeout=60, cwd=str(ROOT)
    )
    assert serve.returncode == 0, serve.stderr
    for option in ("--transport", "--host", "--port", "--env-file"):
        assert option in serve.stdout


def test_python_m_pgmcp_without_arguments_serves_http(db: PgServer, tmp_path: Path) -> None:
    """``python -m pgmcp`` alone is ``pgmcp serve`` over HTTP: /health answers and SIGTERM exits 0."""
    port = free_port()
    env = server_env(db, MCP_SERVER_PORT=str(port))
    server = spawn([], env, tmp_path / "python-m.stderr", command=(PYTHON, "-m", "pgmcp"))
    server.port = port
    try:
        health = server.wait_healthy()
        assert health["connections"]["default"]["is_healthy"] is True
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.stderr_text()
