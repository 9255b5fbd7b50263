"""The application's resources, opened once in the process lifespan and handed down.

``open_app(settings)`` starts the embedded PostgreSQL when no ``DB_HOST`` is
set, opens the pools of ``default`` and of every ``MCP_CONFIG_FILE``
connection, starts the background health probe, and on exit closes the pools
and stops the embedded server. The MCP and HTTP edges receive the
:class:`AppContext`; there are no module-level pools or globals.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pgmcp.audit import AuditLog
from pgmcp.config import ConnectionSpec, Settings
from pgmcp.db.embedded import DEMO_DATABASE, EmbeddedPostgres
from pgmcp.db.execute import Executor
from pgmcp.db.registry import ConnectionRegistry
from pgmcp.logs import get_logger
from pgmcp.monitoring import Monitor
from pgmcp.security import Policy

__all__ = ["AppContext", "open_app"]

log = get_logger("pgmcp.app")


@dataclass
class AppContext:
    """Everything a tool needs: settings, the registry of pools, the policy, the monitor and the executor."""

    settings: Settings
    registry: ConnectionRegistry
    policy: Policy
    monitor: Monitor
    executor: Executor
    embedded: EmbeddedPostgres | None = None
    audit: AuditLog | None = None
    startup_errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[AppContext]:
    """Open every resource of the server; close them all on exit, whatever happened."""
    monitor = Monitor(settings)
    policy = Policy.from_settings(settings)
    registry = ConnectionRegistry(settings)
    monitor.set_pool_source(registry.pool_stats)
    executor = Executor(settings, registry, policy, monitor)
    app = AppContext(settings=settings, registry=registry, policy=policy, monitor=monitor, executor=executor)
    if settings.audit_log_file is not None:
        app.audit = AuditLog(
            settings.audit_log_file,
            max_bytes=settings.audit_log_max_bytes,
            include_queries=settings.enable_query_logging,
        )
    try:
        default = settings.default_connection()
        if default is None and settings.pgmcp_embedded:
            app.embedded = await EmbeddedPostgres.start(settings.pgmcp_data_dir)
            default = ConnectionSpec(
                connection_id="default",
                host=app.embedded.socket_dir,
                port=app.embedded.port,
                database=DEMO_DATABASE,
                user="postgres",
                pool_size=settings.db_pool_size,
                ssl_mode="disable",
                required=True,
            )
            await registry.add(default, source="embedded")
        elif default is not None:
            await registry.add(default, source="env")
        for spec in settings.connections:
            await registry.add(spec, source="config")
        registry.start_probing()
        yield app
    finally:
        await registry.close()
        if app.embedded is not None:
            app.embedded.stop()
        if app.audit is not None:
            app.audit.close()
