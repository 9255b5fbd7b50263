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
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import functools
import importlib
import importlib.metadata
import inspect
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pgmcp.app import AppContext
from pgmcp.config import Settings
from pgmcp.confirm import confirm_batch, confirm_transaction
from pgmcp.db.execute import BatchResult, QueryResult, TransactionResult
from pgmcp.errors import LimitExceeded, PgMcpError
from pgmcp.logs import get_logger
from pgmcp.monitoring import BUSINESS_RETENTION_SECONDS, Monitor
from pgmcp.security import Decision, Policy, Risk, Rule
from pgmcp.server import READ, TOOL_GROUPS, WRITE, PgMcpServer, enabled_tool_names, register_tool

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

log = get_logger("pgmcp.extension")

#: The entry-point group pgmcp reads plugins from.
ENTRY_POINT_GROUP = "pgmcp.plugins"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
HandbookRule = Callable[[str], Iterable[Risk | str]]

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_KNOWN_ERROR_TYPES = frozenset(
    {
        "invalid_input",
        "connection_not_found",
        "query_blocked",
        "timeout",
        "limit_exceeded",
        "connection_failed",
        "database_error",
    }
)
_BUILTIN_TOOLS = frozenset(name for names in TOOL_GROUPS.values() for name in names)


class PluginError(PgMcpError):
    """A plugin could not be loaded; the message is one line naming the plugin."""

    error_type = "plugin_failed"


class PluginResult(BaseModel):
    """Default output schema of a custom tool: ``success`` plus whatever the tool returns."""

    model_config = ConfigDict(extra="allow")

    success: bool = Field(description="True when the call did what was asked.")
    warnings: list[str] | None = Field(None, description="Risks the policy's warn-level rules found.")


# --- the call a custom tool is running in ---------------------------------------------


@dataclass
class _Call:
    tool: str
    warnings: list[str] = field(default_factory=list)


_current_call: ContextVar[_Call | None] = ContextVar("pgmcp_extension_call", default=None)


class _ToolFailure(PgMcpError):
    """A custom tool returned ``{"success": False, ...}``: reported in the one error shape."""

    def __init__(self, message: str, error_type: str, extra: dict[str, Any]) -> None:
        super().__init__(message)
        self.error_type = error_type  # type: ignore[misc]
        self.extra = extra


def _payload(result: Any, tool: str) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        payload = result.model_dump(mode="json", exclude_none=True)
    elif isinstance(result, dict):
        payload = dict(result)
    else:
        raise TypeError(f"tool {tool} returned {type(result).__name__}; return a dict or a pydantic model")
    if payload.get("success") is False:
        error_type = payload.get("error_type")
        extra = {k: v for k, v in payload.items() if k not in ("success", "error", "error_type")}
        raise _ToolFailure(
            str(payload.get("error") or f"{tool} failed"),
            error_type if error_type in _KNOWN_ERROR_TYPES else "database_error",
            extra,
        )
    return payload


def _bind(
    fn: Callable[..., Awaitable[Any]], tool: str, output: type[BaseModel]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Run ``fn`` as tool ``tool``: its queries are attributed to it, their warnings returned,
    and its result checked against its output schema (a mismatch is the plugin's bug: logged,
    reported as an internal error, never mistaken for the caller's invalid input)."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> dict[str, Any]:
        state = _Call(tool)
        token = _current_call.set(state)
        try:
            result = await fn(*args, **kwargs)
        finally:
            _current_call.reset(token)
        payload = _payload(result, tool)
        if state.warnings:
            given = payload.get("warnings")
            merged = list(given) if isinstance(given, list) else []
            merged += [w for w in dict.fromkeys(state.warnings) if w not in merged]
            payload["warnings"] = merged
        payload.setdefault("success", True)
        try:
            output.model_validate(payload)
        except ValidationError as exc:
            raise TypeError(
                f"tool {tool} returned a result that does not fit its output schema {output.__name__}: "
                + "; ".join(f"{'.'.join(map(str, e['loc'])) or 'result'}: {e['msg']}" for e in exc.errors())
            ) from None
        return payload

    return call


def _jsonable(value: Any) -> Any:
    """Python values a plugin may hold → the JSON forms the execute path converts from."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _params(params: Sequence[Any]) -> list[Any]:
    return [_jsonable(v) for v in params]


def _as_rule(rule: Rule | HandbookRule) -> Rule:
    """Accept the handbook's one-argument ``rule(query)`` as well as ``rule(query, decision)``."""
    try:
        positional = [
            p
            for p in inspect.signature(rule).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        return rule  # type: ignore[return-value]
    if len(positional) == 1 and positional[0].kind is not inspect.Parameter.VAR_POSITIONAL:
        one: HandbookRule = rule  # type: ignore[assignment]

        @functools.wraps(one)
        def adapted(query: str, decision: Decision) -> Iterable[Risk | str]:
            return one(query)

        return adapted
    return rule  # type: ignore[return-value]


@dataclass
class _StagedTool:
    name: str
    fn: Callable[..., Awaitable[dict[str, Any]]]
    description: str | None
    annotations: Any
    output: type[BaseModel]
    untrusted: bool


# Plugins whose rules are on a policy already (a second MCP server of the same app).
_rules_installed: weakref.WeakKeyDictionary[Policy, set[str]] = weakref.WeakKeyDictionary()
# Tool names plugins registered on an MCP server.
_plugin_tools: weakref.WeakKeyDictionary[PgMcpServer, set[str]] = weakref.WeakKeyDictionary()


# --- the connection registry, handbook style ---------------------------------------------


class GuardedConnection:
    """What ``async with pool.acquire() as conn`` yields: asyncpg's read methods, through the policy.

    Every call is its own ``READ ONLY`` transaction on a pooled connection (asyncpg
    without an explicit transaction is autocommit per statement too). Rows are
    dicts of JSON values (``dict(row)`` works as with asyncpg records). For writes
    use :meth:`PostgreSQLMCPServer.execute_transaction`.
    """

    def __init__(self, server: PostgreSQLMCPServer, connection_id: str) -> None:
        self._server = server
        self.connection_id = connection_id

    async def fetch(self, query: str, *args: Any, fetch_size: int | None = None) -> list[dict[str, Any]]:
        """All rows of one read statement.

        Raises:
            LimitExceeded: more than ``fetch_size`` (``DEFAULT_FETCH_SIZE``) rows, or more
                than ``MAX_RESULT_BYTES``: aggregate, page, or use ``execute_query`` and
                look at ``truncated``. Plus everything :meth:`PostgreSQLMCPServer.execute_query` raises.
        """
        result = await self._server.execute_query(self.connection_id, query, args, fetch_size=fetch_size)
        if result.truncated:
            raise LimitExceeded(
                f"Result of fetch() is larger than allowed ({result.truncated_reason}); "
                "aggregate or page the query, or use execute_query and check truncated"
            )
        return result.rows

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        """The first row, or None."""
        result = await self._server.execute_query(self.connection_id, query, args, fetch_size=1)
        return result.rows[0] if result.rows else None

    async def fetchval(self, query: str, *args: Any, column: int = 0) -> Any:
        """One value of the first row (``column`` by position), or None without rows."""
        row = await self.fetchrow(query, *args)
        return None if row is None else list(row.values())[column]


class GuardedPool(GuardedConnection):
    """The handbook's ``connection_manager.get_pool(id)``: a pool whose connections obey the policy."""

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[GuardedConnection]:
        """``async with pool.acquire() as conn``; no pool slot is held between statements."""
        yield GuardedConnection(self._server, self.connection_id)


class ConnectionManager:
    """The registered connections, as the handbook's ``connection_manager``. Never shows a password."""

    def __init__(self, server: PostgreSQLMCPServer) -> None:
        self._server = server

    def get_pool(self, connection_id: str) -> GuardedPool | None:
        """A :class:`GuardedPool` for ``connection_id``, or None when no such connection is registered.

        Its ``fetch``/``fetchrow``/``fetchval`` run through the execute path (policy,
        timeout, READ ONLY, caps, metrics); there is no raw asyncpg pool in this API.
        """
        if connection_id not in self._server._context.registry:
            return None
        return GuardedPool(self._server, connection_id)

    def connection_ids(self) -> list[str]:
        """The ids of the registered connections."""
        return [c.connection_id for c in self._server._context.registry.all()]

    def describe(self, connection_id: str) -> dict[str, Any]:
        """What ``list_connections`` shows for one connection.

        Raises:
            ConnectionNotFound: no such connection.
        """
        return self._server._context.registry.get(connection_id).describe()

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._server._context.registry


# --- the application object -------------------------------------------------------------------


class PostgreSQLMCPServer:
    """The running pgmcp server, as a plugin sees it (the handbook's ``PostgreSQLMCPServer``).

    ``register(server)`` receives one. Everything a custom tool needs hangs off it:

    - :meth:`tool` (also spelled ``server.app.tool()``, as in the handbook) registers a tool;
    - :meth:`execute_query`, :meth:`execute_transaction`, :meth:`batch_execute` run SQL
      through the one execute path;
    - :attr:`connection_manager` (``get_pool(id)``), :attr:`security_validator`/:attr:`policy`
      (:meth:`add_rule`), :attr:`metrics`/:attr:`monitor` (:meth:`record_business_event`),
      :attr:`settings`.

    Do not construct it yourself in a plugin; pgmcp does, one per plugin.
    """

    _BUILTIN: ClassVar[frozenset[str]] = _BUILTIN_TOOLS

    def __init__(self, context: AppContext, mcp: PgMcpServer, *, plugin: str | None = None) -> None:
        self._context = context
        self._mcp = mcp
        self._plugin = plugin
        self._staging = plugin is not None
        self._staged_tools: list[_StagedTool] = []
        self._staged_rules: list[Rule] = []
        self._connections = ConnectionManager(self)

    # --- what the handbook calls things ---------------------------------------------------

    @property
    def app(self) -> PostgreSQLMCPServer:
        """This object: the handbook registers tools with ``@self.app.tool()``."""
        return self

    @property
    def plugin_name(self) -> str | None:
        """The plugin this object was handed to (its module or entry-point name)."""
        return self._plugin

    @property
    def settings(self) -> Settings:
        """The server's settings (read them; they are not meant to be changed)."""
        return self._context.settings

    @property
    def connection_manager(self) -> ConnectionManager:
        """The registered connections: ``get_pool(id)``, ``connection_ids()``, ``describe(id)``."""
        return self._connections

    @property
    def policy(self) -> Policy:
        """The server-wide query policy (add rules with :meth:`add_rule`)."""
        return self._context.policy

    @property
    def security_validator(self) -> Policy:
        """The handbook's name for :attr:`policy`."""
        return self._context.policy

    @property
    def monitor(self) -> Monitor:
        """Metrics, history and business events (``record_business_event``, ``business_metrics``)."""
        return self._context.monitor

    @property
    def metrics(self) -> Monitor:
        """The handbook's ``CustomMetricsCollector``: the same object as :attr:`monitor`."""
        return self._context.monitor

    # --- tools -----------------------------------------------------------------------------

    def tool(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        read_only: bool = True,
        destructive: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool = False,
        output: type[BaseModel] | None = None,
        untrusted: bool = True,
    ) -> Callable[[F], F]:
        """Decorator: register an ``async def`` as an MCP tool; it is returned unchanged.

        Parameters are typed with annotations (``Literal[...]``, ``Annotated[int,
        Field(ge=1)]``, ``datetime.date``, pydantic models): they become the input
        schema, and a call that does not fit is ``invalid_input``. The docstring is
        the description. The function returns a dict (``success`` is added) or a
        pydantic model, or raises a :class:`~pgmcp.errors.PgMcpError`; returning
        ``{"success": False, "error": ..., "error_type": ...}`` is reported as an error.

        Args:
            name: tool name (default: the function's name); must not be taken.
            read_only, destructive, idempotent, open_world: the MCP annotations
                (defaults: read-only, idempotent; a non-read-only tool is destructive).
            output: output-schema model (default: the return annotation when it is a
                pydantic model, else :class:`PluginResult`).
            untrusted: wrap the result as database data (``WRAP_UNTRUSTED_DATA``).

        Raises:
            TypeError: not an ``async def``. ValueError: bad or taken name.
        """

        def decorator(fn: F) -> F:
            self.add_tool(
                fn,
                name=name,
                description=description,
                read_only=read_only,
                destructive=destructive,
                idempotent=idempotent,
                open_world=open_world,
                output=output,
                untrusted=untrusted,
            )
            return fn

        return decorator

    def add_tool(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        name: str | None = None,
        description: str | None = None,
        read_only: bool = True,
        destructive: bool | None = None,
        idempotent: bool | None = None,
        open_world: bool = False,
        output: type[BaseModel] | None = None,
        untrusted: bool = True,
    ) -> None:
        """Register ``fn`` as a tool; the non-decorator form of :meth:`tool` (same arguments)."""
        tool_name: str = name or str(getattr(fn, "__name__", ""))
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"tool {tool_name or fn!r} must be an async function (async def)")
        if not _TOOL_NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} is not valid: use 1-128 letters, digits, _ . -")
        if tool_name in self._taken():
            raise ValueError(f"tool name {tool_name!r} is already taken")
        if output is None:
            returns = inspect.signature(fn, eval_str=True).return_annotation
            is_model = isinstance(returns, type) and issubclass(returns, BaseModel)
            output = returns if is_model else PluginResult
        base = READ if read_only else WRITE
        annotations = base.model_copy(
            update={
                "destructive_hint": (not read_only) if destructive is None else destructive,
                "idempotent_hint": read_only if idempotent is None else idempotent,
                "open_world_hint": open_world,
            }
        )
        staged = _StagedTool(
            tool_name, _bind(fn, tool_name, output), description, annotations, output, untrusted
        )
        if self._staging:
            self._staged_tools.append(staged)
        else:
            self._commit_tools([staged])

    def _taken(self) -> set[str]:
        return {*self._BUILTIN, *_plugin_tools.get(self._mcp, ()), *(t.name for t in self._staged_tools)}

    def _commit_tools(self, tools: list[_StagedTool]) -> list[str]:
        enabled = enabled_tool_names(self._context)
        added: list[str] = []
        try:
            for t in tools:
                if enabled is not None and t.name not in enabled and "plugins" not in enabled:
                    log.info("plugin_tool_disabled", tool=t.name, plugin=self._plugin)
                    continue
                register_tool(
                    self._mcp,
                    self._context,
                    t.fn,
                    name=t.name,
                    description=t.description,
                    annotations=t.annotations,
                    output=t.output,
                    untrusted=t.untrusted,
                )
                added.append(t.name)
                _plugin_tools.setdefault(self._mcp, set()).add(t.name)
        except BaseException:
            for tool_name in added:  # all or nothing
                self._mcp.remove_tool(tool_name)
                _plugin_tools.get(self._mcp, set()).discard(tool_name)
            raise
        return added

    def _commit(self) -> tuple[list[str], int]:
        """Register what ``register()`` staged: every tool and rule, or none (then it raises)."""
        added = self._commit_tools(self._staged_tools)
        installed = _rules_installed.setdefault(self.policy, set())
        rules = 0
        if self._plugin not in installed:
            for rule in self._staged_rules:
                self.policy.add_rule(rule)
                rules += 1
            if self._plugin is not None:
                installed.add(self._plugin)
        self._staged_tools, self._staged_rules, self._staging = [], [], False
        return added, rules

    # --- policy ------------------------------------------------------------------------------

    def add_rule(self, rule: Rule | HandbookRule) -> None:
        """Add a security rule, checked after the built-in policy on every statement of every tool.

        ``rule(query, decision)`` (or the handbook's ``rule(query)``) yields
        :class:`~pgmcp.security.Risk` objects or strings. A string or
        ``Risk(msg)`` is a warning: the statement runs and the tool's result has it
        in ``warnings``. ``Risk(msg, block=True)`` refuses the statement
        (``query_blocked`` with ``msg``); a rule that raises refuses it too.
        ``decision`` says what the parser found (``query_type``, ``kinds``,
        ``is_read``, ``tables``).
        """
        adapted = _as_rule(rule)
        if self._staging:
            self._staged_rules.append(adapted)
        else:
            self.policy.add_rule(adapted)

    # --- business metrics ------------------------------------------------------------------------

    def record_business_event(self, event_type: str, value: float = 1.0) -> None:
        """Count a business event (``/metrics``: ``mcp_server_business_events_total{event_type}``;
        ``get_business_metrics``). Keep the set of event types small and fixed: each is a label."""
        self._context.monitor.record_business_event(event_type, value)

    def business_metrics(
        self, window_seconds: float = BUSINESS_RETENTION_SECONDS
    ) -> dict[str, dict[str, float]]:
        """``{event_type: {count, sum, avg}}`` over the last ``window_seconds`` (at most an hour)."""
        return self._context.monitor.business_metrics(window_seconds)

    # --- the one execute path ------------------------------------------------------------------

    def _attribution(self) -> tuple[str, _Call | None]:
        call = _current_call.get()
        if call is not None:
            return call.tool, call
        return f"plugin:{self._plugin or 'extension'}", None

    async def execute_query(
        self,
        connection_id: str,
        query: str,
        params: Sequence[Any] = (),
        *,
        fetch_size: int | None = None,
    ) -> QueryResult:
        """Run one read statement, exactly as the ``execute_query`` tool does.

        ``$1``, ``$2`` … take ``params`` (JSON values, or ``date``/``datetime``/
        ``Decimal``/``UUID``), converted to the types PostgreSQL infers. The policy
        decides first; the statement runs in a ``READ ONLY`` transaction with
        ``QUERY_TIMEOUT``; at most ``fetch_size`` rows come back (``truncated``).
        Warn-level rules' risks are in ``warnings`` (and, inside a tool, in the
        tool's result).

        Raises:
            ConnectionNotFound, QueryBlocked, LimitExceeded, InvalidInput, QueryTimeout,
            ConnectionFailed, DatabaseError — reported by a tool in the one error shape.
        """
        tool, call = self._attribution()
        result = await self._context.executor.query(
            connection_id, query, _params(params), fetch_size=fetch_size, tool=tool
        )
        if call is not None:
            call.warnings.extend(result.warnings)
        return result

    async def execute_transaction(
        self, connection_id: str, queries: Sequence[str | tuple[str, Sequence[Any]]]
    ) -> TransactionResult:
        """Run statements (``"SQL"`` or ``("SQL", params)``) in one transaction: all commit or none.

        Every statement is checked by the policy first (``READONLY_MODE`` refuses
        writes; ``BLOCKED_KEYWORDS``, ``ALLOWED_OPERATIONS`` and rules apply), and
        ``CONFIRM_WRITES`` asks the person as it does for the built-in write tools.

        Raises:
            As :meth:`execute_query`; a failing statement's error carries ``failed_index``.
        """
        tool, call = self._attribution()
        items = [(q, ()) if isinstance(q, str) else (q[0], _params(q[1])) for q in queries]
        await confirm_transaction(self._context.executor, connection_id, items, tool=tool)
        result = await self._context.executor.transaction(connection_id, items, tool=tool)
        if call is not None:
            call.warnings.extend(result.warnings)
        return result

    async def batch_execute(
        self, connection_id: str, query: str, params_list: Sequence[Sequence[Any]]
    ) -> BatchResult:
        """Run one statement per parameter row, pipelined in one transaction (all or nothing)."""
        tool, call = self._attribution()
        rows = [_params(p) for p in params_list]
        await confirm_batch(self._context.executor, connection_id, query, rows, tool=tool)
        result = await self._context.executor.batch(connection_id, query, rows, tool=tool)
        if call is not None:
            call.warnings.extend(result.warnings)
        return result


# --- finding and loading plugins ----------------------------------------------------------------


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
