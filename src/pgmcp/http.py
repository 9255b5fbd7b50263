"""The HTTP edge: ``/mcp`` (Streamable HTTP), ``/health``, ``/livez``, ``/readyz``, ``/metrics``,
``/connections`` and auth.

- ``/health`` is open (Kubernetes probes) and answers from cached probes only,
  so it is fast even when a database hangs; 503 when unhealthy.
- ``/livez`` (open) is 200 while the process serves; it never touches a database,
  so a database outage does not make Kubernetes restart every pod.
- ``/readyz`` (open) is 503 while the server drains (after SIGTERM) or while a
  *required* connection does not answer a probe (``default``, and MCP_CONFIG_FILE
  connections with ``required = true``); 200 otherwise.
- ``/console`` (:mod:`pgmcp.console`) checks the same token itself, from a
  login form's session cookie or the bearer header.
- With ``MCP_AUTH_TOKEN`` set, every other path needs ``Authorization: Bearer
  <token>`` (constant-time compare); 401 with ``WWW-Authenticate`` otherwise.
- The SDK's transport security checks ``Host``/``Origin`` on ``/mcp``;
  ``MCP_ALLOWED_HOSTS`` adds the names a load balancer forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio
import orjson
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgmcp.app import AppContext
from pgmcp.auth import ANONYMOUS, Authenticator, AuthError, Principal
from pgmcp.fastpath import HttpFastPath
from pgmcp.hosts import is_loopback
from pgmcp.logs import get_logger
from pgmcp.server import PgMcpServer
from pgmcp.tools.observability import ObservabilityTools

__all__ = ["build_http_app", "is_loopback"]

_log = get_logger("pgmcp.http")

OPEN_PATHS = frozenset({"/health", "/healthz", "/ready", "/livez", "/readyz"})
# A readiness probe must answer within Kubernetes' timeoutSeconds (3 s in deployment/k8s).
READY_PROBE_SECONDS = 2.0


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, default=str), status_code=status, media_type="application/json")


class AuthMiddleware:
    """ASGI middleware: every path but the open ones needs a valid bearer token.

    The caller's :class:`~pgmcp.auth.Principal` is put on the request scope
    (``state["pgmcp_principal"]``), where the MCP edge finds it for each call.
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator, metadata_url: str | None) -> None:
        self.app = app
        self._auth = authenticator
        challenge = 'Bearer realm="pgmcp"'
        if metadata_url:
            challenge += f', resource_metadata="{metadata_url}"'
        self._challenge = challenge.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith("/.well-known/")
        ):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        try:
            principal = await self._auth.authenticate(header)
        except AuthError as exc:
            body = orjson.dumps({"success": False, "error": str(exc), "error_type": "unauthorized"})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", self._challenge),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["pgmcp_principal"] = principal
        await self.app(scope, receive, send)


class _Anonymous:
    """No auth configured (loopback): every caller is the anonymous principal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["pgmcp_principal"] = ANONYMOUS
        await self.app(scope, receive, send)


def _public_base(settings: Any) -> str:
    host = settings.mcp_allowed_hosts[0].removesuffix(":*") if settings.mcp_allowed_hosts else None
    if host:
        return f"https://{host}"
    return f"http://{settings.mcp_server_host}:{settings.mcp_server_port}"


def _transport_security(app: AppContext) -> TransportSecuritySettings | None:
    settings = app.settings
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *settings.mcp_allowed_hosts]
    if not is_loopback(settings.mcp_server_host) and not settings.mcp_allowed_hosts:
        # Bound to a routable address without a host list: behind a load balancer the
        # Host header is the service's name, which we cannot know; auth guards /mcp.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def build_http_app(app: AppContext, server: PgMcpServer) -> ASGIApp:
    """The Starlette application serving MCP and the operator endpoints on one port."""
    settings = app.settings
    observe = ObservabilityTools(app)

    async def health(_: Request) -> Response:
        report = {"success": True, **observe.health()}
        return json_response(report, status=503 if report["status"] == "unhealthy" else 200)

    async def livez(_: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(_: Request) -> Response:
        if server.draining:
            return json_response({"ready": False, "status": "draining"}, status=503)
        required = [c for c in app.registry.all() if c.spec.required]
        timeout = min(READY_PROBE_SECONDS, settings.connection_timeout)
        # A probe of a pool busy with calls reports its last result: busy is not unready.
        healths = await asyncio.gather(*(app.registry.probe(c, timeout=timeout) for c in required))
        report = {
            c.connection_id: {"is_healthy": h.is_healthy, "error": h.error}
            for c, h in zip(required, healths, strict=True)
        }
        ready = all(h.is_healthy is not False for h in healths)
        body = {"ready": ready, "status": "ready" if ready else "not_ready", "connections": report}
        return json_response(body, status=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        if not settings.enable_metrics:
            return json_response(
                {
                    "success": False,
                    "error": "Metrics are disabled (ENABLE_METRICS=false)",
                    "error_type": "not_found",
                },
                status=404,
            )
        body, content_type = app.monitor.render_prometheus()
        return Response(body, media_type=content_type)

    async def connections(_: Request) -> Response:
        return json_response({"success": True, "connections": [c.describe() for c in app.registry.all()]})

    metadata_url = None
    routes: list[tuple[str, Any]] = [
        ("/health", health),
        ("/livez", livez),
        ("/readyz", readyz),
        ("/metrics", metrics),
        ("/connections", connections),
    ]
    if settings.mcp_oidc_issuer:
        # RFC 9728 protected-resource metadata: where a client finds the authorization server.
        metadata_url = f"{_public_base(settings)}/.well-known/oauth-protected-resource"

        async def protected_resource(_: Request) -> Response:
            return json_response(
                {
                    "resource": f"{_public_base(settings)}/mcp",
                    "authorization_servers": [settings.mcp_oidc_issuer],
                    "scopes_supported": ["read", "write"],
                    "bearer_methods_supported": ["header"],
                }
            )

        routes.append(("/.well-known/oauth-protected-resource", protected_resource))
    for path, endpoint in routes:
        server.custom_route(path, methods=["GET"])(endpoint)

    starlette: Starlette = server.streamable_http_app(
        stateless_http=settings.mcp_stateless,
        # Stateful sessions answer over SSE: a client that gives up on a call closes that
        # stream, which is how the call (and its query) gets cancelled. Plain JSON would be
        # cheaper (0.3–1.6 ms of server CPU a call) but loses that signal.
        json_response=settings.mcp_stateless,
        transport_security=_transport_security(app),
        max_request_body_size=settings.mcp_max_request_bytes,
        host=settings.mcp_server_host,
    )
    asgi: ASGIApp = _CancelOnDisconnect(starlette) if settings.mcp_stateless else starlette
    if settings.mcp_fast_path and settings.mcp_http_fast_path:
        asgi = HttpFastPath(asgi, server)
    authenticator = Authenticator(settings)
    guarded: ASGIApp = (
        _Anonymous(asgi) if not authenticator.enabled else AuthMiddleware(asgi, authenticator, metadata_url)
    )
    if settings.console_enabled:
        from pgmcp.console import Console

        guarded = Console(app, authenticator).mount(guarded)  # /console: its own login, same token
    return _QuietShutdown(guarded)


class _CancelOnDisconnect:
    """Stateless mode: a client that closes its connection mid-call has given up, so cancel the call.

    Without a session there is no other way to cancel (a ``notifications/cancelled``
    POST cannot reach another request), and the SDK's JSON-response path never
    looks for the disconnect: the statement would run on to QUERY_TIMEOUT and a
    write would even commit. Cancelling the request makes asyncpg cancel the
    statement in the database and the transaction roll back. (With sessions a
    2025-era disconnect may be a resumable hiccup and the spec's cancel is the
    notification; the 2026 SSE path watches for the disconnect itself.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The requests in flight in this process, by (caller, JSON-RPC id): a
        # notifications/cancelled POST from the same caller cancels its request here
        # (the TypeScript client keeps the request's POST open and sends one).
        self._in_flight: dict[tuple[str, str], anyio.CancelScope] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        body_done = asyncio.Event()
        gone = asyncio.Event()
        answered = False
        chunks: list[bytes] = []
        registered: tuple[str, str] | None = None
        scope_holder: list[anyio.CancelScope] = []

        async def app_receive() -> Message:
            nonlocal registered
            if body_done.is_set():  # after the body only a disconnect can come; the watcher owns it
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            else:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body_done.set()
                    registered = self._track(scope, b"".join(chunks), scope_holder[0])
                    chunks.clear()
            return message

        async def app_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await body_done.wait()
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()
                if not answered:
                    _log.info("request_abandoned", path=scope.get("path"), reason="client disconnected")
                    tg.cancel_scope.cancel()

            tg.start_soon(watch)
            with anyio.CancelScope() as call:
                scope_holder.append(call)
                try:
                    await self.app(scope, app_receive, app_send)
                finally:
                    if registered is not None and self._in_flight.get(registered) is call:
                        del self._in_flight[registered]
            tg.cancel_scope.cancel()
        if call.cancelled_caught and not answered and not gone.is_set():
            # Cancelled by notifications/cancelled: the spec wants no JSON-RPC response; the
            # POST still gets an HTTP one, empty.
            with contextlib.suppress(Exception):
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})

    def _track(self, scope: Scope, body: bytes, cancel: anyio.CancelScope) -> tuple[str, str] | None:
        """Register a request's cancel scope, or act on a notifications/cancelled; the key, if registered."""
        if len(body) > 65536 and b'"notifications/cancelled"' not in body[:200]:
            return None  # a big request (a batch): parsed only by the SDK; its disconnect still cancels it
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(message, dict):
            return None
        state = scope.get("state") or {}
        principal = state.get("pgmcp_principal")
        caller = principal.subject if isinstance(principal, Principal) else ""
        if message.get("method") == "notifications/cancelled":
            params = message.get("params")
            target = params.get("requestId") if isinstance(params, dict) else None
            if isinstance(target, str | int) and not isinstance(target, bool):
                running = self._in_flight.pop((caller, str(target)), None)
                if running is not None:
                    _log.info("request_cancelled", path=scope.get("path"), reason="notifications/cancelled")
                    running.cancel()
            return None
        rid = message.get("id")
        if "method" not in message or not isinstance(rid, str | int) or isinstance(rid, bool):
            return None
        key = (caller, str(rid))
        self._in_flight[key] = cancel
        return key


class _QuietShutdown:
    """A request still running when SHUTDOWN_GRACE_SECONDS ends is cancelled by uvicorn.

    That is the designed outcome of a shutdown (the call's transaction rolls back),
    not a crash: without this, uvicorn logs every such request as "Exception in ASGI
    application" with a traceback. Only the request task's own cancellation is
    absorbed, at the top of that task; nothing else runs after it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "done": False}

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["done"] = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            _log.info("request_cancelled", path=scope.get("path"), reason="shutdown grace period over")
            # Finish the response, or uvicorn logs an error about an incomplete one.
            with contextlib.suppress(Exception):
                if not state["started"]:
                    await json_response(_SHUTTING_DOWN, status=503)(scope, receive, send)
                elif not state["done"]:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})


_SHUTTING_DOWN = {
    "success": False,
    "error": "The server is shutting down: the call was cancelled and its transaction rolled back; retry",
    "error_type": "connection_failed",
}
