"""The extension API: custom tools, custom security rules and business metrics, without a fork.

A **plugin** is an importable module with a function::

    def register(server: pgmcp.PostgreSQLMCPServer) -> None:
        @server.tool()
        async def my_tool(connection_id: str, ...) -> dict[str, Any]:
            result = await server.execute_query(connection_id, "SELECT ...", [...])
            return {"rows": result.rows}

pgmcp finds plugins in two places, in this order, each module once:

1. the ``pgmcp.plugins`` entry-point group of every installed distribution
   (``[project.entry-points."pgmcp.plugins"] revenue = "my_package"``);
2. ``MCP_PLUGINS``, a comma-separated list of module names on ``sys.path``.

``register`` is called once per MCP server, after the built-in tools are
registered and before the server serves anything. Everything it registers is
staged and committed only when it returns: a plugin that fails to import, has
no ``register``, raises in it, or registers something invalid leaves no tool
and no rule behind. Start-up then stops with one line naming the plugin, or,
with ``MCP_PLUGINS_SKIP_BROKEN=true``, the plugin is skipped with a warning.

A custom tool is treated like a built-in one: typed arguments (a call with
wrong ones is ``invalid_input``), the response shape ``{"success": ...}``
with ``error``/``error_type`` and ``isError`` on failure, tool-call metrics and
logs, and database data wrapped as untrusted. Its SQL goes through the one
execute path (:meth:`PostgreSQLMCPServer.execute_query` and friends): the
policy, ``statement_timeout``, a ``READ ONLY`` transaction for reads, type
conversion, row and byte caps, metrics, logs and query history.

The package's parts: :mod:`.api` (:class:`PostgreSQLMCPServer`, what ``register``
receives), :mod:`.binding` (a custom tool's call and result, staging),
:mod:`.guarded` (the handbook's ``connection_manager`` and its guarded pools),
:mod:`.plugins` (discovery, loading, all-or-nothing commit). The MCP server's
builder (:func:`pgmcp.server.build_server`) calls :func:`load_plugins`.
"""

from pgmcp.extension.api import PostgreSQLMCPServer
from pgmcp.extension.binding import PluginResult
from pgmcp.extension.guarded import ConnectionManager, GuardedConnection, GuardedPool
from pgmcp.extension.plugins import ENTRY_POINT_GROUP, PluginError, load_plugins
from pgmcp.extension.plugins import discover_plugins as discover_plugins  # a name of the module, as before

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConnectionManager",
    "GuardedConnection",
    "GuardedPool",
    "PluginError",
    "PluginResult",
    "PostgreSQLMCPServer",
    "load_plugins",
]
