"""Every way a statement can call a function, as names. No decisions, no I/O.

PostgreSQL runs functions where no ``FuncCall`` node appears in the parse tree:

* **attribute notation** — ``(x).f``, ``((x).f).g`` and ``t.f`` (``t`` a table
  alias or a composite column) call ``f(x)`` when ``f`` is a function that takes
  one argument of a compatible type. Every field name after the first of a
  ``ColumnRef`` and every field of an ``A_Indirection`` is a possible call (most
  are plain columns: the catalog tells, see :mod:`pgmcp.security.functions`);
* **operators** — ``a || b``, ``OPERATOR(s.||)``, ``x = ANY (...)``, ``IN``,
  ``LIKE`` (``~~``), ``SIMILAR TO`` (``~``), ``BETWEEN`` (``>=`` and ``<=``),
  ``IS DISTINCT FROM`` and ``NULLIF`` (``=``), ``ORDER BY x USING op`` run the
  operator's ``oprcode``;
* **explicit casts** — ``x::t``, ``CAST(x AS t)`` and ``t 'literal'`` run the cast
  function of a cast to ``t``, or ``t``'s input function (only that, for a string
  literal: ``'ok'::mood``); so do the other places a
  value is converted to a named type (``RETURNING t`` of the JSON functions, ``XMLTABLE``
  and ``JSON_TABLE`` columns, column definition lists). Every type name of the
  statement is listed.

:func:`calls_of` lists them from a walked :class:`~pgmcp.security.tree.Tree`,
with names lower-cased and whether each runs now. Implicit operators (the
``<`` of ORDER BY, the ``=`` of GROUP BY, DISTINCT, joins and hashing) and implicit
casts are chosen by the planner from argument types and not listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pgmcp.security.tree import Tree

__all__ = ["Calls", "calls_of", "names_of"]

# Operator names the grammar writes for A_Expr kinds that are not plain operators.
_BETWEEN_OPERATORS: Final = (">=", "<=")
_BETWEEN_WORDS: Final = frozenset({"between", "not between", "between symmetric", "not between symmetric"})


@dataclass(frozen=True, slots=True)
class Calls:
    """The calls of one statement. Each item ends with whether it runs now."""

    functions: tuple[tuple[str, str, int, bool], ...] = ()  # (schema or "", name, nargs, runs)
    attributes: tuple[tuple[str, bool], ...] = ()  # (name, runs)
    operators: tuple[tuple[str, str, bool], ...] = ()  # (schema or "", operator, runs)
    casts: tuple[tuple[str, str, bool, bool], ...] = ()  # (schema or "", target type, literal, runs)


def names_of(items: Any) -> list[str]:
    """The lower-cased ``String`` values of a name list (no ``*``, no subscripts)."""
    names = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                string = item.get("String")
                if isinstance(string, dict):
                    names.append(str(string.get("sval", "")).lower())
    return names


def _split(names: list[str]) -> tuple[str, str]:
    if not names:
        return "", ""
    return (names[-2] if len(names) > 1 else ""), names[-1]


def calls_of(tree: Tree) -> Calls:
    """What the statement of ``tree`` calls, directly or not."""
    functions = []
    for call, runs in tree.funcs:
        schema, name = _split(names_of(call.get("funcname")))
        functions.append((schema, name, len(call.get("args") or ()), runs))
    attributes = [(name, runs) for fields, runs in tree.attrs for name in names_of(fields)]
    operators: list[tuple[str, str, bool]] = []
    for name_list, runs in tree.operators:
        schema, name = _split(names_of(name_list))
        if name in _BETWEEN_WORDS:
            operators.extend(("", op, runs) for op in _BETWEEN_OPERATORS)
        elif name:
            operators.append((schema, name, runs))
    casts = []
    for type_name, runs, literal in tree.casts:
        schema, name = _split(names_of(type_name.get("names")))
        if name:
            casts.append((schema, name, literal, runs))
    return Calls(tuple(functions), tuple(attributes), tuple(operators), tuple(casts))
