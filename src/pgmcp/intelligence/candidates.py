"""Candidate indexes from a statement's parse tree: its filters, joins, ordering and grouping.

Pure (no I/O): :func:`column_uses` walks the tree pglast gives (the server's own
grammar, never a regular expression) and says which columns of which tables a
statement filters, joins, sorts or groups on; :func:`candidates` turns those
uses, once each column is tied to a table the catalog knows, into index column
lists worth trying with hypothetical indexes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pglast import parser
from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

__all__ = ["Candidate", "ColumnUse", "Shape", "TableRef", "candidates", "column_uses", "quote_ident"]

UseKind = Literal["eq", "range", "join", "order", "group"]

_EQUALITY = {"="}
_RANGE = {"<", ">", "<=", ">="}
# Most index columns worth trying: a longer key rarely pays for its size.
MAX_COLUMNS = 3


@dataclass(frozen=True)
class TableRef:
    schema: str | None
    name: str


@dataclass(frozen=True)
class ColumnUse:
    """A column a statement uses; ``qualifier`` is the alias or table name written before it,
    ``scope`` the (sub)query it appears in."""

    qualifier: str | None
    column: str
    kind: UseKind
    scope: int = 0


@dataclass
class Shape:
    """The tables each (sub)query reads, by alias, and the columns the statement uses.

    Scope 0 is the whole statement; every SELECT, UPDATE or DELETE opens a scope whose
    parent is the one around it (where a correlated subquery finds its outer aliases).
    """

    scopes: dict[int, dict[str, TableRef]] = field(default_factory=lambda: {0: {}})
    parents: dict[int, int] = field(default_factory=dict)
    uses: list[ColumnUse] = field(default_factory=list)

    @property
    def distinct_tables(self) -> list[TableRef]:
        return list(dict.fromkeys(t for tables in self.scopes.values() for t in tables.values()))

    def visible(self, scope: int) -> Iterator[dict[str, TableRef]]:
        """The tables of ``scope``, then of each scope around it."""
        current: int | None = scope
        while current is not None:
            yield self.scopes[current]
            current = self.parents.get(current)


@dataclass(frozen=True)
class Candidate:
    table: TableRef
    columns: tuple[str, ...]


def column_uses(query: str) -> Shape:
    """The tables and column uses of every SELECT (subqueries and CTEs included) in ``query``.

    Raises:
        pglast.parser.ParseError: ``query`` is not valid SQL.
    """
    tree = orjson.loads(parser.parse_sql_json(query))
    shape = Shape()
    for stmt in tree.get("stmts", ()):
        _walk(stmt.get("stmt", {}), shape, 0)
    return shape


def _walk(node: Any, shape: Shape, scope: int) -> None:
    """Every node; SelectStmt, UpdateStmt and DeleteStmt open a scope and contribute their clauses."""
    if isinstance(node, list):
        for item in node:
            _walk(item, shape, scope)
        return
    if not isinstance(node, dict):
        return
    for kind, body in node.items():
        inner = scope
        if kind in ("SelectStmt", "UpdateStmt", "DeleteStmt") and isinstance(body, dict):
            inner = len(shape.scopes)
            shape.scopes[inner] = {}
            shape.parents[inner] = scope
            _predicates(body.get("whereClause"), shape, inner)
            if kind == "SelectStmt":
                _predicates(body.get("havingClause"), shape, inner)
                for item in body.get("sortClause") or ():
                    _plain_column(item.get("SortBy", {}).get("node"), "order", shape, inner)
                for item in body.get("groupClause") or ():
                    _plain_column(item, "group", shape, inner)
        elif kind == "RangeVar" and isinstance(body, dict):
            ref = TableRef(body.get("schemaname"), body["relname"])
            alias = (body.get("alias") or {}).get("aliasname") or body["relname"]
            shape.scopes[scope].setdefault(alias, ref)
        elif kind == "JoinExpr" and isinstance(body, dict):
            _predicates(body.get("quals"), shape, scope)
        if isinstance(body, dict | list):
            _walk(body, shape, inner)


def _column(node: Any) -> tuple[str | None, str] | None:
    """``(qualifier, column)`` of a plain column reference (through casts), else None."""
    if not isinstance(node, dict):
        return None
    if "TypeCast" in node:
        return _column(node["TypeCast"].get("arg"))
    ref = node.get("ColumnRef")
    if not ref:
        return None
    names = [f["String"]["sval"] for f in ref.get("fields", ()) if "String" in f]
    if len(names) != len(ref.get("fields", ())) or not names:
        return None  # a * or an indirection
    if len(names) == 1:
        return None, names[0]
    return names[-2], names[-1]


def _plain_column(node: Any, kind: UseKind, shape: Shape, scope: int) -> None:
    col = _column(node)
    if col is not None:
        shape.uses.append(ColumnUse(col[0], col[1], kind, scope))


def _predicates(node: Any, shape: Shape, scope: int) -> None:
    """Column uses of a WHERE / ON / HAVING expression (AND and OR alike: both can use an index)."""
    if not isinstance(node, dict):
        return
    if "BoolExpr" in node:
        for arg in node["BoolExpr"].get("args", ()):
            _predicates(arg, shape, scope)
        return
    if "NullTest" in node:
        _plain_column(node["NullTest"].get("arg"), "eq", shape, scope)
        return
    if "SubLink" in node:
        # col IN (SELECT …) / col = ANY (SELECT …): a semi-join on the column (the subquery itself
        # is walked as a statement of its own).
        link = node["SubLink"]
        if link.get("subLinkType") in ("ANY_SUBLINK", "ALL_SUBLINK", "EXPR_SUBLINK"):
            _plain_column(link.get("testexpr"), "join", shape, scope)
        return
    expr = node.get("A_Expr")
    if not expr:
        return
    kind = expr.get("kind")
    op = "".join(part["String"]["sval"] for part in expr.get("name", ()) if "String" in part)
    left, right = _column(expr.get("lexpr")), _column(expr.get("rexpr"))
    if kind == "AEXPR_OP" and op in _EQUALITY | _RANGE:
        use: UseKind = "eq" if op in _EQUALITY else "range"
        if left and right:
            shape.uses += [ColumnUse(*left, "join", scope), ColumnUse(*right, "join", scope)]
        elif left or right:
            col = left or right
            assert col is not None
            shape.uses.append(ColumnUse(col[0], col[1], use, scope))
    elif kind in ("AEXPR_IN", "AEXPR_OP_ANY") and left:
        shape.uses.append(ColumnUse(*left, "eq", scope))
    elif (
        kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN")
        and left
        or kind == "AEXPR_LIKE"
        and left
        and _prefix_pattern(expr.get("rexpr"))
    ):
        shape.uses.append(ColumnUse(*left, "range", scope))


def _prefix_pattern(node: Any) -> bool:
    """A LIKE pattern a B-tree can use: a constant not starting with a wildcard (or a parameter)."""
    if not isinstance(node, dict):
        return False
    if "ParamRef" in node:
        return True
    const = node.get("A_Const", {})
    value = (const.get("sval") or {}).get("sval")
    return isinstance(value, str) and bool(value) and value[0] not in "%_"


def resolve(shape: Shape, columns_of: Mapping[TableRef, Sequence[str]]) -> dict[TableRef, list[ColumnUse]]:
    """The uses of each table: qualified columns by alias, bare ones by the one table of the nearest
    scope that has them (as PostgreSQL resolves them)."""
    by_table: dict[TableRef, list[ColumnUse]] = {}
    for use in shape.uses:
        table: TableRef | None = None
        for tables in shape.visible(use.scope):
            if use.qualifier is not None:
                table = tables.get(use.qualifier)
            else:
                owners = list(
                    dict.fromkeys(t for t in tables.values() if use.column in columns_of.get(t, ()))
                )
                if len(owners) > 1:
                    break  # ambiguous: PostgreSQL would refuse it too
                table = owners[0] if owners else None
            if table is not None:
                break
        if table is not None and use.column in columns_of.get(table, ()):
            by_table.setdefault(table, []).append(use)
    return by_table


def candidates(uses: Mapping[TableRef, Sequence[ColumnUse]]) -> list[Candidate]:
    """Index column lists worth trying: each filtered or joined column alone, then the equality
    columns followed by one range or sort column (the order a B-tree serves them in)."""
    found: list[Candidate] = []
    for table, table_uses in uses.items():
        eq = _ordered(u.column for u in table_uses if u.kind == "eq")
        rng = _ordered(u.column for u in table_uses if u.kind == "range")
        join = _ordered(u.column for u in table_uses if u.kind == "join")
        order = _ordered(u.column for u in table_uses if u.kind in ("order", "group"))
        lists: list[tuple[str, ...]] = [(c,) for c in _ordered([*eq, *rng, *join])]
        head = tuple(eq[:MAX_COLUMNS])
        tail = next((c for c in [*rng, *order] if c not in head), None)
        if head and tail and len(head) < MAX_COLUMNS:
            lists.append((*head, tail))
        if len(head) > 1:
            lists.append(head)
        if not lists and order:
            lists.append(tuple(order[:MAX_COLUMNS]))
        found += [Candidate(table, cols) for cols in _ordered(lists)]
    return found


def _ordered(items: Iterator[Any] | Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def quote_ident(name: str) -> str:
    """An identifier as PostgreSQL's quote_ident writes it: bare when it can be."""
    simple = name.isascii() and (name[:1].isalpha() or name[:1] == "_") and name == name.lower()
    simple = simple and all(ch.isalnum() or ch in "_$" for ch in name)
    if simple and name not in RESERVED_KEYWORDS and name not in TYPE_FUNC_NAME_KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'
