"""The web console over real sockets: login with MCP_AUTH_TOKEN, the session cookie, and CONSOLE_PORT beside stdio."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import PgServer
from tests.integration.harness import payload
from tests.integration.proc import PGMCP, free_port, json_lines, pgmcp_env, serve_http

TOKEN = "console-token-5c1e09d7b3a2"


def cookie_of(response: httpx2.Response) -> tuple[str, str]:
    """(value, the whole Set-Cookie header) of the console's session cookie."""
    header = response.headers["set-cookie"]
    name, _, rest = header.partition("=")
    assert name == "pgmcp_console", header
    return rest.split(";", 1)[0], header


async def test_console_login_takes_the_token_once_and_keeps_a_signed_session(
    module_db: PgServer, tmp_path: Path
) -> None:
    with serve_http(pgmcp_env(module_db, MCP_AUTH_TOKEN=TOKEN), tmp_path) as server:
        base = server.base_url
        async with httpx2.AsyncClient(base_url=base, timeout=30) as http:
            # Without a session: the API answers 401 and the page is the login form.
            denied = await http.get("/console/api/overview")
            assert denied.status_code == 401
            assert denied.json()["error_type"] == "unauthorized"
            page = await http.get("/console")
            assert page.status_code == 200 and 'id="login-form"' in page.text
            assert 'method="post"' in page.text  # the token goes in a POST body, never a URL

            # The wrong token is refused, and no cookie is set.
            wrong = await http.post("/console/login", data={"token": "not-the-token"})
            assert wrong.status_code == 401 and 'id="login-form"' in wrong.text
            assert "That token is not valid" in wrong.text
            assert "set-cookie" not in wrong.headers
            # Another site's page cannot log a browser in (nor out).
            forged = await http.post(
                "/console/login", data={"token": TOKEN}, headers={"Origin": "https://evil.example"}
            )
            assert forged.status_code == 403 and "set-cookie" not in forged.headers

            # The right one: a redirect to the page (POST-redirect-GET) and a session cookie.
            ok = await http.post("/console/login", data={"token": TOKEN}, headers={"Origin": base})
            assert ok.status_code == 303 and ok.headers["location"] == "/console"
            value, header = cookie_of(ok)
            attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
            assert {"httponly", "samesite", "path", "max-age"} <= attributes
            assert "samesite=strict" in header.lower() and "path=/console" in header.lower()
            assert TOKEN not in value and value.count(".") == 2  # id.expiry.hmac, never the token
            session = {"Cookie": f"pgmcp_console={value}"}

            opened = await http.get("/console", headers=session)
            assert 'id="login-form"' not in opened.text and 'id="charts-section"' in opened.text
            assert TOKEN not in opened.text
            overview = await http.get("/console/api/overview", headers=session)
            assert overview.status_code == 200 and overview.json()["auth_required"] is True
            assert TOKEN not in overview.text

            # A cookie with a changed id or expiry is not a session; a bearer header is (for scripts).
            sid, expiry, mac = value.split(".")
            for forged_value in (f"x{sid}.{expiry}.{mac}", f"{sid}.{int(expiry) + 999}.{mac}", TOKEN):
                tampered = await http.get(
                    "/console/api/overview", headers={"Cookie": f"pgmcp_console={forged_value}"}
                )
                assert tampered.status_code == 401, forged_value
            bearer = await http.get("/console/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 200
            # The cookie opens the console only: /metrics and /mcp still want the bearer token.
            assert (await http.get("/metrics", headers=session)).status_code == 401

            # Logging out ends the session on the server too.
            out = await http.post("/console/logout", headers={**session, "Origin": base})
            assert out.status_code == 303
            assert (await http.get("/console/api/overview", headers=session)).status_code == 401

        # MCP itself works as before, with the bearer token.
        authed = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        async with authed, Client(streamable_http_client(server.mcp_url, http_client=authed)) as client:
            result = await client.call_tool(
                "execute_query", {"connection_id": "default", "query": "SELECT 1"}
            )
            assert payload(result)["success"] is True
    stderr = server.stderr_text()
    assert TOKEN not in stderr
    events = [line["event"] for line in json_lines(stderr)]
    assert "console_login_failed" in events and "console_login" in events


async def test_console_port_serves_the_console_beside_a_stdio_server(
    module_db: PgServer, tmp_path: Path
) -> None:
    port = free_port()
    env = pgmcp_env(module_db, CONSOLE_PORT=str(port), SLOW_QUERY_THRESHOLD_MS="50", MCP_AUTH_TOKEN=TOKEN)
    params = StdioServerParameters(
        command=PGMCP, args=["serve", "--transport", "stdio"], env=env, cwd=str(tmp_path)
    )
    errlog_path = tmp_path / "stdio.stderr"
    with errlog_path.open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await client.call_tool(
                "execute_query", {"connection_id": "default", "query": "SELECT 42 AS answer"}
            )
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                # MCP_AUTH_TOKEN guards this console as it does the HTTP transport's.
                assert (await http.get("/console/api/queries")).status_code == 401
                assert 'id="login-form"' in (await http.get("/console")).text
                login = await http.post("/console/login", data={"token": TOKEN})
                value, _ = cookie_of(login)
                session = {"Cookie": f"pgmcp_console={value}"}
                rows = (await http.get("/console/api/queries", headers=session)).json()["queries"]
                assert [(r["query"], r["principal"], r["tool"]) for r in rows] == [
                    ("SELECT 42 AS answer", "stdio", "execute_query")
                ]
                assert (await http.get("/")).headers["location"] == "/console"
                assert (await http.get("/mcp")).status_code == 404  # the console alone
                rebound = await http.get(
                    "/console/api/overview", headers={**session, "Host": f"attacker.example:{port}"}
                )
                assert rebound.status_code == 421
    logs = json_lines(errlog_path.read_text())
    started = next(line for line in logs if line["event"] == "console_started")
    assert started["url"] == f"http://127.0.0.1:{port}/console"
    assert "server_stopped" in [line["event"] for line in logs]
    assert TOKEN not in errlog_path.read_text()
    with socket.socket() as probe:  # the port is free again once the server exited
        probe.bind(("127.0.0.1", port))


async def test_a_console_port_in_use_is_logged_and_stdio_serves_on(
    module_db: PgServer, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = pgmcp_env(module_db, CONSOLE_PORT=str(port))
        params = StdioServerParameters(
            command=PGMCP, args=["serve", "--transport", "stdio"], env=env, cwd=str(tmp_path)
        )
        errlog_path = tmp_path / "stdio.stderr"
        with errlog_path.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                result = await client.call_tool(
                    "execute_query", {"connection_id": "default", "query": "SELECT 1"}
                )
                assert payload(result)["success"] is True
    events = {line["event"]: line for line in json_lines(errlog_path.read_text())}
    assert events["console_unavailable"]["port"] == port
