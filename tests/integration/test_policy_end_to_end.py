"""The policy end to end: the adversarial corpus through the real MCP tools, on a real PostgreSQL.

``tests/unit`` proves what :class:`pgmcp.security.Policy` decides. This module
proves that the tools apply it, under the handbook's three security profiles,
and that the database agrees afterwards. Every statement of the corpus (plus
the peers' known holes below) goes through ``execute_query``,
``execute_transaction`` and ``explain_query(analyze=true)`` on an in-process
server, and after each one the database is compared with a snapshot taken by a
superuser connection: rows and a checksum of every table, the relations and
their ACLs and columns, sequence values, functions, large objects, advisory
locks held by any backend, replication slots, extensions, the roles we can
name, configuration files, the server's data directory and probe files in
/tmp. Writes that the policy allows run in a transaction whose last statement
fails (``SELECT 1/0``), so they reach the database and are rolled back; the
only non-transactional effect allowed (``nextval``) is asserted and then
undone by the test.

What "blocked" means here: the call fails with a pgmcp error, nothing of it
reached the database (the monitor counted no query; PostgreSQL's own state is
unchanged), and the server still answers.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from mcp import Client

from pgmcp.app import AppContext
from pgmcp.logs import configure_logging
from tests.conftest import PgServer
from tests.integration.harness import call, call_err, call_ok, running
from tests.integration.proc import json_lines
from tests.unit.adversarial_corpus import BLOCK, CORPUS, PROFILES, READ, Case, expected_for

# The handbook's three security profiles, as an operator writes them in the environment.
HANDBOOK_PROFILES: dict[str, dict[str, Any]] = {
    "readonly": {
        "readonly_mode": True,
        "allowed_operations": "SELECT,WITH,EXPLAIN",
        "blocked_keywords": "INSERT,UPDATE,DELETE,DROP,TRUNCATE,ALTER,CREATE",
    },
    "development": {
        "allowed_operations": "SELECT,INSERT,UPDATE,DELETE,WITH,EXPLAIN",
        "blocked_keywords": "DROP,TRUNCATE,ALTER",
    },
    "production": {
        "allowed_operations": "SELECT,INSERT,UPDATE,DELETE",
        "blocked_keywords": "DROP,TRUNCATE,ALTER,CREATE,GRANT,REVOKE,COPY",
        "max_query_length": 5000,
    },
}

RUN = uuid.uuid4().hex[:12]
PROBE = f"/tmp/pgmcp_probe_{RUN}"
ROLE = f"pgmcp_e2e_{RUN}"  # a role of this run only: the cluster is shared with other test runs
WRITE_WITH_CTE: dict[str, str] = {"readonly": "block", "development": "pass", "production": "block"}

# The peers' known holes and the brief's tricks that the unit corpus does not spell exactly.
EXTRA: list[Case] = [
    ("SELECT * FROM pg_read_file('/etc/passwd')", BLOCK, "file reader in FROM"),
    ("SELECT * FROM LATERAL pg_ls_dir('.')", BLOCK, "LATERAL directory listing"),
    ("SELECT * FROM ROWS FROM (pg_read_file('x'))", BLOCK, "ROWS FROM file reader"),
    (f"COPY t TO PROGRAM 'touch {PROBE}_copy_program'", BLOCK, "COPY PROGRAM with a probe file"),
    (f"COPY t TO '{PROBE}_copy_file'", BLOCK, "COPY to a server file, probed"),
    (f"SELECT lo_export(1, '{PROBE}_lo_export')", BLOCK, "lo_export to a probe file"),
    ("SELECT set_config('default_transaction_read_only', 'off', false)", BLOCK, "set_config read-only off"),
    ("SELECT pg_advisory_lock(42)", BLOCK, "session advisory lock"),
    ("SELECT pg_advisory_xact_lock(42)", BLOCK, "transaction advisory lock"),
    ("DO $$ BEGIN DELETE FROM t; DELETE FROM u; END $$", BLOCK, "DO block that would empty two tables"),
    ("CALL wipe_t()", BLOCK, "CALL of a real procedure that deletes rows"),
    ("LISTEN pgmcp_channel", BLOCK, "LISTEN"),
    (f"SET ROLE {ROLE}", BLOCK, "SET ROLE to a real role"),
    ("SELECT * INTO newtable FROM t", BLOCK, "SELECT INTO a new table"),
    ("CREATE TABLE newtable AS SELECT * FROM t", BLOCK, "CREATE TABLE AS"),
    ("/* harmless */ DrOp TABLE u", BLOCK, "comment then mixed-case DROP"),
    ("SELECT dblink_connect('host=127.0.0.1 dbname=postgres')", BLOCK, "dblink (not installed)"),
    (
        "SELECT * FROM dblink_exec('host=127.0.0.1', 'DROP TABLE t') AS r(x text)",
        BLOCK,
        "dblink_exec in FROM",
    ),
    (f"ALTER ROLE {ROLE} SUPERUSER", BLOCK, "ALTER ROLE"),
    ("SELECT pg_create_physical_replication_slot('pgmcp_e2e_slot')", BLOCK, "physical replication slot"),
    (
        "SELECT setval('s', 1000)",
        {"readonly": "block", "development": "pass", "production": "pass"},
        "setval",
    ),
    ('SELECT "DROP" FROM "TRUNCATE"', READ, "keywords as quoted identifiers of a real table"),
    # Labelled IMMUTABLE, so the catalog layer lets it through (a VOLATILE one is refused on read
    # paths): only the READ ONLY transaction stops what the policy cannot see into.
    ("SELECT next_s()", READ, "a mislabelled IMMUTABLE function that calls nextval looks like a read"),
    (
        'SELECT "drop", drop_log, alter_ego, truncated FROM t ORDER BY id LIMIT 2',
        READ,
        "keyword-like columns",
    ),
    (
        "WITH d AS (DELETE FROM u RETURNING *) SELECT count(*) FROM d",
        WRITE_WITH_CTE,
        "writable CTE on a real table",
    ),
]
CASES: list[Case] = CORPUS + EXTRA

# Statements the policy lets through where PostgreSQL refuses them itself (the policy
# errs on the safe side: an odd ANALYZE value is taken as true, so it needs DELETE allowed).
DATABASE_REFUSES: dict[str, str] = {
    "EXPLAIN (ANALYZE 'yes') DELETE FROM t": "analyze requires a Boolean value",
    # The policy cannot see into a function; the READ ONLY transaction of a read stops it.
    "SELECT next_s()": "cannot execute nextval() in a read-only transaction",
}
XML_READ = "SELECT table_to_xml('t', true, false, '')"


async def database_refusals(conn: asyncpg.Connection) -> dict[str, str]:
    """DATABASE_REFUSES, plus what this server cannot do (the embedded build has no libxml)."""
    refusals = dict(DATABASE_REFUSES)
    try:
        await conn.fetchval(XML_READ)
    except asyncpg.FeatureNotSupportedError:
        refusals[XML_READ] = "requires the server to be built with libxml support"
    return refusals


# Tables and objects every statement of the corpus names, so reads run for real.
SCHEMA = """
CREATE TABLE t (
    id int PRIMARY KEY, a int NOT NULL DEFAULT 0, b int, "drop" int, created_at timestamptz DEFAULT now(),
    updated_at timestamptz, deleted_at timestamptz, drop_log text, alter_ego text, truncated boolean DEFAULT false
);
INSERT INTO t (id, a, b, "drop", drop_log, alter_ego)
    SELECT g, g * 10, g % 3, g, 'log ' || g, 'ego ' || g FROM generate_series(101, 120) g;
CREATE TABLE u (id int PRIMARY KEY, a int, b int);
INSERT INTO u SELECT g, g, g * 2 FROM generate_series(101, 105) g;
CREATE VIEW v AS SELECT id, a AS c FROM t;
CREATE TABLE grants_log (id int PRIMARY KEY);
INSERT INTO grants_log VALUES (1), (2);
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, meta jsonb DEFAULT '{}');
INSERT INTO customers SELECT g, 'c' || g, 'c' || g || '@example.com',
    jsonb_build_object('tier', 'gold', 'vip', g % 2 = 0, 'tags', jsonb_build_array('a'), 'a', jsonb_build_object('b', g))
    FROM generate_series(1, 8) g;
CREATE TABLE orders (
    id int PRIMARY KEY, customer_id int, total numeric(10, 2), status text,
    created_at timestamptz DEFAULT now(), items jsonb DEFAULT '[]'
);
INSERT INTO orders SELECT g, g % 8 + 1, g * 12.5, CASE WHEN g % 3 = 0 THEN 'pending' ELSE 'paid' END,
    now() - g * interval '5 hours', jsonb_build_array(g, g + 1) FROM generate_series(1, 40) g;
CREATE TABLE logs (id serial PRIMARY KEY, message text);
INSERT INTO logs (message) VALUES ('a drop table happened'), ('fine');
CREATE TABLE docs (body text);
INSERT INTO docs VALUES ('the quick brown fox');
CREATE TABLE "TRUNCATE" ("DROP" int);
INSERT INTO "TRUNCATE" VALUES (7);
CREATE SEQUENCE s;
SELECT nextval('s');
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t;
CREATE FUNCTION next_s() RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT nextval('s') $$;
CREATE PROCEDURE wipe_t() LANGUAGE sql AS $$ DELETE FROM t $$;
CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM t $$;
SELECT lo_from_bytea(1, 'large object one');
"""

SNAPSHOT_QUERIES: dict[str, str] = {
    "relations": """
        SELECT n.nspname, c.relname, c.relkind::text, coalesce(c.relacl::text, ''),
               coalesce(array_to_string(c.reloptions, ','), ''), coalesce(obj_description(c.oid), ''),
               (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        ORDER BY 1, 2""",
    "routines": """
        SELECT p.proname, p.prokind::text, md5(coalesce(p.prosrc, '')), coalesce(p.proacl::text, '')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1""",
    "triggers_rules_policies": """
        SELECT 'trigger', tgname::text FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL SELECT 'rule', rulename::text FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
        UNION ALL SELECT 'policy', polname::text FROM pg_policy
        UNION ALL SELECT 'publication', pubname::text FROM pg_publication
        UNION ALL SELECT 'foreign server', srvname::text FROM pg_foreign_server
        UNION ALL SELECT 'schema', nspname::text FROM pg_namespace
        ORDER BY 1, 2""",
    "large_objects": "SELECT oid::text FROM pg_largeobject_metadata ORDER BY 1",
    "extensions": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
    # Advisory locks of any backend on this database (other test runs may share the cluster).
    "advisory_locks": """
        SELECT pid, classid, objid, mode FROM pg_locks
        WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        ORDER BY 1, 2, 3""",
    "replication_slots": "SELECT slot_name, slot_type FROM pg_replication_slots ORDER BY 1",
    "subscriptions": "SELECT subname FROM pg_subscription ORDER BY 1",
    "prepared_xacts": "SELECT gid FROM pg_prepared_xacts ORDER BY 1",
    # Roles this module can name (the cluster is shared with other test runs).
    "roles": """
        SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolbypassrls,
               coalesce(md5(rolpassword), '')
        FROM pg_authid WHERE rolname IN (current_user, '"""
    + ROLE
    + """') ORDER BY 1""",
    "role_settings": "SELECT setdatabase, setrole, setconfig::text FROM pg_db_role_setting ORDER BY 1, 2",
    "config_files": "SELECT sourcefile, name, setting FROM pg_file_settings ORDER BY 1, 2, 3",
    "data_directory": "SELECT name FROM pg_ls_dir('.') AS name ORDER BY 1",
}


# Rows and a checksum of every table and materialized view, and every sequence's value,
# whatever exists now (a table created by a statement shows up too): dynamic SQL, so a
# function of the snapshot connection's own temporary schema, invisible to anyone else.
TABLE_DATA_FUNCTION = r"""
CREATE FUNCTION pg_temp.pgmcp_table_data() RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
    result jsonb := '{"tables": {}, "sequences": {}}';
    rel record;
    one jsonb;
BEGIN
    FOR rel IN SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind IN ('r', 'm', 'p', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                 AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
    LOOP
        IF rel.relkind = 'S' THEN
            EXECUTE format('SELECT jsonb_build_array(last_value, is_called) FROM %s', rel.name) INTO one;
            result := jsonb_set(result, ARRAY['sequences', rel.name], one);
        ELSE
            EXECUTE format(
                'SELECT jsonb_build_array(count(*), md5(coalesce(string_agg(x::text, %L ORDER BY x::text), %L))) '
                'FROM %s x', '|', '', rel.name) INTO one;
            result := jsonb_set(result, ARRAY['tables', rel.name], one);
        END IF;
    END LOOP;
    RETURN result;
END $fn$
"""


@dataclass
class Snapshotter:
    """Everything a statement could change, read in one round trip by a superuser connection of its own."""

    conn: asyncpg.Connection
    sql: str = ""
    last: dict[str, Any] = field(default_factory=dict)

    async def prepare(self) -> None:
        await self.conn.execute(TABLE_DATA_FUNCTION)
        parts = [
            f"'{name}', (SELECT coalesce(jsonb_agg(to_jsonb(x)), '[]') FROM ({query}) x)"
            for name, query in SNAPSHOT_QUERIES.items()
        ]
        self.sql = (
            f"SELECT jsonb_build_object({', '.join(parts)}) AS catalog, pg_temp.pgmcp_table_data() AS data"
        )

    async def take(self) -> dict[str, Any]:
        row = await self.conn.fetchrow(self.sql)
        state: dict[str, Any] = json.loads(row["catalog"])
        state.update(json.loads(row["data"]))
        state["probe_files"] = sorted(glob.glob(f"{PROBE}*"))
        self.last = state
        return state


def diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    return "\n".join(
        f"  {key}: {before[key]!r}\n   -> {after[key]!r}" for key in before if before[key] != after[key]
    )


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> AsyncIterator[PgServer]:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(f"CREATE ROLE {ROLE} NOLOGIN")
        await conn.execute(SCHEMA)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    yield module_db
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(f"DROP OWNED BY {ROLE}; DROP ROLE {ROLE}")
    finally:
        await conn.close()
    for path in glob.glob(f"{PROBE}*"):  # only if a test failed in the worst way
        with contextlib.suppress(OSError):
            os.remove(path)


@pytest.fixture
async def snapshots(db: PgServer) -> AsyncIterator[Snapshotter]:
    conn = await asyncpg.connect(db.dsn())
    try:
        snapshotter = Snapshotter(conn)
        await snapshotter.prepare()
        yield snapshotter
    finally:
        await conn.close()


def blocked_total_by_reason(app: AppContext) -> dict[str, float]:
    """``mcp_server_queries_blocked_total`` of connection default, by reason, as /metrics renders it."""
    body, _ = app.monitor.render_prometheus()
    totals: dict[str, float] = {}
    pattern = re.compile(
        r'^mcp_server_queries_blocked_total\{connection_id="default",reason="([^"]+)"\} (\S+)$', re.M
    )
    for reason, value in pattern.findall(body.decode()):
        totals[reason] = float(value)
    return totals


def leading_explain(sql: str) -> bool:
    text = re.sub(r"/\*.*?\*/|--[^\n]*", " ", sql, flags=re.S).strip().lower()
    return text.startswith("explain")


@dataclass
class Run:
    profile: str
    refusals: dict[str, str]  # statement -> what PostgreSQL itself says when it refuses it
    problems: list[str] = field(default_factory=list)
    policy_refusals: int = 0  # responses the monitor must count as blocked
    probes: int = 0  # SELECT 1 calls after refusals
    outcomes: dict[str, int] = field(default_factory=dict)

    def problem(self, index: int, sql: str, message: str) -> None:
        self.problems.append(f"[{self.profile} #{index}] {sql[:90]!r}: {message}")

    def count(self, key: str) -> None:
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


REFUSAL_TYPES = {"query_blocked", "limit_exceeded", "invalid_input", "database_error"}


async def refused(run: Run, index: int, sql: str, tool: str, data: dict[str, Any]) -> bool:
    """Check a refusal's shape; count what the monitor must count as blocked."""
    if data["success"]:
        run.problem(index, sql, f"{tool} succeeded but the policy must refuse it: {data}")
        return False
    if data["error_type"] not in REFUSAL_TYPES:
        run.problem(index, sql, f"{tool} refused with an unexpected error_type: {data}")
    if data["error_type"] in ("query_blocked", "limit_exceeded"):
        run.policy_refusals += 1
    return True


async def still_answers(run: Run, client: Client, index: int, sql: str) -> None:
    run.probes += 1
    alive = await call(client, "execute_query", connection_id="default", query="SELECT 1 AS alive")
    if not alive["success"] or alive["rows"] != [{"alive": 1}]:
        run.problem(index, sql, f"the server does not answer SELECT 1 afterwards: {alive}")


async def run_case(
    run: Run, app: AppContext, client: Client, snap: Snapshotter, index: int, case: Case
) -> None:
    sql, expected, _note = case
    profile = run.profile
    want = expected_for(expected, profile)
    before = snap.last  # the state after the previous case
    queries_before = app.monitor.snapshot()["total_queries"]
    sequence_before = before["sequences"].get("public.s")

    if want == "block":
        run.count("blocked")
        q = await call(client, "execute_query", connection_id="default", query=sql)
        await refused(run, index, sql, "execute_query", q)
        tx = await call(client, "execute_transaction", connection_id="default", queries=[{"query": sql}])
        whole_call = tx.get("error_type") == "invalid_input"  # an empty item is refused before the policy
        if (
            await refused(run, index, sql, "execute_transaction", tx)
            and not whole_call
            and (tx.get("failed_index") != 0 or tx.get("rolled_back") is not True)
        ):
            run.problem(index, sql, f"execute_transaction refusal without failed_index 0: {tx}")
        ex = await call(client, "explain_query", connection_id="default", query=sql, analyze=True)
        await refused(run, index, sql, "explain_query(analyze)", ex)
        # A broken server would already show as an unexpected error type above; this says it plainly.
        await still_answers(run, client, index, sql)
        reached = app.monitor.snapshot()["total_queries"] - queries_before - 1
        if reached:
            run.problem(index, sql, f"{reached} statement(s) reached the database")
    else:
        run.count("passed")
        decision = app.policy.check(sql)
        refusal = run.refusals.get(sql)

        def by_postgres(data: dict[str, Any]) -> bool:
            return data.get("error_type") == "database_error" and str(refusal) in data["error"]

        # execute_query: a read runs and succeeds; a write is refused, naming execute_transaction.
        q = await call(client, "execute_query", connection_id="default", query=sql)
        if decision.is_read:
            if not q["success"] and not (refusal and by_postgres(q)):
                run.problem(index, sql, f"execute_query refused a read: {q}")
        elif q["success"] or q["error_type"] != "query_blocked" or "execute_transaction" not in q["error"]:
            run.problem(index, sql, f"execute_query must refuse a write and name execute_transaction: {q}")
        else:
            run.policy_refusals += 1
        # execute_transaction: it runs, then SELECT 1/0 rolls everything back.
        tx = await call(
            client,
            "execute_transaction",
            connection_id="default",
            queries=[{"query": sql}, {"query": "SELECT 1/0 AS rollback_marker"}],
        )
        if refusal is not None:
            if tx.get("failed_index") != 0 or not by_postgres(tx):
                run.problem(index, sql, f"execute_transaction: PostgreSQL itself must refuse it: {tx}")
        elif tx["success"] or tx.get("failed_index") != 1 or "division by zero" not in tx["error"]:
            run.problem(index, sql, f"execute_transaction must run it (then fail at index 1): {tx}")
        # explain_query(analyze): runs it in a transaction that is rolled back.
        ex = await call(client, "explain_query", connection_id="default", query=sql, analyze=True)
        if "EXPLAIN" not in app.policy.allowed_operations:
            if ex["success"] or ex["error_type"] != "query_blocked":
                run.problem(index, sql, f"explain_query must be refused without EXPLAIN allowed: {ex}")
            else:
                run.policy_refusals += 1
        elif leading_explain(sql):
            if ex["success"] or ex["error_type"] != "database_error":
                run.problem(index, sql, f"EXPLAIN of an EXPLAIN must be a syntax error: {ex}")
        elif not ex["success"] and not (refusal and by_postgres(ex)):
            run.problem(index, sql, f"explain_query(analyze) refused an allowed statement: {ex}")
        elif not decision.is_read and ex.get("rolled_back") is not True:
            run.problem(index, sql, f"explain_query(analyze) of a write must say rolled_back: {ex}")

    after = await snap.take()
    sequence_after = after["sequences"].get("public.s")
    if sequence_after != sequence_before and want == "pass" and re.search(r"\b(nextval|setval)\(", sql):
        # Sequences are not transactional: a rolled-back nextval still advances s. Undo it.
        await snap.conn.execute("SELECT setval('s', $1, $2)", sequence_before[0], sequence_before[1])
        after = await snap.take()
        run.count("sequence_advanced_and_reset")
    changed = diff(before, after)
    if changed:
        run.problem(index, sql, f"the database changed ({want}):\n{changed}")


@pytest.mark.parametrize("profile", list(HANDBOOK_PROFILES))
async def test_the_corpus_through_every_tool_leaves_the_database_unchanged(
    profile: str, db: PgServer, snapshots: Snapshotter, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every statement of the corpus under a handbook profile, through the three tools that run SQL."""
    settings = HANDBOOK_PROFILES[profile]
    corpus_profile = PROFILES[profile]
    assert settings.get("readonly_mode", False) == corpus_profile["readonly_mode"]
    assert settings["allowed_operations"].split(",") == corpus_profile["allowed_operations"]
    assert settings["blocked_keywords"].split(",") == corpus_profile["blocked_keywords"]
    assert settings.get("max_query_length", 10000) == corpus_profile["max_query_length"]

    configure_logging("INFO")
    run = Run(profile, await database_refusals(snapshots.conn))
    start = await snapshots.take()
    async with running(db, query_timeout=10, db_pool_size=2, **settings) as (app, client):
        metrics_before = (await call_ok(client, "get_metrics"))["blocked_queries"]
        prometheus_before = blocked_total_by_reason(app)
        capfd.readouterr()
        for index, case in enumerate(CASES):
            await run_case(run, app, client, snapshots, index, case)
        logged = json_lines(capfd.readouterr().err)
        metrics = await call_ok(client, "get_metrics")
        prometheus_after = blocked_total_by_reason(app)
    end = await snapshots.take()

    assert not run.problems, f"{len(run.problems)} problem(s):\n" + "\n".join(run.problems)
    assert not diff(start, end), diff(start, end)
    # Every refusal by the policy was counted, in get_metrics and in /metrics, and logged.
    assert metrics["blocked_queries"] - metrics_before == run.policy_refusals
    grown = {
        reason: value - prometheus_before.get(reason, 0.0)
        for reason, value in prometheus_after.items()
        if value != prometheus_before.get(reason, 0.0)
    }
    assert sum(grown.values()) == run.policy_refusals, grown
    assert grown == {k: float(v) for k, v in metrics["blocked_by_reason"].items() if k in grown}
    assert {"multi_statement", "always_blocked", "blocked_keyword"} <= set(grown)
    blocked_lines = [line for line in logged if line["event"] == "query_blocked"]
    assert len(blocked_lines) == run.policy_refusals
    assert all(line["level"] == "WARNING" and line["connection_id"] == "default" for line in blocked_lines)
    assert run.outcomes["blocked"] > 100, run.outcomes


# --- the peers' holes, one by one, with the messages a caller sees -----------------------------


async def test_known_holes_are_refused_with_their_reasons_in_every_profile(
    db: PgServer, snapshots: Snapshotter
) -> None:
    start = await snapshots.take()
    for profile, settings in HANDBOOK_PROFILES.items():
        async with running(db, **settings) as (_, client):

            async def blocked(sql: str, tool: str = "execute_query") -> str:
                if tool == "execute_transaction":
                    data = await call_err(
                        client, tool, "query_blocked", connection_id="default", queries=[{"query": sql}]
                    )
                else:
                    data = await call_err(client, tool, "query_blocked", connection_id="default", query=sql)
                alive = await call_ok(
                    client, "execute_query", connection_id="default", query="SELECT 1 AS one"
                )
                assert alive["rows"] == [{"one": 1}]
                return str(data["error"])

            for tool in ("execute_query", "execute_transaction"):
                assert (await blocked("SELECT 1; COMMIT; DROP TABLE t", tool)).endswith(
                    "only one statement per call is allowed (found 3)"
                ), profile
                assert (await blocked("/* hi */ DrOp TaBlE t", tool)).endswith(
                    "contains dangerous keyword 'DROP'"
                )
                # dblink is not installed here: the policy refuses it, not a missing function.
                assert (await blocked("SELECT dblink_connect('host=127.0.0.1')", tool)).endswith(
                    "function 'dblink_connect' is not allowed"
                )
                assert "function 'pg_read_file' is not allowed" in await blocked(
                    "SELECT * FROM pg_read_file('/etc/passwd')", tool
                )
                assert "function 'pg_ls_dir' is not allowed" in await blocked(
                    "SELECT * FROM LATERAL pg_ls_dir('.')", tool
                )
                assert "function 'set_config' is not allowed" in await blocked(
                    "SELECT set_config('default_transaction_read_only', 'off', false)", tool
                )
                assert "function 'pg_advisory_lock' is not allowed" in await blocked(
                    "SELECT pg_advisory_lock(1)", tool
                )
                assert "COPY" in await blocked(f"COPY t TO PROGRAM 'touch {PROBE}_x'", tool)
                assert "DO is not allowed" in await blocked("DO $$ BEGIN DELETE FROM t; END $$", tool)
                assert "CALL is not allowed" in await blocked("CALL wipe_t()", tool)
                assert "not allowed" in await blocked("PREPARE p2 AS DELETE FROM t", tool)
                assert "not allowed" in await blocked("LISTEN ch", tool)
                assert "not allowed" in await blocked(f"SET ROLE {ROLE}", tool)
            # execute_query runs reads only: nextval and a writable CTE name the tool for writes
            # (in read-only mode the read-only rule speaks first, or DELETE is a blocked keyword).
            message = await blocked("SELECT nextval('s')")
            assert "execute_transaction" in message or "read-only mode" in message, message
            message = await blocked("WITH d AS (DELETE FROM u RETURNING *) SELECT count(*) FROM d")
            assert "execute_transaction" in message or "'DELETE'" in message, message
            # Keywords spelled as quoted identifiers are names, not keywords.
            data = await call_ok(
                client, "execute_query", connection_id="default", query='SELECT "DROP" FROM "TRUNCATE"'
            )
            assert data["rows"] == [{"DROP": 7}]
    assert not diff(start, await snapshots.take())
    assert not glob.glob(f"{PROBE}*")


async def test_explain_analyze_of_a_delete_runs_it_only_where_allowed_and_always_rolls_back(
    db: PgServer, conn: asyncpg.Connection
) -> None:
    rows = await conn.fetchval("SELECT count(*) FROM t")
    assert rows == 20
    async with running(db, **HANDBOOK_PROFILES["development"]) as (_, client):
        data = await call_ok(
            client, "explain_query", connection_id="default", query="DELETE FROM t", analyze=True
        )
        assert data["rolled_back"] is True
        assert data["plan"][0]["Plan"]["Plans"][0]["Actual Rows"] == 20  # it did run
        for sql in ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN (ANALYZE) DELETE FROM t"):
            data = await call_err(
                client, "execute_query", "query_blocked", connection_id="default", query=sql
            )
            assert "execute_transaction" in data["error"]
    async with running(db, **HANDBOOK_PROFILES["readonly"]) as (_, client):
        await call_err(
            client,
            "explain_query",
            "query_blocked",
            connection_id="default",
            query="DELETE FROM t",
            analyze=True,
        )
    async with running(db, **HANDBOOK_PROFILES["production"]) as (_, client):
        data = await call_err(
            client,
            "explain_query",
            "query_blocked",
            connection_id="default",
            query="DELETE FROM t",
            analyze=True,
        )
        assert data["error"] == "Query blocked: operation 'EXPLAIN' is not allowed"
    assert await conn.fetchval("SELECT count(*) FROM t") == rows


async def test_analytics_queries_return_the_same_answers_as_postgresql(
    db: PgServer, conn: asyncpg.Connection
) -> None:
    """No false positives: the analytics of the corpus run on real tables, with the right answers."""
    queries = [
        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY total) AS p FROM orders",
        "SELECT count(*) FILTER (WHERE status = 'paid') AS n FROM orders",
        "SELECT date_trunc('day', created_at) AS d, count(*) AS n FROM orders GROUP BY 1 ORDER BY 1",
        "SELECT customer_id, sum(total) OVER (PARTITION BY customer_id ORDER BY created_at "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running FROM orders ORDER BY id",
        "SELECT rank() OVER w AS r, lag(total) OVER w AS prev FROM orders WINDOW w AS (ORDER BY total) ORDER BY id",
        "SELECT o.id, e FROM orders o, LATERAL jsonb_array_elements(o.items) AS e ORDER BY 1, 2",
        "SELECT id, meta->>'tier' AS tier, (meta#>>'{a,b}')::int AS ab FROM customers WHERE meta @> '{\"vip\": true}' ORDER BY id",
        "SELECT grouping(a) AS g, sum(b) AS s FROM t GROUP BY ROLLUP (a) ORDER BY 1, 2 LIMIT 5",
        "SELECT DISTINCT ON (customer_id) customer_id, id FROM orders ORDER BY customer_id, created_at DESC",
        "SELECT string_agg(name, ', ' ORDER BY name) AS names FROM customers",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT sum(n) AS s FROM r",
        "SELECT * FROM logs WHERE message ILIKE '%drop table%'",
        'SELECT "drop", drop_log, alter_ego, truncated, created_at IS NOT NULL AS has_created FROM t ORDER BY id',
    ]
    for profile in ("readonly", "development"):
        async with running(db, **HANDBOOK_PROFILES[profile]) as (_, client):
            for sql in queries:
                data = await call_ok(client, "execute_query", connection_id="default", query=sql)
                expected = [[comparable(v) for v in r.values()] for r in await conn.fetch(sql)]
                assert data["row_count"] == len(expected) > 0, sql
                assert [list(r.values()) for r in data["rows"]] == expected, sql


def comparable(value: Any) -> Any:
    """A value read by asyncpg, in the JSON form pgmcp returns it (SPEC §3: values without loss)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in "[{0123456789":  # jsonb comes back parsed
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


# --- per-connection readonly: it tightens, nothing loosens -----------------------------------------


async def test_a_readonly_connection_refuses_writes_that_default_allows(
    db: PgServer, conn: asyncpg.Connection
) -> None:
    insert = [{"query": "INSERT INTO grants_log VALUES ($1)", "params": [900]}]
    async with running(db, **HANDBOOK_PROFILES["development"]) as (_, client):
        await call_ok(
            client, "add_connection", connection_id="ro", readonly=True, pool_size=1, **db.spec_args()
        )
        data = await call_err(
            client, "execute_transaction", "query_blocked", connection_id="ro", queries=insert
        )
        assert "read-only" in data["error"]
        assert data["failed_index"] == 0
        await call_err(
            client,
            "batch_execute",
            "query_blocked",
            connection_id="ro",
            query="INSERT INTO grants_log VALUES ($1)",
            params_list=[[901]],
        )
        await call_err(
            client,
            "explain_query",
            "query_blocked",
            connection_id="ro",
            query="DELETE FROM grants_log",
            analyze=True,
        )
        assert await conn.fetchval("SELECT count(*) FROM grants_log WHERE id >= 900") == 0
        # The same write on the default connection of the same profile commits.
        data = await call_ok(client, "execute_transaction", connection_id="default", queries=insert)
        assert data["committed"] is True
        assert await conn.fetchval("SELECT count(*) FROM grants_log WHERE id = 900") == 1
        listed = {c["connection_id"]: c for c in (await call_ok(client, "list_connections"))["connections"]}
        assert listed["ro"]["readonly"] is True
        assert listed["default"]["readonly"] is False
    await conn.execute("DELETE FROM grants_log WHERE id >= 900")


async def test_readonly_mode_is_not_loosened_by_a_writable_connection(
    db: PgServer, conn: asyncpg.Connection
) -> None:
    insert = [{"query": "INSERT INTO grants_log VALUES ($1)", "params": [902]}]
    # READONLY_MODE with the development lists (INSERT allowed, not a blocked keyword).
    settings = {**HANDBOOK_PROFILES["development"], "readonly_mode": True}
    async with running(db, **settings) as (_, client):
        await call_ok(
            client, "add_connection", connection_id="rw", readonly=False, pool_size=1, **db.spec_args()
        )
        for connection_id in ("rw", "default"):
            data = await call_err(
                client, "execute_transaction", "query_blocked", connection_id=connection_id, queries=insert
            )
            assert "read-only mode" in data["error"]
            await call_err(
                client,
                "batch_execute",
                "query_blocked",
                connection_id=connection_id,
                query="INSERT INTO grants_log VALUES ($1)",
                params_list=[[903]],
            )
    assert await conn.fetchval("SELECT count(*) FROM grants_log WHERE id >= 900") == 0
