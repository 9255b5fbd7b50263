"""What the role a connection logs in as may do: the last layer, the one a parser cannot replace.

Gathered once when a pool opens (one query and, with ``READONLY_ROLE``, one
``SET LOCAL ROLE`` tried in a transaction that is rolled back), never per call:

- ``superuser`` and ``risky_roles``: membership in the predefined roles that reach the
  server host or other sessions (``pg_read_server_files``, ``pg_write_server_files``,
  ``pg_execute_server_program``, ``pg_signal_backend``, ``pg_checkpoint``) and the role
  attributes ``replication``, ``bypassrls``, ``createrole``. Reported by ``test_connection``,
  ``list_connections`` and ``health_check``, with a warning sentence, and logged once.
- ``REFUSE_SUPERUSER=true`` refuses a connection whose role is a superuser.
- ``READONLY_ROLE``: every read path runs ``SET LOCAL ROLE <role>``; a role the connection
  cannot switch to refuses the connection with one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from pgmcp.config import Settings
from pgmcp.errors import QueryBlocked

__all__ = ["RISKY_ROLES", "Privileges", "inspect", "quote_ident", "set_role_sql"]

#: Predefined roles whose members reach the server host, its files or other sessions.
RISKY_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_checkpoint",
)

# One round trip. pg_has_role(…, 'MEMBER') is what SET ROLE needs up to PostgreSQL 15 and
# what privileges follow (a superuser is a member of every role). pg_checkpoint exists from 15.
_QUERY = """
SELECT r.rolname::text AS rolname, r.rolsuper, r.rolreplication, r.rolbypassrls, r.rolcreaterole,
       ARRAY(SELECT b.rolname::text FROM pg_catalog.pg_roles b
             WHERE b.rolname = ANY($1::text[]) AND pg_catalog.pg_has_role(r.oid, b.oid, 'MEMBER')
             ORDER BY b.rolname) AS member_of
FROM pg_catalog.pg_roles r WHERE r.rolname = session_user
"""

_SETUP_HINT = (
    "create a least-privilege role with 'pgmcp setup-role --name mcp_reader --mode readonly --apply' "
    "(or deployment/db/init-db.sql) and set DB_USER to it"
)


@dataclass(frozen=True)
class Privileges:
    """The login role's dangerous powers, and why the connection is refused (if it is)."""

    role: str
    superuser: bool
    risky_roles: list[str] = field(default_factory=list)
    refusal: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"superuser": self.superuser, "risky_roles": list(self.risky_roles)}

    @property
    def warning(self) -> str | None:
        if self.superuser:
            return (
                f"The connection's role '{self.role}' is a superuser: the database enforces nothing "
                f"beyond pgmcp's own checks; {_SETUP_HINT}"
            )
        if self.risky_roles:
            return (
                f"The connection's role '{self.role}' has {', '.join(self.risky_roles)}: it can reach "
                f"the server host or other sessions; {_SETUP_HINT}"
            )
        return None

    def report(self) -> dict[str, Any]:
        """``privileges`` (and ``warnings`` when any is set) for a connection's description."""
        out: dict[str, Any] = {"privileges": self.as_dict()}
        if self.warning:
            out["warnings"] = [self.warning]
        return out


def quote_ident(name: str) -> str:
    """``name`` as a PostgreSQL quoted identifier (never our caller's text in a statement unquoted)."""
    if "\x00" in name:
        raise ValueError("an identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def set_role_sql(role: str) -> str:
    return f"SET LOCAL ROLE {quote_ident(role)}"


async def inspect(raw: asyncpg.Connection, settings: Settings, connection_id: str) -> Privileges:
    """The login role's privileges on ``raw`` and, per the settings, why to refuse it.

    Leaves ``raw`` as it found it (outside a transaction).
    """
    row = await raw.fetchrow(_QUERY, list(RISKY_ROLES))
    if row is None:  # session_user is always a role; be safe rather than sorry
        return Privileges(role="?", superuser=False, refusal=f"Connection '{connection_id}': no role found")
    risky = list(row["member_of"])
    for attribute, label in (
        ("rolreplication", "replication"),
        ("rolbypassrls", "bypassrls"),
        ("rolcreaterole", "createrole"),
    ):
        if row[attribute]:
            risky.append(label)
    role = str(row["rolname"])
    refusal = None
    if settings.refuse_superuser and row["rolsuper"]:
        refusal = (
            f"Connection '{connection_id}' refused: its role '{role}' is a superuser (REFUSE_SUPERUSER=true); "
            f"{_SETUP_HINT}"
        )
    elif settings.readonly_role:
        refusal = await _cannot_switch(raw, settings.readonly_role, connection_id, role)
    return Privileges(role=role, superuser=bool(row["rolsuper"]), risky_roles=risky, refusal=refusal)


async def _cannot_switch(raw: asyncpg.Connection, target: str, connection_id: str, role: str) -> str | None:
    """Try exactly what every read will do; the database's message if it refuses."""
    try:
        await raw.execute(f"BEGIN READ ONLY; {set_role_sql(target)}")
    except asyncpg.PostgresError as exc:
        return (
            f"Connection '{connection_id}' refused: its role '{role}' cannot switch to READONLY_ROLE "
            f"'{target}' ({str(exc).strip()}); GRANT {quote_ident(target)} TO {quote_ident(role)}, "
            "or change READONLY_ROLE"
        )
    finally:
        if raw.is_in_transaction():
            await raw.execute("ROLLBACK")
    return None


def refuse(privileges: Privileges) -> None:
    """Raise the refusal, if there is one (``query_blocked``, reason ``role_refused``)."""
    if privileges.refusal is not None:
        raise QueryBlocked(privileges.refusal, reason="role_refused")
