"""Running pgmcp in-process against the test PostgreSQL, driven by the official MCP client."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from mcp import Client

from pgmcp.app import AppContext, open_app
from pgmcp.config import load_settings
from pgmcp.db.embedded import demo_sql
from pgmcp.server import build_server
from tests.conftest import PgServer


def settings_for(db: PgServer | None, **overrides: Any) -> Any:
    values: dict[str, Any] = {"pgmcp_embedded": False, "health_check_interval": 3600}
    if db is not None:
        values.update({k.lower(): v for k, v in db.env().items()})
    values.update(overrides)
    return load_settings(**values)


@asynccontextmanager
async def running(db: PgServer | None, **overrides: Any) -> AsyncIterator[tuple[AppContext, Client]]:
    """pgmcp with ``db`` as connection 'default', and an MCP client connected in-process."""
    async with open_app(settings_for(db, **overrides)) as app, Client(build_server(app)) as client:
        yield app, client


def payload(result: Any) -> dict[str, Any]:
    """The JSON object of a tool result (structured content, checked against the text)."""
    data = result.structured_content
    if data is None:
        text = result.content[0].text
        start = text.find("{")
        data = json.loads(text[start : text.rfind("}") + 1])
    assert isinstance(data, dict)
    assert data["success"] is (not result.is_error), data
    return data


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return payload(await client.call_tool(tool, arguments))


async def call_ok(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    data = await call(client, tool, **arguments)
    assert data["success"] is True, data
    return data


async def call_err(client: Client, tool: str, error_type: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    data = payload(result)
    assert result.is_error, data
    assert data["success"] is False
    assert data["error_type"] == error_type, data
    assert "Traceback" not in data["error"]
    return data


async def load_demo(db: PgServer) -> None:
    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute(demo_sql())
    finally:
        await conn.close()


class ServerInTask:
    """pgmcp and a client kept open in a task of their own.

    anyio's cancel scopes must be left by the task that entered them, and a
    module-scoped async fixture is set up and torn down in different tasks.
    """

    def __init__(self, db: PgServer | None, **overrides: Any) -> None:
        self._db = db
        self._overrides = overrides
        self._ready: asyncio.Future[tuple[AppContext, Client]] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> tuple[AppContext, Client]:
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        done, _ = await asyncio.wait({self._ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._ready in done:
            return self._ready.result()
        self._task.result()
        raise RuntimeError("server task ended early")

    async def _run(self) -> None:
        async with running(self._db, **self._overrides) as pair:
            assert self._ready is not None
            self._ready.set_result(pair)
            await self._stop.wait()

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


_VOLATILE = {"duration_ms", "execution_time_ms", "latency_ms", "last_checked", "planning_time_ms"}
_TAG = re.compile(r"untrusted-data-[0-9a-f]{16}")
_TIMING = re.compile(r'"(duration_ms|execution_time_ms)":[0-9.]+')


def without_timings(value: Any) -> Any:
    """A JSON answer without what differs between two runs of the same call: timings and the
    random id of the untrusted-data boundary (in text content too)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    if isinstance(value, str):
        return _TAG.sub("untrusted-data-TAG", _TIMING.sub("", value))
    return value
