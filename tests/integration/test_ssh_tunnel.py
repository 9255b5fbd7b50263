"""SSH tunnels as a bastion host's users need them, through a real OpenSSH server.

The test starts ``sshd`` on a free loopback port (``tests/integration/sshd.py``) and
reaches the test PostgreSQL through it with ``add_connection(ssh_host=...)`` over the
MCP client. It checks what a user relies on: the query really travels through sshd
(PostgreSQL sees the connection coming from an sshd process), a host key that is not
the known one is refused and nothing is registered, a tunnel that drops (sshd's
connection processes killed; sshd stopped and started again) is reopened by the next
call, and no key or password ever shows in an answer.

OpenSSH checks passwords against the system's accounts, which a test must not change,
so ``ssh_password_env`` is tested against asyncssh's own SSH server instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh
import psutil
import pytest
from mcp import Client

from pgmcp.logs import configure_logging
from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, running
from tests.integration.sshd import OpenSshServer

RUN = uuid.uuid4().hex[:8]
KEY_ENV = f"PGMCP_TEST_SSH_KEY_{RUN}"
KEY_PATH_ENV = f"PGMCP_TEST_SSH_KEY_PATH_{RUN}"
PASSWORD_ENV = f"PGMCP_TEST_SSH_PASSWORD_{RUN}"
SSH_PASSWORD = f"ssh-pw-{RUN}-Qq7"


@pytest.fixture(scope="module")
def db(module_db: PgServer) -> PgServer:
    if module_db.host.startswith("/"):
        pytest.skip("the test PostgreSQL listens on a unix socket only; an SSH tunnel forwards TCP")
    return module_db


@pytest.fixture(scope="module")
def sshd(db: PgServer) -> Iterator[OpenSshServer]:
    server = OpenSshServer()
    server.start()
    os.environ[KEY_ENV] = server.client_key.export_private_key().decode()
    os.environ[KEY_PATH_ENV] = str(server.dir / "client_key")
    try:
        yield server
    finally:
        os.environ.pop(KEY_ENV, None)
        os.environ.pop(KEY_PATH_ENV, None)
        server.cleanup()


def tunnel_args(db: PgServer, sshd: OpenSshServer, **extra: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "host": "127.0.0.1",  # as the bastion sees it
        "port": db.port,
        "database": db.database,
        "user": db.user,
        "ssl_mode": "disable",
        "ssh_host": "127.0.0.1",
        "ssh_port": sshd.port,
        "ssh_user": sshd.user,
        "ssh_key_env": KEY_ENV,
        "ssh_known_hosts": str(sshd.known_hosts),
    }
    if db.password:
        args["password"] = db.password
    args.update(extra)
    return args


def secrets(sshd: OpenSshServer) -> list[str]:
    key_text = sshd.client_key.export_private_key().decode()
    # The key's base64 body, line by line: a fragment of it in an answer would be a leak too.
    body = [line for line in key_text.splitlines() if line and not line.startswith("-----")]
    return [key_text, SSH_PASSWORD, *body]


def assert_no_secret(data: Any, sshd: OpenSshServer) -> None:
    text = str(data)
    for secret in secrets(sshd):
        assert secret not in text


async def backend_peer_is_sshd(client: Client, connection_id: str, sshd: OpenSshServer) -> bool:
    """Whether PostgreSQL's end of this connection's socket is held by an sshd process."""
    data = await call_ok(
        client,
        "execute_query",
        connection_id=connection_id,
        query="SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    client_port = data["rows"][0]["client_port"]
    for proc in sshd.session_processes():
        try:
            if any(c.laddr and c.laddr.port == client_port for c in proc.net_connections(kind="tcp")):
                return True
        except psutil.Error:
            continue
    return False


async def test_a_query_runs_through_the_tunnel(
    db: PgServer, sshd: OpenSshServer, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG")  # every line that can exist is written, and searched below
    async with running(None) as (app, client):
        added = await call_ok(
            client, "add_connection", connection_id="behind_bastion", **tunnel_args(db, sshd)
        )
        assert added["message"] == "Connection established successfully"
        rows = await call_ok(
            client, "execute_query", connection_id="behind_bastion", query="SELECT current_database() AS db"
        )
        assert rows["rows"] == [{"db": db.database}]
        assert await backend_peer_is_sshd(client, "behind_bastion", sshd)
        listed = await call_ok(client, "list_connections")
        entry = next(c for c in listed["connections"] if c["connection_id"] == "behind_bastion")
        assert entry["ssh_host"] == "127.0.0.1"
        assert_no_secret([added, rows, listed], sshd)
        await call_ok(client, "remove_connection", connection_id="behind_bastion")
        assert "behind_bastion" not in app.registry
    configure_logging("INFO")
    logged = capfd.readouterr().err
    assert '"event":"ssh_tunnel_opened"' in logged
    assert_no_secret(logged, sshd)


async def test_the_key_may_be_given_as_the_path_of_a_key_file(db: PgServer, sshd: OpenSshServer) -> None:
    async with running(None) as (app, client):
        await call_ok(
            client,
            "add_connection",
            connection_id="by_path",
            **tunnel_args(db, sshd, ssh_key_env=KEY_PATH_ENV),
        )
        ok = await call_ok(client, "execute_query", connection_id="by_path", query="SELECT 1 AS one")
        assert ok["rows"] == [{"one": 1}]


async def test_a_host_key_that_is_not_the_known_one_is_refused(
    db: PgServer, sshd: OpenSshServer, tmp_path: Path
) -> None:
    async with running(None) as (app, client):
        impostor = tmp_path / "known_hosts"
        impostor.write_text(sshd.known_hosts_line(asyncssh.generate_private_key("ssh-ed25519")))
        sessions_before = len(sshd.session_processes())
        log_before = sshd.log.stat().st_size
        data = await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="impostor",
            **tunnel_args(db, sshd, ssh_known_hosts=str(impostor)),
        )
        assert "host key" in data["error"]
        assert "refused" in data["error"]
        assert "impostor" not in app.registry
        await call_err(client, "test_connection", "connection_not_found", connection_id="impostor")
        assert len(sshd.session_processes()) == sessions_before  # no SSH session was left open
        with sshd.log.open("rb") as log:
            log.seek(log_before)
            sshd_said = log.read().decode(errors="replace")
        assert "Accepted" not in sshd_said  # refused before the key was even offered ("Accepted key")
        assert_no_secret(data, sshd)


async def test_an_empty_known_hosts_refuses_too(db: PgServer, sshd: OpenSshServer, tmp_path: Path) -> None:
    async with running(None) as (app, client):
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        data = await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="unknown",
            **tunnel_args(db, sshd, ssh_known_hosts=str(empty)),
        )
        assert "host key" in data["error"]


async def test_a_dropped_tunnel_is_reopened_on_the_next_call(db: PgServer, sshd: OpenSshServer) -> None:
    async with running(None) as (app, client):
        await call_ok(client, "add_connection", connection_id="flaky", pool_size=2, **tunnel_args(db, sshd))
        await call_ok(client, "execute_query", connection_id="flaky", query="SELECT 1")
        tunnel = app.registry.get("flaky").tunnel
        assert tunnel is not None and tunnel.opened == 1
        assert sshd.drop_sessions() >= 1  # the bastion's side of the tunnel is gone
        ok = await call_ok(client, "execute_query", connection_id="flaky", query="SELECT 2 AS two")
        assert ok["rows"] == [{"two": 2}]
        assert tunnel.opened == 2
        assert await backend_peer_is_sshd(client, "flaky", sshd)


async def test_a_bastion_that_goes_away_fails_clearly_and_is_used_again_when_back(
    db: PgServer, sshd: OpenSshServer
) -> None:
    async with running(None) as (app, client):
        await call_ok(client, "add_connection", connection_id="away", pool_size=1, **tunnel_args(db, sshd))
        sshd.stop()
        try:
            data = await call_err(
                client, "execute_query", "connection_failed", connection_id="away", query="SELECT 1"
            )
            assert "SSH" in data["error"]
            assert f"127.0.0.1:{sshd.port}" in data["error"]
        finally:
            sshd.start()
        ok = await call_ok(client, "execute_query", connection_id="away", query="SELECT 3 AS three")
        assert ok["rows"] == [{"three": 3}]


async def test_a_forward_the_bastion_cannot_open_says_so(db: PgServer, sshd: OpenSshServer) -> None:
    async with running(None) as (app, client):
        data = await call_err(
            client,
            "add_connection",
            "connection_failed",
            connection_id="nowhere",
            **tunnel_args(db, sshd, port=1),
        )
        assert "could not open a connection to 127.0.0.1:1" in data["error"]


async def test_a_wrong_key_is_refused_with_the_variable_named(db: PgServer, sshd: OpenSshServer) -> None:
    async with running(None) as (app, client):
        other = f"PGMCP_TEST_SSH_OTHER_KEY_{RUN}"
        os.environ[other] = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
        try:
            data = await call_err(
                client,
                "add_connection",
                "connection_failed",
                connection_id="wrongkey",
                **tunnel_args(db, sshd, ssh_key_env=other),
            )
        finally:
            del os.environ[other]
        assert "refused the login" in data["error"]
        assert other in data["error"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"ssh_user": None}, "ssh_user"),
        ({"ssh_key_env": None}, "ssh_key_env or ssh_password_env"),
        ({"ssh_key_env": f"PGMCP_TEST_UNSET_{RUN}"}, "not set in the server's environment"),
        ({"ssh_known_hosts": "/nonexistent/known_hosts"}, "ssh_known_hosts file not found"),
        ({"ssh_host": None}, "without ssh_host"),
    ],
)
@pytest.mark.usefixtures("isolated_secrets")
async def test_an_incomplete_tunnel_is_refused_before_connecting(
    db: PgServer, sshd: OpenSshServer, change: dict[str, Any], needle: str
) -> None:
    async with running(None) as (app, client):
        args = {k: v for k, v in tunnel_args(db, sshd, **change).items() if v is not None}
        data = await call_err(client, "add_connection", "invalid_input", connection_id="incomplete", **args)
        assert needle in data["error"]


async def test_allowed_db_hosts_applies_to_the_bastion_and_to_the_host_behind_it(
    db: PgServer, sshd: OpenSshServer
) -> None:
    async with running(None, allowed_db_hosts="10.0.0.0/8") as (_, client):
        data = await call_err(
            client, "add_connection", "query_blocked", connection_id="x", **tunnel_args(db, sshd)
        )
        assert "'127.0.0.1'" in data["error"]
    # The bastion is allowed; the database behind it (as the bastion sees it) is not.
    async with running(None, allowed_db_hosts="127.0.0.1/32") as (_, client):
        data = await call_err(
            client,
            "add_connection",
            "query_blocked",
            connection_id="x",
            **tunnel_args(db, sshd, host="db.internal"),
        )
        assert "'db.internal'" in data["error"]
    async with running(None, allowed_db_hosts="127.0.0.0/8") as (_, client):
        await call_ok(client, "add_connection", connection_id="x", **tunnel_args(db, sshd))


async def test_a_tunnel_declared_in_mcp_config_file(
    db: PgServer, sshd: OpenSshServer, tmp_path: Path
) -> None:
    config = tmp_path / "connections.toml"
    config.write_text(
        f"""
[connections.bastioned]
host = "127.0.0.1"
port = {db.port}
database = "{db.database}"
user = "{db.user}"
ssl_mode = "disable"
ssh_host = "127.0.0.1"
ssh_port = {sshd.port}
ssh_user = "{sshd.user}"
ssh_key_env = "{KEY_ENV}"
ssh_known_hosts = "{sshd.known_hosts}"
"""
    )
    async with running(None, mcp_config_file=str(config)) as (app, client):
        ok = await call_ok(client, "execute_query", connection_id="bastioned", query="SELECT 4 AS four")
        assert ok["rows"] == [{"four": 4}]
        assert await backend_peer_is_sshd(client, "bastioned", sshd)
        tunnel = app.registry.get("bastioned").tunnel
    assert tunnel is not None and not tunnel.is_open  # closed with the server


# --- password authentication (asyncssh's server: OpenSSH would need a system account's password) ---


class _PasswordServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == "tunnel" and password == SSH_PASSWORD

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        return True  # asyncssh forwards it to dest_host:dest_port itself


@pytest.fixture
async def password_sshd(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[key], server_factory=_PasswordServer, allow_scp=False
    )
    port = server.get_port()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n")
    os.environ[PASSWORD_ENV] = SSH_PASSWORD
    try:
        yield port, known
    finally:
        del os.environ[PASSWORD_ENV]
        server.close()
        await server.wait_closed()


async def test_password_authentication_through_ssh_password_env(
    db: PgServer, sshd: OpenSshServer, password_sshd: tuple[int, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG")
    port, known = password_sshd
    args = tunnel_args(
        db,
        sshd,
        ssh_port=port,
        ssh_user="tunnel",
        ssh_key_env=None,
        ssh_password_env=PASSWORD_ENV,
        ssh_known_hosts=str(known),
    )
    args = {k: v for k, v in args.items() if v is not None}
    async with running(None) as (_, client):
        added = await call_ok(client, "add_connection", connection_id="pw", **args)
        ok = await call_ok(client, "execute_query", connection_id="pw", query="SELECT 5 AS five")
        assert ok["rows"] == [{"five": 5}]
        wrong = f"PGMCP_TEST_SSH_WRONG_{RUN}"
        os.environ[wrong] = "not-the-password"
        try:
            refused = await call_err(
                client,
                "add_connection",
                "connection_failed",
                connection_id="pw2",
                **{**args, "ssh_password_env": wrong},
            )
        finally:
            del os.environ[wrong]
        assert "refused the login" in refused["error"]
        assert_no_secret([added, ok, refused], sshd)
        assert "not-the-password" not in str(refused)
    configure_logging("INFO")
    logged = capfd.readouterr().err
    assert "refused the login" in logged
    assert_no_secret(logged, sshd)
    assert "not-the-password" not in logged


async def test_the_tunnel_is_closed_with_its_connection(db: PgServer, sshd: OpenSshServer) -> None:
    async with running(None) as (app, client):
        await call_ok(client, "add_connection", connection_id="short", pool_size=1, **tunnel_args(db, sshd))
        tunnel = app.registry.get("short").tunnel
        assert tunnel is not None
        port = tunnel.local_port
        assert port is not None
        await call_ok(client, "remove_connection", connection_id="short")
        assert not tunnel.is_open
        with pytest.raises(OSError):
            await asyncpg.connect(
                host="127.0.0.1", port=port, user=db.user, database=db.database, ssl=False, timeout=3
            )
