"""add_connection, remove_connection, list_connections, test_connection."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError

from pgmcp.app import AppContext
from pgmcp.config import ConnectionSpec
from pgmcp.errors import InvalidInput, QueryBlocked, register_secret
from pgmcp.tools import ConnectionId


class ConnectionTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def add_connection(
        self,
        connection_id: Annotated[
            str, Field(min_length=1, max_length=128, description="Name for the new connection.")
        ],
        host: Annotated[str, Field(min_length=1, description="Database host name or address.")],
        database: Annotated[str, Field(min_length=1, description="Database name.")],
        user: Annotated[str, Field(min_length=1, description="Database user.")],
        port: Annotated[int, Field(ge=1, le=65535, description="Port.")] = 5432,
        password: Annotated[
            str | None, Field(description="Password (prefer password_env: the model never sees it).")
        ] = None,
        password_env: Annotated[
            str | None, Field(description="Name of a server environment variable holding the password.")
        ] = None,
        pool_size: Annotated[
            int | None, Field(ge=1, le=1000, description="Pool size (default DEFAULT_POOL_SIZE).")
        ] = None,
        ssl_mode: Annotated[
            Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None,
            Field(description="TLS mode (default DB_SSL_MODE)."),
        ] = None,
        readonly: Annotated[
            bool, Field(description="Allow only read statements on this connection.")
        ] = False,
        ssl_root_cert: Annotated[
            str | None,
            Field(description="Path on the server of the CA certificate verify-ca/verify-full trust."),
        ] = None,
        ssl_cert: Annotated[
            str | None, Field(description="Path on the server of a client certificate to present.")
        ] = None,
        ssl_key: Annotated[
            str | None, Field(description="Path on the server of the client certificate's key.")
        ] = None,
        ssh_host: Annotated[
            str | None,
            Field(description="SSH server (bastion) to tunnel through; host/port are then as it sees them."),
        ] = None,
        ssh_port: Annotated[int, Field(ge=1, le=65535, description="Port of the SSH server.")] = 22,
        ssh_user: Annotated[str | None, Field(description="User to log in as on the SSH server.")] = None,
        ssh_key_env: Annotated[
            str | None,
            Field(
                description="Name of a server environment variable holding the SSH private key "
                "(its text, or the path of a key file)."
            ),
        ] = None,
        ssh_password_env: Annotated[
            str | None, Field(description="Name of a server environment variable holding the SSH password.")
        ] = None,
        ssh_known_hosts: Annotated[
            str | None,
            Field(
                description="Path on the server of a known_hosts file with the SSH server's host key "
                "(default ~/.ssh/known_hosts); an unknown or changed key is refused."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Open a named connection pool to a PostgreSQL database and test it."""
        settings = self.app.settings
        if password is not None:
            register_secret(password)
            if not settings.allow_inline_passwords:
                raise QueryBlocked(
                    "Inline passwords are disabled (ALLOW_INLINE_PASSWORDS=false): pass password_env, the name "
                    "of a variable in the server's environment that holds the password",
                    reason="inline_password",
                )
            if password_env is not None:
                raise InvalidInput("Give either password or password_env, not both")
        try:
            spec = ConnectionSpec(
                connection_id=connection_id,
                host=host,
                port=port,
                database=database,
                user=user,
                password=SecretStr(password) if password is not None else None,
                password_env=password_env,
                pool_size=pool_size,
                ssl_mode=ssl_mode or settings.db_ssl_mode,
                ssl_root_cert=ssl_root_cert,
                ssl_cert=ssl_cert,
                ssl_key=ssl_key,
                readonly=readonly,
                ssh_host=ssh_host,
                ssh_port=ssh_port,
                ssh_user=ssh_user,
                ssh_key_env=ssh_key_env,
                ssh_password_env=ssh_password_env,
                ssh_known_hosts=ssh_known_hosts,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            if not field:  # a rule across fields: its message names them
                raise InvalidInput(str(err["msg"]).removeprefix("Value error, ")) from None
            raise InvalidInput(f"Invalid {field}: {err['msg']}") from None
        conn, note = await self.app.registry.add(spec, source="runtime")
        result: dict[str, Any] = {
            "success": True,
            "connection_id": connection_id,
            "message": "Connection established successfully",
            "pool_stats": conn.pool_stats(),
            "readonly": conn.readonly,
        }
        if note:
            result["note"] = note
        return result

    async def remove_connection(self, connection_id: ConnectionId) -> dict[str, Any]:
        """Close a connection's pool and forget it."""
        if not self.app.settings.allow_runtime_connections:
            raise QueryBlocked(
                "Runtime connections are disabled (ALLOW_RUNTIME_CONNECTIONS=false)",
                reason="runtime_connections_disabled",
            )
        await self.app.registry.remove(connection_id)
        return {"success": True, "connection_id": connection_id, "message": "Connection removed"}

    async def list_connections(self) -> dict[str, Any]:
        """List the registered connections with their pool statistics (never passwords)."""
        return {"success": True, "connections": [c.describe() for c in self.app.registry.all()]}

    async def test_connection(self, connection_id: ConnectionId) -> dict[str, Any]:
        """Check that a connection answers now: health, latency, server version, pool statistics."""
        conn = self.app.registry.get(connection_id)
        health = await self.app.registry.probe(conn, timeout=self.app.settings.connection_timeout)
        result: dict[str, Any] = {
            "success": True,
            "connection_id": connection_id,
            "is_healthy": bool(health.is_healthy),
            "latency_ms": health.latency_ms,
            "server_version": health.server_version,
            "pool_stats": conn.pool_stats(),
        }
        if health.error:
            result["message"] = f"Connection is unhealthy: {health.error}"
        return result
