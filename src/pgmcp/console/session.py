"""Console sessions: the login form trades the token for a signed, short-lived cookie.

- The cookie holds ``<random id>.<expiry>.<HMAC-SHA256 of both>``, never the token.
  The HMAC key is derived from ``MCP_AUTH_TOKEN`` (so replicas behind one load
  balancer accept each other's sessions, and changing the token ends every
  session); with OIDC only, it is random per process.
- ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
  sends it), ``Path=/console``, ``Secure`` when the request came over HTTPS.
- Logging out revokes the id until it would have expired anyway.
- CSRF: the cookie is ``SameSite=Strict``, the only POSTs (login, logout) must
  come from the console's own origin (``Origin``/``Sec-Fetch-Site``), and the API
  is read-only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

__all__ = ["COOKIE_NAME", "Sessions"]

COOKIE_NAME = "pgmcp_console"
_MAX_REVOKED = 10_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Sessions:
    """Issues and checks console session cookies; holds no session state but revocations."""

    def __init__(
        self, token: str | None, lifetime_seconds: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        if token:
            self._key = hmac.new(token.encode(), b"pgmcp-console-session-v1", hashlib.sha256).digest()
        else:
            self._key = secrets.token_bytes(32)
        self.lifetime = lifetime_seconds
        self._clock = clock
        self._revoked: dict[str, float] = {}  # id -> expiry

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self) -> str:
        """A new cookie value, valid for ``lifetime_seconds``."""
        body = f"{secrets.token_urlsafe(24)}.{int(self._clock() + self.lifetime)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, value: str | None) -> bool:
        """Whether ``value`` is a cookie this server issued, not expired and not revoked."""
        parsed = self._parse(value)
        return parsed is not None and parsed[0] not in self._revoked

    def revoke(self, value: str | None) -> None:
        parsed = self._parse(value)
        if parsed is None:
            return
        now = self._clock()
        if len(self._revoked) >= _MAX_REVOKED:
            self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
            if len(self._revoked) >= _MAX_REVOKED:  # still full: drop the oldest half
                keep = sorted(self._revoked.items(), key=lambda kv: kv[1])[_MAX_REVOKED // 2 :]
                self._revoked = dict(keep)
        self._revoked[parsed[0]] = parsed[1]

    def _parse(self, value: str | None) -> tuple[str, float] | None:
        if not value or value.count(".") != 2:
            return None
        sid, expiry, mac = value.split(".")
        if not hmac.compare_digest(mac.encode("ascii", "replace"), self._mac(f"{sid}.{expiry}").encode()):
            return None
        try:
            expires = float(expiry)
        except ValueError:
            return None
        if expires <= self._clock():
            return None
        return sid, expires
