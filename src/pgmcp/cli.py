"""``pgmcp serve [--transport http|stdio] [--host H] [--port P] [--env-file F]``
(and ``pgmcp setup-role``: the least-privilege role's GRANT script, ``setup_role.py``).

Reads the settings (a bad value stops start-up with one line naming the
variable), sets up JSON logs on stderr, opens the application and serves MCP
over stdio or Streamable HTTP until stdin closes or SIGTERM/SIGINT arrives;
then in-flight calls get ``SHUTDOWN_GRACE_SECONDS`` to finish, pools close and
the embedded PostgreSQL stops. Over HTTP the port stays open while the calls
finish: ``/readyz`` answers 503 (so a load balancer stops routing here), new
tool calls are refused, ``/livez`` stays 200; then the server stops and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Coroutine
from typing import Any, cast

from pgmcp import setup_role
from pgmcp._version import __version__
from pgmcp.config import Settings, SettingsError, load_settings
from pgmcp.errors import PgMcpError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgmcp", description="PostgreSQL MCP server")
    parser.add_argument("--version", action="version", version=f"pgmcp {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve MCP (default)")
    serve.add_argument(
        "--transport", choices=["http", "stdio"], default="http", help="MCP transport (default http)"
    )
    serve.add_argument("--host", help="HTTP bind address (MCP_SERVER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (MCP_SERVER_PORT, default 3000)")
    serve.add_argument("--env-file", help="read settings from this .env file")
    setup_role.add_parser(sub)
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(f"pgmcp: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])
    if args.command == "setup-role":
        return setup_role.run(args)
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["mcp_server_host"] = args.host
    if args.port is not None:
        overrides["mcp_server_port"] = args.port
    try:
        settings = load_settings(args.env_file, **overrides)
    except SettingsError as exc:
        return _fail(str(exc))

    from pgmcp.http import is_loopback
    from pgmcp.logs import configure_logging, get_logger

    configure_logging(settings.mcp_log_level)
    log = get_logger("pgmcp.cli")
    if (
        args.transport == "http"
        and not is_loopback(settings.mcp_server_host)
        and settings.mcp_auth_token is None
    ):
        if not settings.mcp_allow_unauthenticated:
            return _fail(
                f"refusing to serve on {settings.mcp_server_host} without MCP_AUTH_TOKEN: anyone who can reach "
                "this address could run SQL. Set MCP_AUTH_TOKEN, bind 127.0.0.1, or set "
                "MCP_ALLOW_UNAUTHENTICATED=true if something else guards the port."
            )
        log.warning("unauthenticated_http", host=settings.mcp_server_host)
    try:
        _run(_serve(settings, args.transport))
    except KeyboardInterrupt:
        pass
    except PgMcpError as exc:
        return _fail(str(exc), 1)
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (not on Windows): its C event loop costs
    15–25 % less CPU per tool call than asyncio's (benchmarks/README.md)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(settings: Settings, transport: str) -> None:
    from pgmcp.app import open_app
    from pgmcp.logs import get_logger
    from pgmcp.server import build_server

    log = get_logger("pgmcp.cli")
    async with open_app(settings) as app:
        server = build_server(app)
        log.info(
            "server_started",
            transport=transport,
            host=settings.mcp_server_host if transport == "http" else None,
            port=settings.mcp_server_port if transport == "http" else None,
            connections=[c.connection_id for c in app.registry.all()],
            version=__version__,
        )
        if transport == "stdio":
            from pgmcp.console import console_server

            async with console_server(app, settings.console_port if settings.console_enabled else None):
                _settle_heap()
                await _run_until_signal(server, settings.shutdown_grace_seconds)
        else:
            await _serve_http(app, server)
        log.info("server_stopping")
    log.info("server_stopped")


def _settle_heap() -> None:
    """Move what start-up built (modules, pydantic models, the app: ~110,000 objects) out
    of the garbage collector's way. It lives as long as the process, yet every full
    collection walked all of it, 110-135 ms each; a 10,000-row batch_execute request set
    one off every few calls. What start-up left unreachable is a few hundred objects, not
    worth a collection first."""
    gc.freeze()


async def _run_until_signal(server: Any, grace: float) -> None:
    """Serve stdio until stdin closes or SIGTERM/SIGINT arrives.

    On the first signal new calls are refused and those running get ``grace``
    seconds to finish; then serving stops, which cancels what remains (asyncpg
    cancels the statement in the database and the transaction rolls back). A
    second signal stops at once.
    """
    from pgmcp.logs import get_logger

    log = get_logger("pgmcp.cli")
    task = asyncio.ensure_future(server.run_stdio_async())
    loop = asyncio.get_running_loop()
    drain: asyncio.Task[None] | None = None

    async def drain_then_stop() -> None:
        server.draining = True
        try:
            await asyncio.wait_for(server.wait_idle(), timeout=grace)
        except TimeoutError:
            log.warning("shutdown_grace_exceeded", in_flight=server.in_flight, grace_seconds=grace)
        task.cancel()

    def on_signal(sig: signal.Signals) -> None:
        nonlocal drain
        if drain is None:
            log.info("server_draining", signal=sig.name, in_flight=server.in_flight, grace_seconds=grace)
            drain = loop.create_task(drain_then_stop())
        else:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        if drain is not None:
            drain.cancel()


async def _serve_http(app: Any, server: Any) -> None:
    import uvicorn

    from pgmcp.http import build_http_app

    settings: Settings = app.settings
    asgi = build_http_app(app, server)
    _settle_heap()  # once the HTTP app, start-up's too, is built
    config = uvicorn.Config(
        asgi,
        host=settings.mcp_server_host,
        port=settings.mcp_server_port,
        log_config=None,
        access_log=False,
        # Seconds as given: int() made 0.5 into 0, which uvicorn reads as "wait forever".
        # (uvicorn types it int, but only hands it to asyncio.wait_for, which takes a float.)
        timeout_graceful_shutdown=cast(int, settings.shutdown_grace_seconds),
        lifespan="on",
    )
    http = _Uvicorn(config)
    http.pgmcp_server = server
    await http.serve()
    if not http.started:
        raise _StartFailed(f"could not serve HTTP on {settings.mcp_server_host}:{settings.mcp_server_port}")


def _uvicorn_server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn that drains on SIGTERM/SIGINT, stops and then returns.

        Stock uvicorn closes its port at once (a readiness probe could not see
        the drain) and re-raises the signal after its shutdown, which would kill
        the process before pools close and the embedded PostgreSQL stops. Here the
        first signal starts the drain: the MCP server refuses new calls and
        ``/readyz`` turns 503 while in-flight calls get SHUTDOWN_GRACE_SECONDS;
        then uvicorn's own shutdown runs with what is left of the grace period.
        A second signal stops at once (a third SIGINT forces the exit).
        """

        pgmcp_server: Any = None
        _drain: asyncio.Task[None] | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            loop = asyncio.get_running_loop()
            signals = (signal.SIGTERM, signal.SIGINT)
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
            try:
                yield
            finally:
                for sig in signals:
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(sig)

        def _on_signal(self, sig: int) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            elif self._drain is None and self.pgmcp_server is not None:
                self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit(sig))
            else:
                self.should_exit = True

        async def _drain_then_exit(self, sig: int) -> None:
            from pgmcp.logs import get_logger

            server = self.pgmcp_server
            grace = float(self.config.timeout_graceful_shutdown or 0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            server.draining = True
            get_logger("pgmcp.cli").info(
                "server_draining",
                signal=signal.Signals(sig).name,
                in_flight=server.in_flight,
                grace_seconds=grace,
            )
            try:
                await asyncio.wait_for(server.wait_idle(), timeout=grace)
            except TimeoutError:
                get_logger("pgmcp.cli").warning(
                    "shutdown_grace_exceeded", in_flight=server.in_flight, grace_seconds=grace
                )
            # uvicorn's shutdown gets what is left of the grace period, then cancels what remains.
            remaining = max(grace - (loop.time() - started), 0.05)
            self.config.timeout_graceful_shutdown = cast(int, remaining)
            self.should_exit = True

    return Server


def _Uvicorn(config: Any) -> Any:  # noqa: N802 - reads like the class it builds
    return _uvicorn_server_class()(config)


class _StartFailed(PgMcpError):
    error_type = "startup_failed"
