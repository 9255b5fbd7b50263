"""The query policy: parse with PostgreSQL's own grammar, classify, decide. No I/O.

Every statement a tool is about to send is first given to :meth:`Policy.check`.
It is parsed by libpg_query (through :mod:`pglast`) and refused with a
:class:`~pgmcp.errors.QueryBlocked` (whose ``reason`` is a metric label) or
allowed with a :class:`Decision` that says what kind of statement it is and
whether it can change data. No decision comes from regular expressions or
substring search on the text: only the parse tree and the scanner's tokens
decide (one byte search merely skips running the scanner when no blocked word
can be a token, see ``_could_be_keyword``).

Checks run in this order, so that messages are predictable (SPEC §4):

1. **Length** — longer than ``MAX_QUERY_LENGTH`` characters: :class:`LimitExceeded`,
   before any parsing. A NUL character or a lone surrogate is :class:`InvalidInput`
   (libpg_query would silently stop reading at a NUL).
2. **Parse** — a syntax error is :class:`DatabaseError` with PostgreSQL's own
   message (``syntax error at or near "SELEC"``) and SQLSTATE ``42601``. A
   statement nested more than ~1000 levels deep cannot be checked and is refused
   (``too_complex``).
3. **Exactly one statement** — ``empty`` / ``multi_statement``. ``SELECT 1;;``
   is one statement; ``SELECT 1; COMMIT; DROP TABLE t`` is three and is refused
   before anything else is looked at (the classic way to end a READ ONLY wrapper).
4. **Always blocked** (``always_blocked``), whatever the lists say — see below.
5. **BLOCKED_KEYWORDS** (``blocked_keyword``) — the statement, or any statement
   nested in it (CTE, EXPLAIN target, rule action, ...), is of a listed kind, or
   a listed word is an SQL *keyword token* of the scanner. A word inside a string
   literal, a quoted identifier or a comment is not a keyword token: ``SELECT 'DROP'``,
   ``SELECT "drop" FROM t`` and a column ``drop_log`` pass. An unquoted column
   literally named ``drop`` *is* the keyword token DROP (quote it to use it).
6. **Read-only** — ``READONLY_MODE`` or ``check(readonly=True)`` (a read-only
   connection) admit only read statements (``readonly``); ``check(require_read=True)``
   (``execute_query``) refuses a write and names the tool to use instead
   (``read_only_tool``).
7. **ALLOWED_OPERATIONS** (``operation_not_allowed``) — every kind in
   :attr:`Decision.kinds` must be listed.
8. **Rules** — ``SENSITIVE_TABLES`` (warn or block, ``sensitive_table``),
   ``REQUIRE_LIMIT_FOR_SELECT_STAR`` (``select_star_without_limit``), then custom
   rules added with :meth:`Policy.add_rule` (``custom_rule``).

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
  write when X is (:attr:`Decision.analyze_target_is_write`).
* ``COPY`` would be kind COPY plus the kinds of its query, never read; but every
  COPY is refused (below).

Always blocked, and why
-----------------------
Statements (when they are the statement, or run as part of it):

* transaction control — BEGIN/START, COMMIT/END, ROLLBACK/ABORT, SAVEPOINT,
  RELEASE, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED: the server owns the
  transaction (READ ONLY, timeout); a COMMIT would end its READ ONLY wrapper.
* ``DO`` (an anonymous code block can do anything a function can, unseen) and
  ``CALL`` (a procedure may COMMIT or ROLLBACK the server's transaction).
* ``SET`` / ``RESET`` / ``SET LOCAL`` / ``SET TRANSACTION`` / ``SET ROLE`` /
  ``SET SESSION AUTHORIZATION``: the server owns session settings —
  ``statement_timeout``, and ``SET TRANSACTION READ WRITE`` right after the
  server's ``BEGIN READ ONLY`` would undo it. (``SET CONSTRAINTS`` is
  transaction-scoped and only classified, kind SET.)
* ``PREPARE`` / ``EXECUTE`` / ``DEALLOCATE``, ``DECLARE`` / ``FETCH`` / ``MOVE`` /
  ``CLOSE``, ``LISTEN`` / ``UNLISTEN`` / ``NOTIFY``, ``DISCARD``: session state
  that outlives the call on a pooled connection (or hides the statement that
  really runs, for EXECUTE — refused even under a plain EXPLAIN), and messages
  to other sessions.
* ``LOAD`` (loads a shared library into the server), ``CHECKPOINT``, ``ALTER SYSTEM``
  (rewrites postgresql.auto.conf).
* ``CREATE/ALTER EXTENSION`` (runs extension scripts, installs e.g. adminpack,
  dblink, file_fdw), ``CREATE LANGUAGE``, ``CREATE FUNCTION/PROCEDURE`` in a
  language outside sql, plpgsql, plperl, pltcl, pllua, plv8, plrust, java (C and
  untrusted languages run arbitrary code on the server host).
* ``CREATE/ALTER SUBSCRIPTION``, ``CREATE/ALTER SERVER``, ``FOREIGN DATA WRAPPER``,
  ``USER MAPPING``, ``IMPORT FOREIGN SCHEMA``, ``CREATE/ALTER FOREIGN TABLE``:
  they reach other servers or server files. ``CREATE TABLESPACE`` (a server directory).
* ``COPY ... TO/FROM 'file'`` and ``COPY ... PROGRAM`` (server files, shell
  commands), and every other COPY too: ``TO STDOUT`` / ``FROM STDIN`` need the
  COPY sub-protocol, which no tool speaks — sent as a statement it leaves the
  pooled connection waiting for COPY data until a timeout. SELECT and INSERT
  (``batch_execute``) do the same work.
* Temporary tables, views and sequences (``CREATE TEMP ...``, ``SELECT INTO TEMP``,
  objects in ``pg_temp``) unless ``ON COMMIT DROP``: they outlive the call on a
  pooled connection and shadow real tables of the same name for the next caller.
* ``INSERT/UPDATE/DELETE/MERGE`` on ``pg_settings``: its rule calls ``set_config``
  at session level.

Functions, wherever they appear — select list, WHERE, FROM, ``ROWS FROM``,
LATERAL, nested arguments, defaults, index expressions, view and rule bodies,
SQL-language function bodies, ``EXPLAIN`` targets — and wherever a statement
names them (``GRANT EXECUTE ON FUNCTION``, ``CREATE CAST ... WITH FUNCTION``,
``CREATE AGGREGATE (SFUNC = ...)``, ``CREATE OPERATOR (FUNCTION = ...)``).
Names compare case-insensitively on their last part, so ``pg_catalog.pg_read_file``,
``"pg_read_file"`` and ``U&"pg\\005fread_file"`` are all caught:

* files and the server host: ``pg_read_file``, ``pg_read_binary_file``, ``pg_stat_file``,
  ``pg_ls_*``, ``lo_import``, ``lo_export``, adminpack's ``pg_file_*`` and
  ``pg_logdir_ls``;
* other servers: ``dblink*``;
* other sessions and the cluster: ``pg_terminate_backend``, ``pg_cancel_backend``,
  ``pg_reload_conf``, ``pg_rotate_logfile*``, ``pg_stat_reset*``,
  ``pg_stat_statements_reset``, ``pg_switch_wal``, ``pg_create_restore_point``,
  ``pg_backup_start/stop`` (and the old ``pg_start/stop_backup``), ``pg_promote``,
  ``pg_wal_replay_*``, replication slots (``pg_*replication_slot*``,
  ``pg_logical_slot_*``), ``pg_replication_origin_*``, ``pg_logical_emit_message``,
  ``pg_import_system_collations``, ``pg_log_backend_memory_contexts``,
  ``pg_log_standby_snapshot``, the ``pg_set/restore/clear_*_stats`` family, ``pg_notify``;
* session state READ ONLY does not stop: ``set_config`` (the server owns
  settings), advisory locks (``pg_advisory_*``, ``pg_try_advisory_*``), large
  objects (``lo_create``, ``lo_creat``, ``lo_unlink``, ``lo_from_bytea``, ``lo_put``,
  ``lo_truncate*``, ``lo_open``, ``lo_close``, ``lo_lseek*``, ``lo_tell*``, ``loread``,
  ``lowrite``; ``lo_get`` is a plain read and passes);
* functions that run SQL text this parser never sees: ``query_to_xml``,
  ``query_to_xml_and_xmlschema``, ``query_to_xmlschema``, ``cursor_to_xml``,
  ``cursor_to_xmlschema``, ``ts_stat``, and the two-argument ``ts_rewrite``.

``pg_sleep``, ``txid_current``/``pg_current_xact_id``, ``table_to_xml`` and the
``pg_stat_get_*``/``pg_get_*`` readers are allowed.

What this layer cannot see
--------------------------
* The body of a user-defined function, procedure, trigger or operator in a
  procedural language (plpgsql ``EXECUTE`` of a built string in particular):
  what it does is the database's business — privileges, and the READ ONLY
  transaction the server runs reads in. CREATE is not allowed by any of the
  handbook's profiles, which is what closes "define a function, then call it".
* Objects reached through names in strings (``'users'::regclass``,
  ``table_to_xml('users', ...)``): :attr:`Decision.tables` lists only relations
  the grammar names, and scopes are not resolved (a CTE named like a table counts).
* The parser assumes ``standard_conforming_strings = on`` (PostgreSQL's default).
  With it off, ``SELECT 'a\\' , ' , pg_ls_dir($$.$$) --'`` is two string literals
  here and a call of ``pg_ls_dir`` for the server: the database layer must
  connect with ``standard_conforming_strings=on`` in the startup packet
  (``server_settings``), which neither ``ALTER ROLE/DATABASE ... SET`` nor
  ``RESET ALL`` undo, and callers cannot change (SET, ``set_config`` and writes
  to ``pg_settings`` are refused here).
* The grammar is PostgreSQL 18's; something may parse here and be refused by an
  older server: that is the server's ``database_error``.

Layers, and what each guarantees
--------------------------------
1. **This module** (before anything reaches the database): one statement; no
   transaction control, session state, server files, programs, other servers
   or other sessions, as listed above; kinds and keywords as configured; reads
   told from writes — ``is_read`` means the statement itself changes nothing,
   apart from what user-defined function bodies do.
2. **The READ ONLY transaction** every read runs in (the database layer): stops
   writes from anywhere, including function bodies this module cannot see — but
   not what READ ONLY lets through (``set_config``, advisory locks,
   ``pg_terminate_backend``, dblink ...), which is why layer 1 blocks those.
3. **statement_timeout and the row cap** (the database layer): bound the time
   and memory any statement, allowed or not, can take.
4. **Privileges** of the database role: the last word on everything.

``tests/integration/test_policy_readonly_property.py`` checks layers 1 and 2
together and layer 1 alone on a real PostgreSQL.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import orjson
from pglast import parser as _pg

from pgmcp.errors import DatabaseError, InvalidInput, LimitExceeded, PgMcpError, QueryBlocked

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
    case, last name part); ``warnings`` the risks of warn-level rules.
    """

    query_type: str
    kinds: frozenset[str]
    is_read: bool
    analyze_target_is_write: bool = False
    tables: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Risk:
    """What a rule found: a warning, or (``block=True``) a refusal with this message."""

    message: str
    block: bool = False


Rule = Callable[[str, Decision], Iterable[Risk | str]]
"""A custom rule: ``rule(query, decision)`` yields :class:`Risk` (a plain string is a warning)."""


# --- what is always blocked -------------------------------------------------------

_BLOCKED_FUNCTIONS: Final = frozenset(
    {
        # files and the server host
        "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_logdir_ls",
        "lo_import", "lo_export",
        # other sessions, the cluster, replication
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
        "pg_rotate_logfile", "pg_rotate_logfile_old", "pg_stat_statements_reset",
        "pg_switch_wal", "pg_switch_xlog", "pg_create_restore_point",
        "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup",
        "pg_promote", "pg_logical_emit_message", "pg_import_system_collations",
        "pg_log_backend_memory_contexts", "pg_log_standby_snapshot", "pg_notify",
        "pg_set_relation_stats", "pg_set_attribute_stats", "pg_clear_relation_stats",
        "pg_clear_attribute_stats", "pg_restore_relation_stats", "pg_restore_attribute_stats",
        # session state that READ ONLY does not stop
        "set_config",
        "lo_create", "lo_creat", "lo_unlink", "lo_from_bytea", "lo_put", "lo_truncate",
        "lo_truncate64", "lo_open", "lo_close", "lo_lseek", "lo_lseek64", "lo_tell",
        "lo_tell64", "loread", "lowrite",
        # run SQL text the parser never sees
        "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema",
        "cursor_to_xml", "cursor_to_xmlschema", "ts_stat",
    }
)  # fmt: skip
_BLOCKED_FUNCTION_PREFIXES: Final = (
    "pg_ls_",
    "pg_file_",
    "dblink",
    "pg_stat_reset",
    "pg_advisory_",
    "pg_try_advisory_",
    "pg_replication_origin_",
    "pg_wal_replay_",
)
# Functions that write even in a SELECT; READ ONLY refuses them, the policy says why first.
_WRITING_FUNCTIONS: Final = frozenset({"nextval", "setval"})
_TRUSTED_LANGUAGES: Final = frozenset(
    {"sql", "plpgsql", "plperl", "pltcl", "pllua", "plv8", "plrust", "java"}
)

# Statement node types refused wherever they run, with the why shown to the caller.
_ALWAYS_BLOCKED_STATEMENTS: Final[dict[str, str]] = {
    "DoStmt": "anonymous code blocks run code the policy cannot see",
    "CallStmt": "a procedure may commit or roll back the server's transaction",
    "VariableSetStmt": "the server owns session settings such as statement_timeout",
    "PrepareStmt": "prepared statements outlive the call on a pooled connection",
    "ExecuteStmt": "prepared statements outlive the call on a pooled connection",
    "DeallocateStmt": "prepared statements outlive the call on a pooled connection",
    "DeclareCursorStmt": "cursors outlive the call; the server pages results itself",
    "FetchStmt": "cursors outlive the call; the server pages results itself",
    "ClosePortalStmt": "cursors outlive the call; the server pages results itself",
    "ListenStmt": "notifications are session state on a pooled connection",
    "UnlistenStmt": "notifications are session state on a pooled connection",
    "NotifyStmt": "notifications reach other sessions",
    "DiscardStmt": "the server owns session state",
    "LoadStmt": "it loads a shared library into the server",
    "CheckPointStmt": "it is a server administration command",
    "AlterSystemStmt": "it rewrites the server's configuration",
    "CreateExtensionStmt": "extension scripts install code, e.g. file and network access",
    "AlterExtensionStmt": "extension scripts install code, e.g. file and network access",
    "AlterExtensionContentsStmt": "extension scripts install code, e.g. file and network access",
    "CreatePLangStmt": "procedural languages run code on the server host",
    "CreateSubscriptionStmt": "it connects to another server",
    "AlterSubscriptionStmt": "it connects to another server",
    "CreateForeignServerStmt": "foreign data reaches other servers and server files",
    "AlterForeignServerStmt": "foreign data reaches other servers and server files",
    "CreateFdwStmt": "foreign data reaches other servers and server files",
    "AlterFdwStmt": "foreign data reaches other servers and server files",
    "CreateUserMappingStmt": "foreign data reaches other servers and server files",
    "AlterUserMappingStmt": "foreign data reaches other servers and server files",
    "ImportForeignSchemaStmt": "foreign data reaches other servers and server files",
    "CreateForeignTableStmt": "foreign data reaches other servers and server files",
    "CreateTableSpaceStmt": "it writes to a server directory",
}

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
_DML_NODES: Final = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_READ_NODES: Final = frozenset({"SelectStmt", "VariableShowStmt", "ExplainStmt"})
_LOCK_LABELS: Final[dict[str, str]] = {
    "LCS_FORUPDATE": "FOR UPDATE",
    "LCS_FORNOKEYUPDATE": "FOR NO KEY UPDATE",
    "LCS_FORSHARE": "FOR SHARE",
    "LCS_FORKEYSHARE": "FOR KEY SHARE",
}
_FALSE_WORDS: Final = frozenset({"false", "off", "0"})


def _statement_node_names() -> frozenset[str]:
    import pglast.ast

    return frozenset(name for name in dir(pglast.ast) if name.endswith("Stmt")) | frozenset(_KIND_BY_NODE)


# Walker dispatch: what a key of the JSON tree means.
_K_FUNC, _K_STMT, _K_DEFN, _K_EXPLAIN, _K_LOCK, _K_INTO, _K_OBJNAME, _K_SKIP, _K_RANGEVAR, _K_NAMES = range(
    10
)
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
    # Leaves with no expression inside, not worth a visit: constants, column
    # references, name lists (function, operator, type names), aliases, and type
    # names (PostgreSQL refuses type modifiers that are not constants).
    "A_Const": _K_SKIP,
    "ColumnRef": _K_SKIP,
    "String": _K_SKIP,
    "Integer": _K_SKIP,
    "Float": _K_SKIP,
    "Boolean": _K_SKIP,
    "funcname": _K_NAMES,  # lists of names (a dict under these keys is still visited:
    "name": _K_NAMES,  # CreateOpClassItem.name is a function reference)
    "names": _K_NAMES,
    "alias": _K_SKIP,
    "typeName": _K_SKIP,
    "TypeName": _K_SKIP,
}


def _kind(node: str, body: dict[str, Any]) -> str:
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


def _last_name(items: Any) -> str:
    """Lower-cased last part of a qualified name list (``[{"String": {"sval": ...}}, ...]``)."""
    if isinstance(items, list) and items:
        last = items[-1]
        if isinstance(last, dict):
            string = last.get("String")
            if isinstance(string, dict):
                return str(string.get("sval", "")).lower()
    return ""


def _function_is_blocked(name: str, nargs: int) -> bool:
    if name in _BLOCKED_FUNCTIONS or name.startswith(_BLOCKED_FUNCTION_PREFIXES):
        return True
    if name == "ts_rewrite":
        return nargs == 2  # ts_rewrite(query, 'SELECT ...') runs the SQL text
    return (
        name.startswith("pg_")
        and ("replication_slot" in name or "logical_slot" in name)
        and not name.startswith(("pg_get_", "pg_stat_get_"))
    )


def _explain_analyzes(body: dict[str, Any]) -> bool:
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


class _Tree:
    """What one walk of a parse tree found."""

    __slots__ = ("funcs", "func_refs", "intos", "locks", "relations", "stmts")

    def __init__(self) -> None:
        self.stmts: list[tuple[str, dict[str, Any], bool]] = []  # (node type, body, runs now)
        self.funcs: list[tuple[dict[str, Any], bool]] = []
        self.func_refs: list[str] = []
        self.intos: list[tuple[dict[str, Any], bool]] = []
        self.locks: list[Any] = []
        self.relations: list[dict[str, Any]] = []


def _walk(root: dict[str, Any]) -> _Tree:
    """Collect statements, function calls, relations ... of a parsed statement.

    Visits every dict of the tree (iteratively: no recursion limit). ``runs`` is
    false below definitions that do not run now (view and rule bodies, function
    bodies, the target of EXPLAIN without ANALYZE); such subtrees are set aside
    and walked after, so the hot loop carries no flag.
    """
    tree = _Tree()
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
                    elif code == _K_DEFN:
                        stmts.append((key, value, runs))
                        subtrees.append((value, False))
                    elif code == _K_EXPLAIN:
                        stmts.append((key, value, runs))
                        query = value.get("query")
                        if isinstance(query, dict):
                            subtrees.append((query, runs and _explain_analyzes(value)))
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
                        if code == _K_OBJNAME:  # a function, aggregate or operator named by a statement
                            tree.func_refs.append(_last_name(value))
                            continue
                        if code == _K_LOCK and runs:
                            tree.locks.extend(value)
                    for item in value:
                        if type(item) is dict:
                            push(item)
                        elif type(item) is list:
                            push({"": item})
    return tree


# --- the policy ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A cached refusal; a fresh exception is built from it on every hit."""

    kind: type[PgMcpError]
    message: str
    reason: str = ""
    sqlstate: str | None = None

    def error(self) -> PgMcpError:
        if self.kind is QueryBlocked:
            return QueryBlocked(self.message, reason=self.reason)
        if self.kind is DatabaseError:
            return DatabaseError(self.message, sqlstate=self.sqlstate)
        return self.kind(self.message)


def _blocked(message: str, reason: str) -> _Refusal:
    return _Refusal(QueryBlocked, message, reason)


@dataclass(slots=True)
class _Analysis:
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


_CACHE_ENTRIES: Final = 4096
_CACHE_CHARS: Final = 4_000_000  # total query text held by the cache


class Policy:
    """The server-wide query policy (see the module docstring). Build it once; it is cheap to call.

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
        self._rules: list[Rule] = []
        self._cache: OrderedDict[tuple[str, bool, bool, str], Decision | _Refusal] = OrderedDict()
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
    ) -> Decision:
        """Decide about one statement.

        ``readonly=True``: this call must be read-only (a read-only connection;
        READONLY_MODE implies it). ``require_read=True``: the calling tool
        (``execute_query``) only runs reads, and a write is refused with a
        message naming ``read_tool_hint``.

        Raises :class:`LimitExceeded` (too long), :class:`InvalidInput` (NUL or
        invalid text), :class:`DatabaseError` (syntax error, SQLSTATE 42601) or
        :class:`QueryBlocked` (with ``reason``).
        """
        if len(query) > self._max_query_length:
            raise LimitExceeded(
                f"Query too long: {len(query)} characters (MAX_QUERY_LENGTH is {self._max_query_length})"
            )
        key = (query, readonly, require_read, read_tool_hint)
        cache = self._cache
        hit = cache.get(key)
        if hit is not None:
            try:  # noqa: SIM105 (cheaper than contextlib.suppress on this hot path)
                cache.move_to_end(key)
            except KeyError:  # evicted meanwhile by another thread: the hit stands
                pass
            if isinstance(hit, _Refusal):
                raise hit.error()
            return hit
        try:
            outcome: Decision | _Refusal = self._decide(query, readonly, require_read, read_tool_hint)
        except _RuleFailed as exc:  # not cached: a rule may fail for a passing reason
            raise QueryBlocked(str(exc), reason="custom_rule") from exc.__cause__
        self._remember(key, outcome)
        if isinstance(outcome, _Refusal):
            raise outcome.error()
        return outcome

    # --- internals ---------------------------------------------------------------

    def _remember(self, key: tuple[str, bool, bool, str], outcome: Decision | _Refusal) -> None:
        cache = self._cache
        size = len(key[0])
        if size > _CACHE_CHARS // 8:
            return
        cache[key] = outcome
        self._cache_chars += size
        while len(cache) > _CACHE_ENTRIES or self._cache_chars > _CACHE_CHARS:
            old, _ = cache.popitem(last=False)
            self._cache_chars -= len(old[0])

    def _decide(self, query: str, readonly: bool, require_read: bool, hint: str) -> Decision | _Refusal:
        analysis = _analyse(query, keywords=self._blocked_set)
        if isinstance(analysis, _Refusal):
            return analysis
        if analysis.always_blocked is not None:
            return _blocked(analysis.always_blocked, "always_blocked")

        blocked = self._blocked_set
        if blocked:
            for word in (*analysis.all_kinds, *analysis.keyword_tokens):
                if word in blocked:
                    return _blocked(f"Query blocked: contains dangerous keyword '{word}'", "blocked_keyword")

        if not analysis.is_read:
            if self._readonly_mode or readonly:
                return _blocked(
                    f"Query blocked: read-only mode allows only read statements (found {analysis.write_label})",
                    "readonly",
                )
            if require_read:
                return _blocked(
                    "Query blocked: execute_query runs read-only statements; "
                    f"use {hint} for {analysis.write_label}",
                    "read_only_tool",
                )

        for kind in analysis.kinds:
            if kind not in self._allowed:
                return _blocked(f"Query blocked: operation '{kind}' is not allowed", "operation_not_allowed")

        warnings: list[str] = []
        for table in sorted(analysis.tables & self._sensitive):
            if self._sensitive_action == "block":
                return _blocked(f"Query blocked: access to sensitive table '{table}'", "sensitive_table")
            warnings.append(f"Access to sensitive table: {table}")
        if self._require_limit and analysis.select_star_without_limit:
            return _blocked(
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
                    return _blocked(risk.message, "custom_rule")
                else:
                    warnings.append(risk.message)
        if len(warnings) != len(decision.warnings):
            decision = replace(decision, warnings=tuple(warnings))
        return decision


class _RuleFailed(Exception):
    pass


def _words(items: Iterable[str]) -> list[str]:
    return [word.strip().upper() for word in items if word and word.strip()]


def _parse(query: str) -> list[Any] | _Refusal:
    if "\x00" in query:
        return _Refusal(InvalidInput, "Query contains a NUL character")
    try:
        text = _pg.parse_sql_json(query)
    except _pg.ParseError as exc:
        message = str(exc.args[0]) if exc.args else str(exc)
        return _Refusal(DatabaseError, message, sqlstate="42601")
    except UnicodeError:
        return _Refusal(InvalidInput, "Query is not valid Unicode text")
    try:
        stmts: list[Any] = orjson.loads(text).get("stmts", [])
    except orjson.JSONDecodeError:  # orjson stops at 1024 levels of nesting
        return _blocked(
            "Query blocked: the statement is nested too deeply for the policy to check; simplify it",
            "too_complex",
        )
    return stmts


def _keyword_tokens(query: str) -> list[str]:
    """The keyword tokens of the query, in order, as PostgreSQL's scanner sees them."""
    words: list[str] = []
    for token in _pg.scan(query):
        if token.kind != "NO_KEYWORD":
            # The grammar's token names: DELETE_P is DELETE, NULLS_LA is NULLS.
            name: str = token.name
            if name.endswith("_P"):
                name = name[:-2]
            elif name.endswith("_LA"):
                name = name[:-3]
            words.append(name)
    return words


# Bytes that continue an identifier in PostgreSQL's scanner (ident_cont): a keyword
# token is never directly followed by one, since the scanner takes the longest match.
_IDENT_CONT: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$"
) | frozenset(range(0x80, 0x100))


def _could_be_keyword(upper_utf8: bytes, words: Iterable[str]) -> bool:
    """Whether running the scanner can find one of ``words`` as a keyword token.

    Only a shortcut to skip the scanner (the costly part of a cold check) when
    it cannot find anything: it never decides that a word *is* a keyword. A
    keyword token is the word's letters in any ASCII case (the scanner folds
    ASCII only, like ``bytes.upper``), not followed by an identifier byte. So
    ``created_at`` does not make the scanner run for CREATE, ``'CREATE'`` does.
    """
    for word in words:
        needle = word.encode("ascii", "replace")
        start = upper_utf8.find(needle)
        while start >= 0:
            end = start + len(needle)
            if end >= len(upper_utf8) or upper_utf8[end] not in _IDENT_CONT:
                return True
            start = upper_utf8.find(needle, start + 1)
    return False


def _analyse(query: str, *, keywords: frozenset[str]) -> _Analysis | _Refusal:
    parsed = _parse(query)
    if isinstance(parsed, _Refusal):
        return parsed
    if not parsed:
        return _blocked("Query blocked: the query is empty", "empty")
    if len(parsed) > 1:
        return _blocked(
            f"Query blocked: only one statement per call is allowed (found {len(parsed)})", "multi_statement"
        )
    wrapped: dict[str, Any] = parsed[0]["stmt"]
    ((top_node, top_body),) = wrapped.items()
    tree = _walk(wrapped)

    # -- kinds ------------------------------------------------------------------
    kinds = _own_kinds(top_node, top_body)
    query_type = kinds[0]
    analyze = top_node == "ExplainStmt" and _explain_analyzes(top_body)
    inner = _inner_statement(top_node, top_body) if (analyze or top_node == "CopyStmt") else None
    if inner is not None:
        kinds.extend(_own_kinds(*inner))
    all_kinds = list(kinds)
    for node, body, runs in tree.stmts:
        if body is top_body or node == "SelectStmt" or (inner is not None and body is inner[1]):
            continue
        kind = _kind(node, body)
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
    write_label = _write_label(top_node, top_body, tree)
    is_read = write_label is None
    if write_label is None:
        write_label = ""
    elif top_node == "ExplainStmt":
        write_label = f"EXPLAIN ANALYZE {write_label}"

    tables = frozenset(str(rel.get("relname", "")).lower() for rel in tree.relations)
    return _Analysis(
        query_type=query_type,
        kinds=kinds,
        all_kinds=all_kinds,
        is_read=is_read,
        write_label=write_label,
        analyze_target_is_write=top_node == "ExplainStmt" and not is_read,
        tables=tables,
        always_blocked=_always_blocked(tree),
        select_star_without_limit=top_node == "SelectStmt" and _select_star_without_limit(top_body),
        keyword_tokens=(
            _keyword_tokens(query) if keywords and _could_be_keyword(query.encode().upper(), keywords) else []
        ),
    )


def _own_kinds(node: str, body: dict[str, Any]) -> list[str]:
    """The kinds a statement is by its own leading keywords (WITH, then its kind, then INTO's CREATE)."""
    kinds = ["WITH", _kind(node, body)] if "withClause" in body else [_kind(node, body)]
    if node == "SelectStmt" and "intoClause" in body:
        kinds.append("CREATE")
    return kinds


def _inner_statement(node: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    query = body.get("query")
    if isinstance(query, dict) and len(query) == 1:
        ((inner_node, inner_body),) = query.items()
        if isinstance(inner_body, dict):
            return inner_node, inner_body
    return None


def _write_label(top_node: str, top_body: dict[str, Any], tree: _Tree) -> str | None:
    """What makes the statement a write (for messages), or None when it is a read."""
    if top_node not in _READ_NODES:
        return _kind(top_node, top_body)
    for node, body, runs in tree.stmts:
        if runs and node not in _READ_NODES:
            return _kind(node, body)
    for _, runs in tree.intos:
        if runs:
            return "SELECT INTO"
    for lock in tree.locks:
        strength = lock.get("LockingClause", {}).get("strength", "") if isinstance(lock, dict) else ""
        return f"SELECT ... {_LOCK_LABELS.get(strength, 'FOR UPDATE')}"
    for call, runs in tree.funcs:
        if runs:
            name = _last_name(call.get("funcname"))
            if name in _WRITING_FUNCTIONS:
                return f"{name}()"
    return None


def _always_blocked(tree: _Tree) -> str | None:
    """The message of the first always-blocked item in the statement, if any."""
    for node, body, runs in tree.stmts:
        # Checked even where they do not run now: a rule or function that writes
        # pg_settings, a function in an untrusted language, are refused outright.
        if node in _DML_NODES and _last_name_of_relation(body) == "pg_settings":
            return "Query blocked: writing to pg_settings is not allowed (the server owns session settings)"
        if node == "CreateFunctionStmt":
            message = _function_definition_detail(body)
            if message is not None:
                return message
        if not runs and node != "ExecuteStmt":  # EXECUTE hides what runs: refused even under EXPLAIN
            continue
        why = _ALWAYS_BLOCKED_STATEMENTS.get(node)
        if why is not None:
            label = _kind(node, body) if node not in _LABELS else _LABELS[node]
            return f"Query blocked: {label} is not allowed ({why})"
        if node == "TransactionStmt":
            return (
                f"Query blocked: transaction control ({_kind(node, body)}) is not allowed; "
                "the server runs each call in its own transaction (use execute_transaction to group statements)"
            )
        message = _blocked_statement_detail(node, body)
        if message is not None:
            return message
    for into, runs in tree.intos:
        if runs and _is_lasting_temp(into.get("rel"), into.get("onCommit")):
            return _TEMP_MESSAGE
    names = [
        (call.get("location", 0), _last_name(call.get("funcname")), len(call.get("args") or ()))
        for call, _ in tree.funcs
    ]
    for _, name, nargs in sorted(names):
        if _function_is_blocked(name, nargs):
            return f"Query blocked: function '{name}' is not allowed"
    for name in tree.func_refs:
        if _function_is_blocked(name, -1):
            return f"Query blocked: function '{name}' is not allowed"
    return None


_LABELS: Final[dict[str, str]] = {
    "DoStmt": "DO",
    "CallStmt": "CALL",
    "DeclareCursorStmt": "DECLARE",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateExtensionStmt": "CREATE EXTENSION",
    "AlterExtensionStmt": "ALTER EXTENSION",
    "AlterExtensionContentsStmt": "ALTER EXTENSION",
    "CreatePLangStmt": "CREATE LANGUAGE",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "AlterSubscriptionStmt": "ALTER SUBSCRIPTION",
    "CreateForeignServerStmt": "CREATE SERVER",
    "AlterForeignServerStmt": "ALTER SERVER",
    "CreateFdwStmt": "CREATE FOREIGN DATA WRAPPER",
    "AlterFdwStmt": "ALTER FOREIGN DATA WRAPPER",
    "CreateUserMappingStmt": "CREATE USER MAPPING",
    "AlterUserMappingStmt": "ALTER USER MAPPING",
    "ImportForeignSchemaStmt": "IMPORT FOREIGN SCHEMA",
    "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
}
_TEMP_MESSAGE: Final = (
    "Query blocked: temporary tables, views and sequences are not allowed "
    "(they outlive the call on a pooled connection and shadow real tables)"
)


def _last_name_of_relation(body: dict[str, Any]) -> str:
    relation = body.get("relation")
    return str(relation.get("relname", "")).lower() if isinstance(relation, dict) else ""


def _is_lasting_temp(rel: Any, on_commit: Any) -> bool:
    if not isinstance(rel, dict):
        return False
    temp = rel.get("relpersistence") == "t" or str(rel.get("schemaname", "")).lower().startswith("pg_temp")
    return temp and on_commit != "ONCOMMIT_DROP"


def _blocked_statement_detail(node: str, body: dict[str, Any]) -> str | None:
    if node == "CopyStmt" and (body.get("is_program") or body.get("filename")):
        return "Query blocked: COPY to or from a server file or program is not allowed"
    if node == "CopyStmt":
        return (
            "Query blocked: COPY is not allowed (its data cannot travel through the tools; "
            "use SELECT to read and batch_execute to load rows)"
        )
    if node == "CreateStmt" and _is_lasting_temp(body.get("relation"), body.get("oncommit")):
        return _TEMP_MESSAGE
    if node == "CreateTableAsStmt":
        into = body.get("into") or {}
        if _is_lasting_temp(into.get("rel"), into.get("onCommit")):
            return _TEMP_MESSAGE
    if node == "ViewStmt" and _is_lasting_temp(body.get("view"), None):
        return _TEMP_MESSAGE
    if node == "CreateSeqStmt" and _is_lasting_temp(body.get("sequence"), None):
        return _TEMP_MESSAGE
    if node == "AlterTableStmt" and body.get("objtype") == "OBJECT_FOREIGN_TABLE":
        return "Query blocked: ALTER FOREIGN TABLE is not allowed (foreign data reaches other servers and server files)"
    if node == "DefineStmt":
        for option in body.get("definition") or ():
            arg = option.get("DefElem", {}).get("arg") if isinstance(option, dict) else None
            if isinstance(arg, dict):
                names = arg.get("TypeName", {}).get("names") if "TypeName" in arg else None
                name = _last_name(names)
                if name and _function_is_blocked(name, -1):
                    return f"Query blocked: function '{name}' is not allowed"
    return None


def _function_definition_detail(body: dict[str, Any]) -> str | None:
    language = "sql"
    source: str | None = None
    for option in body.get("options") or ():
        elem = option.get("DefElem") if isinstance(option, dict) else None
        if not isinstance(elem, dict):
            continue
        arg = elem.get("arg")
        if elem.get("defname") == "language" and isinstance(arg, dict) and "String" in arg:
            language = str(arg["String"].get("sval", "")).lower()
        elif elem.get("defname") == "as" and isinstance(arg, dict) and "List" in arg:
            items = arg["List"].get("items") or []
            if len(items) == 1 and isinstance(items[0], dict) and "String" in items[0]:
                source = str(items[0]["String"].get("sval", ""))
    if language not in _TRUSTED_LANGUAGES:
        return (
            f"Query blocked: functions in language '{language}' are not allowed "
            "(C and untrusted languages run code on the server host)"
        )
    if language == "sql" and source:
        # An SQL function body is SQL: check the functions it calls as if they were called here.
        try:
            stmts = orjson.loads(_pg.parse_sql_json(source)).get("stmts", [])
        except (_pg.ParseError, UnicodeError, ValueError):
            return None  # PostgreSQL will refuse it, or it is opaque to us
        for stmt in stmts:
            inner = _walk(stmt.get("stmt", {}))
            for call, _ in inner.funcs:
                name = _last_name(call.get("funcname"))
                if _function_is_blocked(name, len(call.get("args") or ())):
                    return f"Query blocked: function '{name}' is not allowed"
    return None


def _select_star_without_limit(body: dict[str, Any]) -> bool:
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
