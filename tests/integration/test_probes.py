"""``/livez`` and ``/readyz``: probes an orchestrator can live with (SPEC §2).

A database outage must not make Kubernetes restart every pod (liveness), only
take the pod out of the load balancer until the database answers again
(readiness). The drain on SIGTERM is in test_reliability_shutdown.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PgServer
from tests.integration.faults import RestartablePostgres, free_port, wait_until
from tests.integration.proc import http_get, pgmcp_env, serve_http


@pytest.fixture
def restartable() -> Iterator[RestartablePostgres]:
    try:
        pg = RestartablePostgres()
    except (ImportError, OSError, RuntimeError) as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL: {exc}")
    try:
        pg.start()
        yield pg
    finally:
        pg.destroy()


def _get(url: str) -> tuple[int, dict[str, object]]:
    status, body = http_get(url, timeout=10)
    return status, json.loads(body)


async def test_livez_stays_up_while_the_database_is_down_and_readyz_follows_the_database(
    restartable: RestartablePostgres, tmp_path: Path
) -> None:
    env = pgmcp_env(restartable.server, CONNECTION_TIMEOUT="3")
    with serve_http(env, tmp_path) as server:
        assert _get(f"{server.base_url}/livez") == (200, {"status": "alive"})
        status, ready = _get(f"{server.base_url}/readyz")
        assert (status, ready["status"]) == (200, "ready"), ready

        restartable.stop()
        started = time.monotonic()
        status, live = _get(f"{server.base_url}/livez")
        assert (status, live) == (200, {"status": "alive"})
        assert time.monotonic() - started < 1, "liveness must never wait for a database"
        status, ready = _get(f"{server.base_url}/readyz")
        assert status == 503, ready
        assert ready["status"] == "not_ready"
        assert ready["connections"]["default"]["is_healthy"] is False, ready  # type: ignore[index]

        restartable.start()

        async def ready_again() -> bool:
            return await asyncio.to_thread(lambda: _get(f"{server.base_url}/readyz")[0] == 200)

        await wait_until(
            ready_again, timeout=20, interval=0.2, what="/readyz 200 after the database returned"
        )
        assert _get(f"{server.base_url}/livez")[0] == 200


async def test_only_required_connections_decide_readiness_and_the_probes_need_no_token(
    module_db: PgServer, tmp_path: Path
) -> None:
    down = free_port()
    config = tmp_path / "connections.toml"
    config.write_text(
        f'[connections.reports]\nhost = "127.0.0.1"\nport = {down}\ndatabase = "r"\nuser = "u"\n',
        encoding="utf-8",
    )
    token = "probe-token-5521"
    env = pgmcp_env(module_db, MCP_CONFIG_FILE=str(config), MCP_AUTH_TOKEN=token, CONNECTION_TIMEOUT="3")
    with serve_http(env, tmp_path, name="optional") as server:
        assert http_get(f"{server.base_url}/connections")[0] == 401
        assert _get(f"{server.base_url}/livez")[0] == 200
        status, ready = _get(f"{server.base_url}/readyz")
        # 'reports' is down, but not required: the pod can still serve 'default'.
        assert status == 200, ready
        assert set(ready["connections"]) == {"default"}  # type: ignore[arg-type]

    config.write_text(config.read_text(encoding="utf-8") + "required = true\n", encoding="utf-8")
    with serve_http(env, tmp_path, name="required") as server:
        status, ready = _get(f"{server.base_url}/readyz")
        assert status == 503, ready
        assert ready["connections"]["reports"]["is_healthy"] is False  # type: ignore[index]
        assert ready["connections"]["default"]["is_healthy"] is True  # type: ignore[index]
