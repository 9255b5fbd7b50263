"""Property: whatever the policy calls a read cannot change the database.

Statements are composed from fragments (reads, writes, data-modifying CTEs,
EXPLAIN with and without ANALYZE, DDL, session and transaction commands,
functions that write or reach outside), then disguised (casing, comments,
whitespace). For each one:

1. the policy answers with a decision or a pgmcp error, never anything else;
2. when it says ``is_read``, the statement is run on the real PostgreSQL in a
   READ ONLY transaction that is then rolled back, over the *simple* query
   protocol (the one that would run stacked statements), and the database and
   session state must be exactly as before;
3. and, so that the policy is tested on its own and not only the READ ONLY
   layer behind it: run in an ordinary transaction, the statement changes
   nothing either (looked at before the rollback). User-defined functions are
   the documented exception: their bodies are the database's business.

The corpus of ``tests/unit/adversarial_corpus.py`` gets the same treatment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgmcp.errors import PgMcpError
from pgmcp.security import Decision, Policy

from ..conftest import PgServer
from ..unit.adversarial_corpus import CORPUS, PROFILES

SCHEMA = """
CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL DEFAULT 0, b text);
INSERT INTO t SELECT g, g * 10, 'row ' || g FROM generate_series(1, 20) g;
CREATE TABLE u (id int PRIMARY KEY, a int);
INSERT INTO u SELECT g, g FROM generate_series(1, 5) g;
CREATE TABLE customers (id int PRIMARY KEY, name text, email text, meta jsonb DEFAULT '{}');
INSERT INTO customers SELECT g, 'c' || g, 'c' || g || '@example.com', '{"tier": "gold"}' FROM generate_series(1, 5) g;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric, status text,
                     created_at timestamptz DEFAULT now(), items jsonb DEFAULT '[]');
INSERT INTO orders SELECT g, g % 5 + 1, g * 1.5, 'paid', now(), '[1, 2]' FROM generate_series(1, 30) g;
CREATE TABLE logs (id serial PRIMARY KEY, message text);
INSERT INTO logs (message) VALUES ('drop table happened'), ('fine');
CREATE SEQUENCE s;
CREATE VIEW v AS SELECT * FROM t;
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM t;
-- User-defined functions that write: the policy cannot see their bodies; READ ONLY stops them.
CREATE FUNCTION bump() RETURNS int LANGUAGE plpgsql AS $$
  BEGIN INSERT INTO t (id, a, b) VALUES (1000 + (random() * 1000)::int, 0, 'bump'); RETURN 1; END $$;
CREATE FUNCTION bump_sql() RETURNS int LANGUAGE sql AS $$ UPDATE u SET a = a + 1 RETURNING 1 $$;
"""

# Everything that could change, in the database and in the session.
SNAPSHOT = """
SELECT (SELECT count(*) FROM t) AS t_rows,
       (SELECT coalesce(sum(hashtext(t::text)), 0) FROM t) AS t_sum,
       (SELECT coalesce(sum(hashtext(u::text)), 0) FROM u) AS u_sum,
       (SELECT coalesce(sum(hashtext(orders::text)), 0) FROM orders) AS orders_sum,
       (SELECT n FROM mv) AS mv_n,
       (SELECT last_value::text || is_called::text FROM s) AS seq,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%') AS relations,
       (SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND NOT attisdropped) AS t_columns,
       (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
       (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory,
       (SELECT count(*) FROM pg_listening_channels()) AS listening,
       (SELECT count(*) FROM pg_cursors) AS cursors,
       (SELECT count(*) FROM pg_prepared_statements WHERE name NOT LIKE '\\_\\_asyncpg%') AS prepared,
       (SELECT count(*) FROM pg_prepared_xacts) AS prepared_xacts,
       current_setting('statement_timeout') AS statement_timeout,
       current_setting('search_path') AS search_path,
       current_user AS role
"""

EVERYTHING = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "WITH", "EXPLAIN", "SHOW", "CREATE", "ALTER", "DROP",
    "TRUNCATE", "GRANT", "REVOKE", "COPY", "COMMENT", "VACUUM", "ANALYZE", "LOCK", "REFRESH", "SET", "RESET",
]  # fmt: skip
POLICIES = {
    "permissive": Policy(allowed_operations=EVERYTHING, blocked_keywords=()),
    "default": Policy(),
    **{name: Policy(**values) for name, values in PROFILES.items()},
}

# --- statement fragments -----------------------------------------------------------------

READS = [
    "SELECT * FROM t",
    "SELECT a, b FROM t WHERE id > {n}",
    "SELECT count(*) FROM t",
    "VALUES (1), (2)",
    "TABLE t",
    "SELECT * FROM v",
    "SELECT * FROM generate_series(1, {n}) g",
    "SELECT id FROM t WHERE b LIKE '%DROP%'",
    "SELECT 'DELETE FROM t' AS q",
    "SELECT $$; DELETE FROM t; $$",
    'SELECT "a" FROM t',
    "SELECT pg_sleep(0)",
    "SELECT txid_current()",
    "SELECT currval('s')",
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * INTO z_{n} FROM t",
    "SELECT * INTO TEMP z_{n} FROM t",
    "SELECT nextval('s')",
    "SELECT setval('s', {n})",
    "SELECT bump()",
    "SELECT bump_sql()",
    "SELECT * FROM bump()",
    "SELECT set_config('search_path', 'pg_catalog', false)",
    "SELECT pg_advisory_lock({n})",
    "SELECT lo_from_bytea(0, 'x')",
    "SELECT pg_notify('ch', 'x')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT query_to_xml('DELETE FROM t RETURNING 1', true, false, '')",
]
WRITES = [
    "INSERT INTO t (id, a, b) VALUES ({big}, 1, 'x')",
    "UPDATE t SET a = a + 1 WHERE id = {n}",
    "DELETE FROM t WHERE id = {n}",
    "UPDATE u SET a = 0",
    "INSERT INTO u SELECT id + 100, a FROM t",
    "MERGE INTO u USING t ON u.id = t.id WHEN MATCHED THEN UPDATE SET a = t.a",
    "UPDATE pg_settings SET setting = 'pg_catalog' WHERE name = 'search_path'",
]
OTHERS = [
    "CREATE TABLE z_{n} (a int)",
    "CREATE TABLE z_{n} AS SELECT * FROM t",
    "CREATE TEMP TABLE z_{n} (a int)",
    "CREATE VIEW zv_{n} AS SELECT 1",
    "DROP TABLE u",
    "TRUNCATE t",
    "ALTER TABLE t ADD COLUMN c_{n} int",
    "COPY (SELECT 1) TO STDOUT",
    "SET search_path = pg_catalog",
    "SET TRANSACTION READ WRITE",
    "RESET ALL",
    "LISTEN ch",
    "NOTIFY ch",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "PREPARE p AS DELETE FROM t",
    "COMMIT",
    "BEGIN",
    "SAVEPOINT sp",
    "VACUUM t",
    "ANALYZE t",
    "REFRESH MATERIALIZED VIEW mv",
    "LOCK TABLE t",
    "COMMENT ON TABLE t IS 'x'",
    "DO $$ BEGIN DELETE FROM t; END $$",
    "SHOW search_path",
]
EXPLAIN_OPTIONS = [
    "",
    "ANALYZE ",
    "(ANALYZE) ",
    "(ANALYZE true, COSTS off) ",
    "(ANALYZE on) ",
    "(ANALYZE false) ",
    "(ANALYZE off) ",
    "(FORMAT JSON) ",
    "VERBOSE ",
    "(ANALYZE false, ANALYZE) ",
]
SEPARATORS = [" ", " ", " ", "\n", "\t", " /* c */ ", " -- c\n", "/**/", " /* a /* DROP */ b */ ", "\r\n  "]


@st.composite
def fragments(draw: st.DrawFn, pool: list[str]) -> str:
    template = draw(st.sampled_from(pool))
    return template.format(n=draw(st.integers(1, 25)), big=draw(st.integers(100, 99999)))


@st.composite
def statements(draw: st.DrawFn, depth: int = 0) -> str:
    reads, writes, others = fragments(READS), fragments(WRITES), fragments(OTHERS)
    shapes = ["read", "write", "other", "cte_read", "cte_write", "subquery"]
    if depth < 2:
        shapes += ["explain", "explain", "multi", "union"]
    shape = draw(st.sampled_from(shapes))
    if shape == "read":
        return draw(reads)
    if shape == "write":
        return draw(writes)
    if shape == "other":
        return draw(others)
    if shape == "cte_read":
        return f"WITH x AS ({draw(reads)}) SELECT * FROM x"
    if shape == "cte_write":
        main = draw(st.sampled_from(["SELECT * FROM x", "SELECT 1", "SELECT count(*) FROM x"]))
        return f"WITH x AS ({draw(writes)} RETURNING *) {main}"
    if shape == "subquery":
        return f"SELECT * FROM ({draw(reads)}) sub"
    if shape == "explain":
        return f"EXPLAIN {draw(st.sampled_from(EXPLAIN_OPTIONS))}{draw(statements(depth + 1))}"
    if shape == "union":
        return f"{draw(reads)} UNION ALL {draw(reads)}"
    return f"{draw(statements(depth + 1))}; {draw(statements(depth + 1))}"


@st.composite
def disguised(draw: st.DrawFn) -> str:
    sql = draw(statements())
    case = draw(st.sampled_from(["keep", "keep", "lower", "upper", "swap"]))
    sql = {"keep": sql, "lower": sql.lower(), "upper": sql.upper(), "swap": sql.swapcase()}[case]
    words = sql.split(" ")
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words) - 1, max_size=len(words) - 1))
    out = words[0]
    for sep, word in zip(seps, words[1:], strict=True):
        out += sep + word
    prefix = draw(st.sampled_from(["", "", "/* lead */ ", "-- lead\n", "\n  "]))
    suffix = draw(st.sampled_from(["", "", ";", ";;", " -- tail", " /* tail */"]))
    return prefix + out + suffix


# --- database -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def schema(module_db: PgServer) -> AsyncIterator[PgServer]:
    admin = await asyncpg.connect(module_db.dsn())
    try:
        await admin.execute(SCHEMA)
    finally:
        await admin.close()
    yield module_db


@pytest.fixture
async def db(schema: PgServer, conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    await conn.execute("SET statement_timeout = '5s'")
    yield conn


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    row = await conn.fetchrow(SNAPSHOT)
    assert row is not None
    return dict(row)


async def run_read_only_and_roll_back(conn: asyncpg.Connection, sql: str) -> None:
    """Run over the simple query protocol inside READ ONLY, then roll back whatever happened."""
    tr = conn.transaction(readonly=True)
    await tr.start()
    try:
        await conn.execute(sql)  # no arguments: simple protocol, stacked statements would all run
    except asyncpg.PostgresError:
        pass
    finally:
        if not conn.is_in_transaction():  # a COMMIT got through: the property is already broken
            pytest.fail(f"the statement ended the READ ONLY transaction: {sql!r}")
        await tr.rollback()


def decide(sql: str) -> dict[str, Decision | None]:
    """Every policy's decision (None = refused); anything but a pgmcp error fails the test."""
    decisions: dict[str, Decision | None] = {}
    for name, policy in POLICIES.items():
        try:
            decisions[name] = policy.check(sql)
        except PgMcpError:
            decisions[name] = None
    return decisions


async def run_read_write_and_look(conn: asyncpg.Connection, sql: str) -> dict[str, Any]:
    """Run in an ordinary transaction and take the snapshot *before* rolling back."""
    tr = conn.transaction()
    await tr.start()
    try:
        try:
            async with conn.transaction():  # a savepoint: an error leaves the outer transaction usable
                await conn.execute(sql)
        except asyncpg.PostgresError:
            pass
        if not conn.is_in_transaction():
            pytest.fail(f"the statement ended the transaction: {sql!r}")
        return await snapshot(conn)
    finally:
        if conn.is_in_transaction():
            await tr.rollback()


# The policy cannot see inside these (documented): only the READ ONLY layer stops them.
USER_DEFINED_WRITERS = ("bump",)


async def assert_reads_leave_no_trace(conn: asyncpg.Connection, sql: str) -> bool:
    """For a statement some policy calls a read: (1) READ ONLY + rollback leaves everything as it
    was; (2) the statement itself changes nothing, even without READ ONLY (unless it calls a
    user-defined function, whose body only the database sees)."""
    decisions = decide(sql)
    if not any(d is not None and d.is_read for d in decisions.values()):
        return False
    before = await snapshot(conn)
    await run_read_only_and_roll_back(conn, sql)
    assert await snapshot(conn) == before, f"a read changed state through READ ONLY: {sql!r}"
    if not any(name in sql.lower() for name in USER_DEFINED_WRITERS):
        during = await run_read_write_and_look(conn, sql)
        assert during == before, f"the policy called a write a read: {sql!r}"
        assert await snapshot(conn) == before
    return True


# --- tests ---------------------------------------------------------------------------------------


async def test_the_snapshot_sees_writes_and_session_changes(db: asyncpg.Connection) -> None:
    """The harness itself: a write, or session state that outlives a rollback, shows in the snapshot."""
    before = await snapshot(db)
    tr = db.transaction()
    await tr.start()
    await db.execute("UPDATE t SET a = a + 1 WHERE id = 1")
    assert (await snapshot(db))["t_sum"] != before["t_sum"]
    await tr.rollback()
    for sql, key, undo in [
        ("SELECT nextval('s')", "seq", "SELECT setval('s', 1, false)"),
        ("SELECT pg_advisory_lock(42)", "advisory", "SELECT pg_advisory_unlock_all()"),
        ("LISTEN ch", "listening", "UNLISTEN *"),
        ("SET search_path = pg_catalog, public", "search_path", "RESET search_path"),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "cursors", "CLOSE c"),
    ]:
        await db.execute(sql)
        assert (await snapshot(db))[key] != before[key], sql
        await db.execute(undo)
    assert await snapshot(db) == before


async def test_user_defined_writer_is_called_a_read_and_read_only_stops_it(db: asyncpg.Connection) -> None:
    # The policy cannot see a function body (documented); the READ ONLY layer is what stops it.
    assert POLICIES["default"].check("SELECT bump()").is_read
    before = await snapshot(db)
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        async with db.transaction(readonly=True):
            await db.execute("SELECT bump()")
    assert await snapshot(db) == before


async def test_every_corpus_read_leaves_no_trace(db: asyncpg.Connection) -> None:
    ran = 0
    for sql, _, _ in CORPUS:
        if "\x00" in sql:
            continue
        ran += await assert_reads_leave_no_trace(db, sql)
    assert ran >= 60


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sql=disguised())
async def test_what_the_policy_calls_a_read_cannot_write(db: asyncpg.Connection, sql: str) -> None:
    await assert_reads_leave_no_trace(db, sql)


@settings(max_examples=300, deadline=None)
@given(sql=st.one_of(disguised(), st.text(max_size=200)))
def test_the_policy_only_ever_raises_pgmcp_errors(sql: str) -> None:
    decide(sql)
