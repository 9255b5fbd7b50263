"""Extensions on a real PostgreSQL: the example revenue plugin, custom tools, rules and business metrics.

In-process (official MCP client) for behaviour, and as real ``pgmcp serve``
subprocesses over stdio and HTTP for discovery: the example plugin installed
with pip (its ``pgmcp.plugins`` entry point), loaded by ``MCP_PLUGINS``, absent
when not installed, and broken plugins at start-up.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client, StdioServerParameters

import pgmcp
from pgmcp.app import AppContext
from pgmcp.config import Settings
from pgmcp.security import Decision, Risk
from tests.conftest import PgServer
from tests.integration.harness import ServerInTask, call_err, call_ok, load_demo, running

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "revenue_plugin"
SAMPLE = "pgmcp_ext_sample_plugin"
Q1 = {"start_date": "2024-01-01", "end_date": "2024-03-31"}


# --- a plugin written the way the handbook's users would ----------------------------------------


def register_sample(server: pgmcp.PostgreSQLMCPServer) -> None:
    """Tools that write, sleep and use the handbook's get_pool style; one blocking and one warning rule."""

    @server.tool(read_only=False)
    async def write_audit_row(connection_id: str, message: str) -> dict[str, Any]:
        """Insert one audit row."""
        result = await server.execute_transaction(
            connection_id, [("INSERT INTO ext_audit (message) VALUES ($1)", [message])]
        )
        return {"inserted": result.results[0]["row_count"]}

    @server.tool()
    async def slow_report(connection_id: str, seconds: float) -> dict[str, Any]:
        """Sleep in the database."""
        await server.execute_query(connection_id, "SELECT pg_sleep($1)", [seconds])
        return {"slept": seconds}

    @server.tool()
    async def handbook_fetch(connection_id: str, query: str) -> dict[str, Any]:
        """The handbook's code: get_pool, acquire, fetch, dict(row)."""
        pool = server.connection_manager.get_pool(connection_id)
        if not pool:
            return {"success": False, "error": "Connection not found", "error_type": "connection_not_found"}
        async with pool.acquire() as conn:
            rows = await conn.fetch(query)
            return {"metrics": [dict(row) for row in rows]}

    def no_secret_plans(query: str, decision: Decision) -> Iterable[Risk]:
        if "secret_plans" in decision.tables:
            yield Risk("Query blocked: secret_plans is off limits to agents", block=True)

    def check_custom_patterns(query: str) -> list[str]:  # the handbook's one-argument rule
        return ["Reading logs: mind personal data"] if "logs" in query.lower() else []

    server.add_rule(no_secret_plans)
    server.security_validator.add_rule(lambda q, d: ())  # the policy itself is reachable too
    server.add_rule(check_custom_patterns)


@pytest.fixture(scope="module")
def plugins_importable() -> Iterator[None]:
    """The example plugin's directory on sys.path and the sample plugin as a module."""
    module = types.ModuleType(SAMPLE)
    module.register = register_sample  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(EXAMPLE))
        mp.setitem(sys.modules, SAMPLE, module)
        yield


@pytest.fixture(scope="module")
async def demo(module_db: PgServer) -> PgServer:
    await load_demo(module_db)
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(
            "CREATE TABLE ext_audit (id serial PRIMARY KEY, message text NOT NULL);"
            "CREATE TABLE secret_plans (id int PRIMARY KEY, plan text);"
            "INSERT INTO secret_plans VALUES (1, 'world domination')"
        )
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
async def server(demo: PgServer, plugins_importable: None) -> AsyncIterator[tuple[AppContext, Client]]:
    async with ServerInTask(demo, mcp_plugins=f"pgmcp_revenue,{SAMPLE}", query_timeout=1) as pair:
        yield pair


@pytest.fixture
def client(server: tuple[AppContext, Client]) -> Client:
    return server[1]


# --- the example plugin ------------------------------------------------------------------------


async def test_revenue_metrics_match_the_orders_table(client: Client, conn: asyncpg.Connection) -> None:
    data = await call_ok(client, "calculate_revenue_metrics", connection_id="default", **Q1)
    expected = await conn.fetch(
        """SELECT date_trunc('month', order_date) AS period, sum(total_amount) AS revenue, count(*) AS n,
                  count(DISTINCT customer_id) AS customers
             FROM orders
            WHERE order_date >= '2024-01-01' AND order_date < '2024-04-01' AND status = 'completed'
            GROUP BY 1 ORDER BY 1"""
    )
    assert len(expected) == 3
    got = [
        (m["period"][:10], Decimal(m["total_revenue"]), m["order_count"], m["unique_customers"])
        for m in data["metrics"]
    ]
    assert got == [(r["period"].date().isoformat(), r["revenue"], r["n"], r["customers"]) for r in expected]
    assert Decimal(data["total_revenue"]) == sum(r["revenue"] for r in expected)
    assert data["period_type"] == "month"
    assert data["date_range"] == {"start": "2024-01-01", "end": "2024-03-31"}

    quarter = await call_ok(
        client, "calculate_revenue_metrics", connection_id="default", group_by="quarter", **Q1
    )
    assert [m["period"][:10] for m in quarter["metrics"]] == ["2024-01-01"]
    assert Decimal(quarter["metrics"][0]["total_revenue"]) == Decimal(data["total_revenue"])


async def test_revenue_end_date_is_inclusive(client: Client, conn: asyncpg.Connection) -> None:
    day = await conn.fetchval(
        "SELECT order_date::date FROM orders WHERE status = 'completed' AND order_date >= '2024-06-01' "
        "ORDER BY order_date LIMIT 1"
    )
    expected = await conn.fetchval(
        "SELECT sum(total_amount) FROM orders WHERE status = 'completed' AND order_date::date = $1", day
    )
    data = await call_ok(
        client,
        "calculate_revenue_metrics",
        connection_id="default",
        start_date=day.isoformat(),
        end_date=day.isoformat(),
        group_by="day",
    )
    assert [Decimal(m["total_revenue"]) for m in data["metrics"]] == [expected]


async def test_revenue_group_by_accepts_only_the_four_periods(
    client: Client, conn: asyncpg.Connection
) -> None:
    tool = {t.name: t for t in (await client.list_tools()).tools}["calculate_revenue_metrics"]
    assert tool.input_schema["properties"]["group_by"]["enum"] == ["day", "week", "month", "quarter"]
    assert set(tool.input_schema["required"]) == {"connection_id", "start_date", "end_date"}
    assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tool.output_schema is not None
    for bad in ("year", "month', order_date)) FROM orders; DROP TABLE orders; --"):
        err = await call_err(
            client, "calculate_revenue_metrics", "invalid_input", connection_id="default", group_by=bad, **Q1
        )
        assert "group_by" in err["error"]
    await call_err(
        client,
        "calculate_revenue_metrics",
        "invalid_input",
        connection_id="default",
        start_date="soon",
        end_date="2024-01-01",
    )
    await call_err(
        client,
        "calculate_revenue_metrics",
        "invalid_input",
        connection_id="default",
        start_date="2024-02-01",
        end_date="2024-01-01",
    )
    await call_err(client, "calculate_revenue_metrics", "connection_not_found", connection_id="nope", **Q1)
    assert await conn.fetchval("SELECT count(*) FROM orders") == 20000


async def test_revenue_calls_record_a_business_event_and_are_attributed(
    server: tuple[AppContext, Client],
) -> None:
    app, client = server
    before = (await call_ok(client, "get_business_metrics"))["metrics"].get(
        "revenue_report", {"count": 0, "sum": 0}
    )
    data = await call_ok(client, "calculate_revenue_metrics", connection_id="default", **Q1)
    after = (await call_ok(client, "get_business_metrics"))["metrics"]["revenue_report"]
    assert after["count"] == before["count"] + 1
    assert after["sum"] == pytest.approx(before["sum"] + float(data["total_revenue"]))
    body = app.monitor.render_prometheus()[0].decode()
    assert f'mcp_server_business_events_total{{event_type="revenue_report"}} {float(after["count"])}' in body
    assert 'mcp_server_tool_calls_total{status="success",tool="calculate_revenue_metrics"}' in body

    history = (await call_ok(client, "get_query_history", limit=5))["queries"]
    mine = [q for q in history if q.get("tool") == "calculate_revenue_metrics"]
    assert mine and mine[0]["success"] is True and "date_trunc($3" in mine[0]["query"]
    metrics = await call_ok(client, "get_metrics")
    assert metrics["tool_calls"]["calculate_revenue_metrics"]["success"] >= 1


# --- custom tools go through the one execute path -------------------------------------------------


async def test_a_custom_tool_that_writes_is_refused_on_a_readonly_server(
    demo: PgServer, plugins_importable: None, conn: asyncpg.Connection
) -> None:
    async with running(demo, mcp_plugins=SAMPLE, readonly_mode=True) as (app, client):
        err = await call_err(
            client, "write_audit_row", "query_blocked", connection_id="default", message="hi"
        )
        assert "read-only mode" in err["error"]
        assert err["failed_index"] == 0 and err["rolled_back"] is True
        assert app.monitor.snapshot()["blocked_by_reason"] == {"readonly": 1}
    assert await conn.fetchval("SELECT count(*) FROM ext_audit WHERE message = 'hi'") == 0


async def test_the_same_custom_write_runs_where_the_policy_allows_it(
    client: Client, conn: asyncpg.Connection
) -> None:
    assert await call_ok(client, "write_audit_row", connection_id="default", message="allowed") == {
        "success": True,
        "inserted": 1,
    }
    assert await conn.fetchval("SELECT count(*) FROM ext_audit WHERE message = 'allowed'") == 1


async def test_a_custom_tool_that_runs_too_long_reports_timeout(client: Client) -> None:
    started = time.monotonic()
    err = await call_err(client, "slow_report", "timeout", connection_id="default", seconds=5)
    assert err["error"] == "Query timeout after 1 seconds"
    assert time.monotonic() - started < 4  # the database stopped it, not the 5 s sleep
    # the pooled connections are fine afterwards
    await call_ok(client, "calculate_revenue_metrics", connection_id="default", **Q1)


async def test_handbook_get_pool_style_goes_through_the_policy(
    client: Client, conn: asyncpg.Connection
) -> None:
    data = await call_ok(
        client,
        "handbook_fetch",
        connection_id="default",
        query="SELECT status, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1",
    )
    assert [row["status"] for row in data["metrics"]] == ["cancelled", "completed", "pending", "refunded"]
    err = await call_err(
        client, "handbook_fetch", "query_blocked", connection_id="default", query="DELETE FROM orders"
    )
    assert "execute_query runs read-only statements" in err["error"]
    await call_err(
        client, "handbook_fetch", "query_blocked", connection_id="default", query="DROP TABLE orders"
    )
    err = await call_err(
        client, "handbook_fetch", "limit_exceeded", connection_id="default", query="SELECT id FROM orders"
    )
    assert "fetch()" in err["error"]
    await call_err(
        client, "handbook_fetch", "connection_not_found", connection_id="elsewhere", query="SELECT 1"
    )
    assert await conn.fetchval("SELECT count(*) FROM orders") == 20000


# --- custom rules --------------------------------------------------------------------------------


async def test_a_blocking_rule_returns_its_own_message_for_every_tool(client: Client) -> None:
    message = "Query blocked: secret_plans is off limits to agents"
    err = await call_err(
        client,
        "execute_query",
        "query_blocked",
        connection_id="default",
        query="SELECT plan FROM secret_plans",
    )
    assert err["error"] == message
    err = await call_err(
        client,
        "handbook_fetch",
        "query_blocked",
        connection_id="default",
        query="SELECT * FROM public.secret_plans",
    )
    assert err["error"] == message
    err = await call_err(
        client,
        "execute_transaction",
        "query_blocked",
        connection_id="default",
        queries=[{"query": "UPDATE secret_plans SET plan = 'none'"}],
    )
    assert message in err["error"]


async def test_a_warning_rule_returns_the_risk_beside_the_result(client: Client) -> None:
    data = await call_ok(
        client, "execute_query", connection_id="default", query="SELECT count(*) AS n FROM logs"
    )
    assert data["rows"][0]["n"] > 0
    assert data["warnings"] == ["Reading logs: mind personal data"]
    data = await call_ok(
        client, "handbook_fetch", connection_id="default", query="SELECT count(*) AS n FROM logs"
    )
    assert data["metrics"][0]["n"] > 0
    assert data["warnings"] == ["Reading logs: mind personal data"]
    data = await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
    assert "warnings" not in data


@pytest.mark.parametrize("action", ["warn", "block"])
async def test_sensitive_tables_setting_warns_or_blocks(demo: PgServer, action: str) -> None:
    async with running(demo, sensitive_tables="customers, payments", sensitive_tables_action=action) as (
        _,
        client,
    ):
        query = "SELECT count(*) AS n FROM orders o JOIN public.customers c ON c.id = o.customer_id"
        if action == "warn":
            data = await call_ok(client, "execute_query", connection_id="default", query=query)
            assert data["rows"][0]["n"] > 0
            assert data["warnings"] == ["Access to sensitive table: customers"]
        else:
            err = await call_err(
                client, "execute_query", "query_blocked", connection_id="default", query=query
            )
            assert err["error"] == "Query blocked: access to sensitive table 'customers'"
        # the word in a string is not access to the table
        data = await call_ok(
            client, "execute_query", connection_id="default", query="SELECT 'customers' AS t"
        )
        assert "warnings" not in data


async def test_require_limit_for_select_star_setting(demo: PgServer) -> None:
    async with running(demo, require_limit_for_select_star=True) as (_, client):
        err = await call_err(
            client, "execute_query", "query_blocked", connection_id="default", query="SELECT * FROM orders"
        )
        assert "SELECT * without LIMIT" in err["error"]
        data = await call_ok(
            client, "execute_query", connection_id="default", query="SELECT * FROM orders LIMIT 3"
        )
        assert data["row_count"] == 3
        await call_ok(client, "execute_query", connection_id="default", query="SELECT count(*) FROM orders")


# --- real processes: discovery over stdio and HTTP --------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(db: PgServer, **settings: str) -> dict[str, str]:
    """A clean environment for ``pgmcp serve``: no pgmcp setting of the shell leaks in."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names and k != "PYTHONPATH"}
    env.update(db.env())
    env.update(HEALTH_CHECK_INTERVAL="3600", PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


def _stdio(env: dict[str, str]) -> Client:
    return Client(
        StdioServerParameters(
            command=sys.executable, args=["-m", "pgmcp", "serve", "--transport", "stdio"], env=env
        )
    )


@contextlib.contextmanager
def _http_server(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgmcp", "serve", "--transport", "http", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _logs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _tool_json(result: Any) -> dict[str, Any]:
    # Errors carry their JSON as text only (structured content must match the output schema).
    data = result.structured_content if not result.is_error else json.loads(result.content[0].text)
    assert isinstance(data, dict), result
    return data


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed with pip into a directory of its own (a site-packages)."""
    base = tmp_path_factory.mktemp("revenue_plugin")
    source = base / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = base / "site"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-input",
        "--quiet",
        "--target",
        str(target),
    ]
    if importlib.util.find_spec("wheel") is not None:
        command.append("--no-build-isolation")  # offline and faster; else pip fetches setuptools
    result = subprocess.run([*command, str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    entry_points = next(target.glob("pgmcp_revenue_plugin-*.dist-info")) / "entry_points.txt"
    assert "[pgmcp.plugins]" in entry_points.read_text()
    return target


@pytest.mark.slow
async def test_installed_plugin_is_discovered_over_stdio_and_gone_when_not_installed(
    demo: PgServer, installed_plugin: Path
) -> None:
    async with _stdio(_env(demo, PYTHONPATH=str(installed_plugin))) as client:
        assert "calculate_revenue_metrics" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("calculate_revenue_metrics", {"connection_id": "default", **Q1})
        assert not result.is_error, result
        assert len(_tool_json(result)["metrics"]) == 3
    async with _stdio(_env(demo)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "calculate_revenue_metrics" not in names and "execute_query" in names


@pytest.mark.slow
async def test_installed_plugin_over_http_is_counted_logged_and_records_business_events(
    demo: PgServer, installed_plugin: Path, tmp_path: Path
) -> None:
    log_path = tmp_path / "stderr.log"
    with _http_server(_env(demo, PYTHONPATH=str(installed_plugin)), log_path) as (base, _):
        async with Client(f"{base}/mcp") as client:
            result = await client.call_tool("calculate_revenue_metrics", {"connection_id": "default", **Q1})
            assert not result.is_error, result
            bad = await client.call_tool(
                "calculate_revenue_metrics", {"connection_id": "default", "group_by": "decade", **Q1}
            )
            assert bad.is_error and _tool_json(bad)["error_type"] == "invalid_input"
            business = _tool_json(await client.call_tool("get_business_metrics", {}))
            assert business["metrics"]["revenue_report"]["count"] == 1
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    assert 'mcp_server_tool_calls_total{status="success",tool="calculate_revenue_metrics"} 1.0' in metrics
    assert (
        'mcp_server_tool_calls_total{status="invalid_input",tool="calculate_revenue_metrics"} 1.0' in metrics
    )
    assert 'mcp_server_business_events_total{event_type="revenue_report"} 1.0' in metrics
    logs = _logs(log_path)
    loaded = [entry for entry in logs if entry["event"] == "plugin_loaded"]
    assert loaded == [
        {
            **loaded[0],
            "plugin": "revenue",
            "origin": "entry point",
            "tools": ["calculate_revenue_metrics"],
        }
    ]
    calls = [e for e in logs if e["event"] == "tool_call" and e.get("tool") == "calculate_revenue_metrics"]
    assert [c["status"] for c in calls] == ["success", "invalid_input"]
    assert any(e["event"] == "query" or e.get("tool") == "calculate_revenue_metrics" for e in logs)


async def test_mcp_plugins_loads_a_module_from_the_path_over_stdio(demo: PgServer) -> None:
    env = _env(demo, PYTHONPATH=str(EXAMPLE), MCP_PLUGINS="pgmcp_revenue")
    async with _stdio(env) as client:
        months = await client.call_tool("calculate_revenue_metrics", {"connection_id": "default", **Q1})
        quarter = await client.call_tool(
            "calculate_revenue_metrics", {"connection_id": "default", "group_by": "quarter", **Q1}
        )
    assert not months.is_error and not quarter.is_error, (months, quarter)
    monthly_orders = [m["order_count"] for m in _tool_json(months)["metrics"]]
    assert len(monthly_orders) == 3
    assert [m["order_count"] for m in _tool_json(quarter)["metrics"]] == [sum(monthly_orders)]


def test_a_broken_plugin_stops_pgmcp_serve_with_one_clear_line(demo: PgServer, tmp_path: Path) -> None:
    (tmp_path / "pgmcp_broken_plugin.py").write_text(
        "def register(server):\n    raise RuntimeError('missing REVENUE_API_KEY')\n"
    )
    env = _env(demo, PYTHONPATH=str(tmp_path), MCP_PLUGINS="pgmcp_broken_plugin")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pgmcp", "serve", "--transport", "stdio"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stdout == ""  # stdout belongs to the MCP transport
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "pgmcp: Plugin 'pgmcp_broken_plugin' (MCP_PLUGINS) failed at register: RuntimeError: missing REVENUE_API_KEY"
    )
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


HALF_PLUGIN = '''
def register(server):
    @server.tool()
    async def half_tool() -> dict:
        """Never registered: register() fails after staging it."""
        return {}

    raise RuntimeError("second step failed")
'''


async def test_skip_broken_starts_with_a_warning_and_without_that_plugins_tools(
    demo: PgServer, tmp_path: Path
) -> None:
    (tmp_path / "pgmcp_half_plugin.py").write_text(HALF_PLUGIN)
    env = _env(
        demo,
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(EXAMPLE)]),
        MCP_PLUGINS="pgmcp_half_plugin,pgmcp_no_such_plugin,pgmcp_revenue",
        MCP_PLUGINS_SKIP_BROKEN="true",
    )
    log_path = tmp_path / "stderr.log"
    with _http_server(env, log_path) as (base, _):
        async with Client(f"{base}/mcp") as client:
            names = {t.name for t in (await client.list_tools()).tools}
    assert "half_tool" not in names
    assert {"calculate_revenue_metrics", "execute_query"} <= names
    logs = _logs(log_path)
    skipped = [e for e in logs if e["event"] == "plugin_skipped"]
    assert [(e["level"], e["plugin"]) for e in skipped] == [
        ("WARNING", "pgmcp_half_plugin"),
        ("WARNING", "pgmcp_no_such_plugin"),
    ]
    assert skipped[0]["error"].endswith("failed at register: RuntimeError: second step failed")
    assert "ModuleNotFoundError" in skipped[1]["error"]
    assert [e["plugin"] for e in logs if e["event"] == "plugin_loaded"] == ["pgmcp_revenue"]


async def test_a_plugin_tools_text_result_is_wrapped_as_untrusted_data(client: Client) -> None:
    result = await client.call_tool("calculate_revenue_metrics", {"connection_id": "default", **Q1})
    text = result.content[0].text  # type: ignore[union-attr]
    opening = text.index("<untrusted-data-")
    tag = text[opening + 1 : text.index(">", opening)]
    assert text.rstrip().endswith(f"</{tag}>")
    inner = text[text.index(">", opening) + 1 : text.rindex(f"</{tag}>")]
    assert json.loads(inner) == result.structured_content
