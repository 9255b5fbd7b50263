"""The role: what the database itself enforces, the layer a parser cannot replace.

- ``privileges`` in ``test_connection``, ``list_connections`` and ``health_check``: a
  superuser, a member of ``pg_signal_backend``, a plain login role.
- ``REFUSE_SUPERUSER=true`` stops start-up and refuses ``add_connection`` with a superuser.
- ``READONLY_ROLE``: a view over functions the parser never sees — one that writes a file
  on the server (``COPY … TO``: neither READ ONLY nor ROLLBACK stop or undo it), one that
  inserts into a table — read by a superuser connection. Without the role the file is
  written; with a SELECT-only role the database refuses both. A role the connection cannot
  switch to stops start-up with one line.
- ``pgmcp setup-role`` prints and applies the GRANT script, re-runnably, never showing the
  password.
- ``SELECT * FROM pg_stats`` (``anyarray`` columns) comes back as text, not as a
  ``connection_failed``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgmcp import cli
from pgmcp.errors import QueryBlocked
from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, running


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> AsyncIterator[dict[str, Any]]:
    tag = secrets.token_hex(4)
    names = {
        "reader": f"pgmcp_reader_{tag}",  # SELECT only: what READONLY_ROLE names
        "login": f"pgmcp_login_{tag}",  # a plain login role (trust auth on the test server)
        "signaller": f"pgmcp_signal_{tag}",  # a login role in pg_signal_backend
        "file": f"/tmp/pgmcp_role_{tag}.txt",
    }
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(f'CREATE ROLE "{names["reader"]}" NOLOGIN')
        await conn.execute(f'CREATE ROLE "{names["login"]}" LOGIN')
        await conn.execute(f'CREATE ROLE "{names["signaller"]}" LOGIN IN ROLE pg_signal_backend')
        await conn.execute("CREATE TABLE base (id int)")
        await conn.execute("INSERT INTO base VALUES (1)")
        await conn.execute("CREATE TABLE audit_sink (note text)")
        # Written by an owner, labelled as they liked: the parser sees only the views.
        await conn.execute(
            f"""
            CREATE FUNCTION write_file() RETURNS int LANGUAGE plpgsql VOLATILE AS $fn$
            BEGIN
                EXECUTE 'COPY (SELECT ''leaked'') TO ''{names["file"]}''';
                RETURN 1;
            END $fn$;
            CREATE FUNCTION note_read() RETURNS int LANGUAGE plpgsql VOLATILE AS $fn$
            BEGIN
                INSERT INTO audit_sink VALUES ('read');
                RETURN 1;
            END $fn$;
            CREATE VIEW report_file AS SELECT id, write_file() AS w FROM base;
            CREATE VIEW report_note AS SELECT id, note_read() AS n FROM base;
            """
        )
        await conn.execute(f'GRANT SELECT ON base, report_file, report_note TO "{names["reader"]}"')
        yield {"server": module_db, **names}
    finally:
        for role in ("reader", "login", "signaller"):
            await conn.execute(f'DROP OWNED BY "{names[role]}"')
            await conn.execute(f'DROP ROLE IF EXISTS "{names[role]}"')
        await conn.close()
        Path(names["file"]).unlink(missing_ok=True)


async def test_privileges_are_reported_per_connection(db: dict[str, Any]) -> None:
    server: PgServer = db["server"]
    async with running(server, db_pool_size=2) as (_app, client):
        tested = await call_ok(client, "test_connection", connection_id="default")
        assert tested["privileges"]["superuser"] is True
        assert "pg_read_server_files" in tested["privileges"]["risky_roles"]
        assert "is a superuser" in tested["warnings"][0] and "pgmcp setup-role" in tested["warnings"][0]
        (listed,) = (await call_ok(client, "list_connections"))["connections"]
        assert listed["privileges"] == tested["privileges"]
        health = await call_ok(client, "health_check")
        assert health["connections"]["default"]["privileges"] == tested["privileges"]

        for user, risky in ((db["signaller"], ["pg_signal_backend"]), (db["login"], [])):
            args = {**server.spec_args(), "user": user, "connection_id": user, "pool_size": 1}
            args.pop("password", None)
            await call_ok(client, "add_connection", **args)
            tested = await call_ok(client, "test_connection", connection_id=user)
            assert tested["privileges"] == {"superuser": False, "risky_roles": risky}, user
            assert ("warnings" in tested) is bool(risky), tested
            if risky:
                assert "pg_signal_backend" in tested["warnings"][0]


async def test_refuse_superuser_stops_start_up_and_add_connection(db: dict[str, Any]) -> None:
    server: PgServer = db["server"]
    with pytest.raises(QueryBlocked) as refused:
        async with running(server, refuse_superuser=True):
            pass
    assert "is a superuser (REFUSE_SUPERUSER=true)" in str(refused.value)
    assert "pgmcp setup-role --name mcp_reader --mode readonly" in str(refused.value)
    assert "\n" not in str(refused.value)

    async with running(server, refuse_superuser=True, db_user=db["login"], db_password=None) as (
        _app,
        client,
    ):
        assert (await call_ok(client, "test_connection", connection_id="default"))["privileges"][
            "superuser"
        ] is False
        data = await call_err(
            client,
            "add_connection",
            "query_blocked",
            **{**server.spec_args(), "connection_id": "admin", "pool_size": 1},
        )
        assert "REFUSE_SUPERUSER" in data["error"]
        assert [c["connection_id"] for c in (await call_ok(client, "list_connections"))["connections"]] == [
            "default"
        ]


async def test_a_readonly_role_the_connection_cannot_switch_to_stops_start_up(db: dict[str, Any]) -> None:
    server: PgServer = db["server"]
    # A plain login role is not a member of the reader role.
    with pytest.raises(QueryBlocked) as refused:
        async with running(server, readonly_role=db["reader"], db_user=db["login"], db_password=None):
            pass
    message = str(refused.value)
    assert f"cannot switch to READONLY_ROLE '{db['reader']}'" in message
    assert "permission denied to set role" in message
    with pytest.raises(QueryBlocked, match="does not exist"):
        async with running(server, readonly_role="pgmcp_no_such_role_x"):
            pass


async def sink_rows(server: PgServer) -> int:
    conn = await asyncpg.connect(server.dsn())
    try:
        return int(await conn.fetchval("SELECT count(*) FROM audit_sink"))
    finally:
        await conn.close()


async def test_readonly_role_makes_views_over_writing_functions_meet_the_grants(db: dict[str, Any]) -> None:
    server: PgServer = db["server"]
    leak = Path(db["file"])
    leak.unlink(missing_ok=True)

    # Without the role: a superuser connection. READ ONLY stops the INSERT, but the COPY to a
    # server file is not a write READ ONLY knows about, and ROLLBACK cannot take a file back.
    async with running(server) as (_app, client):
        ok = await call_ok(
            client, "execute_query", connection_id="default", query="SELECT * FROM report_file"
        )
        assert ok["rows"] == [{"id": 1, "w": 1}]
        err = await call_err(
            client,
            "execute_query",
            "database_error",
            connection_id="default",
            query="SELECT * FROM report_note",
        )
        assert "read-only transaction" in err["error"]
    assert leak.exists(), "the server wrote the file: this is why the role matters"
    leak.unlink()
    assert await sink_rows(server) == 0

    # With READONLY_ROLE: the same reads, as a role that may only SELECT.
    async with running(server, readonly_role=db["reader"]) as (_app, client):
        err = await call_err(
            client,
            "execute_query",
            "database_error",
            connection_id="default",
            query="SELECT * FROM report_file",
        )
        assert "permission denied" in err["error"] or "must be superuser" in err["error"], err
        err = await call_err(
            client,
            "execute_query",
            "database_error",
            connection_id="default",
            query="SELECT * FROM report_note",
        )
        assert "read-only transaction" in err["error"] or "permission denied" in err["error"], err
        # Reads the role may do still work, and run as that role.
        who = await call_ok(
            client,
            "execute_query",
            connection_id="default",
            query="SELECT current_user::text AS u, id FROM base",
        )
        assert who["rows"] == [{"u": db["reader"], "id": 1}]
        # A table the role has no grant on is the database's to refuse.
        err = await call_err(
            client,
            "execute_query",
            "database_error",
            connection_id="default",
            query="SELECT * FROM audit_sink",
        )
        assert "permission denied for table audit_sink" in err["error"]
        # The write tools are not read paths: they keep the connection's own role.
        data = await call_ok(
            client,
            "execute_transaction",
            connection_id="default",
            queries=[
                {"query": "SELECT current_user::text AS u"},
                {"query": "INSERT INTO audit_sink VALUES ('w')"},
            ],
        )
        assert data["results"][0]["rows"] == [{"u": server.user}]
    assert not leak.exists(), "READONLY_ROLE: the database refused the COPY to a server file"
    assert await sink_rows(server) == 1  # only the write tool's own INSERT


async def test_pg_stats_anyarray_columns_come_back_as_text(db: dict[str, Any]) -> None:
    server: PgServer = db["server"]
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute("INSERT INTO base SELECT 7 FROM generate_series(1, 50); ANALYZE base")
    finally:
        await conn.close()
    async with running(server) as (_app, client):
        data = await call_ok(
            client,
            "execute_query",
            connection_id="default",
            query="SELECT * FROM pg_stats WHERE tablename = 'base' AND attname = 'id'",
        )
        (row,) = data["rows"]
        assert row["most_common_vals"] == "{7}"
        types = {c["name"]: c["type"] for c in data["columns"]}
        assert types["most_common_vals"] == "anyarray"
        # The whole view, every column, as the issue tried it.
        await call_ok(client, "execute_query", connection_id="default", query="SELECT * FROM pg_stats")


def test_a_driver_decode_failure_is_never_a_connection_failure() -> None:
    from pgmcp.db.failures import pgmcp_error

    decode = pgmcp_error(
        asyncpg.InternalClientError("could not resolve query result and/or argument types"),
        query_timeout=30.0,
    )
    assert decode.error_type == "database_error"
    assert "cast the column to text" in str(decode)
    lost = pgmcp_error(
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        query_timeout=30.0,
    )
    assert lost.error_type == "connection_failed"


def setup_role(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["setup-role", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_setup_role_prints_and_applies_the_grant_script(
    db: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    server: PgServer = db["server"]
    name = f"pgmcp_setup_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(8)}"
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PGMCP_SETUP_PW", password)

    code, out, _ = setup_role(
        capsys, "--name", name, "--mode", "readonly", "--password-env", "PGMCP_SETUP_PW"
    )
    assert code == 0
    assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "{name}";' in out
    assert "default_transaction_read_only = on" in out
    assert "GRANT INSERT" not in out
    assert password not in out and "\\getenv pgmcp_password PGMCP_SETUP_PW" in out

    async def check() -> dict[str, Any]:
        conn = await asyncpg.connect(server.dsn())
        try:
            row = await conn.fetchrow(
                "SELECT rolsuper, rolcanlogin, rolcreaterole, rolpassword IS NOT NULL AS has_password, "
                "has_table_privilege(rolname, 'base', 'SELECT') AS can_select, "
                "has_table_privilege(rolname, 'base', 'INSERT') AS can_insert, "
                "has_schema_privilege(rolname, 'public', 'CREATE') AS can_create, "
                "(SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s "
                "WHERE s.setrole = a.oid AND s.setdatabase = 0) AS config FROM pg_authid a WHERE rolname = $1",
                name,
            )
            return dict(row) if row else {}
        finally:
            await conn.close()

    try:
        for mode in ("readonly", "readonly", "readwrite"):  # re-runnable, then widened
            code, out, err = setup_role(
                capsys, "--name", name, "--mode", mode, "--apply", "--password-env", "PGMCP_SETUP_PW"
            )
            assert code == 0, err
            assert password not in out + err
        state = asyncio.run(check())
        assert state["rolsuper"] is False and state["rolcreaterole"] is False and state["rolcanlogin"] is True
        assert state["has_password"] is True
        assert state["can_select"] and state["can_insert"] and not state["can_create"]
        code, out, err = setup_role(capsys, "--name", name, "--mode", "readonly", "--apply")
        assert code == 0, err
        state = asyncio.run(check())
        assert "default_transaction_read_only=on" in (state["config"] or "")
        assert state["can_select"] and not state["can_insert"]
    finally:
        asyncio.run(_drop_role(server, name))
    assert os.environ["PGMCP_SETUP_PW"] == password


async def _drop_role(server: PgServer, name: str) -> None:
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'DROP OWNED BY "{name}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await conn.close()


async def test_a_superuser_connection_whose_database_was_down_at_start_up_is_refused_by_its_first_call() -> (
    None
):
    """The pool opened empty, so nothing was inspected then: the first call inspects, and refuses."""
    from tests.integration.faults import RestartablePostgres

    pg = RestartablePostgres()
    try:
        async with running(pg.server, refuse_superuser=True, connection_timeout=3) as (app, client):
            assert app.registry.get("default").privileges is None
            await call_err(
                client, "execute_query", "connection_failed", connection_id="default", query="SELECT 1"
            )
            pg.start()
            for _ in range(2):  # refused every time, not only once
                data = await call_err(
                    client, "execute_query", "query_blocked", connection_id="default", query="SELECT 1"
                )
                assert "is a superuser (REFUSE_SUPERUSER=true)" in data["error"]
    finally:
        pg.destroy()
