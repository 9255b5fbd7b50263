"""Passwords never show: not in tool results, HTTP endpoints, logs, the audit file or error messages.

A real ``pgmcp serve`` (HTTP, ``MCP_LOG_LEVEL=DEBUG`` so that every log line
that can exist is written, query logging and the audit file on) is given
passwords through every channel a user has — ``DB_PASSWORD``, a connection of
``MCP_CONFIG_FILE`` with ``password_env``, ``add_connection(password=…)`` and
``add_connection(password_env=…)`` — and made to fail with passwords in hand:
a closed port, an unreachable host, a database that does not exist, a wrong
password (where the server checks passwords), a host written as a DSN with a
password in it. Then SQL text that carries passwords (``'password=…'`` in a
literal, ``ALTER ROLE … PASSWORD '…'``) is run or refused. Every byte the
server produced is searched for every secret.

The local test server trusts local connections, so a wrong password may still
connect; the test finds out what the server does and says which case it ran.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from mcp import Client

from tests.conftest import PgServer
from tests.integration.harness import payload
from tests.integration.proc import free_port, http_get, pgmcp_env, serve_http

RUN = uuid.uuid4().hex[:10]
ROLE = f"pgmcp_secret_{RUN}"
ROLE_SECRET = f"role-pw-{RUN}-Zq8"  # the role's real password
DB_SECRET = f"db-password-{RUN}-Kx3"  # DB_PASSWORD of 'default' (ignored by trust auth)
WRONG_SECRET = f"wrong-pw-{RUN}-Tt5"
PORT_SECRET = f"closed-port-pw-{RUN}-Aa1"
HOST_SECRET = f"unreachable-pw-{RUN}-Bb2"
NODB_SECRET = f"no-database-pw-{RUN}-Cc3"
DSN_SECRET = f"dsn-pw-{RUN}-Dd4"
SQL_LITERAL_SECRET = f"hunter2-{RUN}"
SQL_ROLE_SECRET = f"hunter3-{RUN}"


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> AsyncIterator[PgServer]:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_SECRET}'")
        await conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        await conn.execute("INSERT INTO notes VALUES (1, 'hello')")
        await conn.execute(f"GRANT SELECT ON notes TO {ROLE}")
    finally:
        await conn.close()
    yield module_db
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(f"DROP OWNED BY {ROLE}")
        await conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
    finally:
        await conn.close()


async def wrong_password_is_refused(db: PgServer) -> bool:
    """Whether this server checks passwords for the test role (trust auth does not)."""
    try:
        conn = await asyncpg.connect(
            host=db.host, port=db.port, user=ROLE, password=WRONG_SECRET, database=db.database, timeout=5
        )
    except asyncpg.InvalidPasswordError:
        return True
    await conn.close()
    return False


def secrets_for(db: PgServer) -> dict[str, str]:
    found = {
        "ROLE_SECRET": ROLE_SECRET,
        "DB_SECRET": db.password or DB_SECRET,
        "WRONG_SECRET": WRONG_SECRET,
        "PORT_SECRET": PORT_SECRET,
        "HOST_SECRET": HOST_SECRET,
        "NODB_SECRET": NODB_SECRET,
        "DSN_SECRET": DSN_SECRET,
        "SQL_LITERAL_SECRET": SQL_LITERAL_SECRET,
        "SQL_ROLE_SECRET": SQL_ROLE_SECRET,
    }
    return found


def leaks(secrets: dict[str, str], texts: dict[str, str]) -> list[str]:
    found = []
    for where, text in texts.items():
        for name, secret in secrets.items():
            if secret in text:
                at = text.index(secret)
                found.append(f"{name} in {where}: ...{text[max(0, at - 150) : at + 60]!r}")
    return found


async def test_no_password_is_found_anywhere_the_server_writes(db: PgServer, tmp_path: Path) -> None:
    checks_passwords = await wrong_password_is_refused(db)
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "connections.toml"
    config.write_text(
        f"[connections.cfg]\nhost = {json.dumps(db.host)}\nport = {db.port}\n"
        f'database = {json.dumps(db.database)}\nuser = {json.dumps(ROLE)}\npassword_env = "PGMCP_CFG_PW"\n'
        "pool_size = 1\n",
        encoding="utf-8",
    )
    env = pgmcp_env(
        db,
        DB_POOL_SIZE="2",
        MCP_LOG_LEVEL="DEBUG",
        ENABLE_QUERY_LOGGING="true",
        AUDIT_LOG_FILE=str(audit),
        MCP_CONFIG_FILE=str(config),
        CONNECTION_TIMEOUT="3",
        PGMCP_CFG_PW=ROLE_SECRET,
        PGMCP_RUNTIME_PW=ROLE_SECRET,
    )
    if not db.password:
        env["DB_PASSWORD"] = DB_SECRET
    texts: dict[str, str] = {}
    role_args = {"host": db.host, "port": db.port, "database": db.database, "user": ROLE, "pool_size": 1}

    with serve_http(env, tmp_path) as server:
        async with Client(server.mcp_url) as client:

            async def tool(name: str, **arguments: Any) -> dict[str, Any]:
                result = await client.call_tool(name, arguments)
                data = payload(result)
                for i, part in enumerate(result.content):
                    texts[f"{name} #{len(texts)}.{i} result"] = getattr(part, "text", "")
                return data

            # Connections that work: the config file's (password_env) and two added at run time.
            assert (await tool("test_connection", connection_id="cfg"))["is_healthy"] is True
            added = await tool("add_connection", connection_id="inline", password=ROLE_SECRET, **role_args)
            assert added["success"] is True, added
            added = await tool(
                "add_connection", connection_id="by_env", password_env="PGMCP_RUNTIME_PW", **role_args
            )
            assert added["success"] is True, added
            for connection_id in ("default", "cfg", "inline", "by_env"):
                rows = await tool(
                    "execute_query",
                    connection_id=connection_id,
                    query="SELECT current_user AS u, body FROM notes",
                )
                assert rows["success"] is True, rows
                assert rows["rows"][0]["body"] == "hello"

            # Connections that fail, each with a password in hand.
            failures = {
                "closed port": {**role_args, "port": free_port(), "password": PORT_SECRET},
                "unreachable host": {**role_args, "host": "192.0.2.1", "password": HOST_SECRET},
                "missing database": {**role_args, "database": f"no_such_db_{RUN}", "password": NODB_SECRET},
                "DSN as host": {**role_args, "host": f"postgresql://{ROLE}:{DSN_SECRET}@127.0.0.1"},
            }
            errors: dict[str, str] = {}
            for what, arguments in failures.items():
                failed = await tool("add_connection", connection_id=f"bad_{len(texts)}", **arguments)
                assert failed["success"] is False, what
                assert failed["error_type"] == "connection_failed", (what, failed)
                errors[what] = failed["error"]
            # The error names what it could not reach, a DSN with its password masked.
            assert errors["DSN as host"].startswith(
                f"Could not connect to postgresql://{ROLE}:***@127.0.0.1:"
            ), errors
            assert f'database "no_such_db_{RUN}" does not exist' in errors["missing database"], errors
            wrong = await tool("add_connection", connection_id="wrong_pw", password=WRONG_SECRET, **role_args)
            if checks_passwords:
                assert wrong["error_type"] == "connection_failed", wrong
                assert "password authentication failed" in wrong["error"]
            else:  # trust auth: the password is never asked for
                assert wrong["success"] is True, wrong
                assert (await tool("test_connection", connection_id="wrong_pw"))["is_healthy"] is True

            # Passwords inside SQL text: a literal that reads like a connection string, and ALTER ROLE.
            literal = f"SELECT 'x' AS x WHERE 'password={SQL_LITERAL_SECRET}' = ''"
            rows = await tool("execute_query", connection_id="default", query=literal)
            assert rows["success"] is True and rows["rows"] == [], rows
            alter = f"ALTER ROLE {ROLE} PASSWORD '{SQL_ROLE_SECRET}'"
            refused = await tool("execute_transaction", connection_id="default", queries=[{"query": alter}])
            assert refused["error_type"] == "query_blocked", refused
            refused = await tool("execute_query", connection_id="default", query=alter)
            assert refused["error_type"] == "query_blocked", refused

            history = await tool("get_query_history", limit=100)
            logged_literal = [
                q["query"] for q in history["queries"] if q["query"] and "'password=" in q["query"]
            ]
            assert logged_literal == ["SELECT 'x' AS x WHERE 'password=***' = ''"], logged_literal
            for name in ("list_connections", "get_metrics", "health_check"):
                assert (await tool(name))["success"] is True
            for connection_id in ("default", "cfg", "inline", "by_env"):
                assert (await tool("test_connection", connection_id=connection_id))["is_healthy"] is True
            await tool("remove_connection", connection_id="inline")

        for path in ("/connections", "/metrics", "/health"):
            status, body = http_get(f"{server.base_url}{path}")
            assert status == 200, (path, body)
            texts[path] = body
        listed = json.loads(texts["/connections"])["connections"]
        assert {c["connection_id"] for c in listed} >= {"default", "cfg", "by_env"}
        assert all("password" not in json.dumps(c).lower() for c in listed)

    texts["stderr"] = server.stderr_text()
    texts["audit"] = audit.read_text(encoding="utf-8")
    assert leaks(secrets_for(db), texts) == []

    # The logs and the audit file did record what happened, with the passwords masked.
    logs = server.logs()
    failed = [line for line in logs if line["event"] == "connection_failed"]
    assert len(failed) >= len(failures), failed
    blocked = [line for line in logs if line["event"] == "query_blocked"]
    assert any(line.get("query") == f"ALTER ROLE {ROLE} PASSWORD '***'" for line in blocked), blocked
    records = [json.loads(line) for line in texts["audit"].splitlines()]
    assert any(r["tool"] == "add_connection" and r["outcome"] == "connection_failed" for r in records)
    audited_alter = [
        r.get("query") for r in records if r.get("blocked_reason") and "ALTER ROLE" in r.get("query", "")
    ]
    assert audited_alter and all(q == f"ALTER ROLE {ROLE} PASSWORD '***'" for q in audited_alter), (
        audited_alter
    )
