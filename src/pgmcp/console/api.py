"""The console's JSON API (``GET /console/api/…``): what the page shows, read from the Monitor and registry.

Every endpoint is a GET and changes nothing; each answer is a JSON object with
``success``. Documented in documentation/guides/USER_GUIDE.md ("Web console").

| path | answer |
| --- | --- |
| ``overview`` | server status, health warnings, system readings, ``metrics`` (= ``get_metrics``), connections with health, latency, server version, privileges and pool usage |
| ``timeseries?window_seconds=`` | the last hour (or less) in 10-second buckets: calls/s by outcome, p50/p95 latency, blocked/s, pool usage |
| ``queries?connection_id=&tool=&outcome=&min_duration_ms=&q=&limit=`` | the query history, newest first, filtered |
| ``queries/{id}`` | one history entry with its full statement (only with ``ENABLE_QUERY_LOGGING``) |
| ``blocked?limit=`` | statements the policy refused, with its reason |
| ``slow?limit=`` | history entries over ``SLOW_QUERY_THRESHOLD_MS`` |
| ``explain?id=`` | ``explain_query``'s plan of a history entry: EXPLAIN without ANALYZE, policy-checked, read-only |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pgmcp.app import AppContext
from pgmcp.auth import Principal, current_principal
from pgmcp.errors import ConnectionNotFound, InvalidInput
from pgmcp.tools.explain import ExplainTools
from pgmcp.tools.observability import ObservabilityTools

__all__ = ["EXPLAINABLE", "ConsoleApi", "PREVIEW_CHARS"]

#: Statement kinds whose plan ``explain`` shows (EXPLAIN without ANALYZE never runs them).
EXPLAINABLE = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE"})
#: A history row carries this much of its statement; ``queries/{id}`` has all of it.
PREVIEW_CHARS = 300
#: The console's EXPLAIN runs as this caller: read-only whatever the server allows.
CONSOLE_PRINCIPAL = Principal("console", readonly=True)
_OUTCOMES = ("success", "error")


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(params: Mapping[str, str], name: str) -> float:
    raw = params.get(name)
    if raw in (None, ""):
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None
    if not value >= 0:
        raise InvalidInput(f"{name} must not be negative, got {raw}")
    return value


def privilege_warnings(privileges: Any) -> list[str]:
    """Sentences about a connection's ``privileges`` (when the registry reports them)."""
    if not isinstance(privileges, Mapping):
        return []
    given = [str(w) for w in privileges.get("warnings", ()) or ()]
    out = list(given)
    if privileges.get("superuser") and not any("superuser" in w.lower() for w in given):
        out.append("Connects as a superuser: the policy is the only guard; prefer a role with fewer rights.")
    risky = [str(r) for r in privileges.get("risky_roles") or ()]
    if risky and not any(r in w for r in risky for w in given):
        out.append(f"Member of risky roles: {', '.join(risky)}.")
    return out


class ConsoleApi:
    """The data behind each endpoint; the routes turn it into JSON responses."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self._observe = ObservabilityTools(app)
        self._explain = ExplainTools(app)

    def overview(self) -> dict[str, Any]:
        settings = self.app.settings
        health = self._observe.health()
        connections = []
        for conn in self.app.registry.all():
            described = conn.describe()
            probe = health["connections"].get(conn.connection_id, {})
            stats = described.get("pool_stats", {})
            privileges = described.get("privileges", probe.get("privileges"))
            connections.append(
                {
                    "connection_id": conn.connection_id,
                    "host": described.get("host"),
                    "port": described.get("port"),
                    "database": described.get("database"),
                    "user": described.get("user"),
                    "readonly": described.get("readonly"),
                    "is_healthy": probe.get("is_healthy"),
                    "latency_ms": probe.get("latency_ms"),
                    "server_version": probe.get("server_version"),
                    "last_checked": probe.get("last_checked"),
                    "error": probe.get("error"),
                    "pool": {
                        "in_use": stats.get("active_connections", 0),
                        "open": stats.get("open", stats.get("size", 0)),
                        "idle": stats.get("idle_connections", 0),
                        "waiting": stats.get("waiting", 0),
                        "max": conn.pool_size,
                    },
                    "privileges": privileges,
                    "warnings": privilege_warnings(privileges),
                }
            )
        metrics = self.app.monitor.snapshot()
        return {
            "success": True,
            "version": health.get("version"),
            "status": health["status"],
            "is_healthy": health["is_healthy"],
            "warnings": health["warnings"],
            "uptime_seconds": health["uptime_seconds"],
            "system": {k: health[k] for k in ("memory_percent", "cpu_percent", "disk_percent")},
            "timestamp": health["timestamp"],
            "metrics": metrics,
            "connections": connections,
            "settings": {
                "slow_query_threshold_ms": settings.slow_query_threshold_ms,
                "enable_query_logging": settings.enable_query_logging,
                "query_history_size": settings.query_history_size,
                "readonly_mode": settings.readonly_mode,
            },
        }

    def timeseries(self, params: Mapping[str, str]) -> dict[str, Any]:
        window = _int(params, "window_seconds", 3600, 10, 3600)
        series = self.app.monitor.timeseries(window)
        sizes = {c.connection_id: c.pool_size for c in self.app.registry.all()}
        for cid, columns in series["pools"].items():
            columns["max"] = sizes.get(cid)
        return {"success": True, **series}

    def queries(self, params: Mapping[str, str]) -> dict[str, Any]:
        connection_id = params.get("connection_id") or None
        tool = params.get("tool") or None
        outcome = params.get("outcome") or None
        if outcome is not None and outcome not in _OUTCOMES:
            raise InvalidInput(f"outcome must be one of {', '.join(_OUTCOMES)}, got {outcome!r}")
        min_ms = _float(params, "min_duration_ms")
        text = (params.get("q") or "").strip().lower() or None
        limit = _int(params, "limit", 100, 1, 1000)
        picked = []
        for entry in self.app.monitor.recent_queries():
            if connection_id is not None and entry["connection_id"] != connection_id:
                continue
            if tool is not None and entry["tool"] != tool:
                continue
            if outcome is not None and entry["success"] != (outcome == "success"):
                continue
            if entry["duration_ms"] < min_ms:
                continue
            if text is not None and text not in _haystack(entry):
                continue
            picked.append(self._row(entry))
            if len(picked) >= limit:
                break
        return {"success": True, "queries": picked, "query_logging": self.app.settings.enable_query_logging}

    def query(self, query_id: int) -> dict[str, Any] | None:
        entry = self.app.monitor.query_entry(query_id)
        if entry is None:
            return None
        return {"success": True, "query": {**entry, "explainable": self._explainable(entry)}}

    def blocked(self, params: Mapping[str, str]) -> dict[str, Any]:
        limit = _int(params, "limit", 100, 1, 1000)
        return {"success": True, "blocked": self.app.monitor.recent_blocked(limit)}

    def slow(self, params: Mapping[str, str]) -> dict[str, Any]:
        limit = _int(params, "limit", 50, 1, 1000)
        threshold = self.app.settings.slow_query_threshold_ms
        rows = [self._row(e) for e in self.app.monitor.recent_queries() if e["duration_ms"] > threshold]
        return {"success": True, "threshold_ms": threshold, "queries": rows[:limit]}

    async def explain(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The plan of history entry ``id``, by ``explain_query`` (no ANALYZE) as a read-only caller.

        Raises: InvalidInput when the entry is gone, has no text (``ENABLE_QUERY_LOGGING``
        off) or is not a statement EXPLAIN can show; the executor's errors otherwise.
        """
        query_id = _int(params, "id", 0, 1, 2**62)
        entry = self.app.monitor.query_entry(query_id)
        if entry is None:
            raise InvalidInput(f"Query {query_id} is no longer in the history")
        if entry["query"] is None:
            raise InvalidInput("The statement's text is not kept (ENABLE_QUERY_LOGGING=false)")
        if not self._explainable(entry):
            raise InvalidInput(f"A {entry['query_type']} statement has no plan to show")
        if entry["connection_id"] not in self.app.registry:
            raise ConnectionNotFound(entry["connection_id"])
        token = current_principal.set(CONSOLE_PRINCIPAL)
        try:
            result = await self._explain.explain_query(entry["connection_id"], entry["query"], analyze=False)
        finally:
            current_principal.reset(token)
        return {**result, "id": query_id, "connection_id": entry["connection_id"], "query": entry["query"]}

    def _explainable(self, entry: Mapping[str, Any]) -> bool:
        return entry.get("query") is not None and entry.get("query_type") in EXPLAINABLE

    def _row(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        text = entry["query"]
        row = dict(entry)
        row["query_truncated"] = text is not None and len(text) > PREVIEW_CHARS
        if row["query_truncated"]:
            row["query"] = text[:PREVIEW_CHARS]
        row["slow"] = entry["duration_ms"] > self.app.settings.slow_query_threshold_ms
        row["explainable"] = self._explainable(entry)
        return row


def _haystack(entry: Mapping[str, Any]) -> str:
    parts = (entry.get("query"), entry.get("tool"), entry.get("query_type"), entry.get("error_type"))
    return " ".join(p for p in parts if p).lower()
