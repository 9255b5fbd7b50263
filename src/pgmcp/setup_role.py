"""``pgmcp setup-role``: the handbook's least-privilege GRANT script, printed or applied.

    pgmcp setup-role --name mcp_reader --mode readonly [--database D] [--schemas public,…]
                     [--apply [--password-env VAR]] [--env-file F]

Prints the SQL (idempotent: run it again after creating tables, nothing breaks) that
creates ``--name`` as a login role with nothing but what ``--mode`` needs:

- ``readonly``: ``CONNECT``, ``USAGE`` on the schemas, ``SELECT`` on their tables and
  sequences, now and (default privileges) later, and ``default_transaction_read_only``;
- ``readwrite``: the same plus ``INSERT, UPDATE, DELETE`` and ``USAGE`` on sequences.

No ``CREATE`` anywhere (``REVOKE CREATE ON SCHEMA … FROM PUBLIC``, as
``deployment/db/init-db.sql``), no superuser, no ``CREATEROLE``/``CREATEDB``/
``REPLICATION``/``BYPASSRLS``. PostgreSQL has no ``DROP`` privilege (the handbook's
``REVOKE DROP``): only an owner drops, and this role owns nothing.

With ``--apply`` it runs the script, in one transaction, over an admin connection built
from ``DB_*`` (``DB_DATABASE`` or ``--database``). A password is never printed nor taken
on the command line: ``--password-env VAR`` names the environment variable that holds it;
without one the role has no password (it cannot log in with password authentication until
an administrator sets one, e.g. psql's ``\\password``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from pgmcp.db.privileges import quote_ident

__all__ = ["add_parser", "render", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("setup-role", help="print (or --apply) the GRANT script of a least-privilege role")
    p.add_argument("--name", required=True, help="the role to create or update (e.g. mcp_reader)")
    p.add_argument("--mode", choices=["readonly", "readwrite"], required=True)
    p.add_argument("--database", help="database to grant CONNECT on and to apply in (default DB_DATABASE)")
    p.add_argument("--schemas", default="public", help="comma-separated schemas (default public)")
    p.add_argument("--apply", action="store_true", help="run it over an admin connection from DB_*")
    p.add_argument("--password-env", help="environment variable holding the role's password")
    p.add_argument("--env-file", help="read DB_* from this .env file")


def _literal(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a value cannot contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


def render(
    name: str, mode: str, database: str, schemas: list[str], *, password_env: str | None = None
) -> str:
    """The script: plain SQL, re-runnable. With ``password_env`` a psql ``\\getenv`` line sets
    the password from that variable (psql 15+); the value itself is never in the text."""
    role = quote_ident(name)
    lines = [
        f"-- pgmcp setup-role --name {name} --mode {mode}: least privilege for the MCP server",
        "BEGIN;",
        "DO $pgmcp$BEGIN",
        f"    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {_literal(name)}) THEN",
        f"        CREATE ROLE {role} LOGIN;",
        "    END IF;",
        "END$pgmcp$;",
        f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;",
    ]
    if mode == "readonly":
        lines.append(
            f"-- even a write that slips through every other layer fails\nALTER ROLE {role} SET default_transaction_read_only = on;"
        )
    else:
        lines.append(f"ALTER ROLE {role} RESET default_transaction_read_only;")
    lines.append(f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {role};")
    for schema in schemas:
        s = quote_ident(schema)
        lines += [
            f"-- schema {schema}",
            f"REVOKE CREATE ON SCHEMA {s} FROM PUBLIC, {role};",
            f"GRANT USAGE ON SCHEMA {s} TO {role};",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {role};",
            f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {role};",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {role};",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON SEQUENCES TO {role};",
        ]
        if mode == "readonly":  # a role set up as readwrite before loses its writes
            lines += [
                f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {s} FROM {role};",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} REVOKE INSERT, UPDATE, DELETE ON TABLES FROM {role};",
            ]
        else:
            lines += [
                f"GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role};",
                f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {role};",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT INSERT, UPDATE, DELETE ON TABLES TO {role};",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE ON SEQUENCES TO {role};",
            ]
    if password_env:
        lines += [
            f"-- the password, from ${password_env} of psql's environment (never written here)",
            f"\\getenv pgmcp_password {password_env}",
            f"ALTER ROLE {role} PASSWORD :'pgmcp_password';",
        ]
    else:
        lines.append(f"-- no password is set here: psql's \\password {name}, or --apply --password-env VAR")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from pgmcp.config import SettingsError, load_settings, resolve_password
    from pgmcp.errors import mask_secrets, register_secret

    try:
        settings = load_settings(args.env_file)
    except SettingsError as exc:
        print(f"pgmcp: {exc}", file=sys.stderr)
        return 2
    schemas = [s.strip() for s in args.schemas.split(",") if s.strip()]
    spec = settings.default_connection()
    database = args.database or (spec.database if spec is not None else settings.db_database)
    if not args.apply:
        sys.stdout.write(render(args.name, args.mode, database, schemas, password_env=args.password_env))
        return 0
    if spec is None:
        print(
            "pgmcp: --apply needs an admin connection: set DB_HOST, DB_USER (and DB_PASSWORD)",
            file=sys.stderr,
        )
        return 2
    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(
                f"pgmcp: --password-env {args.password_env}: that variable is not set or empty",
                file=sys.stderr,
            )
            return 2
        register_secret(password)  # masked in any message below
    script = render(args.name, args.mode, database, schemas)
    script = script.replace("BEGIN;\n", "", 1).replace("COMMIT;\n", "")
    if password is not None:
        script += f"ALTER ROLE {quote_ident(args.name)} PASSWORD {_literal(password)};\n"
    try:
        asyncio.run(_apply(spec.model_copy(update={"database": database}), resolve_password(spec), script))
    except Exception as exc:  # one line, never a traceback (nor the password: it is masked)
        print(
            f"pgmcp: setup-role failed: {mask_secrets(str(exc).strip() or type(exc).__name__)}",
            file=sys.stderr,
        )
        return 1
    print(f"pgmcp: role {args.name} ({args.mode}) set up in database {database}", file=sys.stderr)
    return 0


async def _apply(spec: Any, password: str | None, script: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host=spec.host,
        port=spec.port,
        user=spec.user,
        password=password,
        database=spec.database,
        ssl=False if spec.host.startswith("/") else spec.ssl_mode,
    )
    try:
        async with conn.transaction():
            await conn.execute(script)
    finally:
        await conn.close()
