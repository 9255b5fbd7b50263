"""The HTTP edge: ``/mcp`` (Streamable HTTP), ``/health``, ``/metrics``, ``/connections`` and auth.

- ``/health`` is open (Kubernetes probes) and answers from cached probes only,
  so it is fast even when a database hangs; 503 when unhealthy.
- With ``MCP_AUTH_TOKEN`` set, every other path needs ``Authorization: Bearer
  <token>`` (constant-time compare); 401 with ``WWW-Authenticate`` otherwise.
- The SDK's transport security checks ``Host``/``Origin`` on ``/mcp``;
  ``MCP_ALLOWED_HOSTS`` adds the names a load balancer forwards.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from pgmcp.app import AppContext
from pgmcp.server import PgMcpServer
from pgmcp.tools.observability import ObservabilityTools

__all__ = ["build_http_app", "is_loopback"]

OPEN_PATHS = frozenset({"/health", "/healthz", "/ready"})


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, default=str), status_code=status, media_type="application/json")


class BearerAuth:
    """ASGI middleware: every path but the open ones needs the bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        supplied = b""
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = rest.strip()
                break
        if not hmac.compare_digest(supplied, self._token):
            body = orjson.dumps(
                {
                    "success": False,
                    "error": "Missing or invalid bearer token: send 'Authorization: Bearer <MCP_AUTH_TOKEN>'",
                    "error_type": "unauthorized",
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="pgmcp"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["client_id"] = "token"
        await self.app(scope, receive, send)


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

    for path, endpoint in (("/health", health), ("/metrics", metrics), ("/connections", connections)):
        server.custom_route(path, methods=["GET"])(endpoint)

    starlette: Starlette = server.streamable_http_app(
        stateless_http=settings.mcp_stateless,
        json_response=settings.mcp_stateless,
        transport_security=_transport_security(app),
        max_request_body_size=settings.mcp_max_request_bytes,
        host=settings.mcp_server_host,
    )
    asgi: ASGIApp = starlette
    if settings.mcp_auth_token is not None:
        asgi = BearerAuth(asgi, settings.mcp_auth_token.get_secret_value())
    return asgi
