"""health_check, get_metrics, get_query_history, get_business_metrics."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.errors import InvalidInput
from pgmcp.monitoring import BUSINESS_RETENTION_SECONDS


class ObservabilityTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    def health(self) -> dict[str, Any]:
        """The health report from cached probes: never waits on a database."""
        return self.app.monitor.health(self.app.registry.health_snapshot())

    async def health_check(self) -> dict[str, Any]:
        """Server health: status, connections, memory/CPU/disk, uptime and warnings."""
        # On demand: probe now (short timeout), then report.
        await self.app.registry.probe_all(timeout=min(2.0, self.app.settings.connection_timeout))
        report = self.health()
        # The role's powers go to the tool only, not to the unauthenticated /health.
        for conn in self.app.registry.all():
            entry = report["connections"].get(conn.connection_id)
            if entry is not None and conn.privileges is not None:
                entry.update(conn.privileges.report())
        return {"success": True, **report}

    async def get_metrics(self) -> dict[str, Any]:
        """Query counts, average and p95 time, counts per type, pools, system."""
        return {"success": True, **self.app.monitor.snapshot()}

    async def get_query_history(
        self,
        connection_id: Annotated[str | None, Field(description="Only this connection's queries.")] = None,
        min_duration_ms: Annotated[float, Field(ge=0, description="Only queries at least this slow.")] = 0,
        limit: Annotated[int, Field(ge=1, le=10000, description="Most entries to return.")] = 50,
    ) -> dict[str, Any]:
        """Recent queries, newest first, with duration, outcome and row count (slow-query analysis)."""
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        if min_duration_ms < 0:
            raise InvalidInput(f"min_duration_ms must not be negative, got {min_duration_ms}")
        queries = self.app.monitor.history(
            connection_id=connection_id, min_duration_ms=min_duration_ms, limit=limit
        )
        return {"success": True, "queries": queries}

    async def get_business_metrics(
        self,
        window_seconds: Annotated[
            int,
            Field(ge=1, le=BUSINESS_RETENTION_SECONDS, description="How far back to look (max one hour)."),
        ] = BUSINESS_RETENTION_SECONDS,
    ) -> dict[str, Any]:
        """Business events plugins recorded in the last hour: count, sum, average per type."""
        window = self.app.monitor.business_metrics(window_seconds)
        metrics = {
            event: {"count": int(v["count"]), "sum": v["sum"], "avg": v["avg"]} for event, v in window.items()
        }
        return {"success": True, "window_seconds": window_seconds, "metrics": metrics}
