"""TLS to PostgreSQL: what each ``ssl_mode`` means, and the ``SSLContext`` that does it.

The modes mean what they mean to libpq (``psql``), so a connection string a user
already trusts behaves the same here:

==============  =========================================================================
``disable``     plain TCP.
``allow``       plain TCP; TLS only if the server insists. Nothing is verified.
``prefer``      TLS if the server offers it, else plain TCP. Nothing is verified.
``require``     TLS or no connection. The certificate is not verified, unless a root
                certificate is given: then its chain is (libpq: "like verify-ca").
``verify-ca``   TLS; the server's certificate must chain to the root certificate
                (``ssl_root_cert``; without one, the system's CA store).
``verify-full`` as ``verify-ca``, and the certificate must name the host connected to.
==============  =========================================================================

``ssl_cert``/``ssl_key`` (a client certificate) are presented in every TLS mode. A client
certificate needs TLS, so with one ``allow`` and ``prefer`` no longer fall back to plain
TCP (asyncpg negotiates the fallback only for the modes it builds itself).

Through an SSH tunnel the socket goes to 127.0.0.1, but the certificate must still name
the database host: :func:`ssl_arg` takes that name as ``server_hostname`` and the
context checks it (and sends it as SNI) whatever address asyncpg dialled.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from pgmcp.errors import InvalidInput

__all__ = ["describe_tls_error", "ssl_arg"]

_VERIFYING = ("verify-ca", "verify-full")


class _NamedContext(ssl.SSLContext):
    """An SSLContext that checks (and sends as SNI) a fixed host name, not the dialled address."""

    pgmcp_server_hostname: str | None = None

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        # asyncio's and uvloop's start_tls both come through here with server_hostname=<the
        # address asyncpg dialled>; through a tunnel that is 127.0.0.1, never in the cert.
        if self.pgmcp_server_hostname is not None:
            kwargs["server_hostname"] = self.pgmcp_server_hostname
        return super().wrap_bio(*args, **kwargs)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.pgmcp_server_hostname is not None:
            kwargs["server_hostname"] = self.pgmcp_server_hostname
        return super().wrap_socket(*args, **kwargs)


def _file(path: str, what: str) -> str:
    """``path`` if it is a readable file, else InvalidInput naming the parameter (never its contents)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidInput(f"{what} file not found on the server: {path}")
    return str(p)


def ssl_arg(
    *,
    host: str,
    mode: str,
    root_cert: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    server_hostname: str | None = None,
) -> ssl.SSLContext | str | bool:
    """What to pass as asyncpg's ``ssl=`` for ``mode`` and the given certificate files.

    ``host`` is the database host (a path = a unix socket: never TLS). ``server_hostname``
    is the name ``verify-full`` checks when it differs from the address dialled (a tunnel).

    Raises:
        InvalidInput: a certificate or key file is missing or cannot be loaded.
    """
    if host.startswith("/") or mode == "disable":
        return False
    if mode in ("allow", "prefer") and not cert:
        # asyncpg negotiates these itself (TLS attempted or not, plain TCP as fallback); with
        # nothing verified, a root certificate would change nothing.
        return mode
    ctx = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    verify_chain = mode in _VERIFYING or (mode == "require" and root_cert is not None)
    if verify_chain:
        ctx.check_hostname = mode == "verify-full"
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            if root_cert:
                ctx.load_verify_locations(cafile=_file(root_cert, "ssl_root_cert"))
            else:
                ctx.load_default_certs()
        except ssl.SSLError as exc:
            raise InvalidInput(
                f"ssl_root_cert {root_cert} holds no usable CA certificate ({exc.reason or 'unreadable'})"
            ) from None
        if mode == "verify-full":
            ctx.pgmcp_server_hostname = server_hostname
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if key and not cert:
        raise InvalidInput("ssl_key is given without ssl_cert (the client certificate it belongs to)")
    if cert:
        try:
            ctx.load_cert_chain(_file(cert, "ssl_cert"), _file(key, "ssl_key") if key else None)
        except ssl.SSLError as exc:
            raise InvalidInput(
                f"ssl_cert {cert} / ssl_key {key or '(in ssl_cert)'} could not be loaded as a client "
                f"certificate and its key ({exc.reason or 'unreadable'})"
            ) from None
    return ctx


def describe_tls_error(exc: BaseException, mode: str) -> str | None:
    """A sentence for a refused server certificate, or None when ``exc`` is not one."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or exc.reason or "verification failed").rstrip(".")
        return (
            f"the server's TLS certificate was refused (ssl_mode={mode}): {reason}. "
            "Check ssl_root_cert (the CA that signed it) and, for verify-full, that the host "
            "name is one the certificate names"
        )
    return None
