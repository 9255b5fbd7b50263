"""From query text to the facts a policy decides on, or the refusal that comes first.

:func:`analyse` parses one query with libpg_query (through :mod:`pglast`),
refuses what cannot be checked (a NUL, invalid text, a syntax error, nesting
too deep) or is not exactly one statement, and otherwise gathers in an
:class:`Analysis` what does not depend on the policy's settings: kinds, read or
write, tables, the first always-blocked item, keyword tokens. A :class:`Refusal`
is an outcome the policy caches; a fresh exception is built from it on every hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from pglast import parser as _pg

from pgmcp.errors import DatabaseError, InvalidInput, PgMcpError, QueryBlocked
from pgmcp.security.always_blocked import always_blocked_message
from pgmcp.security.calls import Calls, calls_of
from pgmcp.security.keywords import could_be_keyword, keyword_tokens_of
from pgmcp.security.tree import (
    explain_analyzes,
    inner_statement,
    is_select_star_without_limit,
    kind_of,
    own_kinds,
    walk,
    write_label_of,
)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A cached refusal; a fresh exception is built from it on every hit."""

    kind: type[PgMcpError]
    message: str
    reason: str = ""
    sqlstate: str | None = None

    def error(self) -> PgMcpError:
        """The exception to raise for this outcome."""
        if self.kind is QueryBlocked:
            return QueryBlocked(self.message, reason=self.reason)
        if self.kind is DatabaseError:
            return DatabaseError(self.message, sqlstate=self.sqlstate)
        return self.kind(self.message)


def query_blocked(message: str, reason: str) -> Refusal:
    """A :class:`~pgmcp.errors.QueryBlocked` refusal; ``reason`` is its metric label."""
    return Refusal(QueryBlocked, message, reason)


@dataclass(slots=True)
class Analysis:
    """Flag-independent facts about one statement."""

    query_type: str
    kinds: list[str]  # ordered: leading kind first
    all_kinds: list[str]  # kinds + kinds of nested definitions (BLOCKED_KEYWORDS)
    is_read: bool
    write_label: str
    analyze_target_is_write: bool
    tables: frozenset[str]
    always_blocked: str | None
    select_star_without_limit: bool
    keyword_tokens: list[str] = field(default_factory=list)
    calls: Calls = field(default_factory=Calls)


def _parse(query: str) -> list[Any] | Refusal:
    if "\x00" in query:
        return Refusal(InvalidInput, "Query contains a NUL character")
    try:
        text = _pg.parse_sql_json(query)
    except _pg.ParseError as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        return Refusal(DatabaseError, message, sqlstate="42601")
    except UnicodeError:
        return Refusal(InvalidInput, "Query is not valid Unicode text")
    try:
        stmts: list[Any] = orjson.loads(text).get("stmts", [])
    except orjson.JSONDecodeError:  # orjson stops at 1024 levels of nesting
        return query_blocked(
            "Query blocked: the statement is nested too deeply for the policy to check; simplify it",
            "too_complex",
        )
    return stmts


def analyse(query: str, *, keywords: frozenset[str]) -> Analysis | Refusal:
    """The facts of the one statement in ``query``, or why it cannot be looked at further.

    ``keywords`` are the BLOCKED_KEYWORDS: the scanner runs only when one of them may be
    a keyword token (:attr:`Analysis.keyword_tokens` is empty otherwise).
    """
    parsed = _parse(query)
    if isinstance(parsed, Refusal):
        return parsed
    if not parsed:
        return query_blocked("Query blocked: the query is empty", "empty")
    if len(parsed) > 1:
        return query_blocked(
            f"Query blocked: only one statement per call is allowed (found {len(parsed)})", "multi_statement"
        )
    wrapped: dict[str, Any] = parsed[0]["stmt"]
    ((top_node, top_body),) = wrapped.items()
    tree = walk(wrapped)

    # -- kinds ------------------------------------------------------------------
    kinds = own_kinds(top_node, top_body)
    query_type = kinds[0]
    analyze = top_node == "ExplainStmt" and explain_analyzes(top_body)
    inner = inner_statement(top_node, top_body) if (analyze or top_node == "CopyStmt") else None
    if inner is not None:
        kinds.extend(own_kinds(*inner))
    all_kinds = list(kinds)
    for node, body, runs in tree.stmts:
        if body is top_body or node == "SelectStmt" or (inner is not None and body is inner[1]):
            continue
        kind = kind_of(node, body)
        all_kinds.append(kind)
        if runs:
            kinds.append(kind)
    for _, runs in tree.intos:
        all_kinds.append("CREATE")
        if runs:
            kinds.append("CREATE")
    kinds = list(dict.fromkeys(kinds))
    all_kinds = list(dict.fromkeys(all_kinds))

    # -- read or write -------------------------------------------------------------
    write_label = write_label_of(top_node, top_body, tree)
    is_read = write_label is None
    if write_label is None:
        write_label = ""
    elif top_node == "ExplainStmt":
        write_label = f"EXPLAIN ANALYZE {write_label}"

    tables = frozenset(str(rel.get("relname", "")).lower() for rel in tree.relations)
    return Analysis(
        query_type=query_type,
        kinds=kinds,
        all_kinds=all_kinds,
        is_read=is_read,
        write_label=write_label,
        analyze_target_is_write=top_node == "ExplainStmt" and not is_read,
        tables=tables,
        always_blocked=always_blocked_message(tree),
        select_star_without_limit=top_node == "SelectStmt" and is_select_star_without_limit(top_body),
        keyword_tokens=(
            keyword_tokens_of(query)
            if keywords and could_be_keyword(query.encode().upper(), keywords)
            else []
        ),
        calls=calls_of(tree),
    )
