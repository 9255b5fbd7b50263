"""The parse tree: one walk over it, and the kinds a statement is. No decisions.

:func:`walk` visits every node of one statement's JSON parse tree (as
:func:`pglast.parser.parse_sql_json` gives it) once, without recursion, and
collects the nested statements, function calls, ``INTO`` clauses, row locks and
relations, each marked with whether it runs now. The rest names kinds
(:func:`kind_of`, :func:`own_kinds`) and tells reads from writes
(:func:`write_label_of`). :mod:`pgmcp.security.always_blocked` and
:mod:`pgmcp.security.policy` decide on what is found here.

Classification
--------------
* Kinds are leading keywords: SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, EXPLAIN,
  SHOW, CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, COPY, COMMENT, VACUUM,
  ANALYZE, REINDEX, CLUSTER, LOCK, REFRESH, ... ``VALUES (...)`` and ``TABLE t``
  are SELECT (they are SELECTs in PostgreSQL's grammar, and the default
  ALLOWED_OPERATIONS has no VALUES).
* A statement starting with WITH has kinds {WITH, its main kind} plus the kind
  of every data-modifying CTE: ``WITH x AS (DELETE ... RETURNING *) SELECT * FROM x``
  is {WITH, SELECT, DELETE}, not read.
* ``SELECT ... INTO t`` is {SELECT, CREATE}; ``CREATE TABLE AS`` is {CREATE};
  neither is read.
* ``SELECT ... FOR UPDATE/SHARE`` is kind SELECT but *not read*: it takes row
  locks, which a READ ONLY transaction refuses anyway. ``nextval()``/``setval()``
  in an executed part of the statement also make it not read.
* ``EXPLAIN X`` (no ANALYZE) is {EXPLAIN} and read whatever X is, since X is not
  run; X's kinds and keywords still meet BLOCKED_KEYWORDS. ``EXPLAIN ANALYZE X``
  runs X: its kinds are {EXPLAIN} + X's kinds, so X must be allowed, and it is a
  write when X is (:attr:`~pgmcp.security.Decision.analyze_target_is_write`).
* ``COPY`` would be kind COPY plus the kinds of its query, never read; but every
  COPY is refused (:mod:`pgmcp.security.always_blocked`).
"""

from __future__ import annotations

from typing import Any, Final

# --- classification tables --------------------------------------------------------

_KIND_BY_NODE: Final[dict[str, str]] = {
    "SelectStmt": "SELECT",
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
    "ExplainStmt": "EXPLAIN",
    "VariableShowStmt": "SHOW",
    "ConstraintsSetStmt": "SET",
    "CopyStmt": "COPY",
    "TruncateStmt": "TRUNCATE",
    "CommentStmt": "COMMENT",
    "SecLabelStmt": "SECURITY",
    "ReindexStmt": "REINDEX",
    "ClusterStmt": "CLUSTER",
    "LockStmt": "LOCK",
    "RefreshMatViewStmt": "REFRESH",
    "CallStmt": "CALL",
    "DoStmt": "DO",
    "PrepareStmt": "PREPARE",
    "ExecuteStmt": "EXECUTE",
    "DeallocateStmt": "DEALLOCATE",
    "DeclareCursorStmt": "DECLARE",
    "ClosePortalStmt": "CLOSE",
    "ListenStmt": "LISTEN",
    "UnlistenStmt": "UNLISTEN",
    "NotifyStmt": "NOTIFY",
    "LoadStmt": "LOAD",
    "DiscardStmt": "DISCARD",
    "CheckPointStmt": "CHECKPOINT",
    "ReassignOwnedStmt": "REASSIGN",
    "ImportForeignSchemaStmt": "IMPORT",
    "IndexStmt": "CREATE",
    "ViewStmt": "CREATE",
    "RuleStmt": "CREATE",
    "DefineStmt": "CREATE",
    "CompositeTypeStmt": "CREATE",
    "CreatedbStmt": "CREATE",
    "DropdbStmt": "DROP",
    "RenameStmt": "ALTER",
    "ReplicaIdentityStmt": "ALTER",
    "ReturnStmt": "RETURN",
    "PLAssignStmt": "SET",
}
_TRANSACTION_KINDS: Final[dict[str, str]] = {
    "TRANS_STMT_BEGIN": "BEGIN",
    "TRANS_STMT_START": "START",
    "TRANS_STMT_COMMIT": "COMMIT",
    "TRANS_STMT_ROLLBACK": "ROLLBACK",
    "TRANS_STMT_SAVEPOINT": "SAVEPOINT",
    "TRANS_STMT_RELEASE": "RELEASE",
    "TRANS_STMT_ROLLBACK_TO": "ROLLBACK",
    "TRANS_STMT_PREPARE": "PREPARE",
    "TRANS_STMT_COMMIT_PREPARED": "COMMIT",
    "TRANS_STMT_ROLLBACK_PREPARED": "ROLLBACK",
}
_READ_NODES: Final = frozenset({"SelectStmt", "VariableShowStmt", "ExplainStmt"})
_LOCK_LABELS: Final[dict[str, str]] = {
    "LCS_FORUPDATE": "FOR UPDATE",
    "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE",
    "LCS_FORSHARE": "FOR SHARE",
    "LCS_FORKEYSHARE": "FOR KEY SHARE",
}
# Functions that write even in a SELECT; READ ONLY refuses them, the policy says why first.
_WRITING_FUNCTIONS: Final = frozenset({"nextval", "setval"})
_FALSE_WORDS: Final = frozenset({"false", "off", "0"})


def _statement_node_names() -> frozenset[str]:
    import pglast.ast

    return frozenset(name for name in dir(pglast.ast) if name.endswith("Stmt")) | frozenset(_KIND_BY_NODE)


# Walker dispatch: what a key of the JSON tree means.
(
    _K_FUNC, _K_STMT, _K_DEFN, _K_EXPLAIN, _K_LOCK, _K_INTO, _K_OBJNAME, _K_SKIP, _K_RANGEVAR, _K_NAMES,
    _K_COLREF, _K_INDIRECTION, _K_OPERATOR, _K_CAST, _K_OPERNAME, _K_TYPECAST,
) = range(16)  # fmt: skip
# Statements whose nested statements are definitions that do not run now.
_DEFINITION_NODES: Final = frozenset(
    {
        "RuleStmt",
        "ViewStmt",
        "CreateFunctionStmt",
        "PrepareStmt",
        "DeclareCursorStmt",
        "CreateTrigStmt",
        "AlterFunctionStmt",
        "AlterRoleSetStmt",
        "AlterDatabaseSetStmt",
    }
)
_DISPATCH: Final[dict[str, int]] = {
    **dict.fromkeys(_statement_node_names(), _K_STMT),
    **dict.fromkeys(_DEFINITION_NODES, _K_DEFN),
    "ExplainStmt": _K_EXPLAIN,
    "FuncCall": _K_FUNC,
    "lockingClause": _K_LOCK,
    "intoClause": _K_INTO,
    "objname": _K_OBJNAME,
    "RangeVar": _K_RANGEVAR,
    # Calls without a FuncCall node (see pgmcp.security.calls): attribute notation, operators, casts.
    "ColumnRef": _K_COLREF,
    "A_Indirection": _K_INDIRECTION,
    "A_Expr": _K_OPERATOR,
    "operName": _K_OPERNAME,
    "useOp": _K_OPERNAME,  # ORDER BY x USING op
    # Leaves with no expression inside, not worth a visit: constants, column
    # references, name lists (function, operator, type names), aliases, and type
    # names (PostgreSQL refuses type modifiers that are not constants).
    "A_Const": _K_SKIP,
    "String": _K_SKIP,
    "Integer": _K_SKIP,
    "Float": _K_SKIP,
    "Boolean": _K_SKIP,
    "funcname": _K_NAMES,  # lists of names (a dict under these keys is still visited:
    "name": _K_NAMES,  # CreateOpClassItem.name is a function reference)
    "names": _K_NAMES,
    "alias": _K_SKIP,
    # A type named in an expression converts a value to it (CAST, ::, RETURNING, XMLTABLE and
    # JSON_TABLE columns): judged like an explicit cast. Not descended into (modifiers are constants).
    "typeName": _K_CAST,
    "TypeName": _K_CAST,
    "TypeCast": _K_TYPECAST,
}


def kind_of(node: str, body: dict[str, Any]) -> str:
    """The kind of one statement node (its leading keyword): ``"SELECT"``, ``"CREATE"``, ``"COMMIT"``, ..."""
    kind = _KIND_BY_NODE.get(node)
    if kind is not None:
        return kind
    if node == "TransactionStmt":
        return _TRANSACTION_KINDS.get(body.get("kind", ""), "BEGIN")
    if node == "VariableSetStmt":
        return "RESET" if str(body.get("kind", "")).startswith("VAR_RESET") else "SET"
    if node == "FetchStmt":
        return "MOVE" if body.get("ismove") else "FETCH"
    if node == "VacuumStmt":
        return "VACUUM" if body.get("is_vacuumcmd") else "ANALYZE"
    if node in ("GrantStmt", "GrantRoleStmt"):
        return "GRANT" if body.get("is_grant") else "REVOKE"
    for prefix, kind in (("Create", "CREATE"), ("Alter", "ALTER"), ("Drop", "DROP")):
        if node.startswith(prefix):
            return kind
    # Unknown to this table: its own name, which no sane ALLOWED_OPERATIONS lists.
    return node.removesuffix("Stmt").upper()


def last_name(items: Any) -> str:
    """Lower-cased last part of a qualified name list (``[{"String": {"sval": ...}}, ...]``)."""
    if isinstance(items, list) and items:
        last = items[-1]
        if isinstance(last, dict):
            string = last.get("String")
            if isinstance(string, dict):
                return str(string.get("sval", "")).lower()
    return ""


def explain_analyzes(body: dict[str, Any]) -> bool:
    """Whether EXPLAIN runs its statement: any ANALYZE option not explicitly false."""
    for option in body.get("options") or ():
        elem = option.get("DefElem") if isinstance(option, dict) else None
        if isinstance(elem, dict) and elem.get("defname") == "analyze" and _option_is_true(elem.get("arg")):
            return True
    return False


def _option_is_true(arg: Any) -> bool:
    if arg is None:  # EXPLAIN ANALYZE / EXPLAIN (ANALYZE)
        return True
    if isinstance(arg, dict):
        if "String" in arg:
            return str(arg["String"].get("sval", "")).lower() not in _FALSE_WORDS
        if "Integer" in arg:
            return bool(arg["Integer"].get("ival", 0))
        if "Boolean" in arg:
            return bool(arg["Boolean"].get("boolval", False))
    return True  # anything unexpected: assume it runs


class Tree:
    """What one walk of a parse tree found."""

    __slots__ = ("attrs", "casts", "funcs", "func_refs", "intos", "locks", "operators", "relations", "stmts")

    def __init__(self) -> None:
        self.stmts: list[tuple[str, dict[str, Any], bool]] = []  # (node type, body, runs now)
        self.funcs: list[tuple[dict[str, Any], bool]] = []
        self.func_refs: list[str] = []
        self.intos: list[tuple[dict[str, Any], bool]] = []
        self.locks: list[Any] = []
        self.relations: list[dict[str, Any]] = []
        # Calls without a FuncCall node, each with whether it runs now:
        self.attrs: list[
            tuple[list[Any], bool]
        ] = []  # field names after the first (ColumnRef, A_Indirection)
        self.operators: list[tuple[list[Any], bool]] = []  # operator name lists (A_Expr, SubLink)
        # TypeName a value is converted to, and whether that value is a string literal (or NULL):
        # 'ok'::mood runs only mood's input function, no cast function.
        self.casts: list[tuple[dict[str, Any], bool, bool]] = []


def walk(root: dict[str, Any]) -> Tree:
    """Collect statements, function calls, relations ... of a parsed statement.

    Visits every dict of the tree (iteratively: no recursion limit). ``runs`` is
    false below definitions that do not run now (view and rule bodies, function
    bodies, the target of EXPLAIN without ANALYZE); such subtrees are set aside
    and walked after, so the hot loop carries no flag.
    """
    tree = Tree()
    stmts, funcs, relations = tree.stmts, tree.funcs, tree.relations
    subtrees: list[tuple[dict[str, Any], bool]] = [(root, True)]
    dispatch = _DISPATCH.get
    while subtrees:
        top, runs = subtrees.pop()
        stack = [top]
        pop, push = stack.pop, stack.append
        while stack:
            node = pop()
            if "relname" in node:  # a RangeVar, inline (wrapped ones are caught below)
                relations.append(node)
            for key, value in node.items():
                kind_of_value = type(value)  # (a variable: keeps `value` typed Any for the handlers)
                if kind_of_value is dict:
                    code = dispatch(key)
                    if code is None:
                        push(value)
                    elif code == _K_SKIP:
                        continue
                    elif code == _K_FUNC:
                        funcs.append((value, runs))
                        push(value)
                    elif code == _K_STMT:
                        stmts.append((key, value, runs))
                        push(value)
                    elif code == _K_RANGEVAR:
                        relations.append(value)  # its alias holds names only
                    elif code == _K_COLREF:
                        fields = value.get("fields")
                        if fields and len(fields) > 1:
                            tree.attrs.append((fields[1:], runs))
                    elif code == _K_INDIRECTION:
                        tree.attrs.append((value.get("indirection") or [], runs))
                        push(value)
                    elif code == _K_OPERATOR:
                        tree.operators.append((value.get("name") or [], runs))
                        push(value)
                    elif code == _K_CAST:
                        tree.casts.append((value, runs, False))
                    elif code == _K_TYPECAST:
                        arg, type_name = value.get("arg"), value.get("typeName")
                        constant = arg.get("A_Const") if isinstance(arg, dict) else None
                        if (
                            isinstance(type_name, dict)
                            and isinstance(constant, dict)
                            and ("sval" in constant or constant.get("isnull"))
                        ):
                            tree.casts.append((type_name, runs, True))
                        else:
                            push(value)
                    elif code == _K_DEFN:
                        stmts.append((key, value, runs))
                        subtrees.append((value, False))
                    elif code == _K_EXPLAIN:
                        stmts.append((key, value, runs))
                        query = value.get("query")
                        if isinstance(query, dict):
                            subtrees.append((query, runs and explain_analyzes(value)))
                    elif code == _K_INTO:
                        tree.intos.append((value, runs))
                        push(value)
                    else:
                        push(value)
                elif kind_of_value is list:
                    code = dispatch(key)
                    if code is not None:
                        if code in (_K_SKIP, _K_NAMES):
                            continue
                        if code == _K_OPERNAME:  # x op ANY (subquery): the operator is a call
                            tree.operators.append((value, runs))
                            continue
                        if code == _K_OBJNAME:  # a function, aggregate or operator named by a statement
                            tree.func_refs.append(last_name(value))
                            continue
                        if code == _K_LOCK and runs:
                            tree.locks.extend(value)
                    for item in value:
                        if type(item) is dict:
                            push(item)
                        elif type(item) is list:
                            push({"": item})
    return tree


def own_kinds(node: str, body: dict[str, Any]) -> list[str]:
    """The kinds a statement is by its own leading keywords (WITH, then its kind, then INTO's CREATE)."""
    kinds = ["WITH", kind_of(node, body)] if "withClause" in body else [kind_of(node, body)]
    if node == "SelectStmt" and "intoClause" in body:
        kinds.append("CREATE")
    return kinds


def inner_statement(node: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The statement an EXPLAIN or a COPY carries in ``query``, as (node type, body), if any."""
    query = body.get("query")
    if isinstance(query, dict) and len(query) == 1:
        ((inner_node, inner_body),) = query.items()
        if isinstance(inner_body, dict):
            return inner_node, inner_body
    return None


def write_label_of(top_node: str, top_body: dict[str, Any], tree: Tree) -> str | None:
    """What makes the statement a write (for messages), or None when it is a read."""
    if top_node not in _READ_NODES:
        return kind_of(top_node, top_body)
    for node, body, runs in tree.stmts:
        if runs and node not in _READ_NODES:
            return kind_of(node, body)
    for _, runs in tree.intos:
        if runs:
            return "SELECT INTO"
    for lock in tree.locks:
        strength = lock.get("LockingClause", {}).get("strength", "") if isinstance(lock, dict) else ""
        return f"SELECT ... {_LOCK_LABELS.get(strength, 'FOR UPDATE')}"
    for call, runs in tree.funcs:
        if runs:
            name = last_name(call.get("funcname"))
            if name in _WRITING_FUNCTIONS:
                return f"{name}()"
    return None


def is_select_star_without_limit(body: dict[str, Any]) -> bool:
    """Whether a SELECT (or a branch of its UNION ...) selects ``*`` with no LIMIT (REQUIRE_LIMIT_FOR_SELECT_STAR)."""
    limit = body.get("limitCount")
    if isinstance(limit, dict) and not limit.get("A_Const", {}).get("isnull", False):
        return False  # LIMIT n / FETCH FIRST n (LIMIT ALL is no limit)
    return _has_star(body)


def _has_star(body: dict[str, Any]) -> bool:
    for target in body.get("targetList") or ():
        val = target.get("ResTarget", {}).get("val", {}) if isinstance(target, dict) else {}
        fields = val.get("ColumnRef", {}).get("fields", []) if isinstance(val, dict) else []
        if fields and isinstance(fields[-1], dict) and "A_Star" in fields[-1]:
            return True
    # UNION and friends: the branches carry the target lists.
    return any(isinstance(body.get(side), dict) and _has_star(body[side]) for side in ("larg", "rarg"))
