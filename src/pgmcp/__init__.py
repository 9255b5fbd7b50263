"""postgresql-mcp-server: safe, fast, observable PostgreSQL access for LLM agents over MCP.

The public Python API is for extensions (the handbook's "擴展與客製化"): a plugin
module exposes ``register(server)`` and adds tools, security rules and business
metrics through the :class:`PostgreSQLMCPServer` it receives::

    from typing import Any

    import pgmcp

    def register(server: pgmcp.PostgreSQLMCPServer) -> None:
        @server.tool()
        async def open_orders(connection_id: str) -> dict[str, Any]:
            \"\"\"Number of pending orders.\"\"\"
            result = await server.execute_query(
                connection_id, "SELECT count(*) AS n FROM orders WHERE status = $1", ["pending"]
            )
            return {"open_orders": result.rows[0]["n"]}

Plugins are found through the ``pgmcp.plugins`` entry-point group and the
``MCP_PLUGINS`` setting; see ``documentation/EXTENDING.md``. Everything listed
in ``__all__`` is supported API; other modules are internals. The names are
imported on first use, so ``import pgmcp`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgmcp._version import __version__

if TYPE_CHECKING:
    from pgmcp.config import Settings
    from pgmcp.db.results import BatchResult, QueryResult, TransactionResult
    from pgmcp.errors import (
        ConnectionFailed,
        ConnectionNotFound,
        DatabaseError,
        InvalidInput,
        LimitExceeded,
        PgMcpError,
        QueryBlocked,
        QueryTimeout,
    )
    from pgmcp.extension import (
        ENTRY_POINT_GROUP,
        ConnectionManager,
        GuardedConnection,
        GuardedPool,
        PluginError,
        PluginResult,
        PostgreSQLMCPServer,
    )
    from pgmcp.monitoring import Monitor
    from pgmcp.security import Decision, Policy, Risk, Rule

__all__ = [
    "ENTRY_POINT_GROUP",
    "BatchResult",
    "ConnectionFailed",
    "ConnectionManager",
    "ConnectionNotFound",
    "DatabaseError",
    "Decision",
    "GuardedConnection",
    "GuardedPool",
    "InvalidInput",
    "LimitExceeded",
    "Monitor",
    "PgMcpError",
    "PluginError",
    "PluginResult",
    "Policy",
    "PostgreSQLMCPServer",
    "QueryBlocked",
    "QueryResult",
    "QueryTimeout",
    "Risk",
    "Rule",
    "Settings",
    "TransactionResult",
    "__version__",
]

_LAZY: dict[str, str] = {
    "Settings": "pgmcp.config",
    "BatchResult": "pgmcp.db.results",
    "QueryResult": "pgmcp.db.results",
    "TransactionResult": "pgmcp.db.results",
    "ConnectionFailed": "pgmcp.errors",
    "ConnectionNotFound": "pgmcp.errors",
    "DatabaseError": "pgmcp.errors",
    "InvalidInput": "pgmcp.errors",
    "LimitExceeded": "pgmcp.errors",
    "PgMcpError": "pgmcp.errors",
    "QueryBlocked": "pgmcp.errors",
    "QueryTimeout": "pgmcp.errors",
    "ENTRY_POINT_GROUP": "pgmcp.extension",
    "ConnectionManager": "pgmcp.extension",
    "GuardedConnection": "pgmcp.extension",
    "GuardedPool": "pgmcp.extension",
    "PluginError": "pgmcp.extension",
    "PluginResult": "pgmcp.extension",
    "PostgreSQLMCPServer": "pgmcp.extension",
    "Monitor": "pgmcp.monitoring",
    "Decision": "pgmcp.security",
    "Policy": "pgmcp.security",
    "Risk": "pgmcp.security",
    "Rule": "pgmcp.security",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pgmcp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
