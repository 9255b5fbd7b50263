"""Building the settings: the environment, ``.env`` and ``MCP_CONFIG_FILE``; one line per bad setting."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pgmcp.config.connections import ConnectionSpec, spec_fields_from_dsn
from pgmcp.config.settings import Settings
from pgmcp.dsn import DsnError
from pgmcp.errors import register_secret

__all__ = ["SettingsError", "load_settings"]


class SettingsError(Exception):
    """A setting has a bad value; the message is one line naming the variable."""


def _first_error_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    msg = err["msg"]
    loc = ".".join(str(p) for p in err["loc"])
    if not loc and msg.startswith("Value error, ") and ": " in msg:
        # A check across settings (model validator) says which one: "Value error, name: message".
        loc, _, msg = msg.removeprefix("Value error, ").partition(": ")
    loc = loc or "settings"
    name = loc.upper() if "." not in loc else loc
    value = err.get("input")
    secret = name.endswith(("PASSWORD", "TOKEN", "URL"))
    shown = "" if secret or isinstance(value, dict) else f" (got {value!r})"
    return f"Invalid setting {name}{shown}: {msg}"


def _load_config_file(path: Path) -> list[ConnectionSpec]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SettingsError(f"Invalid setting MCP_CONFIG_FILE: file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise SettingsError(f"Invalid setting MCP_CONFIG_FILE: {path}: {exc}") from exc
    specs: list[ConnectionSpec] = []
    tables = data.get("connections", {})
    if not isinstance(tables, dict):
        raise SettingsError("Invalid setting MCP_CONFIG_FILE: [connections] must be a table of tables")
    for conn_id, body in tables.items():
        if not isinstance(body, dict):
            raise SettingsError(f"Invalid setting MCP_CONFIG_FILE: [connections.{conn_id}] must be a table")
        if "password" in body:
            raise SettingsError(
                f"Invalid setting MCP_CONFIG_FILE: [connections.{conn_id}] has a password; "
                "use password_env (the name of an environment variable holding it)"
            )
        if "dsn" in body:
            body = _config_dsn(conn_id, body)
        for secret in ("ssh_key", "ssh_password"):
            if secret in body:
                raise SettingsError(
                    f"Invalid setting MCP_CONFIG_FILE: [connections.{conn_id}] has {secret}; use "
                    f"{secret}_env (the name of an environment variable holding it)"
                )
        try:
            specs.append(ConnectionSpec(connection_id=conn_id, **body))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            where = f"{field}: " if field else ""
            raise SettingsError(
                f"Invalid setting MCP_CONFIG_FILE: [connections.{conn_id}] {where}{err['msg']}"
            ) from exc
        for name in (specs[-1].password_env, specs[-1].ssh_key_env, specs[-1].ssh_password_env):
            if name:
                register_secret(os.environ.get(name))
    return specs


def _config_dsn(conn_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A config-file connection given by ``dsn``: its parts, beside the table's other keys."""
    where = f"Invalid setting MCP_CONFIG_FILE: [connections.{conn_id}]"
    rest = {k: v for k, v in body.items() if k != "dsn"}
    dsn = body["dsn"]
    if not isinstance(dsn, str):
        raise SettingsError(f"{where} dsn: must be a postgresql:// URI string")
    try:
        fields = spec_fields_from_dsn(dsn)
    except DsnError as exc:
        raise SettingsError(f"{where} dsn: {exc}") from None
    if "password" in fields:
        raise SettingsError(
            f"{where} dsn has a password; use password_env (the name of a variable holding it)"
        )
    given = sorted(set(fields) & set(rest) & {"host", "port", "database", "user"})
    if given:
        raise SettingsError(f"{where} gives {', '.join(given)} both in dsn and as keys; give them once")
    return {**fields, **rest}


def load_settings(env_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; raise :class:`SettingsError` with one line naming the bad variable."""
    if env_file is not None and not Path(env_file).is_file():
        raise SettingsError(f"Invalid option --env-file: file not found: {env_file}")
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        raise SettingsError(_first_error_line(exc)) from None
    if settings.mcp_config_file is not None:
        settings.connections = _load_config_file(settings.mcp_config_file)
    return settings
