"""What is refused whatever the settings say, and why: the lists, and the check of a walked tree.

:func:`always_blocked_message` is the policy's step 4 (reason ``always_blocked``):
it runs before BLOCKED_KEYWORDS and ALLOWED_OPERATIONS, which cannot let any of
this through.

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
``"pg_read_file"`` and ``U&"pg\\005fread_file"`` are all caught, and so is attribute
notation (``('/etc/hostname'::text).pg_read_file``, ``t.lo_create``: every field name
after the first is a possible one-argument call, see :mod:`pgmcp.security.calls`):

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
* functions that run SQL text this parser never sees (their message says so):
  ``query_to_xml``, ``query_to_xml_and_xmlschema``, ``query_to_xmlschema``,
  ``cursor_to_xml``, ``cursor_to_xmlschema``, ``database_to_xml*``, ``schema_to_xml*``
  (a query per table), ``ts_stat``, the two-argument ``ts_rewrite``, ``xpath_table``,
  ``crosstab*``, ``connectby``, ``pg_background_*`` (and ``dblink*`` above).

``pg_sleep``, ``txid_current``/``pg_current_xact_id``, ``table_to_xml`` and the
``pg_stat_get_*``/``pg_get_*`` readers are allowed.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from pglast import parser as _pg

from pgmcp.security.calls import names_of
from pgmcp.security.tree import Tree, kind_of, last_name, walk

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
    }
)  # fmt: skip
# Functions that run SQL text (or whole schemas' worth of queries) the parser never sees:
# refused on every path, with a message saying so.
_SQL_TEXT_FUNCTIONS: Final = frozenset(
    {
        "query_to_xml", "query_to_xml_and_xmlschema", "query_to_xmlschema",
        "cursor_to_xml", "cursor_to_xmlschema",
        "database_to_xml", "database_to_xml_and_xmlschema", "database_to_xmlschema",
        "schema_to_xml", "schema_to_xml_and_xmlschema", "schema_to_xmlschema",
        "ts_stat", "xpath_table", "connectby",
    }
)  # fmt: skip
_SQL_TEXT_PREFIXES: Final = ("crosstab", "pg_background_")
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
# How a refused statement is named in its message (by its kind when not listed here).
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
# Writes to pg_settings call set_config through its rule.
_DML_NODES: Final = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})


def runs_sql_text(name: str, nargs: int) -> bool:
    """Whether function ``name`` called with ``nargs`` arguments (-1: unknown) runs SQL text it is given."""
    if name in _SQL_TEXT_FUNCTIONS or name.startswith(_SQL_TEXT_PREFIXES):
        return True
    return name == "ts_rewrite" and nargs in (2, -1)  # ts_rewrite(query, 'SELECT ...') runs the SQL text


def function_message(name: str, nargs: int) -> str | None:
    """The refusal of an always-blocked function ``name`` called with ``nargs`` arguments, if it is one."""
    if runs_sql_text(name, nargs):
        return (
            f"Query blocked: function '{name}' is not allowed (it runs SQL text that the policy cannot check)"
        )
    if _function_is_blocked(name):
        return f"Query blocked: function '{name}' is not allowed"
    return None


def _function_is_blocked(name: str) -> bool:
    if name in _BLOCKED_FUNCTIONS or name.startswith(_BLOCKED_FUNCTION_PREFIXES):
        return True
    return (
        name.startswith("pg_")
        and ("replication_slot" in name or "logical_slot" in name)
        and not name.startswith(("pg_get_", "pg_stat_get_"))
    )


def always_blocked_message(tree: Tree) -> str | None:
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
            label = kind_of(node, body) if node not in _LABELS else _LABELS[node]
            return f"Query blocked: {label} is not allowed ({why})"
        if node == "TransactionStmt":
            return (
                f"Query blocked: transaction control ({kind_of(node, body)}) is not allowed; "
                "the server runs each call in its own transaction (use execute_transaction to group statements)"
            )
        message = _blocked_statement_detail(node, body)
        if message is not None:
            return message
    for into, runs in tree.intos:
        if runs and _is_lasting_temp(into.get("rel"), into.get("onCommit")):
            return _TEMP_MESSAGE
    return called_function_message(tree)


def called_function_message(tree: Tree) -> str | None:
    """The refusal of the first always-blocked function the tree calls or names, if any."""
    names = [
        (call.get("location", 0), last_name(call.get("funcname")), len(call.get("args") or ()))
        for call, _ in tree.funcs
    ]
    for _, name, nargs in sorted(names):
        message = function_message(name, nargs)
        if message is not None:
            return message
    # Attribute notation: (x).f and t.f call f(x) when f is a one-argument function.
    for fields, _ in tree.attrs:
        for name in names_of(fields):
            message = function_message(name, 1)
            if message is not None:
                return message
    for name in tree.func_refs:
        message = function_message(name, -1)
        if message is not None:
            return message
    return None


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
                name = last_name(names)
                message = function_message(name, -1) if name else None
                if message is not None:
                    return message
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
            inner = walk(stmt.get("stmt", {}))
            message = called_function_message(inner)
            if message is not None:
                return message
    return None
