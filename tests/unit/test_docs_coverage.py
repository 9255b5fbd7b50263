"""Nothing a user can set, call or scrape is missing from the documentation.

Like datasette's ``test_settings_are_documented``: the lists come from the code (the
``Settings`` class, the server's ``tools/list``, the Prometheus exposition), never from
a copy kept in this file, so a new setting, tool or metric fails here until it is
documented.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pgmcp.app import open_app
from pgmcp.config import Settings, load_settings
from pgmcp.errors import (
    ConfirmationRequired,
    ConnectionFailed,
    ConnectionNotFound,
    DatabaseError,
    Declined,
    InvalidInput,
    LimitExceeded,
    QueryBlocked,
    QueryTimeout,
)
from pgmcp.monitoring import Monitor
from pgmcp.server import build_server

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ENV_EXAMPLE = ROOT / ".env.example"
USER_GUIDE = ROOT / "documentation" / "guides" / "USER_GUIDE.md"
HANDBOOK = ROOT / "documentation" / "MCP_SERVER_HANDBOOK.md"

#: SPEC §7: the metric names a dashboard or an alert may rely on.
SPEC_METRICS = (
    "mcp_server_queries_total",
    "mcp_server_query_duration_seconds",
    "mcp_server_connections_active",
    "mcp_server_pool_size",
    "mcp_server_queries_blocked_total",
    "mcp_server_tool_calls_total",
    "mcp_server_memory_usage_bytes",
)


def read(path: Path) -> str:
    assert path.exists(), f"{path.relative_to(ROOT)} does not exist"
    return path.read_text(encoding="utf-8")


def env_names() -> list[str]:
    """Every setting a user can give, as its environment variable."""
    return [name.upper() for name, info in Settings.model_fields.items() if not info.exclude]


def shown_default(name: str) -> str:
    """A field's default as the guide's settings table writes it."""
    value = Settings.model_fields[name.lower()].get_default(call_default_factory=True)
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return f"`{','.join(value)}`" if value else "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def test_there_are_settings_to_check() -> None:
    names = env_names()
    assert len(names) > 40
    assert {"QUERY_TIMEOUT", "DB_HOST", "MCP_AUTH_TOKEN", "READONLY_MODE"} <= set(names)
    assert "CONNECTIONS" not in names  # filled from MCP_CONFIG_FILE, not an environment variable


@pytest.mark.parametrize("path", [ENV_EXAMPLE, USER_GUIDE], ids=lambda p: p.name)
def test_every_setting_is_documented(path: Path) -> None:
    text = read(path)
    missing = [name for name in env_names() if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"{path.name} does not mention {missing}"


def test_the_guides_settings_table_has_every_setting_with_its_real_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+?) \|", read(USER_GUIDE), re.MULTILINE))
    for name in env_names():
        assert name in rows, f"the settings table has no row for {name}"
        assert rows[name] == shown_default(name), (
            f"{name}: the guide says {rows[name]}, the default is {shown_default(name)}"
        )


async def tool_names() -> set[str]:
    """tools/list of a server built as `pgmcp serve` builds it (no database needed)."""
    settings = load_settings(pgmcp_embedded=False, db_host=None, mcp_config_file=None, enabled_tools="")
    async with open_app(settings) as app:
        server = build_server(app)
        return {tool.name for tool in await server.list_tools()}


@pytest.fixture(scope="module")
async def tools() -> set[str]:
    names = await tool_names()
    assert len(names) >= 15
    assert {"execute_query", "add_connection", "health_check"} <= names
    return names


@pytest.mark.parametrize(
    "path",
    [README, USER_GUIDE, HANDBOOK],
    ids=lambda p: p.name,
)
async def test_every_tool_is_documented(tools: set[str], path: Path) -> None:
    text = read(path)
    missing = sorted(name for name in tools if not re.search(rf"`{name}`|\b{name}\(", text))
    assert not missing, f"{path.name} does not document the tools {missing}"


@pytest.mark.parametrize("path", [USER_GUIDE, HANDBOOK], ids=lambda p: p.name)
async def test_every_tool_has_a_section_with_an_example_call(tools: set[str], path: Path) -> None:
    text = read(path)
    for name in sorted(tools):
        assert re.search(rf"^#{{3,4}} .*`?{name}`?", text, re.MULTILINE), (
            f"{path.name}: no heading for {name}"
        )
        assert f"await {name}(" in text, f"{path.name}: no example call of {name}"


def exported_families() -> dict[str, str]:
    """``{family: type}`` of every mcp_server_* family, with one sample of each kind recorded."""
    monitor = Monitor(load_settings(pgmcp_embedded=False))
    monitor.record_query(
        connection_id="c", query_type="SELECT", duration_ms=1.0, success=True, row_count=1, query="SELECT 1"
    )
    monitor.record_blocked(
        connection_id="c", reason="blocked_keyword", query_type=None, message="m", query=None
    )
    monitor.record_tool_call(tool="execute_query", status="success", duration_ms=1.0)
    monitor.record_business_event("e", 1.0)
    monitor.set_pool_source(lambda: {"c": {"size": 1, "idle_connections": 1, "active_connections": 0}})
    body, _ = monitor.render_prometheus()
    return dict(re.findall(r"^# TYPE (mcp_server_\w+) (\w+)", body.decode(), re.MULTILINE))


def sample_name(family: str, kind: str) -> str:
    # The exposition's TYPE line names a counter without _total; its samples have it.
    return f"{family}_total" if kind == "counter" and not family.endswith("_total") else family


def test_the_spec_metrics_are_exported() -> None:
    exported = {sample_name(f, k) for f, k in exported_families().items()}
    assert set(SPEC_METRICS) <= exported


@pytest.mark.parametrize("path", [USER_GUIDE, HANDBOOK], ids=lambda p: p.name)
def test_the_spec_metrics_are_documented(path: Path) -> None:
    text = read(path)
    missing = [name for name in SPEC_METRICS if name not in text]
    assert not missing, f"{path.name} does not mention {missing}"


def test_every_exported_metric_is_in_the_guide() -> None:
    text = read(USER_GUIDE)
    missing = sorted(
        sample_name(f, k) for f, k in exported_families().items() if sample_name(f, k) not in text
    )
    assert not missing, f"the guide's metrics table misses {missing}"


ERROR_CLASSES: list[Any] = [
    ConnectionNotFound,
    QueryBlocked,
    QueryTimeout,
    InvalidInput,
    DatabaseError,
    ConnectionFailed,
    LimitExceeded,
    Declined,
    ConfirmationRequired,
]


@pytest.mark.parametrize("path", [README, USER_GUIDE, HANDBOOK], ids=lambda p: p.name)
def test_every_error_type_is_documented(path: Path) -> None:
    text = read(path)
    missing = [cls.error_type for cls in ERROR_CLASSES if f"`{cls.error_type}`" not in text]
    assert not missing, f"{path.name} does not document the error types {missing}"


@pytest.mark.parametrize("path", [USER_GUIDE, HANDBOOK], ids=lambda p: p.name)
def test_the_http_endpoints_and_commands_are_documented(path: Path) -> None:
    text = read(path)
    for needle in (
        "/health",
        "/livez",
        "/readyz",
        "/metrics",
        "/connections",
        "/mcp",
        "make run",
        "make test",
        "pgmcp serve",
        "--transport stdio",
        "./scripts/deploy.sh",
        "./scripts/dev.sh",
        "kubectl apply -k deployment/k8s",
        "MCP_STATELESS=true",
        "Authorization: Bearer",
    ):
        assert needle in text, f"{path.name} does not mention {needle!r}"


async def add_connection_parameters() -> set[str]:
    settings = load_settings(pgmcp_embedded=False, db_host=None, mcp_config_file=None, enabled_tools="")
    async with open_app(settings) as app:
        tools = {tool.name: tool for tool in await build_server(app).list_tools()}
    return set(tools["add_connection"].input_schema["properties"])


@pytest.mark.parametrize("path", [README, USER_GUIDE, HANDBOOK], ids=lambda p: p.name)
async def test_every_add_connection_parameter_is_documented(path: Path) -> None:
    params = await add_connection_parameters()
    assert {"ssh_host", "ssh_key_env", "ssl_root_cert"} <= params
    text = read(path)
    missing = sorted(name for name in params if f"`{name}`" not in text)
    assert not missing, f"{path.name} does not document the add_connection parameters {missing}"


def test_every_mcp_config_file_key_is_documented() -> None:
    from pgmcp.config import ConnectionSpec

    text = read(USER_GUIDE)
    keys = set(ConnectionSpec.model_fields) - {"connection_id", "password"}
    missing = sorted(name for name in keys if f"`{name}`" not in text)
    assert not missing, f"the guide does not document the MCP_CONFIG_FILE keys {missing}"
