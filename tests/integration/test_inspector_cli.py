"""A third-party MCP client: the MCP Inspector CLI (TypeScript SDK) against ``pgmcp serve``.

Over stdio (as Claude Desktop / Cursor launch servers) and over Streamable HTTP
with a bearer token. ``--strict`` checks the portability of every tool schema.

The Inspector 2.x needs Node.js >= 22.19. Where the machine's node is older, the
Node.js binary comes from the npm registry too (the ``node`` package), so the
test runs the current Inspector either way. Packages are cached in the user's
npm cache; HOME is a scratch directory, so nothing else of the user's is read or
written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PgServer
from tests.integration.proc import PGMCP, pgmcp_env, serve_http

NPX = shutil.which("npx")
NODE = shutil.which("node")
INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
NEEDS_NODE = (22, 19)
TOKEN = "inspector-token-3b91f0"
SPEC_TOOLS = {
    "add_connection",
    "remove_connection",
    "list_connections",
    "test_connection",
    "execute_query",
    "execute_transaction",
    "batch_execute",
    "list_schemas",
    "list_tables",
    "get_table_schema",
    "explain_query",
    "health_check",
    "get_metrics",
    "get_query_history",
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        NPX is None, reason="npx (Node.js) is not installed, so the MCP Inspector CLI cannot run"
    ),
]


def node_version() -> tuple[int, int]:
    if NODE is None:
        return (0, 0)
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def npx_command() -> list[str]:
    assert NPX is not None
    packages = ["-p", INSPECTOR]
    if node_version() < NEEDS_NODE:
        packages = ["-p", "node@22", *packages]
    return [NPX, "-y", *packages, "--"]


@dataclass
class Inspector:
    binary: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def inspector(tmp_path_factory: pytest.TempPathFactory) -> Inspector:
    home = tmp_path_factory.mktemp("inspector-home")
    # npm reads its settings case-insensitively from npm_config_* / NPM_CONFIG_*.
    names = ("npm_config_cache", "NPM_CONFIG_CACHE")
    cache = next((os.environ[n] for n in names if os.environ.get(n)), str(Path.home() / ".npm"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MCP_"))}
    env.update(
        {
            "HOME": str(home),
            "npm_config_cache": cache,
            "npm_config_prefer_offline": "true",
            "npm_config_loglevel": "error",
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "MCP_INSPECTOR_SECRET_STORE": "memory",
        }
    )
    # First use downloads the Inspector (and maybe Node.js) from the npm registry; npx is
    # asked once where it put them, so each call below starts the Inspector directly.
    found = subprocess.run(
        [*npx_command(), "sh", "-c", "command -v inspector"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=home,
    )
    assert found.returncode == 0, (
        f"the MCP Inspector could not be installed with npx:\n{found.stderr[-2000:]}"
    )
    binary = found.stdout.strip().splitlines()[-1]
    env["PATH"] = f"{Path(binary).parent}{os.pathsep}{env.get('PATH', '')}"  # its node comes first
    version = subprocess.run([binary, "--version"], env=env, capture_output=True, text=True, timeout=120)
    assert version.stdout.strip() == INSPECTOR.rsplit("@", 1)[1], version.stdout + version.stderr
    return Inspector(binary=binary, env=env)


def run(inspector: Inspector, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [inspector.binary, "--cli", *args],
        env=inspector.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=inspector.env["HOME"],
        stdin=subprocess.DEVNULL,
    )


def stdio_args(db: PgServer) -> list[str]:
    """-e KEY=VALUE for the server's settings (the Inspector gives a stdio server a minimal environment)."""
    env = {**db.env(), "HEALTH_CHECK_INTERVAL": "3600", "DB_POOL_SIZE": "2"}
    args: list[str] = []
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    return args


def stdio_target() -> list[str]:
    return ["--connect-timeout", "120000", "--", PGMCP, "serve", "--transport", "stdio"]


def output_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    text = result.stdout
    data: dict[str, Any] = json.loads(text[text.index("{") : text.rindex("}") + 1])
    return data


def test_inspector_lists_every_tool_over_stdio_and_strict_finds_no_schema_error(
    inspector: Inspector, module_db: PgServer
) -> None:
    result = run(inspector, [*stdio_args(module_db), "--method", "tools/list", "--strict", *stdio_target()])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    tools = {t["name"]: t for t in output_json(result)["tools"]}
    assert set(tools) >= SPEC_TOOLS
    for name in SPEC_TOOLS:
        assert tools[name]["inputSchema"]["type"] == "object", name
        assert "annotations" in tools[name], name
        assert "outputSchema" in tools[name], name
    # --strict prints "N errors, M warnings" when it found anything, and nothing when clean.
    summary = re.search(r"(\d+) errors?, (\d+) warnings?", result.stderr)
    if summary is not None:
        assert summary.group(1) == "0", result.stderr[-3000:]
    # No portability problem in any input schema (what a model is shown and fills in).
    assert "Path: inputSchema" not in result.stderr, result.stderr[-3000:]


def test_inspector_calls_execute_query_over_stdio(inspector: Inspector, module_db: PgServer) -> None:
    result = run(
        inspector,
        [
            *stdio_args(module_db),
            "--method",
            "tools/call",
            "--tool-name",
            "execute_query",
            "--tool-arg",
            "connection_id=default",
            "query=SELECT $1::int + 1 AS answer, $2::int[] AS grid",
            "params=[41, [[1, 2], [3, null]]]",
            *stdio_target(),
        ],
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = output_json(result)
    assert data["isError"] is False
    assert data["structuredContent"]["rows"] == [{"answer": 42, "grid": [[1, 2], [3, None]]}]
    assert data["structuredContent"]["columns"] == [
        {"name": "answer", "type": "integer"},
        {"name": "grid", "type": "integer[]"},
    ]


def test_inspector_shows_a_tool_error_as_the_tools_own_message(
    inspector: Inspector, module_db: PgServer
) -> None:
    result = run(
        inspector,
        [
            *stdio_args(module_db),
            "--method",
            "tools/call",
            "--tool-name",
            "execute_query",
            "--tool-arg",
            "connection_id=default",
            "query=SELECT 1/0",
            *stdio_target(),
        ],
    )
    # Error results carry their JSON as text only, so the TypeScript SDK's output-schema
    # check (which it applies to errors too) has nothing to reject.
    assert "must have required property" not in result.stderr, result.stderr[-1000:]
    assert '"isError": true' in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert "division by zero" in result.stdout


def test_inspector_over_http_needs_the_bearer_token(
    inspector: Inspector, module_db: PgServer, tmp_path: Path
) -> None:
    env = pgmcp_env(module_db, MCP_AUTH_TOKEN=TOKEN, DB_POOL_SIZE="2")
    with serve_http(env, tmp_path) as server:
        target = ["--transport", "http", "--server-url", server.mcp_url]
        listed = run(
            inspector, ["--method", "tools/list", *target, "--header", f"Authorization: Bearer {TOKEN}"]
        )
        assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr[-3000:]
        assert {t["name"] for t in output_json(listed)["tools"]} >= SPEC_TOOLS
        called = run(
            inspector,
            [
                "--method",
                "tools/call",
                "--tool-name",
                "list_tables",
                "--tool-arg",
                "connection_id=default",
                *target,
                "--header",
                f"Authorization: Bearer {TOKEN}",
            ],
        )
        assert called.returncode == 0, called.stdout[-2000:] + called.stderr[-3000:]
        assert output_json(called)["structuredContent"]["success"] is True
        refused = run(inspector, ["--method", "tools/list", *target])
        assert refused.returncode != 0
        assert '"tools"' not in refused.stdout
    assert TOKEN not in server.stderr_text()
