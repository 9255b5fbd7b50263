"""Who is calling: bearer tokens (static ``MCP_AUTH_TOKEN`` or OIDC JWTs) and the per-call principal.

- A static token (``MCP_AUTH_TOKEN``) is compared in constant time and gives
  the configured policy.
- An OIDC JWT (``MCP_OIDC_ISSUER``, ``MCP_OIDC_AUDIENCE``, ``MCP_OIDC_JWKS_URL``)
  is verified with PyJWT against the issuer's JWKS (signature, ``exp``,
  ``nbf``, ``iss``, ``aud``). Its scopes (``scope`` or ``scp``) decide the policy:
  ``write`` gets the configured policy, anything else (``read`` or nothing)
  gets read-only. Nothing loosens the server-wide policy.
- The principal of the running call lives in a context variable, so the
  execute path can tighten the policy and the audit log can name the client;
  stdio calls are the ``stdio`` principal.
"""

from __future__ import annotations

import asyncio
import hmac
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pgmcp.config import Settings
from pgmcp.logs import get_logger

__all__ = [
    "ANONYMOUS",
    "STDIO",
    "Authenticator",
    "CallInfo",
    "Principal",
    "current_call",
    "current_principal",
]

log = get_logger("pgmcp.auth")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    subject: str
    scopes: frozenset[str] = frozenset()
    readonly: bool = False


STDIO = Principal("stdio")
ANONYMOUS = Principal("anonymous")

current_principal: ContextVar[Principal] = ContextVar("pgmcp_principal", default=STDIO)


@dataclass(slots=True)
class CallInfo:
    """What one tool call did, filled in by the execute path for the audit log."""

    tool: str
    principal: Principal
    connection_id: str | None = None
    kinds: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    blocked_reason: str | None = None


current_call: ContextVar[CallInfo | None] = ContextVar("pgmcp_call", default=None)


class AuthError(Exception):
    """The request carries no acceptable credentials; the message says why (never the token)."""


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or raises :class:`AuthError`."""

    def __init__(self, settings: Settings) -> None:
        self._static = (
            settings.mcp_auth_token.get_secret_value().encode() if settings.mcp_auth_token else None
        )
        self._issuer = settings.mcp_oidc_issuer
        self._audience = settings.mcp_oidc_audience
        self._jwks_url = settings.mcp_oidc_jwks_url
        self._jwks: Any = None
        if self._jwks_url:
            import jwt

            self._jwks = jwt.PyJWKClient(self._jwks_url, cache_keys=True, lifespan=300, timeout=5)

    @property
    def enabled(self) -> bool:
        return self._static is not None or self._jwks is not None

    @property
    def oidc(self) -> bool:
        return self._jwks is not None

    @property
    def issuer(self) -> str | None:
        return self._issuer

    async def authenticate(self, authorization: bytes | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise AuthError("Missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, raw = authorization.partition(b" ")
        token = raw.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthError("Missing bearer token: send 'Authorization: Bearer <token>'")
        if self._static is not None and hmac.compare_digest(token, self._static):
            return Principal("token", frozenset({"read", "write"}))
        if self._jwks is not None and token.count(b".") == 2:
            return await self._verify_jwt(token.decode("ascii", "replace"))
        raise AuthError("Invalid bearer token")

    async def _verify_jwt(self, token: str) -> Principal:
        import jwt

        try:
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub"] if self._audience else ["exp", "iat", "sub"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("The token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("The token is not meant for this server (audience)") from None
        except jwt.InvalidIssuerError:
            raise AuthError("The token was issued by an issuer this server does not trust") from None
        except jwt.PyJWKClientError as exc:
            log.warning("jwks_unavailable", error=str(exc))
            raise AuthError("The token's signing key could not be verified") from None
        except jwt.InvalidTokenError:
            raise AuthError("Invalid token") from None
        scopes = _scopes(claims)
        return Principal(str(claims.get("sub")), scopes, readonly="write" not in scopes)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(s) for s in raw)
    return frozenset()
