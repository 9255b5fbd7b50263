"""The application object a plugin's ``register(server)`` receives: :class:`PostgreSQLMCPServer`.

Its :meth:`~PostgreSQLMCPServer.tool` decorator registers custom tools; its
``execute_*`` methods run SQL through the one execute path.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel

from pgmcp.app import AppContext
from pgmcp.config import Settings
from pgmcp.confirm import confirm_batch, confirm_transaction
from pgmcp.db.execute import BatchResult, QueryResult, TransactionResult
from pgmcp.extension.binding import (
    BUILTIN_TOOLS,
    TOOL_NAME,
    Call,
    HandbookRule,
    PluginResult,
    StagedTool,
    as_rule,
    bind,
    current_tool_call,
    params_of,
    plugin_tools,
    rules_installed,
)
from pgmcp.extension.guarded import ConnectionManager
from pgmcp.logs import get_logger
from pgmcp.mcp_server import PgMcpServer
from pgmcp.monitoring import BUSINESS_RETENTION_SECONDS, Monitor
from pgmcp.registration import READ, WRITE, enabled_tool_names, register_tool
from pgmcp.security import Policy, Rule

__all__ = ["PostgreSQLMCPServer"]

log = get_logger("pgmcp.extension")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


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

    _BUILTIN: ClassVar[frozenset[str]] = BUILTIN_TOOLS

    def __init__(self, context: AppContext, mcp: PgMcpServer, *, plugin: str | None = None) -> None:
        self._context = context
        self._mcp = mcp
        self._plugin = plugin
        self._staging = plugin is not None
        self._staged_tools: list[StagedTool] = []
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
        if not TOOL_NAME.match(tool_name):
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
        staged = StagedTool(
            tool_name, bind(fn, tool_name, output), description, annotations, output, untrusted
        )
        if self._staging:
            self._staged_tools.append(staged)
        else:
            self._commit_tools([staged])

    def _taken(self) -> set[str]:
        return {*self._BUILTIN, *plugin_tools.get(self._mcp, ()), *(t.name for t in self._staged_tools)}

    def _commit_tools(self, tools: list[StagedTool]) -> list[str]:
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
                plugin_tools.setdefault(self._mcp, set()).add(t.name)
        except BaseException:
            for tool_name in added:  # all or nothing
                self._mcp.remove_tool(tool_name)
                plugin_tools.get(self._mcp, set()).discard(tool_name)
            raise
        return added

    def _commit(self) -> tuple[list[str], int]:
        """Register what ``register()`` staged: every tool and rule, or none (then it raises)."""
        added = self._commit_tools(self._staged_tools)
        installed = rules_installed.setdefault(self.policy, set())
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
        adapted = as_rule(rule)
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

    def _attribution(self) -> tuple[str, Call | None]:
        call = current_tool_call.get()
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
            connection_id, query, params_of(params), fetch_size=fetch_size, tool=tool
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
        items = [(q, ()) if isinstance(q, str) else (q[0], params_of(q[1])) for q in queries]
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
        rows = [params_of(p) for p in params_list]
        await confirm_batch(self._context.executor, connection_id, query, rows, tool=tool)
        result = await self._context.executor.batch(connection_id, query, rows, tool=tool)
        if call is not None:
            call.warnings.extend(result.warnings)
        return result
