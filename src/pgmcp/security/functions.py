"""Functions judged by the target database's own catalog: what may run on a read path. No I/O.

:class:`FunctionCatalog` is plain data: what ``pg_proc``, ``pg_operator`` and
``pg_cast`` of one database say about volatility, loaded and kept fresh by
:mod:`pgmcp.db.catalog`. :func:`judge_calls` applies it to the calls of a
statement (:mod:`pgmcp.security.calls`).

On a read path (``execute_query``; any call in ``READONLY_MODE``, on a read-only
connection or by a read-only caller; ``explain_query`` of a read) only functions
that are not ``VOLATILE`` run, plus :data:`HARMLESS_VOLATILE` and
``ALLOWED_FUNCTIONS``. Judged conservatively, since the parser does not know
argument types: a name is refused when **any** candidate of that name (in any
schema for an unqualified name; only in the named schema for a qualified one)
that can take that many arguments is volatile — for attribute notation, any
candidate that can take one argument; for an operator, any operator of that
name whose ``oprcode`` is volatile; for a cast to type ``t``, any cast to ``t``
whose ``castfunc`` is volatile, or ``t``'s volatile input function.

Functions that cannot be called from SQL are not counted as volatile: those
taking an ``internal`` argument and those returning ``trigger``, ``event_trigger``
or a handler type (the loader decides, in SQL).

A function name the catalog does not know is reported in
:attr:`Judgement.unknown`: the caller re-checks the catalog once (it may be
new) and otherwise lets the database answer (``function ... does not exist``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pgmcp.security.always_blocked import function_message
from pgmcp.security.calls import Calls

__all__ = ["HARMLESS_VOLATILE", "FunctionCatalog", "Judgement", "judge_calls"]

# VOLATILE in the catalog, harmless on a read path: they read, sleep (bounded by
# QUERY_TIMEOUT) or draw random numbers, and leave nothing behind in the session or
# the cluster. Not here on purpose: setseed (the session's random sequence outlives
# the call), pg_export_snapshot (a snapshot file), pg_stat_clear_snapshot,
# pg_stat_force_next_flush, pg_nextoid, nextval/setval (writes), set_config,
# advisory locks, large objects, pg_control_* and pg_show_all_file_settings (server files).
HARMLESS_VOLATILE: Final = frozenset(
    {
        # time, randomness, sleeping
        "random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid",
        "uuidv4", "uuidv7", "pg_sleep", "pg_sleep_for", "pg_sleep_until",
        # sizes (monitoring queries)
        "pg_database_size", "pg_relation_size", "pg_table_size", "pg_indexes_size",
        "pg_total_relation_size", "pg_tablespace_size",
        # recovery and WAL positions, locks, transaction status: reads of shared state
        "pg_is_in_recovery", "pg_is_wal_replay_paused", "pg_get_wal_replay_pause_state",
        "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp",
        "pg_current_wal_lsn", "pg_current_wal_flush_lsn", "pg_current_wal_insert_lsn",
        "pg_blocking_pids", "pg_safe_snapshot_blocking_pids", "pg_lock_status",
        "pg_notification_queue_usage", "pg_jit_available", "pg_partition_tree",
        "pg_partition_ancestors", "pg_xact_commit_timestamp", "pg_xact_commit_timestamp_origin",
        "pg_xact_status", "txid_status", "pg_last_committed_xact", "pg_stat_have_stats",
        "pg_stat_get_recovery_prefetch", "pg_collation_actual_version",
        "pg_database_collation_actual_version", "pg_sequence_last_value", "pg_prepared_xact",
        "pg_get_multixact_members", "current_query", "currval", "lastval", "lo_get",
    }
)  # fmt: skip
_STAT_XACT_PREFIX: Final = "pg_stat_get_xact_"  # this transaction's own counters: reads

_versions = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One function of a name: its schema, whether it is volatile, how many arguments it takes."""

    schema: str
    volatile: bool
    min_args: int
    max_args: int  # a large number for VARIADIC

    def takes(self, nargs: int) -> bool:
        return self.min_args <= nargs <= self.max_args


@dataclass(frozen=True, slots=True)
class FunctionCatalog:
    """What one database's catalog says about the functions a statement can reach.

    Keys are lower-cased names (quoted and unquoted spellings judged together).
    ``operators``, ``casts`` and ``inputs`` hold only entries whose function is volatile,
    as ``(schema, function name)``: ``casts`` by target type, both cast functions and
    input functions; ``inputs`` the input functions alone (what a string literal meets). ``version`` is unique per loaded catalog: the
    policy's cache keys on it.
    """

    functions: Mapping[str, tuple[Candidate, ...]]
    operators: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    casts: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    inputs: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    types: frozenset[str] = frozenset()
    version: int = field(default_factory=lambda: next(_versions))

    @classmethod
    def from_rows(
        cls,
        functions: Iterable[tuple[str, str, bool, int, int, bool]],
        operators: Iterable[tuple[str, str, str]] = (),
        casts: Iterable[tuple[str, str, str]] = (),
        types: Iterable[str] = (),
        inputs: Iterable[tuple[str, str, str]] = (),
    ) -> FunctionCatalog:
        """Build from catalog rows.

        ``functions``: (name, schema, volatile, nargs, ndefaults, variadic);
        ``operators``: (operator name, schema, function name) of volatile ``oprcode``;
        ``casts``: (target type name, type schema, function name) of volatile cast functions;
        ``inputs``: the same of volatile input functions.
        """
        by_name: dict[str, list[Candidate]] = {}
        for name, schema, volatile, nargs, ndefaults, variadic in functions:
            least = max(nargs - ndefaults - (1 if variadic else 0), 0)
            most = 1 << 16 if variadic else nargs
            by_name.setdefault(name.lower(), []).append(Candidate(schema.lower(), volatile, least, most))
        ops: dict[str, list[tuple[str, str]]] = {}
        for op, schema, func in operators:
            ops.setdefault(op, []).append((schema.lower(), func.lower()))
        to_type: dict[str, list[tuple[str, str]]] = {}
        from_text: dict[str, list[tuple[str, str]]] = {}
        for type_name, schema, func in casts:
            to_type.setdefault(type_name.lower(), []).append((schema.lower(), func.lower()))
        for type_name, schema, func in inputs:
            entry = (schema.lower(), func.lower())
            to_type.setdefault(type_name.lower(), []).append(entry)
            from_text.setdefault(type_name.lower(), []).append(entry)
        return cls(
            functions={k: tuple(v) for k, v in by_name.items()},
            operators={k: tuple(v) for k, v in ops.items()},
            casts={k: tuple(v) for k, v in to_type.items()},
            inputs={k: tuple(v) for k, v in from_text.items()},
            types=frozenset(t.lower() for t in types),
        )


@dataclass(frozen=True, slots=True)
class Judgement:
    """The outcome of :func:`judge_calls`: a refusal message (reason), and names the catalog lacks."""

    message: str | None = None
    reason: str = ""
    unknown: frozenset[str] = frozenset()


_OK: Final = Judgement()


def _blocked(name: str) -> Judgement:
    return Judgement(f"Query blocked: function '{name}' is blocked (BLOCKED_FUNCTIONS)", "blocked_function")


def _volatile(name: str, how: str = "") -> Judgement:
    return Judgement(
        f"Query blocked: function '{name}'{how} is VOLATILE and may change state; read-only calls allow "
        "only STABLE and IMMUTABLE functions (ALLOWED_FUNCTIONS can allow it)",
        "volatile_function",
    )


def _allowed(name: str, allowed: frozenset[str]) -> bool:
    return name in HARMLESS_VOLATILE or name in allowed or name.startswith(_STAT_XACT_PREFIX)


def judge_calls(
    calls: Calls,
    catalog: FunctionCatalog | None,
    *,
    read_path: bool,
    allowed: frozenset[str] = frozenset(),
    blocked: frozenset[str] = frozenset(),
) -> Judgement:
    """Judge every call of a statement: BLOCKED_FUNCTIONS everywhere, volatility on read paths.

    Only calls that run now are judged for volatility (not those under a plain EXPLAIN
    or in a definition). Without a catalog only BLOCKED_FUNCTIONS applies, to direct
    calls: what is refused without a catalog is always refused with one.
    """
    if blocked:
        for _, name, _, _ in calls.functions:
            if name in blocked:
                return _blocked(name)
        for name, _ in calls.attributes:  # (x).f is a call only when f is a function
            if name in blocked and catalog is not None and name in catalog.functions:
                return _blocked(name)
    if catalog is None:
        return _OK
    functions = catalog.functions
    # The functions behind operators and casts meet the always-blocked list and BLOCKED_FUNCTIONS too.
    behind = [(schema, name, catalog.operators) for schema, name, _ in calls.operators]
    behind += [(s, n, catalog.inputs if literal else catalog.casts) for s, n, literal, _ in calls.casts]
    for schema, name, table in behind:
        for owner, func in table.get(name, ()):
            if not schema or schema == owner:
                if func in blocked:
                    return _blocked(func)
                message = function_message(func, -1)
                if message is not None:
                    return Judgement(message, "always_blocked")
    if not read_path:
        return _OK
    unknown: list[str] = []
    for schema, name, nargs, runs in calls.functions:
        if not runs or _allowed(name, allowed):
            continue
        candidates = functions.get(name)
        if candidates is None:
            if name in catalog.types:  # int4(x), "varchar"(x): a cast written as a call
                verdict = _judge_cast(catalog.casts, schema, name, allowed)
                if verdict is not None:
                    return verdict
            else:
                unknown.append(name)
            continue
        for candidate in candidates:
            if candidate.volatile and candidate.takes(nargs) and (not schema or schema == candidate.schema):
                return _volatile(name)
    for name, runs in calls.attributes:
        if not runs or _allowed(name, allowed):
            continue
        for candidate in functions.get(name, ()):
            if candidate.volatile and candidate.takes(1):
                return _volatile(name, " (called as an attribute, (x).f)")
    for schema, name, runs in calls.operators:
        if not runs:
            continue
        for owner, func in catalog.operators.get(name, ()):
            if (not schema or schema == owner) and not _allowed(func, allowed):
                return _volatile(func, f" (behind operator {name})")
    for schema, name, literal, runs in calls.casts:
        if runs:
            verdict = _judge_cast(catalog.inputs if literal else catalog.casts, schema, name, allowed)
            if verdict is not None:
                return verdict
    return Judgement(unknown=frozenset(unknown)) if unknown else _OK


def _judge_cast(
    table: Mapping[str, tuple[tuple[str, str], ...]], schema: str, type_name: str, allowed: frozenset[str]
) -> Judgement | None:
    for owner, func in table.get(type_name, ()):
        if (not schema or schema == owner) and not _allowed(func, allowed):
            return _volatile(func, f" (behind a cast to {type_name})")
    return None
