"""A named connection (:class:`ConnectionSpec`), its fields from a DSN, and secrets read by variable name."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from pgmcp.dsn import parse_dsn
from pgmcp.errors import InvalidInput, register_secret

__all__ = ["ConnectionSpec", "SslMode", "resolve_password", "resolve_secret_env", "spec_fields_from_dsn"]

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class ConnectionSpec(BaseModel):
    """A named connection, as declared by ``DB_*``, ``MCP_CONFIG_FILE`` or ``add_connection``."""

    connection_id: str
    host: str
    port: int = Field(5432, ge=1, le=65535)
    database: str
    user: str
    password: SecretStr | None = None
    password_env: str | None = None
    pool_size: int | None = Field(None, ge=1, le=1000)
    ssl_mode: SslMode | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    ssl_root_cert: str | None = None
    readonly: bool = False
    # /readyz answers 503 while a required connection does not answer. The 'default'
    # connection is required; MCP_CONFIG_FILE connections when they say `required = true`.
    required: bool = False
    # SSH tunnel through a bastion host (db/tunnel.py); secrets only by the name of a variable.
    ssh_host: str | None = None
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: str | None = None
    ssh_key_env: str | None = None
    ssh_password_env: str | None = None
    ssh_known_hosts: str | None = None

    @model_validator(mode="after")
    def _ssh_is_complete(self) -> ConnectionSpec:
        given = [name for name in _SSH_FIELDS if getattr(self, name) is not None]
        if self.ssh_host is None:
            if given:
                raise ValueError(f"{given[0]} is given without ssh_host (the SSH server to tunnel through)")
            return self
        if not self.ssh_user:
            raise ValueError("ssh_host needs ssh_user (the user to log in as on the SSH server)")
        if not (self.ssh_key_env or self.ssh_password_env):
            raise ValueError(
                "ssh_host needs ssh_key_env or ssh_password_env: the name of a server-side "
                "environment variable holding the private key (or its file path) or the password"
            )
        return self


_SSH_FIELDS = ("ssh_user", "ssh_key_env", "ssh_password_env", "ssh_known_hosts")


def spec_fields_from_dsn(dsn: str) -> dict[str, Any]:
    """The ConnectionSpec fields of a postgresql:// URI, with libpq's defaults for what it omits
    (host localhost, port 5432, user postgres, database = the user). Its password is remembered
    as a secret, so no output ever shows it.

    Raises:
        DsnError: the URI cannot be used (the message never shows the password).
    """
    fields = parse_dsn(dsn)
    register_secret(fields.get("password"))
    fields.setdefault("host", "localhost")
    fields.setdefault("user", "postgres")
    fields.setdefault("database", fields["user"])
    if "password" in fields:
        fields["password"] = SecretStr(fields["password"])
    return fields


def resolve_password(spec: ConnectionSpec) -> str | None:
    """The password of a connection: given inline, or read from the variable ``password_env`` names."""
    if spec.password is not None:
        return spec.password.get_secret_value()
    if spec.password_env:
        return resolve_secret_env(spec.password_env, "password_env")
    return None


def resolve_secret_env(name: str, parameter: str) -> str:
    """The value of the server-side variable ``name`` that ``parameter`` names, remembered as a secret.

    Raises:
        InvalidInput: the variable is not set (the message names it, never a value).
    """
    value = os.environ.get(name)
    if value is None:
        raise InvalidInput(f"{parameter} names {name!r}, which is not set in the server's environment")
    register_secret(value)
    return value
