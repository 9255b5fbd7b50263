"""TLS done properly: each ``ssl_mode`` against a TLS-enabled PostgreSQL with a self-signed CA.

The server (``tests/integration/tls_cluster.py``) has a certificate for ``localhost``
only. Over the MCP client: ``verify-full`` accepts ``localhost`` and refuses
``127.0.0.1`` with a sentence naming the reason; ``verify-ca`` accepts the right CA and
refuses another; ``require`` encrypts without verifying; ``disable`` does not encrypt
(PostgreSQL's ``pg_stat_ssl`` says which, not our own bookkeeping); a client certificate
logs in the role that ``pg_hba.conf`` admits only with one; ``DB_SSL_*`` configure the
``default`` connection. Through an SSH tunnel the socket goes to 127.0.0.1, and
``verify-full`` still checks the database's own name.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from mcp import Client

from pgmcp.db.tls import ssl_arg
from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, running
from tests.integration.sshd import OpenSshServer
from tests.integration.tls_cluster import TlsPostgres

SSL_STATE = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def tls_pg() -> Iterator[TlsPostgres]:
    server = TlsPostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def args(tls_pg: TlsPostgres, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "host": "localhost",
        "port": tls_pg.port,
        "database": "postgres",
        "user": "postgres",
    }
    values.update(extra)
    return values


async def encrypted(client: Client, connection_id: str) -> bool:
    data = await call_ok(client, "execute_query", connection_id=connection_id, query=SSL_STATE)
    return bool(data["rows"][0]["ssl"])


async def test_verify_full_accepts_the_host_name_the_certificate_names(tls_pg: TlsPostgres) -> None:
    async with running(None) as (_, client):
        await call_ok(
            client,
            "add_connection",
            connection_id="full",
            **args(tls_pg, ssl_mode="verify-full", ssl_root_cert=tls_pg.path("ca.crt")),
        )
        assert await encrypted(client, "full")


async def test_verify_full_refuses_a_host_the_certificate_does_not_name(tls_pg: TlsPostgres) -> None:
    async with running(None) as (app, client):
        data = await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="by_address",
            **args(tls_pg, host="127.0.0.1", ssl_mode="verify-full", ssl_root_cert=tls_pg.path("ca.crt")),
        )
        assert data["error"].startswith(f"Could not connect to 127.0.0.1:{tls_pg.port}/postgres: ")
        assert "TLS certificate was refused (ssl_mode=verify-full)" in data["error"]
        assert "not valid for '127.0.0.1'" in data["error"]
        assert "_ssl.c" not in data["error"]
        assert "by_address" not in app.registry


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
async def test_a_certificate_from_another_ca_is_refused(tls_pg: TlsPostgres, mode: str) -> None:
    async with running(None) as (_, client):
        data = await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="wrong_ca",
            **args(tls_pg, ssl_mode=mode, ssl_root_cert=tls_pg.path("other-ca.crt")),
        )
        assert f"TLS certificate was refused (ssl_mode={mode})" in data["error"]


async def test_verify_ca_accepts_the_right_ca_whatever_the_host_name(tls_pg: TlsPostgres) -> None:
    async with running(None) as (_, client):
        await call_ok(
            client,
            "add_connection",
            connection_id="ca",
            **args(tls_pg, host="127.0.0.1", ssl_mode="verify-ca", ssl_root_cert=tls_pg.path("ca.crt")),
        )
        assert await encrypted(client, "ca")


async def test_require_encrypts_without_verifying(tls_pg: TlsPostgres) -> None:
    async with running(None) as (_, client):
        await call_ok(
            client,
            "add_connection",
            connection_id="req",
            **args(tls_pg, host="127.0.0.1", ssl_mode="require"),
        )
        assert await encrypted(client, "req")
        # As libpq: with a root certificate given, require verifies the chain (like verify-ca).
        await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="req_ca",
            **args(tls_pg, ssl_mode="require", ssl_root_cert=tls_pg.path("other-ca.crt")),
        )


@pytest.mark.parametrize(("mode", "tls"), [("disable", False), ("allow", False), ("prefer", True)])
async def test_the_negotiating_modes(tls_pg: TlsPostgres, mode: str, tls: bool) -> None:
    async with running(None) as (_, client):
        await call_ok(client, "add_connection", connection_id="m", **args(tls_pg, ssl_mode=mode))
        assert await encrypted(client, "m") is tls


async def test_a_client_certificate_logs_in_the_role_that_needs_one(tls_pg: TlsPostgres) -> None:
    async with running(None) as (_, client):
        refused = await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="nocert",
            **args(
                tls_pg, user=tls_pg.cert_user, ssl_mode="verify-full", ssl_root_cert=tls_pg.path("ca.crt")
            ),
        )
        assert "certificate" in refused["error"]
        await call_ok(
            client,
            "add_connection",
            connection_id="cert",
            **args(
                tls_pg,
                user=tls_pg.cert_user,
                ssl_mode="verify-full",
                ssl_root_cert=tls_pg.path("ca.crt"),
                ssl_cert=tls_pg.path("client.crt"),
                ssl_key=tls_pg.path("client.key"),
            ),
        )
        who = await call_ok(client, "execute_query", connection_id="cert", query="SELECT current_user AS u")
        assert who["rows"] == [{"u": tls_pg.cert_user}]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"ssl_root_cert": "/nonexistent/ca.crt"}, "ssl_root_cert file not found on the server"),
        ({"ssl_cert": "/nonexistent/client.crt"}, "ssl_cert file not found on the server"),
        ({"ssl_key": "/nonexistent/client.key"}, "ssl_key is given without ssl_cert"),
        ({"ssl_root_cert": "/etc/hostname"}, "holds no usable CA certificate"),
    ],
)
async def test_unusable_certificate_files_are_named(
    tls_pg: TlsPostgres, extra: dict[str, str], needle: str
) -> None:
    async with running(None) as (_, client):
        data = await call_err(
            client,
            "add_connection",
            "invalid_input",
            connection_id="bad",
            **args(tls_pg, ssl_mode="verify-full", **extra),
        )
        assert needle in data["error"]


async def test_db_ssl_settings_configure_the_default_connection(tls_pg: TlsPostgres) -> None:
    db = PgServer("localhost", tls_pg.port, "postgres", None, "postgres", "tls")
    settings = {"db_ssl_mode": "verify-full", "db_ssl_root_cert": tls_pg.path("ca.crt")}
    async with running(db, **settings) as (_, client):
        assert await encrypted(client, "default")
        # add_connection trusts DB_SSL_ROOT_CERT too unless it names its own CA.
        await call_ok(
            client, "add_connection", connection_id="same_ca", **args(tls_pg, ssl_mode="verify-full")
        )
        assert await encrypted(client, "same_ca")
    db = PgServer("localhost", tls_pg.port, tls_pg.cert_user, None, "postgres", "tls")
    settings |= {"db_ssl_cert": tls_pg.path("client.crt"), "db_ssl_key": tls_pg.path("client.key")}
    async with running(db, **settings) as (_, client):
        who = await call_ok(
            client, "execute_query", connection_id="default", query="SELECT current_user AS u"
        )
        assert who["rows"] == [{"u": tls_pg.cert_user}]


def _connect_on(loop_factory: Any, tls_pg: TlsPostgres, server_hostname: str) -> bool:
    """Connect to 127.0.0.1 with verify-full pinned to ``server_hostname``, on the given event loop."""
    ctx = ssl_arg(
        host="localhost",
        mode="verify-full",
        root_cert=tls_pg.path("ca.crt"),
        server_hostname=server_hostname,
    )

    async def connect() -> bool:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=tls_pg.port, user="postgres", database="postgres", ssl=ctx, timeout=10
        )
        try:
            return bool(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
        finally:
            await conn.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(connect())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_checked_host_name_is_the_databases_not_the_dialled_address(
    tls_pg: TlsPostgres, loop: str
) -> None:
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Any = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    assert _connect_on(factory, tls_pg, "localhost") is True
    with pytest.raises(ssl.SSLCertVerificationError, match="not valid for 'db.example.com'"):
        _connect_on(factory, tls_pg, "db.example.com")


@pytest.fixture(scope="module")
def sshd(tls_pg: TlsPostgres) -> Iterator[OpenSshServer]:
    server = OpenSshServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_verify_full_through_an_ssh_tunnel_checks_the_databases_name(
    tls_pg: TlsPostgres, sshd: OpenSshServer
) -> None:
    key_env = f"PGMCP_TEST_TLS_SSH_KEY_{tls_pg.port}"
    os.environ[key_env] = sshd.client_key.export_private_key().decode()
    tunnel = {
        "ssh_host": "127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_user": sshd.user,
        "ssh_key_env": key_env,
        "ssh_known_hosts": str(sshd.known_hosts),
    }
    try:
        async with running(None) as (app, client):
            await call_ok(
                client,
                "add_connection",
                connection_id="tunnelled_tls",
                **args(tls_pg, ssl_mode="verify-full", ssl_root_cert=tls_pg.path("ca.crt")),
                **tunnel,
            )
            assert await encrypted(client, "tunnelled_tls")
            conn = app.registry.get("tunnelled_tls")
            assert conn.tunnel is not None and conn.tunnel.is_open
            # The bastion reaches 127.0.0.1 too, but the certificate does not name it.
            data = await call_err(
                client,
                "add_connection",
                "connection_failed",
                connection_id="tunnelled_by_address",
                **args(tls_pg, host="127.0.0.1", ssl_mode="verify-full", ssl_root_cert=tls_pg.path("ca.crt")),
                **tunnel,
            )
            assert "not valid for '127.0.0.1'" in data["error"]
    finally:
        del os.environ[key_env]
