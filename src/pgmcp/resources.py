"""MCP resources: table schemas and the connection list, as JSON."""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from pgmcp.app import AppContext
from pgmcp.errors import ConnectionNotFound, DatabaseError, PgMcpError
from pgmcp.mcp_server import PgMcpServer
from pgmcp.responses import dumps
from pgmcp.tools.schema import SchemaTools

__all__ = ["register_resources"]


def register_resources(server: PgMcpServer, app: AppContext, schema: SchemaTools) -> None:
    """Table schemas as resources: ``postgres://{connection_id}/{schema}/{table}/schema``."""

    @server.resource(
        "postgres://{connection_id}/{schema_name}/{table}/schema",
        name="table_schema",
        description="Columns, keys, indexes and foreign keys of one table, as JSON.",
        mime_type="application/json",
    )
    async def table_schema(connection_id: str, schema_name: str, table: str) -> str:
        # A table or connection that does not exist is a JSON-RPC error, not a body saying so.
        try:
            payload = await schema.get_table_schema(connection_id, table, schema_name)
        except ConnectionNotFound as err:
            raise ResourceNotFoundError(str(err)) from None
        except DatabaseError as err:
            if err.sqlstate == "42P01":
                raise ResourceNotFoundError(str(err)) from None
            raise ResourceError(str(err)) from None
        except PgMcpError as err:
            raise ResourceError(str(err)) from None
        return dumps(payload)

    @server.resource(
        "postgres://connections",
        name="connections",
        description="The registered connections (never a password).",
        mime_type="application/json",
    )
    async def connection_list() -> str:
        return dumps({"connections": [c.describe() for c in app.registry.all()]})
