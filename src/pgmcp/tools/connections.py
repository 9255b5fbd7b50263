"""add_connection, remove_connection, list_connections, test_connection."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError

from pgmcp.app import AppContext
from pgmcp.config import ConnectionSpec, spec_fields_from_dsn
from pgmcp.dsn import DsnError
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
        host: Annotated[
            str | None, Field(min_length=1, description="Database host name or address (or give dsn).")
        ] = None,
        database: Annotated[
            str | None, Field(min_length=1, description="Database name (or give dsn).")
        ] = None,
        user: Annotated[str | None, Field(min_length=1, description="Database user (or give dsn).")] = None,
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
        dsn: Annotated[
            str | None,
            Field(
                description="A postgresql://user@host:port/database?sslmode=... URI instead of host, port, "
                "database and user (a password inside it counts as an inline password)."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Open a named connection pool to a PostgreSQL database and test it."""
        settings = self.app.settings
        fields: dict[str, Any] = {"host": host, "port": port, "database": database, "user": user}
        if dsn is not None:
            try:
                from_dsn = spec_fields_from_dsn(dsn)
            except DsnError as exc:
                raise InvalidInput(f"Invalid dsn: {exc}") from None
            if host is not None or database is not None or user is not None or port != 5432:
                raise InvalidInput("Give either dsn or host, port, database and user, not both")
            dsn_password = from_dsn.pop("password", None)
            if dsn_password is not None:
                if password is not None:
                    raise InvalidInput("Give the password either inside dsn or as password, not both")
                password = dsn_password.get_secret_value()
            fields = from_dsn
        elif host is None or database is None or user is None:
            missing = [name for name in ("host", "database", "user") if fields[name] is None]
            raise InvalidInput(
                f"Invalid arguments for add_connection: missing {', '.join(missing)} (or give dsn)"
            )
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
                **{
                    **fields,
                    "connection_id": connection_id,
                    "password": SecretStr(password) if password is not None else None,
                    "password_env": password_env,
                    "pool_size": pool_size,
                    "ssl_mode": ssl_mode or fields.get("ssl_mode") or settings.db_ssl_mode,
                    "ssl_root_cert": ssl_root_cert or fields.get("ssl_root_cert"),
                    "ssl_cert": ssl_cert or fields.get("ssl_cert"),
                    "ssl_key": ssl_key or fields.get("ssl_key"),
                    "readonly": readonly,
                    "ssh_host": ssh_host,
                    "ssh_port": ssh_port,
                    "ssh_user": ssh_user,
                    "ssh_key_env": ssh_key_env,
                    "ssh_password_env": ssh_password_env,
                    "ssh_known_hosts": ssh_known_hosts,
                }
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
        if conn.privileges is None and health.is_healthy:  # the database was down when the pool opened
            conn.privileges = await self.app.registry.inspect_privileges(conn)
        if conn.privileges is not None:
            result.update(conn.privileges.report())
        if health.error:
            result["message"] = f"Connection is unhealthy: {health.error}"
        return result
