"""Settings: one typed object built once from the environment, ``.env`` and ``MCP_CONFIG_FILE``.

Nothing else in pgmcp reads ``os.environ`` for configuration (the one
exceptions are ``password_env``, ``ssh_key_env`` and ``ssh_password_env``: the
*names* of variables holding a secret, resolved in :func:`resolve_secret_env`).

The parts: :mod:`.settings` (:class:`Settings`, every setting with its default
and description), :mod:`.connections` (:class:`ConnectionSpec`, a named
connection; secrets read by the name of a variable), :mod:`.loading`
(:func:`load_settings`, ``MCP_CONFIG_FILE``, the one-line :class:`SettingsError`).
"""

from pgmcp.config.connections import (
    ConnectionSpec,
    resolve_password,
    resolve_secret_env,
    spec_fields_from_dsn,
)
from pgmcp.config.loading import SettingsError, load_settings
from pgmcp.config.settings import Settings

__all__ = [
    "ConnectionSpec",
    "Settings",
    "SettingsError",
    "load_settings",
    "resolve_password",
    "spec_fields_from_dsn",
    "resolve_secret_env",
]
