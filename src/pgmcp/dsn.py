"""``postgresql://`` URIs (``DATABASE_URL``, ``add_connection(dsn=...)``, ``dsn`` in MCP_CONFIG_FILE).

The libpq URI form, one host: ``postgresql://user:password@host:port/database?sslmode=require``,
with the query parameters ``host`` (a Unix-socket directory, or a host), ``port``, ``user``,
``password``, ``dbname``, ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``. The parts are
turned into the fields of a connection, so a DSN connection is the same as one given field by
field (host checks, TLS, pool). Error messages never repeat the URI or its password.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["SSL_MODES", "DsnError", "parse_dsn"]

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# libpq query parameter -> connection field
_PARAMS = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "sslmode": "ssl_mode",
    "sslrootcert": "ssl_root_cert",
    "sslcert": "ssl_cert",
    "sslkey": "ssl_key",
}
# Accepted and ignored: they change nothing pgmcp does (it sets its own application_name and
# timeouts).
_IGNORED = frozenset({"application_name", "connect_timeout", "fallback_application_name"})


class DsnError(ValueError):
    """The URI cannot be used; the message names the part, never the password."""


def parse_dsn(dsn: str) -> dict[str, Any]:
    """The connection fields a ``postgresql://`` URI gives (only those it gives).

    Keys: ``host``, ``port``, ``database``, ``user``, ``password``, ``ssl_mode``,
    ``ssl_root_cert``, ``ssl_cert``, ``ssl_key``.

    Raises:
        DsnError: not a postgresql:// URI, several hosts, a bad port, an unknown parameter.
    """
    scheme, sep, rest = dsn.strip().partition("://")
    if not sep or scheme.lower() not in ("postgresql", "postgres"):
        raise DsnError("a DSN must be a URI starting with postgresql:// (or postgres://)")
    # The user info ends at the last '@', so a password with an unescaped '/', '?' or '#' stays
    # whole (and out of every message below) instead of being read as a path or a query.
    userinfo, at, rest = rest.rpartition("@")
    fields: dict[str, Any] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            fields["user"] = unquote(user)
        if colon:
            fields["password"] = unquote(password)
    try:
        return _parse_rest(rest, fields)
    except DsnError as exc:
        secret = fields.get("password")
        if secret and secret in str(exc):  # belt and braces: a message never carries the password
            raise DsnError(str(exc).replace(secret, "***")) from None
        raise


def _parse_rest(rest: str, fields: dict[str, Any]) -> dict[str, Any]:
    parts = urlsplit("postgresql://" + rest)
    if parts.fragment:
        raise DsnError("a DSN has no #fragment")
    hostport = parts.netloc
    if "," in hostport:
        raise DsnError("a DSN with several hosts is not supported; give one host")
    host, port = _split_host_port(hostport)
    if host:
        fields["host"] = unquote(host)
    if port:
        fields["port"] = port
    database = unquote(parts.path.lstrip("/"))
    if database:
        fields["database"] = database
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _IGNORED:
            continue
        if key not in _PARAMS:
            accepted = ", ".join(sorted([*_PARAMS, *_IGNORED]))
            raise DsnError(f"unsupported DSN parameter {key!r} (accepted: {accepted})")
        fields[_PARAMS[key]] = value
    if "port" in fields:
        fields["port"] = _port(str(fields["port"]))
    if "ssl_mode" in fields and fields["ssl_mode"] not in SSL_MODES:
        raise DsnError(f"sslmode must be one of {', '.join(SSL_MODES)}, not {fields['ssl_mode']!r}")
    return fields


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # [IPv6]:port
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise DsnError("a DSN has an unterminated [IPv6 address]")
        return host, after[1:]
    host, _, port = hostport.partition(":")
    return host, port


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise DsnError(f"the DSN's port must be a number from 1 to 65535, not {text!r}")
    return int(text)
