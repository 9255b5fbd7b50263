"""The console's HTTP side: the page, its static assets, login/logout and the JSON API, as one ASGI app.

Auth is the same as ``/metrics``: with ``MCP_AUTH_TOKEN`` (or OIDC) set, the API
needs a session cookie from the login form, or an ``Authorization: Bearer``
header (scripts); without it a loopback server is open. The page and the API
are read-only; the login and logout POSTs must come from the console's own
origin. ``Host`` is checked like ``/mcp``'s (DNS rebinding), and every answer
carries a Content-Security-Policy that allows nothing but this origin.
"""

from __future__ import annotations

import asyncio
import html
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from pgmcp.app import AppContext
from pgmcp.auth import Authenticator, AuthError
from pgmcp.console.api import ConsoleApi
from pgmcp.console.session import COOKIE_NAME, Sessions
from pgmcp.errors import PgMcpError, error_payload
from pgmcp.hosts import is_loopback
from pgmcp.logs import get_logger

__all__ = ["PREFIX", "Console"]

PREFIX = "/console"
_MAX_FORM_BYTES = 16 * 1024
_FAILED_LOGIN_DELAY = 0.25  # seconds: slows guessing down; the token's length does the rest
_STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # "no-referrer" makes a form POST send Origin: null
    "x-frame-options": "DENY",
}

_log = get_logger("pgmcp.console")


def _load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of ``static/`` (and ``static/vendor/``), read once: name -> (body, content type)."""
    root = resources.files("pgmcp.console") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for folder, prefix in ((root, ""), (root / "vendor", "vendor/")):
        for item in folder.iterdir():
            if item.is_file():
                suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
                files[prefix + item.name] = (item.read_bytes(), _STATIC_TYPES.get(suffix, "text/plain"))
    return files


def _host_names(settings: Any) -> frozenset[str] | None:
    """Host names the console answers to, or None (any) when bound to a routable address without a list."""
    names = {_hostname(h) for h in settings.mcp_allowed_hosts}
    if not is_loopback(settings.mcp_server_host) and not names:
        return None
    return frozenset({"127.0.0.1", "localhost", "[::1]", *names})


class Console:
    """The console as an ASGI app answering every path under ``/console``."""

    def __init__(
        self, app: AppContext, authenticator: Authenticator, *, bind_loopback_only: bool = False
    ) -> None:
        settings = app.settings
        self.api = ConsoleApi(app)
        self._auth = authenticator
        token = settings.mcp_auth_token.get_secret_value() if settings.mcp_auth_token else None
        self.sessions = Sessions(token, settings.console_session_seconds)
        self._hosts = (
            frozenset({"127.0.0.1", "localhost", "[::1]"}) if bind_loopback_only else _host_names(settings)
        )
        self._static = _load_static()
        p = PREFIX
        self._router = Router(
            routes=[
                Route(p, self.page, methods=["GET"]),
                Route(p + "/", self.slash, methods=["GET"]),
                Route(p + "/login", self.login, methods=["POST"]),
                Route(p + "/logout", self.logout, methods=["POST"]),
                Route(p + "/static/{name:path}", self.static, methods=["GET"]),
                Route(p + "/api/queries/{query_id:int}", self.query_detail, methods=["GET"]),
                Route(p + "/api/{name}", self.api_call, methods=["GET"]),
            ]
        )

    def mount(self, inner: ASGIApp) -> ASGIApp:
        """``inner`` with the console's paths taken out of it (and so out of its auth)."""

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "") if scope["type"] == "http" else ""
            if path == PREFIX or path.startswith(PREFIX + "/"):
                await self(scope, receive, send)
            else:
                await inner(scope, receive, send)

        return dispatch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._router(scope, receive, send)
            return
        if self._hosts is not None and _host_of(scope) not in self._hosts:
            await _secure(Response("Invalid Host header", status_code=421))(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [
                    (k.encode(), v.encode())
                    for k, v in _SECURITY_HEADERS.items()
                    if k.encode() not in present
                ]
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self._router(scope, receive, with_headers)

    # --- auth -------------------------------------------------------------------

    @property
    def auth_required(self) -> bool:
        return self._auth.enabled

    async def _authorized(self, request: Request) -> bool:
        if not self._auth.enabled or self.sessions.valid(request.cookies.get(COOKIE_NAME)):
            return True
        header = request.headers.get("authorization")
        if not header:
            return False
        try:
            await self._auth.authenticate(header.encode("latin-1"))
        except AuthError:
            return False
        return True

    # --- pages ------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not await self._authorized(request):
            return self._login_page()
        body, _ = self._static["console.html"]
        return Response(body, media_type="text/html; charset=utf-8")

    async def slash(self, _: Request) -> Response:
        return RedirectResponse(PREFIX, status_code=308)

    def _login_page(self, error: str | None = None, status: int = 200) -> Response:
        body, _ = self._static["login.html"]
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return Response(
            body.replace(b"<!--error-->", message.encode()),
            status_code=status,
            media_type="text/html; charset=utf-8",
        )

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = self._static.get(name)
        if found is None or name.endswith(".html"):
            return Response("Not found", status_code=404, media_type="text/plain")
        body, content_type = found
        return Response(body, media_type=content_type, headers={"cache-control": "no-cache"})

    async def login(self, request: Request) -> Response:
        """POST /console/login (form field ``token``): sets the session cookie and redirects to the page."""
        if not _same_origin(request):
            return Response("Cross-site request refused", status_code=403, media_type="text/plain")
        if not self._auth.enabled:
            return RedirectResponse(PREFIX, status_code=303)
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return self._login_page("Send the token from the form.", 400)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM_BYTES:
                return self._login_page("The form was too large.", 413)
        token = dict(parse_qsl(body.decode("utf-8", "replace"))).get("token", "").strip()
        client = request.client.host if request.client else None
        try:
            principal = await self._auth.authenticate(b"Bearer " + token.encode()) if token else None
        except AuthError:
            principal = None
        if principal is None:
            _log.warning("console_login_failed", client=client)
            await asyncio.sleep(_FAILED_LOGIN_DELAY)
            return self._login_page("That token is not valid.", 401)
        _log.info("console_login", client=client, principal=principal.subject)
        response = RedirectResponse(PREFIX, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            self.sessions.issue(),
            max_age=int(self.sessions.lifetime),
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=_https(request),
        )
        return response

    async def logout(self, request: Request) -> Response:
        if not _same_origin(request):
            return Response("Cross-site request refused", status_code=403, media_type="text/plain")
        self.sessions.revoke(request.cookies.get(COOKIE_NAME))
        response = RedirectResponse(PREFIX, status_code=303)
        response.delete_cookie(
            COOKIE_NAME, path=PREFIX, httponly=True, samesite="strict", secure=_https(request)
        )
        return response

    # --- API --------------------------------------------------------------------

    async def api_call(self, request: Request) -> Response:
        denied = await self._api_guard(request)
        if denied is not None:
            return denied
        name = request.path_params["name"]
        params = request.query_params
        try:
            if name == "overview":
                payload = {**self.api.overview(), "auth_required": self.auth_required}
            elif name == "timeseries":
                payload = self.api.timeseries(params)
            elif name == "queries":
                payload = self.api.queries(params)
            elif name == "blocked":
                payload = self.api.blocked(params)
            elif name == "slow":
                payload = self.api.slow(params)
            elif name == "explain":
                payload = await self.api.explain(params)
            else:
                return _json(
                    {"success": False, "error": f"No console API '{name}'", "error_type": "not_found"}, 404
                )
        except PgMcpError as exc:
            # Like a tool's error: the page shows it; HTTP 200 so a browser logs no failed load.
            return _json(error_payload(exc))
        return _json(payload)

    async def query_detail(self, request: Request) -> Response:
        denied = await self._api_guard(request)
        if denied is not None:
            return denied
        found = self.api.query(int(request.path_params["query_id"]))
        if found is None:
            message = "That query is no longer in the history"
            return _json({"success": False, "error": message, "error_type": "not_found"}, 404)
        return _json(found)

    async def _api_guard(self, request: Request) -> Response | None:
        if request.headers.get("sec-fetch-site") == "cross-site":
            return _json(
                {"success": False, "error": "Cross-site request refused", "error_type": "forbidden"}, 403
            )
        if not await self._authorized(request):
            return _json(
                {"success": False, "error": "Log in to the console first (or send a bearer token)",
                 "error_type": "unauthorized"},
                401,
            )  # fmt: skip
        return None


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, default=str), status_code=status, media_type="application/json")


def _secure(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    return response


def _hostname(host: str) -> str:
    """``host[:port]`` (or ``[v6]:port``) without the port, lower case."""
    host = host.lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.split(":", 1)[0]


def _host_of(scope: Scope) -> str:
    return _hostname(next((v for k, v in scope.get("headers", ()) if k == b"host"), b"").decode("latin-1"))


def _https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _same_origin(request: Request) -> bool:
    """A POST from the console's own page: ``Sec-Fetch-Site`` and ``Origin`` (when sent) agree."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's cross-site form post (those carry Origin); SameSite guards the rest
    if origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
