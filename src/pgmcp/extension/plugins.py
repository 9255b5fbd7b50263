"""Finding and loading plugins: entry points, then ``MCP_PLUGINS``; each committed all or nothing."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

from pgmcp.app import AppContext
from pgmcp.config import Settings
from pgmcp.errors import PgMcpError
from pgmcp.extension.api import PostgreSQLMCPServer
from pgmcp.logs import get_logger
from pgmcp.mcp_server import PgMcpServer

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "discover_plugins", "load_plugins"]

log = get_logger("pgmcp.extension")

#: The entry-point group pgmcp reads plugins from.
ENTRY_POINT_GROUP = "pgmcp.plugins"


class PluginError(PgMcpError):
    """A plugin could not be loaded; the message is one line naming the plugin."""

    error_type = "plugin_failed"


@dataclass(frozen=True)
class _Plugin:
    name: str
    target: str  # "module" or "module:attribute"
    origin: Literal["entry point", "MCP_PLUGINS"]
    load: Callable[[], object]


def _import_target(target: str) -> object:
    module_name, _, attribute = target.partition(":")
    obj: object = importlib.import_module(module_name.strip())
    for part in filter(None, attribute.strip().split(".")):
        obj = getattr(obj, part)
    return obj


def discover_plugins(settings: Settings) -> list[_Plugin]:
    """Entry points of group ``pgmcp.plugins`` (by name), then ``MCP_PLUGINS``; each module once."""
    found: list[_Plugin] = []
    seen: set[str] = set()
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        module = ep.value.partition(":")[0].strip()
        if module in seen:
            continue
        seen.add(module)
        found.append(_Plugin(ep.name, ep.value, "entry point", ep.load))
    for target in settings.mcp_plugins:
        module = target.partition(":")[0].strip()
        if module in seen:
            continue
        seen.add(module)
        found.append(_Plugin(target, target, "MCP_PLUGINS", functools.partial(_import_target, target)))
    return found


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _load_one(plugin: _Plugin, context: AppContext, mcp: PgMcpServer) -> tuple[list[str], int]:
    stage = "import"
    try:
        obj = plugin.load()
        stage = "register"
        register = getattr(obj, "register", None) if isinstance(obj, ModuleType) else obj
        if not callable(register):
            raise TypeError(f"{plugin.target} has no register(server) function")
        facade = PostgreSQLMCPServer(context, mcp, plugin=plugin.name)
        outcome = register(facade)
        if inspect.isawaitable(outcome):
            if inspect.iscoroutine(outcome):
                outcome.close()
            raise TypeError("register(server) must be a plain function, not async")
        stage = "commit"
        return facade._commit()
    except Exception as exc:
        raise PluginError(
            f"Plugin {plugin.name!r} ({plugin.origin}) failed at {stage}: {_one_line(exc)}"
        ) from exc


def load_plugins(context: AppContext, mcp: PgMcpServer) -> list[str]:
    """Load every plugin (entry points, then ``MCP_PLUGINS``) into ``mcp``; the names loaded.

    Called by :func:`pgmcp.server.build_server` after the built-in tools.

    Raises:
        PluginError: a plugin failed to import or register (unless ``MCP_PLUGINS_SKIP_BROKEN``,
            which logs ``plugin_skipped`` and goes on without it).
    """
    loaded: list[str] = []
    for plugin in discover_plugins(context.settings):
        try:
            tools, rules = _load_one(plugin, context, mcp)
        except PluginError as exc:
            if context.settings.mcp_plugins_skip_broken:
                log.warning("plugin_skipped", plugin=plugin.name, error=str(exc))
                continue
            log.error("plugin_failed", plugin=plugin.name, error=str(exc))
            raise
        log.info("plugin_loaded", plugin=plugin.name, origin=plugin.origin, tools=tools, rules=rules)
        loaded.append(plugin.name)
    return loaded
