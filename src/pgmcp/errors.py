"""The one exception tree of pgmcp.

Every failure a caller can see is one of these, and each class carries the
stable ``error_type`` code of SPEC §3. The MCP and HTTP edges turn them into
the one response shape ``{"success": false, "error": ..., "error_type": ...}``
(see :func:`error_payload`); nothing else reaches a client.

::

    PgMcpError                      (base; error_type "database_error")
    ├── InvalidInput                "invalid_input"
    ├── ConnectionNotFound          "connection_not_found"
    ├── QueryBlocked                "query_blocked"     (.reason: a metric label)
    ├── QueryTimeout                "timeout"
    ├── LimitExceeded               "limit_exceeded"
    ├── ConnectionFailed            "connection_failed"
    ├── Declined                    "declined"          (the user said no to a confirmation)
    ├── ConfirmationRequired        "confirmation_required" (CONFIRM_WRITES, client cannot ask)
    └── DatabaseError               "database_error"    (.sqlstate)

Driver exceptions are mapped by SQLSTATE class in :func:`from_postgres`,
never by message text.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

__all__ = [
    "ConnectionFailed",
    "ConfirmationRequired",
    "ConnectionNotFound",
    "DatabaseError",
    "Declined",
    "InvalidInput",
    "LimitExceeded",
    "PgMcpError",
    "QueryBlocked",
    "QueryTimeout",
    "error_payload",
    "from_postgres",
    "mask_secrets",
]


class PgMcpError(Exception):
    """Base of every error pgmcp reports; ``str(err)`` is a sentence for a person."""

    error_type: ClassVar[str] = "database_error"

    def __init__(self, message: str) -> None:
        super().__init__(mask_secrets(message))
        #: Extra response fields (e.g. ``failed_index`` of a transaction).
        self.extra: dict[str, Any] = {}

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(PgMcpError):
    """The caller's arguments are wrong (type, range, missing, unknown parameter)."""

    error_type = "invalid_input"


class ConnectionNotFound(PgMcpError):
    """No connection is registered under that id."""

    error_type = "connection_not_found"

    def __init__(self, connection_id: str) -> None:
        super().__init__(
            f"Connection not found: {connection_id}. "
            "Use list_connections to see the registered ones, or add_connection to create it."
        )
        self.connection_id = connection_id


class QueryBlocked(PgMcpError):
    """The policy refused the statement; it never reached the database.

    ``reason`` is a short stable label (``blocked_keyword``, ``always_blocked``,
    ``readonly``, ``operation_not_allowed``, ``multi_statement``,
    ``custom_rule``, ...) used for metrics and logs.
    """

    error_type = "query_blocked"

    def __init__(self, message: str, reason: str = "policy") -> None:
        super().__init__(message)
        self.reason = reason


class QueryTimeout(PgMcpError):
    """The database stopped the statement at ``statement_timeout``."""

    error_type = "timeout"


class LimitExceeded(PgMcpError):
    """A size or capacity limit was reached (query length, pool, batch size, connections)."""

    error_type = "limit_exceeded"


class ConnectionFailed(PgMcpError):
    """The database could not be reached or the connection was lost."""

    error_type = "connection_failed"


class Declined(PgMcpError):
    """The user declined (or cancelled) the confirmation CONFIRM_WRITES asked for; nothing ran."""

    error_type = "declined"


class ConfirmationRequired(PgMcpError):
    """CONFIRM_WRITES wants a person to confirm this write, and the client cannot ask one.

    Fails closed: nothing ran.
    """

    error_type = "confirmation_required"


class DatabaseError(PgMcpError):
    """PostgreSQL refused the statement (syntax, missing table, constraint, ...)."""

    error_type = "database_error"

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# --- secrets ---------------------------------------------------------------

# postgres://user:secret@host  ->  postgres://user:***@host
_DSN_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s]*)@")
# password=secret / password: 'secret' / "password": "secret"
_KV_PASSWORD = re.compile(
    r"""(?P<key>["']?(?:password|passwd|pwd|sslpassword)["']?\s*[=:]\s*)(?P<q>["']?)(?P<pw>[^"'\s,;}]*)(?P=q)""",
    re.IGNORECASE,
)
_registered_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret so that :func:`mask_secrets` removes it from any text."""
    if secret and len(secret) >= 3:
        _registered_secrets.add(secret)


def mask_secrets(text: str) -> str:
    """Mask passwords in DSNs, ``password=...`` pairs and every registered secret."""
    text = _DSN_PASSWORD.sub(r"\g<scheme>:***@", text)
    text = _KV_PASSWORD.sub(r"\g<key>\g<q>***\g<q>", text)
    for secret in _registered_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


# --- mapping driver errors ---------------------------------------------------


def from_postgres(exc: BaseException, *, timeout_seconds: float | None = None) -> PgMcpError:
    """Map an asyncpg / OS exception to the pgmcp tree, by SQLSTATE class.

    - ``57014`` (query_canceled) → :class:`QueryTimeout`
    - class ``08`` (connection exception), ``57P01..03`` (admin shutdown,
      crash shutdown, cannot connect now), OS errors and asyncpg's
      ``InterfaceError``/``ConnectionDoesNotExistError`` → :class:`ConnectionFailed`
    - ``53300`` (too_many_connections) → :class:`ConnectionFailed`
    - a value that does not fit its type (``22P02``, ``22003``, ``22007``, ``22008``,
      ``22001``, ``22021``, ``2202E``) → :class:`InvalidInput`
    - everything else with a SQLSTATE → :class:`DatabaseError`
    """
    if isinstance(exc, PgMcpError):
        return exc
    import asyncpg  # local: errors.py is a leaf module importable without the driver loaded

    if isinstance(exc, TimeoutError):
        seconds = f"{timeout_seconds:g}" if timeout_seconds is not None else "the configured"
        return QueryTimeout(f"Query timeout after {seconds} seconds")
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.PostgresError) and sqlstate:
        message = _postgres_message(exc)
        if sqlstate == "57014":
            if timeout_seconds is not None and "statement timeout" in str(exc):
                return QueryTimeout(f"Query timeout after {timeout_seconds:g} seconds")
            return QueryTimeout(f"Query was cancelled: {message}")
        if sqlstate.startswith("08") or sqlstate in {"57P01", "57P02", "57P03", "53300"}:
            return ConnectionFailed(f"Connection to the database failed: {message}")
        if sqlstate in _BAD_VALUE_STATES:
            return InvalidInput(f"Invalid value: {message}")
        return DatabaseError(message, sqlstate=sqlstate)
    if isinstance(
        exc,
        asyncpg.InterfaceError | asyncpg.ConnectionDoesNotExistError | OSError | ConnectionError,
    ):
        return ConnectionFailed(f"Connection to the database failed: {_plain(exc)}")
    return DatabaseError(f"Unexpected database error: {_plain(exc)}")


# Data exceptions that mean "this value does not fit its type": almost always a parameter.
_BAD_VALUE_STATES = frozenset({"22000", "22P02", "22003", "22007", "22008", "22001", "22021", "2202E"})


def _plain(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def _postgres_message(exc: Any) -> str:
    # str() of an asyncpg PostgresError already appends DETAIL and HINT (on lines of their
    # own): start from the bare message, or they would be said twice.
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    parts = [first.strip() or _plain(exc)]
    detail = getattr(exc, "detail", None)
    hint = getattr(exc, "hint", None)
    if detail:
        parts.append(f"DETAIL: {detail}")
    if hint:
        parts.append(f"HINT: {hint}")
    return " ".join(parts)


def error_payload(err: PgMcpError, **extra: Any) -> dict[str, Any]:
    """The one error response shape of every tool and HTTP endpoint."""
    payload: dict[str, Any] = {"success": False, "error": str(err), "error_type": err.error_type}
    payload.update(err.extra)
    payload.update(extra)
    return payload
