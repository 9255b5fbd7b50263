"""``CONSOLE_PORT``: the console alone on ``127.0.0.1:P``, beside a stdio server.

A desktop client launches pgmcp over stdio; with ``CONSOLE_PORT`` set the same
process also serves ``http://127.0.0.1:P/console`` so its user can watch the
agent. Loopback only, ``Host`` checked; with ``MCP_AUTH_TOKEN`` set the login
form is required as on the HTTP transport. A port that cannot be bound is
logged (``console_unavailable``) and the stdio server goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from pgmcp.app import AppContext
from pgmcp.auth import Authenticator
from pgmcp.console.routes import PREFIX, Console
from pgmcp.logs import get_logger

__all__ = ["console_server"]

_log = get_logger("pgmcp.console")
HOST = "127.0.0.1"


def _standalone_app(console: Console) -> Any:
    async def rest(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("path") in ("", "/"):
            await RedirectResponse(PREFIX, status_code=307)(scope, receive, send)
        else:
            await Response("Not found", status_code=404, media_type="text/plain")(scope, receive, send)

    return console.mount(rest)


@contextlib.asynccontextmanager
async def console_server(app: AppContext, port: int | None) -> AsyncIterator[int | None]:
    """Serve the console on ``127.0.0.1:port`` while the body runs; yields the port (None when off)."""
    if port is None:
        yield None
        return
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        _log.error("console_unavailable", host=HOST, port=port, error=str(exc))
        yield None
        return
    console = Console(app, Authenticator(app.settings), bind_loopback_only=True)
    config = uvicorn.Config(
        _standalone_app(console),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:  # the stdio server owns the signals
            yield

    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    _log.info("console_started", url=f"http://{HOST}:{port}{PREFIX}", auth=console.auth_required)
    try:
        yield port
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        sock.close()
