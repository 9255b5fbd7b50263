"""The handbook's scenarios 1 and 2 through a real MCP client, against ``pgmcp serve`` over HTTP,
with the handbook's own settings (DEFAULT_POOL_SIZE=10, MAX_CONNECTIONS=20, DB_POOL_SIZE=10)
and ``default`` given as ``DATABASE_URL``, whose password must never show.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mcp import Client

from tests.conftest import PgServer
from tests.integration.harness import payload
from tests.integration.proc import http_get, pgmcp_env, serve_http
from tests.integration.test_handbook_scenarios import (
    Databases,
    dbs,  # noqa: F401 - the module's databases (a fixture)
)
from tests.integration.test_handbook_scenarios import test_scenario_1_business_intelligence as scenario_1
from tests.integration.test_handbook_scenarios import test_scenario_2_migration as scenario_2

SECRET = "Handbook-Url-Secret-7731"
HANDBOOK = {"DEFAULT_POOL_SIZE": "10", "MAX_CONNECTIONS": "20", "DB_POOL_SIZE": "10"}


def _url(db: PgServer, secret: str) -> tuple[str, str]:
    """``db`` as a postgresql:// URI with a password: the real one if the server needs one."""
    password = db.password or secret
    return replace(db, password=password).dsn(), password


async def test_scenarios_1_and_2_as_written_over_http_with_the_handbooks_defaults(
    dbs: Databases,  # noqa: F811
    tmp_path: Path,
) -> None:
    url, password = _url(dbs.default, SECRET)
    env = pgmcp_env(None, DATABASE_URL=url, **HANDBOOK)
    texts: list[str] = []
    with serve_http(env, tmp_path) as server:
        async with Client(server.mcp_url) as client:
            await scenario_1(client, dbs)
            await scenario_2(client, dbs)
            # add_connection(dsn=...) with the password inside the URI.
            dsn, _ = _url(dbs.sales, SECRET)
            for tool, args in (
                ("add_connection", {"connection_id": "by_dsn", "dsn": dsn}),
                ("execute_query", {"connection_id": "by_dsn", "query": "SELECT current_database() AS db"}),
                ("list_connections", {}),
                ("test_connection", {"connection_id": "by_dsn"}),
                ("health_check", {}),
                ("get_metrics", {}),
            ):
                result = await client.call_tool(tool, args)
                data = payload(result)
                assert data["success"] is True, (tool, data)
                texts.append(json.dumps(data))
                texts.extend(c.text for c in result.content if hasattr(c, "text"))
            added = json.loads(texts[0])
            assert added["pool_stats"]["size"] == 10
            assert json.loads(texts[2])["rows"] == [{"db": dbs.sales.database}]
            listed = {c["connection_id"]: c for c in json.loads(texts[4])["connections"]}
            assert listed["default"]["database"] == dbs.default.database
            assert listed["by_dsn"]["database"] == dbs.sales.database
        for path in ("/connections", "/metrics", "/health"):
            status, body = http_get(server.base_url + path)
            assert status == 200, (path, body)
            texts.append(body)
    texts.append(server.stderr_text())
    for text in texts:
        assert password not in text
        assert SECRET not in text
