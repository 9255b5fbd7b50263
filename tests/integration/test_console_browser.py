"""The web console in a real headless Chromium (Debian's ``chromium``, driven by npm's playwright-core).

After a few calls (one blocked, one slow) the page loads with no console errors,
shows connection ``default`` as healthy, the blocked call with its reason, the
slow call with its plan, and charts that drew points. Screenshots at a desktop
and a phone size (light and dark) are saved under ``test-artifacts/console/``
for a person to look at. Skips when chromium, node or the npm packages are
missing (``.ci/run`` installs chromium; the test runs ``npm ci`` itself).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import PgServer
from tests.integration.harness import payload
from tests.integration.proc import ROOT, pgmcp_env, serve_http

# A browser per test (~20 s each): run once per `make test`, not again on the embedded pass.
pytestmark = pytest.mark.slow

UI = ROOT / "console-ui"
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "console-browser-token-8d2f61a0c9"


def _browser_tools() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to drive chromium with playwright-core")
    if not (UI / "node_modules" / "playwright-core").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=UI, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.skip(f"npm ci in console-ui failed: {done.stderr[-500:]}")


def browse(url: str, out: Path, **extra: Any) -> dict[str, Any]:
    args = {"url": url, "out": str(out), "chromium": CHROMIUM, **extra}
    done = subprocess.run(
        ["node", str(UI / "browser-check.mjs"), json.dumps(args)],
        cwd=UI,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert "failure" not in report, report["failure"]
    return report


async def a_few_calls(mcp_url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A fast, a blocked, a slow and a failing call; then get_metrics."""
    http = httpx2.AsyncClient(headers=headers or {}, timeout=30)
    async with http, Client(streamable_http_client(mcp_url, http_client=http)) as client:

        async def run(query: str) -> dict[str, Any]:
            return payload(
                await client.call_tool("execute_query", {"connection_id": "default", "query": query})
            )

        assert (await run("SELECT 1 AS one"))["success"]
        assert (await run("DROP TABLE customers"))["error_type"] == "query_blocked"
        assert (await run("SELECT pg_sleep(0.3) AS slept"))["success"]
        assert (await run("SELECT 1/0"))["error_type"] == "database_error"
        return payload(await client.call_tool("get_metrics", {}))


@pytest.fixture(scope="module")
def browser_ready() -> None:
    _browser_tools()


async def test_console_page_shows_the_calls_in_a_real_browser(
    browser_ready: None, module_db: PgServer, tmp_path: Path
) -> None:
    env = pgmcp_env(module_db, SLOW_QUERY_THRESHOLD_MS="100", ENABLE_QUERY_LOGGING="true")
    with serve_http(env, tmp_path) as server:
        metrics = await a_few_calls(server.mcp_url)
        report = browse(f"{server.base_url}/console", ARTIFACTS / "open", expand="SELECT 1/0")

    assert report["console_errors"] == [] and report["page_errors"] == [], report
    assert all(url.startswith(server.base_url) for url in report["request_urls"]), "loaded from elsewhere"
    for name, view in report["views"].items():
        (conn,) = view["connections"]
        assert (conn["id"], conn["health"]) == ("default", "healthy"), name
        (blocked,) = view["blocked"]
        assert blocked["reason"] == "blocked_keyword"
        assert (
            "contains dangerous keyword 'DROP'" in blocked["text"]
            and "DROP TABLE customers" in blocked["text"]
        )
        (slow,) = view["slow"]
        assert "SELECT pg_sleep(0.3) AS slept" in slow
        assert view["plan_state"] == "shown" and '"Node Type": "Result"' in view["plan_text"]
        # The failed call's row, expanded: the whole statement, its outcome and its caller.
        detail = view["detail_text"]
        assert "SELECT 1/0" in detail and "database_error" in detail and "caller anonymous" in detail, detail
        # The totals are get_metrics' numbers for the same calls (the phone view comes second:
        # it also counts the EXPLAIN the desktop view's plan link ran).
        explains = 0 if name == "desktop" else 1
        assert view["totals"]["total_queries"] == str(metrics["total_queries"] + explains), name
        for key in ("failed_queries", "blocked_queries", "slow_queries"):
            assert view["totals"][key] == str(metrics[key]), (name, key)
        # Every chart drew points: the page's count of plotted values, and the series' colour on the canvas.
        assert view["canvases"] == 4
        points = view["chart_points"]
        assert points["chart-calls"] >= 1 and points["chart-latency"] >= 1, points
        assert points["chart-blocked"] >= 1 and points["chart-pools"] >= 1, points
        assert all(n > 0 for n in view["series_pixels"].values()), view["series_pixels"]
        assert view["scroll_width"] <= view["width"] + 1, f"{name}: the page scrolls sideways"
    for shot in ("console-desktop.png", "console-phone.png"):
        assert (ARTIFACTS / "open" / shot).stat().st_size > 10_000, shot


async def test_console_login_in_a_real_browser_never_puts_the_token_in_a_url_or_the_page(
    browser_ready: None, module_db: PgServer, tmp_path: Path
) -> None:
    env = pgmcp_env(module_db, MCP_AUTH_TOKEN=TOKEN, SLOW_QUERY_THRESHOLD_MS="100")
    with serve_http(env, tmp_path) as server:
        await a_few_calls(server.mcp_url, {"Authorization": f"Bearer {TOKEN}"})
        report = browse(
            f"{server.base_url}/console", ARTIFACTS / "login", token=TOKEN, wrong_token="guess-1234"
        )
    for name, login in report["login"].items():
        assert login["form_shown"] and login["api_status_without_cookie"] == 401, name
        assert login["wrong_token_refused"] and "not valid" in login["wrong_token_message"], name
        assert login["after_login_url"] == f"{server.base_url}/console"
        (cookie,) = login["cookies"]
        assert cookie == {
            "name": "pgmcp_console", "httpOnly": True, "sameSite": "Strict",
            "value_is_token": False, "value_has_token": False,
        }  # fmt: skip
    for name, view in report["views"].items():
        assert view["connections"][0]["health"] == "healthy", name
        assert TOKEN not in view["html"], name
    assert not [url for url in report["request_urls"] if TOKEN in url]
    assert TOKEN not in server.stderr_text()
    assert report["page_errors"] == []
    # The refused login answers 401, which Chromium reports as a failed load; nothing else may fail.
    assert all("401" in message for message in report["console_errors"]), report["console_errors"]
