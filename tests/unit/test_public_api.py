"""The public extension API (``pgmcp.__all__``) and plugin loading, without a database.

A server with no connections is a real pgmcp server: tools are listed and
called through the official MCP client in-process; only SQL would need a
database (tests/integration/test_extensions.py covers that).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import subprocess
import sys
import types
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client
from pydantic import BaseModel

import pgmcp
from pgmcp.app import AppContext, open_app
from pgmcp.config import load_settings
from pgmcp.errors import InvalidInput, QueryBlocked
from pgmcp.extension import ENTRY_POINT_GROUP, PluginError
from pgmcp.security import Decision, Risk
from pgmcp.server import build_server

Register = Callable[[pgmcp.PostgreSQLMCPServer], Any]


@pytest.fixture
def plugin(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Register | None], str]:
    """Make an importable plugin module ``name`` whose ``register`` is the given function."""

    def make(name: str, register: Register | None) -> str:
        module = types.ModuleType(name)
        if register is not None:
            module.register = register  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
        return name

    return make


@asynccontextmanager
async def serving(**overrides: Any) -> AsyncIterator[tuple[AppContext, Client]]:
    settings = load_settings(pgmcp_embedded=False, health_check_interval=3600, **overrides)
    async with open_app(settings) as app, Client(build_server(app)) as client:
        yield app, client


async def tool_names(client: Client) -> set[str]:
    return {t.name for t in (await client.list_tools()).tools}


async def call(client: Client, tool: str, **arguments: Any) -> tuple[bool, dict[str, Any]]:
    result = await client.call_tool(tool, arguments)
    # Errors carry their JSON as text only (structured content must match the output schema).
    data = result.structured_content if not result.is_error else json.loads(result.content[0].text)
    assert isinstance(data, dict)
    assert data["success"] is (not result.is_error)
    return bool(result.is_error), data


# --- the API surface -----------------------------------------------------------------------------


def test_every_public_name_is_importable_and_documented() -> None:
    assert pgmcp.__version__ == importlib.metadata.version("postgresql-mcp-server")
    for name in pgmcp.__all__:
        value = getattr(pgmcp, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"pgmcp.{name} has no docstring"
    server_methods = [
        "tool",
        "add_tool",
        "add_rule",
        "execute_query",
        "execute_transaction",
        "batch_execute",
        "record_business_event",
        "business_metrics",
    ]
    for method in server_methods:
        assert inspect.getdoc(getattr(pgmcp.PostgreSQLMCPServer, method)), method
    assert ENTRY_POINT_GROUP == "pgmcp.plugins"
    assert set(dir(pgmcp)) >= set(pgmcp.__all__)
    with pytest.raises(AttributeError):
        _ = pgmcp.NoSuchThing  # type: ignore[attr-defined]


def test_import_pgmcp_does_not_load_the_server_stack() -> None:
    # `pgmcp --version` and a plugin's own imports should not pay for mcp/asyncpg/pglast.
    code = "import sys, pgmcp; print(sorted(m for m in ('mcp', 'asyncpg', 'pglast') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- custom tools -------------------------------------------------------------------------------


class Total(BaseModel):
    total: int


def _tools_plugin(server: pgmcp.PostgreSQLMCPServer) -> None:
    @server.app.tool()  # the handbook's spelling
    async def pick_period(group_by: Literal["day", "week", "month", "quarter"] = "month") -> dict[str, Any]:
        """Echo a period."""
        return {"period_type": group_by}

    @server.tool(read_only=False)
    async def reset_counter(name: str) -> Total:
        """Pretend to write."""
        return Total(total=len(name))

    @server.tool()
    async def handbook_failure(kind: str) -> dict[str, Any]:
        """Fail the handbook's way, by returning success false."""
        if kind == "typed":
            return {"success": False, "error": "Invalid group_by parameter", "error_type": "invalid_input"}
        return {"success": False, "error": "Connection not found"}

    @server.tool()
    async def crash() -> dict[str, Any]:
        """Raise something unexpected."""
        raise RuntimeError("secret internals at /srv/app.py line 3")

    @server.tool()
    async def refuse() -> dict[str, Any]:
        """Raise a pgmcp error."""
        raise InvalidInput("start_date must be before end_date")

    @server.tool(output=Total)
    async def wrong_shape() -> dict[str, Any]:
        """Return something that does not fit the declared output schema."""
        return {"nope": 1}

    @server.tool()
    async def no_such_connection() -> dict[str, Any]:
        """Query a connection that does not exist."""
        assert server.connection_manager.get_pool("nope") is None
        assert "nope" not in server.connection_manager
        await server.execute_query("nope", "SELECT 1")
        return {}


async def test_a_plugin_tool_is_listed_with_typed_schema_annotations_and_output_schema(
    plugin: Callable[[str, Register | None], str],
) -> None:
    name = plugin("pgmcp_test_tools_plugin", _tools_plugin)
    async with serving(mcp_plugins=name) as (_, client):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        pick = tools["pick_period"]
        assert pick.input_schema["properties"]["group_by"]["enum"] == ["day", "week", "month", "quarter"]
        assert pick.description == "Echo a period."
        assert pick.annotations is not None
        assert pick.annotations.read_only_hint is True
        assert pick.annotations.destructive_hint is False
        assert pick.output_schema is not None
        assert "success" in pick.output_schema["properties"]
        writer = tools["reset_counter"]
        assert writer.annotations is not None
        assert writer.annotations.read_only_hint is False
        assert writer.annotations.destructive_hint is True
        assert writer.output_schema is not None
        assert "total" in writer.output_schema["properties"]  # the return model is the output schema
        # the built-in tools are all still there
        assert {"execute_query", "get_metrics", "get_business_metrics"} <= set(tools)


async def test_plugin_tools_answer_in_the_one_response_shape(
    plugin: Callable[[str, Register | None], str],
) -> None:
    name = plugin("pgmcp_test_tools_plugin", _tools_plugin)
    async with serving(mcp_plugins=name) as (_, client):
        assert await call(client, "pick_period", group_by="week") == (
            False,
            {"success": True, "period_type": "week"},
        )
        assert await call(client, "reset_counter", name="abc") == (False, {"success": True, "total": 3})

        is_error, data = await call(client, "pick_period", group_by="year")
        assert is_error and data["error_type"] == "invalid_input"
        assert "group_by" in data["error"]

        is_error, data = await call(client, "handbook_failure", kind="typed")
        assert is_error and data == {
            "success": False,
            "error": "Invalid group_by parameter",
            "error_type": "invalid_input",
        }
        is_error, data = await call(client, "handbook_failure", kind="plain")
        assert is_error and data["error_type"] == "database_error"
        assert data["error"] == "Connection not found"

        is_error, data = await call(client, "crash")
        assert is_error and data["error_type"] == "database_error"
        assert "secret internals" not in data["error"] and "Traceback" not in data["error"]

        is_error, data = await call(client, "refuse")
        assert is_error and data["error_type"] == "invalid_input"
        assert data["error"] == "start_date must be before end_date"

        # the plugin's bug, not the caller's input
        is_error, data = await call(client, "wrong_shape")
        assert is_error and data["error_type"] == "database_error"
        assert data["error"] == "Internal error in wrong_shape; the server log has the details"

        is_error, data = await call(client, "no_such_connection")
        assert is_error and data["error_type"] == "connection_not_found"


async def test_plugin_tool_calls_are_counted_like_built_in_ones(
    plugin: Callable[[str, Register | None], str],
) -> None:
    name = plugin("pgmcp_test_tools_plugin", _tools_plugin)
    async with serving(mcp_plugins=name) as (app, client):
        await call(client, "pick_period")
        await call(client, "pick_period", group_by="never")
        _, metrics = await call(client, "get_metrics")
        assert metrics["tool_calls"]["pick_period"] == {"success": 1, "invalid_input": 1}
        body, _ = app.monitor.render_prometheus()
        assert b'mcp_server_tool_calls_total{status="success",tool="pick_period"} 1.0' in body


async def test_enabled_tools_filters_plugin_tools_too(
    plugin: Callable[[str, Register | None], str],
) -> None:
    name = plugin("pgmcp_test_tools_plugin", _tools_plugin)
    async with serving(mcp_plugins=name, enabled_tools="read,pick_period") as (_, client):
        names = await tool_names(client)
        assert "pick_period" in names and "execute_query" in names
        assert "reset_counter" not in names and "get_metrics" not in names
    async with serving(mcp_plugins=name, enabled_tools="read,plugins") as (_, client):
        assert {"pick_period", "reset_counter", "crash"} <= await tool_names(client)


async def test_without_the_plugin_its_tools_are_absent() -> None:
    async with serving() as (_, client):
        names = await tool_names(client)
        assert "pick_period" not in names
        assert "get_business_metrics" in names


# --- loading: entry points, MCP_PLUGINS, failures ----------------------------------------------


async def test_entry_points_and_mcp_plugins_load_each_module_once(
    plugin: Callable[[str, Register | None], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def register_a(server: pgmcp.PostgreSQLMCPServer) -> None:
        calls.append(f"a:{server.plugin_name}")

        @server.tool()
        async def tool_from_entry_point() -> dict[str, Any]:
            """A."""
            return {}

    def register_b(server: pgmcp.PostgreSQLMCPServer) -> None:
        calls.append(f"b:{server.plugin_name}")

    plugin("pgmcp_test_ep_a", register_a)
    plugin("pgmcp_test_mod_b", register_b)
    real = importlib.metadata.entry_points

    def entry_points(**params: Any) -> Any:
        if params.get("group") == ENTRY_POINT_GROUP:
            return [importlib.metadata.EntryPoint("alpha", "pgmcp_test_ep_a", ENTRY_POINT_GROUP)]
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    async with serving(mcp_plugins="pgmcp_test_mod_b,pgmcp_test_ep_a") as (_, client):
        assert "tool_from_entry_point" in await tool_names(client)
    assert calls == ["a:alpha", "b:pgmcp_test_mod_b"]


class Weird:
    """Not something pydantic can describe in a JSON schema."""


def _half_valid(server: pgmcp.PostgreSQLMCPServer) -> None:
    """Registers a good tool, then one whose schema cannot be built (fails at commit)."""

    @server.tool()
    async def good_tool() -> dict[str, Any]:
        """Fine."""
        return {}

    @server.tool()
    async def bad_tool(value: Weird) -> dict[str, Any]:
        """No JSON schema for Weird."""
        return {}


def _raises(server: pgmcp.PostgreSQLMCPServer) -> None:
    @server.tool()
    async def good_tool() -> dict[str, Any]:
        """Fine."""
        return {}

    server.add_rule(lambda query: ["never installed"])
    raise RuntimeError("cannot reach the license server")


def _takes_a_builtin_name(server: pgmcp.PostgreSQLMCPServer) -> None:
    @server.tool(name="execute_query")
    async def mine() -> dict[str, Any]:
        """Shadow a built-in."""
        return {}


def _sync_tool(server: pgmcp.PostgreSQLMCPServer) -> None:
    server.add_tool(lambda: {})  # type: ignore[arg-type,return-value]


async def _async_register(server: pgmcp.PostgreSQLMCPServer) -> None:
    pass


@pytest.mark.parametrize(
    ("register", "stage", "detail"),
    [
        (None, "register", "has no register(server) function"),
        (_raises, "register", "RuntimeError: cannot reach the license server"),
        (_takes_a_builtin_name, "register", "'execute_query' is already taken"),
        (_sync_tool, "register", "must be an async function"),
        (_async_register, "register", "must be a plain function, not async"),
        (_half_valid, "commit", "PydanticInvalidForJsonSchema"),
    ],
)
async def test_a_broken_plugin_stops_start_up_with_one_line_naming_it(
    plugin: Callable[[str, Register | None], str],
    register: Register | None,
    stage: str,
    detail: str,
) -> None:
    name = plugin("pgmcp_test_broken", register)
    with pytest.raises(PluginError) as info:
        async with serving(mcp_plugins=name):
            pytest.fail("the server started")
    message = str(info.value)
    assert message.startswith(f"Plugin 'pgmcp_test_broken' (MCP_PLUGINS) failed at {stage}: ")
    assert detail in message
    assert "\n" not in message


async def test_a_plugin_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(
        PluginError, match=r"^Plugin 'pgmcp_no_such_module' \(MCP_PLUGINS\) failed at import: "
    ):
        async with serving(mcp_plugins="pgmcp_no_such_module"):
            pytest.fail("the server started")


@pytest.mark.parametrize("register", [_half_valid, _raises])
async def test_skip_broken_starts_without_any_of_the_broken_plugins_tools_or_rules(
    plugin: Callable[[str, Register | None], str], register: Register
) -> None:
    broken = plugin("pgmcp_test_broken", register)
    good = plugin("pgmcp_test_tools_plugin", _tools_plugin)
    async with serving(mcp_plugins=f"pgmcp_no_such_module,{broken},{good}", mcp_plugins_skip_broken=True) as (
        app,
        client,
    ):
        names = await tool_names(client)
        assert "good_tool" not in names and "bad_tool" not in names  # all or nothing
        assert "pick_period" in names  # the healthy plugin after it still loads
        assert app.policy.check("SELECT 1").warnings == ()


# --- rules and business metrics ----------------------------------------------------------------


def _rules_plugin(server: pgmcp.PostgreSQLMCPServer) -> None:
    def check_custom_patterns(query: str) -> list[str]:  # the handbook's one-argument style
        return ["Potential large dataset query without LIMIT"] if "LIMIT" not in query.upper() else []

    def no_plans(query: str, decision: Decision) -> Iterable[Risk]:
        if "secret_plans" in decision.tables:
            yield Risk("Query blocked: secret_plans is off limits", block=True)

    assert server.security_validator is server.policy  # the handbook's name for it
    server.add_rule(check_custom_patterns)
    server.add_rule(no_plans)


async def test_plugin_rules_warn_and_block_through_the_policy(
    plugin: Callable[[str, Register | None], str],
) -> None:
    name = plugin("pgmcp_test_rules", _rules_plugin)
    async with serving(mcp_plugins=name) as (app, _):
        assert app.policy.check("SELECT 1").warnings == ("Potential large dataset query without LIMIT",)
        assert app.policy.check("SELECT 1 LIMIT 1").warnings == ()
        with pytest.raises(QueryBlocked, match="^Query blocked: secret_plans is off limits$") as info:
            app.policy.check("SELECT * FROM public.secret_plans LIMIT 5")
        assert info.value.reason == "custom_rule"


def _events_plugin(server: pgmcp.PostgreSQLMCPServer) -> None:
    @server.tool()
    async def place_order(amount: float) -> dict[str, Any]:
        """Record a sale."""
        server.metrics.record_business_event("order_placed", amount)
        return {"recorded": amount}


async def test_business_events_of_a_plugin_appear_in_get_business_metrics_and_prometheus(
    plugin: Callable[[str, Register | None], str],
) -> None:
    name = plugin("pgmcp_test_events", _events_plugin)
    async with serving(mcp_plugins=name) as (app, client):
        tool = {t.name: t for t in (await client.list_tools()).tools}["get_business_metrics"]
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        assert tool.output_schema == {"type": "object"}  # a built-in tool's: see test_output_schemas
        assert await call(client, "get_business_metrics") == (
            False,
            {"success": True, "window_seconds": 3600, "metrics": {}},
        )
        await call(client, "place_order", amount=10.5)
        await call(client, "place_order", amount=4.5)
        _, data = await call(client, "get_business_metrics")
        assert data["metrics"] == {"order_placed": {"count": 2, "sum": 15.0, "avg": 7.5}}
        body, _ = app.monitor.render_prometheus()
        assert b'mcp_server_business_events_total{event_type="order_placed"} 2.0' in body
        is_error, data = await call(client, "get_business_metrics", window_seconds=7200)
        assert is_error and data["error_type"] == "invalid_input"


# --- run_tests.py --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_run_tests_passes_pytests_exit_code_through() -> None:
    # 5 = pytest collected nothing: the runner neither hides it nor turns it into 0/1.
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "run_tests.py"),
            "unit",
            "-k",
            "no_test_has_this_name",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 5, result.stdout + result.stderr
    assert "deselected" in result.stdout


def test_run_tests_refuses_an_unknown_target() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "run_tests.py"), "everything"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "unknown target 'everything'" in result.stderr


# --- documentation/EXTENDING.md cannot drift from the API ----------------------------------------

EXTENDING = ROOT / "documentation" / "EXTENDING.md"


def _python_blocks(text: str) -> list[str]:
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_extending_guide_names_every_public_name_and_tool_option() -> None:
    text = EXTENDING.read_text(encoding="utf-8")
    for name in pgmcp.__all__:
        if name != "__version__":
            assert f"`{name}`" in text, f"documentation/EXTENDING.md does not mention {name}"
    options = [p for p in inspect.signature(pgmcp.PostgreSQLMCPServer.tool).parameters if p != "self"]
    for option in options:
        assert f"`{option}`" in text, f"documentation/EXTENDING.md does not describe tool({option}=...)"
    example = (ROOT / "examples" / "revenue_plugin" / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points."pgmcp.plugins"]\nrevenue = "pgmcp_revenue"' in example
    assert '[project.entry-points."pgmcp.plugins"]\nrevenue = "pgmcp_revenue"' in text


def test_extending_guide_rule_example_warns_and_blocks_as_documented() -> None:
    from pgmcp.security import Policy

    block = next(
        b for b in _python_blocks(EXTENDING.read_text(encoding="utf-8")) if "def no_secret_plans" in b
    )
    namespace: dict[str, Any] = {}
    exec(compile(block, str(EXTENDING), "exec"), namespace)
    policy = Policy()
    policy.add_rule(namespace["no_secret_plans"])
    with pytest.raises(QueryBlocked, match="^Query blocked: secret_plans is off limits to agents$"):
        policy.check("SELECT * FROM secret_plans")
    assert policy.check("SELECT count(*) FROM logs").warnings == ("Reading logs: mind personal data",)
    assert policy.check("SELECT 'logs', 'secret_plans'").warnings == ()
