"""The policy object: settings, the order of checks, the cache, custom rules.

:class:`Policy` applies its settings to the :class:`~pgmcp.security.analysis.Analysis`
of a statement in the order :mod:`pgmcp.security` lists, keeps outcomes by query
text and flags, and runs custom rules last. :class:`Decision`, :class:`Risk` and
:data:`Rule` are the public types it answers and is extended with.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from pgmcp.errors import LimitExceeded, PgMcpError, QueryBlocked
from pgmcp.security.analysis import Refusal, analyse, query_blocked
from pgmcp.security.functions import FunctionCatalog, judge_calls

if TYPE_CHECKING:
    from pgmcp.config import Settings

__all__ = ["Decision", "Policy", "Risk", "Rule"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What an allowed statement is.

    ``query_type`` is the leading kind (``"SELECT"``, ``"WITH"``, ``"EXPLAIN"``, ...);
    ``kinds`` every kind the statement runs, nested ones included; ``is_read``
    whether it cannot change data; ``analyze_target_is_write`` is true for
    ``EXPLAIN ANALYZE`` of a write; ``tables`` the relations it names (lower
    case, last name part); ``warnings`` the risks of warn-level rules;
    ``unknown_functions`` the functions it calls that the catalog given to
    :meth:`Policy.check` does not know (the caller may refresh it and ask again).
    """

    query_type: str
    kinds: frozenset[str]
    is_read: bool
    analyze_target_is_write: bool = False
    tables: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()
    unknown_functions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Risk:
    """What a rule found: a warning, or (``block=True``) a refusal with this message."""

    message: str
    block: bool = False


Rule = Callable[[str, Decision], Iterable[Risk | str]]
"""A custom rule: ``rule(query, decision)`` yields :class:`Risk` (a plain string is a warning)."""


_CACHE_ENTRIES: Final = 4096
_CACHE_CHARS: Final = 4_000_000  # total query text held by the cache


class Policy:
    """The server-wide query policy (see :mod:`pgmcp.security`). Build it once; it is cheap to call.

    :meth:`check` raises :class:`LimitExceeded`, :class:`InvalidInput`,
    :class:`DatabaseError` (syntax) or :class:`QueryBlocked`, and otherwise
    returns a :class:`Decision`. Outcomes are cached by query text and flags.
    """

    def __init__(
        self,
        *,
        readonly_mode: bool = False,
        allowed_operations: Iterable[str] = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "EXPLAIN"),
        blocked_keywords: Iterable[str] = ("DROP", "TRUNCATE", "ALTER"),
        max_query_length: int = 10000,
        sensitive_tables: Iterable[str] = (),
        sensitive_tables_action: str = "warn",
        require_limit_for_select_star: bool = False,
        allowed_functions: Iterable[str] = (),
        blocked_functions: Iterable[str] = (),
    ) -> None:
        if sensitive_tables_action not in ("warn", "block"):
            raise ValueError("sensitive_tables_action must be 'warn' or 'block'")
        # Read-only after construction (properties below): cached decisions depend on them.
        self._readonly_mode = readonly_mode
        self._allowed = frozenset(_words(allowed_operations))
        self._blocked = tuple(dict.fromkeys(_words(blocked_keywords)))
        self._max_query_length = max_query_length
        self._sensitive = frozenset(
            t.strip().rsplit(".", 1)[-1].strip('"').lower() for t in sensitive_tables if t.strip()
        )
        self._sensitive_action = sensitive_tables_action
        self._require_limit = require_limit_for_select_star
        self._blocked_set = frozenset(self._blocked)
        self._allowed_functions = frozenset(_names(allowed_functions))
        self._blocked_functions = frozenset(_names(blocked_functions))
        self._rules: list[Rule] = []
        self._cache: OrderedDict[_Key, Decision | Refusal] = OrderedDict()
        self._cache_chars = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy the settings describe (READONLY_MODE, ALLOWED_OPERATIONS, BLOCKED_KEYWORDS, ...)."""
        return cls(
            readonly_mode=settings.readonly_mode,
            allowed_operations=settings.allowed_operations,
            blocked_keywords=settings.blocked_keywords,
            max_query_length=settings.max_query_length,
            sensitive_tables=settings.sensitive_tables,
            sensitive_tables_action=settings.sensitive_tables_action,
            require_limit_for_select_star=settings.require_limit_for_select_star,
            allowed_functions=settings.allowed_functions,
            blocked_functions=settings.blocked_functions,
        )

    @property
    def readonly_mode(self) -> bool:
        """READONLY_MODE: every call must be read-only."""
        return self._readonly_mode

    @property
    def allowed_operations(self) -> frozenset[str]:
        """ALLOWED_OPERATIONS, upper case."""
        return self._allowed

    @property
    def blocked_keywords(self) -> tuple[str, ...]:
        """BLOCKED_KEYWORDS, upper case, in the configured order."""
        return self._blocked

    @property
    def max_query_length(self) -> int:
        """MAX_QUERY_LENGTH, in characters."""
        return self._max_query_length

    @property
    def sensitive_tables(self) -> frozenset[str]:
        """SENSITIVE_TABLES, lower case, last name part."""
        return self._sensitive

    def add_rule(self, rule: Rule) -> None:
        """Add a custom rule, run after every built-in check.

        ``rule(query, decision)`` yields :class:`Risk` objects (or plain strings,
        which are warnings). A blocking risk refuses the query with
        ``QueryBlocked(risk.message, reason="custom_rule")``; the others are added
        to :attr:`Decision.warnings`. A rule that raises refuses the query (fail closed).
        """
        self._rules.append(rule)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget cached outcomes (after adding a rule; in benchmarks)."""
        self._cache.clear()
        self._cache_chars = 0

    def check(
        self,
        query: str,
        *,
        readonly: bool = False,
        require_read: bool = False,
        read_tool_hint: str = "execute_transaction",
        catalog: FunctionCatalog | None = None,
    ) -> Decision:
        """Decide about one statement.

        ``readonly=True``: this call must be read-only (a read-only connection;
        READONLY_MODE implies it). ``require_read=True``: the calling tool
        (``execute_query``) only runs reads, and a write is refused with a
        message naming ``read_tool_hint``. ``catalog``: what the target database's
        ``pg_proc`` says (:mod:`pgmcp.security.functions`); without it only the
        parser's checks apply (no volatility judgement on read paths).

        Raises :class:`LimitExceeded` (too long), :class:`InvalidInput` (NUL or
        invalid text), :class:`DatabaseError` (syntax error, SQLSTATE 42601) or
        :class:`QueryBlocked` (with ``reason``).
        """
        if len(query) > self._max_query_length:
            raise LimitExceeded(
                f"Query too long: {len(query)} characters (MAX_QUERY_LENGTH is {self._max_query_length})"
            )
        key = (query, readonly, require_read, read_tool_hint, 0 if catalog is None else catalog.version)
        cache = self._cache
        hit = cache.get(key)
        if hit is not None:
            try:  # noqa: SIM105 (cheaper than contextlib.suppress on this hot path)
                cache.move_to_end(key)
            except KeyError:  # evicted meanwhile by another thread: the hit stands
                pass
            if isinstance(hit, Refusal):
                raise hit.error()
            return hit
        try:
            outcome: Decision | Refusal = self._decide(query, readonly, require_read, read_tool_hint, catalog)
        except _RuleFailed as exc:  # not cached: a rule may fail for a passing reason
            raise QueryBlocked(str(exc), reason="custom_rule") from exc.__cause__
        self._remember(key, outcome)
        if isinstance(outcome, Refusal):
            raise outcome.error()
        return outcome

    # --- internals ---------------------------------------------------------------

    def _remember(self, key: _Key, outcome: Decision | Refusal) -> None:
        cache = self._cache
        size = len(key[0])
        if size > _CACHE_CHARS // 8:
            return
        cache[key] = outcome
        self._cache_chars += size
        while len(cache) > _CACHE_ENTRIES or self._cache_chars > _CACHE_CHARS:
            old, _ = cache.popitem(last=False)
            self._cache_chars -= len(old[0])

    def _decide(
        self, query: str, readonly: bool, require_read: bool, hint: str, catalog: FunctionCatalog | None
    ) -> Decision | Refusal:
        analysis = analyse(query, keywords=self._blocked_set)
        if isinstance(analysis, Refusal):
            return analysis
        if analysis.always_blocked is not None:
            return query_blocked(analysis.always_blocked, "always_blocked")

        blocked = self._blocked_set
        if blocked:
            for word in (*analysis.all_kinds, *analysis.keyword_tokens):
                if word in blocked:
                    return query_blocked(
                        f"Query blocked: contains dangerous keyword '{word}'", "blocked_keyword"
                    )

        if not analysis.is_read:
            if self._readonly_mode or readonly:
                return query_blocked(
                    f"Query blocked: read-only mode allows only read statements (found {analysis.write_label})",
                    "readonly",
                )
            if require_read:
                return query_blocked(
                    "Query blocked: execute_query runs read-only statements; "
                    f"use {hint} for {analysis.write_label}",
                    "read_only_tool",
                )

        # Functions: BLOCKED_FUNCTIONS everywhere; on a read path only what the catalog says cannot
        # change state. EXPLAIN of a read runs (ANALYZE) or plans it in a READ ONLY transaction.
        read_path = (
            self._readonly_mode
            or readonly
            or require_read
            or (analysis.query_type == "EXPLAIN" and analysis.is_read)
        )
        judgement = judge_calls(
            analysis.calls,
            catalog,
            read_path=read_path,
            allowed=self._allowed_functions,
            blocked=self._blocked_functions,
        )
        if judgement.message is not None:
            return query_blocked(judgement.message, judgement.reason)

        for kind in analysis.kinds:
            if kind not in self._allowed:
                return query_blocked(
                    f"Query blocked: operation '{kind}' is not allowed", "operation_not_allowed"
                )

        warnings: list[str] = []
        for table in sorted(analysis.tables & self._sensitive):
            if self._sensitive_action == "block":
                return query_blocked(f"Query blocked: access to sensitive table '{table}'", "sensitive_table")
            warnings.append(f"Access to sensitive table: {table}")
        if self._require_limit and analysis.select_star_without_limit:
            return query_blocked(
                "Query blocked: SELECT * without LIMIT (potential large dataset query; "
                "REQUIRE_LIMIT_FOR_SELECT_STAR is on)",
                "select_star_without_limit",
            )

        decision = Decision(
            query_type=analysis.query_type,
            kinds=frozenset(analysis.kinds),
            is_read=analysis.is_read,
            analyze_target_is_write=analysis.analyze_target_is_write,
            tables=analysis.tables,
            warnings=tuple(warnings),
            unknown_functions=judgement.unknown,
        )
        for rule in self._rules:
            try:
                risks = list(rule(query, decision))
            except PgMcpError:
                raise  # a rule may refuse by raising our own errors
            except Exception as exc:
                name = getattr(rule, "__name__", type(rule).__name__)
                raise _RuleFailed(f"Query blocked: custom rule {name} failed ({type(exc).__name__})") from exc
            for risk in risks:
                if isinstance(risk, str):
                    warnings.append(risk)
                elif risk.block:
                    return query_blocked(risk.message, "custom_rule")
                else:
                    warnings.append(risk.message)
        if len(warnings) != len(decision.warnings):
            decision = replace(decision, warnings=tuple(warnings))
        return decision


class _RuleFailed(Exception):
    pass


_Key = tuple[str, bool, bool, str, int]


def _names(items: Iterable[str]) -> list[str]:
    return [name.strip().strip('"').rsplit(".", 1)[-1].lower() for name in items if name and name.strip()]


def _words(items: Iterable[str]) -> list[str]:
    return [word.strip().upper() for word in items if word and word.strip()]
