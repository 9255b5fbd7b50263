"""How a failure on the execute path reads: driver and server errors as :mod:`pgmcp.errors`
classes, a connection that is gone, a database that stopped answering, a failed statement
of a transaction."""

from __future__ import annotations

import asyncpg

from pgmcp.errors import ConnectionFailed, DatabaseError, PgMcpError, QueryTimeout, from_postgres

__all__ = ["StatementFailed", "is_stale", "no_answer", "pgmcp_error"]


class StatementFailed(PgMcpError):
    """A statement of a transaction failed; carries the index and the underlying error."""

    def __init__(self, index: int, error: PgMcpError) -> None:
        super().__init__(f"Query {index} failed: {error}")
        self.index = index
        self.error = error
        self.error_type = error.error_type  # type: ignore[misc]
        # error.extra may say that a COMMIT's outcome is unknown (connection lost while committing).
        self.extra = {"committed": False, "rolled_back": True, "failed_index": index, **error.extra}


def is_stale(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection itself is gone (not that the statement failed)."""
    if isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | ConnectionError,
    ):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in {"57P01", "57P02"}


def no_answer(deadline: float | None, in_doubt: bool, cause: PgMcpError | None = None) -> PgMcpError:
    """The error of a call whose database stopped answering (or vanished) mid-transaction."""
    if deadline is not None:
        err: PgMcpError = QueryTimeout(
            f"The database did not answer within {deadline:g} seconds (QUERY_TIMEOUT per statement plus "
            "CONNECTION_TIMEOUT): it may be hung or unreachable. The connection was closed"
        )
    else:
        err = cause or ConnectionFailed("Connection to the database failed")
    if in_doubt:
        # The COMMIT was sent and no answer came back: only the database knows whether it took effect.
        err = type(err)(
            f"{str(err).rstrip('.')}; the COMMIT was sent but its outcome is unknown: check the data "
            "before retrying"
        )
        err.extra = {"committed": None, "rolled_back": False, "commit_outcome": "unknown"}
    else:
        err = type(err)(f"{str(err).rstrip('.')}; nothing was committed") if deadline is not None else err
    return err


def pgmcp_error(exc: BaseException, *, query_timeout: float) -> PgMcpError:
    """The :mod:`pgmcp.errors` class for a driver or server error (by SQLSTATE, ``errors.from_postgres``)."""
    if isinstance(exc, asyncpg.InternalClientError) and not isinstance(exc, PgMcpError):
        if "cannot switch to state" in str(exc) or "another operation" in str(exc):
            # asyncpg's protocol state machine tripped over a connection the server dropped
            # ("cannot switch to state 12; another operation (2) is in progress").
            return ConnectionFailed(
                f"Connection to the database failed: the server ended the session mid-call ({exc}); "
                "retry the call"
            )
        # Anything else is the driver failing to read a result (a type it cannot decode):
        # the connection is fine, and a retry would fail the same way.
        return DatabaseError(
            f"The driver could not read this result ({exc}); cast the column to text (column::text)"
        )
    return from_postgres(exc, timeout_seconds=query_timeout)
