"""copy_data, compare_schemas and compare_tables between two real databases, through the MCP client.

The module's database is the source (connection ``default``); a second database,
created and dropped here, is the target (connection ``target``). The 1,000,000-row
copy, its time beside ``psql … | psql …`` and the server's RSS are a benchmark
(benchmarks/bench_copy.py); here 200,000 rows keep the suite quick.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.conftest import PgServer, create_database, drop_database
from tests.integration.harness import call_err, call_ok, payload, running

ROWS = 200_000

SOURCE_DDL = """
CREATE TABLE items (
    id      integer PRIMARY KEY,
    name    text,
    amount  numeric(14, 2),
    at      timestamptz
);
INSERT INTO items
SELECT g,
       CASE WHEN g % 1000 = 0 THEN NULL
            WHEN g % 777 = 0 THEN E'tab\\there, new\\nline, back\\\\slash, "quote", 中文 ' || g
            ELSE 'name ' || g END,
       CASE WHEN g % 500 = 0 THEN NULL ELSE (g % 100000) / 100.0 + 0.01 END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
  FROM generate_series(1, {rows}) AS g;
"""

TARGET_DDL = """
CREATE TABLE items (
    id      integer PRIMARY KEY,
    name    text,
    amount  numeric(14, 2),
    at      timestamptz
);
"""


@pytest.fixture(scope="module")
def target_db(module_db: PgServer) -> Iterator[PgServer]:
    """A second database of this module: the copy's target."""
    name = f"{module_db.database[:50]}_tgt_{uuid.uuid4().hex[:4]}"
    asyncio.run(create_database(module_db, name))
    try:
        yield replace(module_db, database=name)
    finally:
        asyncio.run(drop_database(module_db, name))


@pytest.fixture(scope="module")
def source_loaded(module_db: PgServer) -> PgServer:
    async def load() -> None:
        conn = await asyncpg.connect(module_db.dsn())
        try:
            await conn.execute(SOURCE_DDL.format(rows=ROWS))
            await conn.execute("ANALYZE items")
        finally:
            await conn.close()

    asyncio.run(load())
    return module_db


@pytest.fixture
async def target(target_db: PgServer) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the target, with a fresh empty ``items``."""
    conn = await asyncpg.connect(target_db.dsn())
    await conn.execute("DROP TABLE IF EXISTS items CASCADE")
    await conn.execute(TARGET_DDL)
    try:
        yield conn
    finally:
        await conn.close()


async def add_target(client: Any, target_db: PgServer, **extra: Any) -> None:
    await call_ok(client, "add_connection", connection_id="target", **target_db.spec_args(), **extra)


async def all_rows(dsn: str, table: str = "items") -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(f"SELECT id, name, amount, at FROM {table} ORDER BY id")]
    finally:
        await conn.close()


# --- copy_data ----------------------------------------------------------------------------------


async def test_copy_data_moves_every_row_identically_with_progress(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    notes: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total))

    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        result = await client.call_tool(
            "copy_data",
            {
                "source_connection_id": "default",
                "query": "SELECT id, name, amount, at FROM items ORDER BY id",
                "target_connection_id": "target",
                "target_table": "items",
                "batch_rows": 50_000,
            },
            progress_callback=on_progress,
        )
        data = payload(result)
        assert data["success"] is True, data
        assert data["rows_copied"] == ROWS and data["committed"] is True
        assert data["rows_per_second"] > 0 and data["duration_ms"] > 0

        compared = await call_ok(
            client,
            "compare_tables",
            source_connection_id="default",
            source_table="items",
            target_connection_id="target",
            target_table="public.items",
            key="id",
        )
        assert compared["identical"] is True, compared
        assert compared["counts"] == {"source": ROWS, "target": ROWS}
        assert compared["matching_chunks"] == compared["chunks"] == 16

    assert [p for p, _ in notes] == [50_000, 100_000, 150_000, 200_000]
    source_rows, target_rows = await all_rows(source_loaded.dsn()), await all_rows(target_db.dsn())
    assert len(target_rows) == ROWS
    assert target_rows == source_rows  # independently of compare_tables, value by value
    odd = next(r for r in target_rows if r[0] == 777)
    assert odd[1] == 'tab\there, new\nline, back\\slash, "quote", 中文 777'
    assert isinstance(odd[2], Decimal) and isinstance(odd[3], datetime)


async def test_a_row_violating_a_target_constraint_leaves_the_target_as_before(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    failing = 170_000
    await target.execute("INSERT INTO items VALUES ($1, 'already here', 1, now())", failing)
    before = await all_rows(target_db.dsn())
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        err = await call_err(
            client,
            "copy_data",
            "database_error",
            source_connection_id="default",
            query="SELECT * FROM items ORDER BY id",
            target_connection_id="target",
            target_table="items",
        )
        # The source's pooled connection is usable afterwards (its COPY was stopped and rolled back).
        again = await call_ok(
            client, "execute_query", connection_id="default", query="SELECT count(*) AS n FROM items"
        )
        assert again["rows"] == [{"n": ROWS}]
    assert f"Row {failing} " in err["error"], err
    assert 'duplicate key value violates unique constraint "items_pkey"' in err["error"]
    assert err["failed_row"] == failing and err["committed"] is False and err["rolled_back"] is True
    assert await all_rows(target_db.dsn()) == before


async def test_a_failing_source_query_copies_nothing(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        err = await call_err(
            client,
            "copy_data",
            "database_error",
            source_connection_id="default",
            query="SELECT id, name, 1000 / (150000 - id), at FROM items ORDER BY id",
            target_connection_id="target",
            target_table="items",
        )
    assert "division by zero" in err["error"]
    assert await target.fetchval("SELECT count(*) FROM items") == 0


@pytest.mark.parametrize("how", ["readonly connection", "READONLY_MODE"])
async def test_a_read_only_target_refuses_before_the_source_is_read(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection, how: str
) -> None:
    # The source table is locked: any read of it would wait (and end in a timeout), not refuse at once.
    locker = await asyncpg.connect(source_loaded.dsn())
    try:
        await locker.execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        settings: dict[str, Any] = {"query_timeout": 3}
        if how == "READONLY_MODE":
            settings["readonly_mode"] = True
        async with running(source_loaded, **settings) as (app, client):
            await add_target(client, target_db, readonly=how == "readonly connection")
            started = time.perf_counter()
            err = await call_err(
                client,
                "copy_data",
                "query_blocked",
                source_connection_id="default",
                query="SELECT * FROM items",
                target_connection_id="target",
                target_table="items",
            )
            assert time.perf_counter() - started < 2
            # Nothing reached the source: no query of it in the history.
            assert app.monitor.history(connection_id="default") == []
        waiting = await locker.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'items'::regclass"
        )
        assert waiting == 0
    finally:
        await locker.close()
    assert "read" in err["error"].lower()
    assert await target.fetchval("SELECT count(*) FROM items") == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"allowed_operations": "SELECT,WITH"}, "operation 'INSERT' is not allowed"),
        ({"blocked_keywords": "DROP,INSERT"}, "dangerous keyword 'INSERT'"),
    ],
)
async def test_the_targets_policy_judges_the_copy_as_an_insert(
    source_loaded: PgServer,
    target_db: PgServer,
    target: asyncpg.Connection,
    settings: dict[str, Any],
    message: str,
) -> None:
    async with running(source_loaded, **settings) as (_app, client):
        await add_target(client, target_db)
        err = await call_err(
            client,
            "copy_data",
            "query_blocked",
            source_connection_id="default",
            query="SELECT * FROM items",
            target_connection_id="target",
            target_table="items",
        )
    assert message in err["error"]


async def test_the_source_query_must_be_a_read(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        await call_err(
            client,
            "copy_data",
            "query_blocked",
            source_connection_id="default",
            query="DELETE FROM items RETURNING *",
            target_connection_id="target",
            target_table="items",
        )
        await call_err(
            client,
            "copy_data",
            "query_blocked",
            source_connection_id="default",
            query="SELECT 1; COMMIT; SELECT 2",
            target_connection_id="target",
            target_table="items",
        )
    conn = await asyncpg.connect(source_loaded.dsn())
    try:
        assert await conn.fetchval("SELECT count(*) FROM items") == ROWS
    finally:
        await conn.close()


async def test_on_conflict_skip_keeps_existing_rows_and_adds_the_rest(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    await target.execute("INSERT INTO items SELECT g, 'kept', 0, now() FROM generate_series(1, 100) g")
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        data = await call_ok(
            client,
            "copy_data",
            source_connection_id="default",
            query="SELECT id, upper(name), amount, at FROM items WHERE id <= 1000 -- the comment ends the line",
            target_connection_id="target",
            target_table="items",
            on_conflict="skip",
            batch_rows=300,
        )
    assert (data["rows_copied"], data["rows_skipped"], data["rows_read"]) == (900, 100, 1000)
    assert await target.fetchval("SELECT count(*) FROM items WHERE name = 'kept'") == 100
    assert await target.fetchval("SELECT name FROM items WHERE id = 101") == "NAME 101"
    assert await target.fetchval("SELECT count(*) FROM items") == 1000


async def test_columns_map_the_querys_columns_onto_the_targets(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    await target.execute(
        "CREATE TABLE people (pk bigserial PRIMARY KEY, label varchar(40), ref bigint NOT NULL, "
        "copied_at timestamptz DEFAULT now())"
    )
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        by_name = await call_ok(
            client,
            "copy_data",
            source_connection_id="default",
            query="SELECT id AS source_id, 'n' || id AS title FROM items WHERE id <= 10",
            target_connection_id="target",
            target_table="people",
            columns={"title": "label", "source_id": "ref"},
        )
        by_list = await call_ok(
            client,
            "copy_data",
            source_connection_id="default",
            query="SELECT 'm' || id, id FROM items WHERE id <= 5",
            target_connection_id="target",
            target_table="people",
            columns=["label", "ref"],
        )
        wrong = await call_err(
            client,
            "copy_data",
            "invalid_input",
            source_connection_id="default",
            query="SELECT id FROM items",
            target_connection_id="target",
            target_table="people",
            columns=["nope"],
        )
        missing = await call_err(
            client,
            "copy_data",
            "database_error",
            source_connection_id="default",
            query="SELECT id FROM items",
            target_connection_id="target",
            target_table="no_such_table",
        )
    assert (by_name["rows_copied"], by_list["rows_copied"]) == (10, 5)
    assert await target.fetchval("SELECT count(*) FROM people WHERE label = 'n' || ref") == 10
    assert await target.fetchval("SELECT count(*) FROM people WHERE label = 'm' || ref") == 5
    assert await target.fetchval("SELECT count(*) FROM people WHERE copied_at IS NOT NULL") == 15
    assert "nope" in wrong["error"]
    assert "no_such_table" in missing["error"]


# --- compare_tables -----------------------------------------------------------------------------


async def test_compare_tables_names_the_key_range_of_a_single_changed_row(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    await target.execute("DROP TABLE items")
    await target.execute(TARGET_DDL.replace("items", "items_copy"))
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        await call_ok(
            client,
            "copy_data",
            source_connection_id="default",
            query="SELECT * FROM items",
            target_connection_id="target",
            target_table="items_copy",
        )
        args = {
            "source_connection_id": "default",
            "source_table": "items",
            "target_connection_id": "target",
            "target_table": "items_copy",
            "key": "id",
            "chunks": 8,
        }
        same = await call_ok(client, "compare_tables", **args)
        assert same["identical"] is True and same["differing_chunks"] == []
        changed = 123_457
        await target.execute("UPDATE items_copy SET amount = amount + 0.01 WHERE id = $1", changed)
        one = await call_ok(client, "compare_tables", **args)
        assert one["identical"] is False
        assert one["counts"] == {"source": ROWS, "target": ROWS}
        assert one["matching_chunks"] == 7
        (chunk,) = one["differing_chunks"]
        assert chunk["from_key"] <= changed < chunk["to_key"], chunk
        assert chunk["source_count"] == chunk["target_count"]
        # Only the compared columns count: the changed one left out, the tables agree.
        narrow = await call_ok(client, "compare_tables", **args, columns=["id", "name", "at"])
        assert narrow["identical"] is True
        # A missing row changes the count of its range.
        await target.execute("DELETE FROM items_copy WHERE id = 5")
        gone = await call_ok(client, "compare_tables", **args)
        first = gone["differing_chunks"][0]
        assert first["from_key"] is None and first["to_key"] > 5
        assert (first["source_count"], first["target_count"]) == (
            first["target_count"] + 1,
            first["target_count"],
        )


async def test_compare_tables_with_a_composite_key(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    ddl = "CREATE TABLE pairs (a int, b text, v numeric, PRIMARY KEY (a, b))"
    fill = "INSERT INTO pairs SELECT g / 10, 'k' || (g % 10), g FROM generate_series(1, 5000) g"
    src = await asyncpg.connect(source_loaded.dsn())
    try:
        await src.execute(f"DROP TABLE IF EXISTS pairs; {ddl}; {fill}")
    finally:
        await src.close()
    await target.execute(f"DROP TABLE IF EXISTS pairs; {ddl}; {fill}")
    await target.execute("UPDATE pairs SET v = -1 WHERE a = 300 AND b = 'k3'")
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        result = await call_ok(
            client,
            "compare_tables",
            source_connection_id="default",
            source_table="pairs",
            target_connection_id="target",
            target_table="pairs",
            key=["a", "b"],
            chunks=10,
        )
    assert result["identical"] is False
    (chunk,) = result["differing_chunks"]
    assert (
        (chunk["from_key"][0], chunk["from_key"][1]) <= (300, "k3") < (chunk["to_key"][0], chunk["to_key"][1])
    )


# --- compare_schemas ----------------------------------------------------------------------------

SCHEMA_DDL = """
DROP SCHEMA IF EXISTS app CASCADE;
CREATE SCHEMA app;
CREATE TABLE app.customers (
    id      bigint PRIMARY KEY,
    email   text NOT NULL UNIQUE,
    name    varchar(100),
    score   integer DEFAULT 0
);
CREATE TABLE app.orders (
    id          bigint PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES app.customers (id) ON DELETE CASCADE,
    total       numeric(12, 2) NOT NULL,
    placed_at   timestamptz NOT NULL
);
CREATE INDEX orders_placed_at_idx ON app.orders (placed_at);
CREATE INDEX orders_big_idx ON app.orders (total) WHERE total > 1000;
CREATE TABLE app.audit (id bigint PRIMARY KEY, note text);
"""


async def test_compare_schemas_finds_each_kind_of_difference(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    src = await asyncpg.connect(source_loaded.dsn())
    try:
        await src.execute(SCHEMA_DDL)
    finally:
        await src.close()
    await target.execute(SCHEMA_DDL)
    async with running(source_loaded) as (_app, client):
        await add_target(client, target_db)
        args = {
            "source_connection_id": "default",
            "target_connection_id": "target",
            "source_schema": "app",
            "target_schema": "app",
        }
        same = await call_ok(client, "compare_schemas", **args)
        assert same == {"success": True, "differences": [], "identical": True}

        await target.execute(
            """
            DROP TABLE app.audit;
            ALTER TABLE app.customers DROP COLUMN score;
            ALTER TABLE app.customers ALTER COLUMN name TYPE text;
            ALTER TABLE app.orders ALTER COLUMN placed_at DROP NOT NULL;
            DROP INDEX app.orders_placed_at_idx;
            ALTER TABLE app.orders DROP CONSTRAINT orders_customer_id_fkey;
            CREATE INDEX orders_big_idx_renamed ON app.orders (total) WHERE total > 1000;
            DROP INDEX app.orders_big_idx;
            """
        )
        found = await call_ok(client, "compare_schemas", **args)
        only_orders = await call_ok(client, "compare_schemas", **args, tables=["orders"])
    assert found["identical"] is False
    kinds = {(d["table"], d["kind"]) for d in found["differences"]}
    assert kinds == {
        ("audit", "missing_table"),
        ("customers", "missing_column"),
        ("customers", "type_changed"),
        ("orders", "nullability_changed"),
        ("orders", "missing_index"),
        ("orders", "missing_foreign_key"),
    }, found["differences"]
    by_kind = {d["kind"]: d for d in found["differences"]}
    assert by_kind["type_changed"]["source"] == "character varying(100)"
    assert by_kind["type_changed"]["target"] == "text"
    assert "score" in by_kind["missing_column"]["detail"]
    assert "placed_at" in by_kind["nullability_changed"]["detail"]
    assert by_kind["missing_index"]["source"]["name"] == "orders_placed_at_idx"
    assert "customers" in by_kind["missing_foreign_key"]["detail"]
    assert {d["table"] for d in only_orders["differences"]} == {"orders"}


# --- the issue's own figures: 1,000,000 rows ----------------------------------------------------


@pytest.mark.slow
async def test_a_million_rows_arrive_identical_and_a_violation_at_row_700000_leaves_the_target_as_before(
    module_db: PgServer, target_db: PgServer, target: asyncpg.Connection
) -> None:
    """The time beside psql and the RSS are in benchmarks/bench_copy.py; here the data."""
    rows = 1_000_000
    src = await asyncpg.connect(module_db.dsn())
    try:
        await src.execute("DROP TABLE IF EXISTS million")
        await src.execute(SOURCE_DDL.replace("items", "million").format(rows=rows))
    finally:
        await src.close()
    await target.execute(TARGET_DDL.replace("items", "million"))
    await target.execute("ALTER TABLE million ADD CONSTRAINT not_that_one CHECK (id <> 700000)")
    async with running(module_db) as (_app, client):
        await add_target(client, target_db)
        copy = {
            "source_connection_id": "default",
            "query": "SELECT id, name, amount, at FROM million ORDER BY id",
            "target_connection_id": "target",
            "target_table": "million",
        }
        err = await call_err(client, "copy_data", "database_error", **copy)
        assert err["failed_row"] == 700_000
        assert "Row 700000 " in err["error"] and 'violates check constraint "not_that_one"' in err["error"]
        assert await target.fetchval("SELECT count(*) FROM million") == 0

        await target.execute("ALTER TABLE million DROP CONSTRAINT not_that_one")
        done = await call_ok(client, "copy_data", **copy)
        assert done["rows_copied"] == rows
        compared = await call_ok(
            client,
            "compare_tables",
            source_connection_id="default",
            source_table="million",
            target_connection_id="target",
            target_table="million",
            key="id",
        )
        assert compared["identical"] is True
    digest = "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM million AS t"
    src = await asyncpg.connect(module_db.dsn())
    try:
        expected = tuple(await src.fetchrow(digest))
        await src.execute("DROP TABLE million")
    finally:
        await src.close()
    assert tuple(await target.fetchrow(digest)) == expected
    await target.execute("DROP TABLE million")


# --- the handbook's scenario 2, as the prompt now tells it --------------------------------------


async def test_scenario_2_with_the_migration_tools(module_db: PgServer, target_db: PgServer) -> None:
    """compare_schemas, copy_data with a transforming query, compare_tables: legacy customers
    into the demo's empty customers_v2, on two databases loaded with the demo data."""
    from tests.integration.harness import load_demo

    legacy = replace(module_db, database=f"{module_db.database[:50]}_leg")
    modern = replace(module_db, database=f"{module_db.database[:50]}_mod")
    for db in (legacy, modern):
        await create_database(module_db, db.database)
        await load_demo(db)
    try:
        async with running(module_db) as (app, client):
            prompt = await client.get_prompt(
                "database_migration", {"source": "legacy_db", "target": "modern_db"}
            )
            text = str(prompt)
            assert "compare_schemas" in text and "copy_data" in text and "compare_tables" in text
            await call_ok(
                client, "add_connection", connection_id="legacy_db", **legacy.spec_args(), pool_size=2
            )
            await call_ok(
                client, "add_connection", connection_id="modern_db", **modern.spec_args(), pool_size=2
            )
            schemas = await call_ok(
                client,
                "compare_schemas",
                source_connection_id="legacy_db",
                target_connection_id="modern_db",
                tables=["customers", "customers_v2"],
            )
            assert schemas["identical"] is True
            copied = await call_ok(
                client,
                "copy_data",
                source_connection_id="legacy_db",
                query="SELECT id, name, lower(trim(email)), nullif(regexp_replace(phone, '[^0-9]', '', 'g'), ''), "
                "created_at FROM customers",
                target_connection_id="modern_db",
                target_table="customers_v2",
            )
            assert copied["rows_copied"] == 2000
            verified = await call_ok(
                client,
                "compare_tables",
                source_connection_id="legacy_db",
                source_table="customers",
                target_connection_id="modern_db",
                target_table="customers_v2",
                key="id",
                columns=["id", "name", "created_at"],
            )
            assert verified["identical"] is True and verified["counts"] == {"source": 2000, "target": 2000}
            # The transformed column differs where the transformation changed something.
            emails = await call_ok(
                client,
                "compare_tables",
                source_connection_id="legacy_db",
                source_table="customers",
                target_connection_id="modern_db",
                target_table="customers_v2",
                key="id",
                columns=["id", "email"],
            )
            changed = await call_ok(
                client,
                "execute_query",
                connection_id="legacy_db",
                query="SELECT count(*) AS n FROM customers WHERE email IS DISTINCT FROM lower(trim(email))",
            )
            assert emails["identical"] is (changed["rows"][0]["n"] == 0)
    finally:
        for db in (legacy, modern):
            await drop_database(module_db, db.database)


# --- time bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"query_timeout": 1}, "the source sent no rows for 1 seconds (QUERY_TIMEOUT)"),
        ({"query_timeout": 10, "copy_timeout": 1}, "the copy reached COPY_TIMEOUT=1 seconds"),
    ],
)
async def test_a_source_that_sends_nothing_stops_the_copy_with_a_timeout(
    source_loaded: PgServer,
    target_db: PgServer,
    target: asyncpg.Connection,
    settings: dict[str, Any],
    message: str,
) -> None:
    async with running(source_loaded, **settings) as (_app, client):
        await add_target(client, target_db)
        started = time.perf_counter()
        err = await call_err(
            client,
            "copy_data",
            "timeout",
            source_connection_id="default",
            query="SELECT id, pg_sleep(4)::text FROM items WHERE id <= 2",
            target_connection_id="target",
            target_table="items",
        )
        assert time.perf_counter() - started < 3.5
        # The source's statement was cancelled in the database: its connection answers again.
        again = await call_ok(client, "execute_query", connection_id="default", query="SELECT 1 AS one")
        assert again["rows"] == [{"one": 1}]
    assert message in err["error"], err
    assert await target.fetchval("SELECT count(*) FROM items") == 0


# --- CONFIRM_WRITES -----------------------------------------------------------------------------


class Person:
    def __init__(self, action: str) -> None:
        self.action = action
        self.messages: list[str] = []

    async def __call__(self, context: Any, params: Any) -> Any:
        from mcp_types import ElicitResult

        self.messages.append(params.message)
        content = {"confirm": True} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)  # type: ignore[arg-type]


@pytest.mark.parametrize("action", ["accept", "decline", None])
async def test_confirm_writes_asks_before_copy_data_writes(
    source_loaded: PgServer, target_db: PgServer, target: asyncpg.Connection, action: str | None
) -> None:
    from mcp import Client

    from pgmcp.app import open_app
    from pgmcp.server import build_server
    from tests.integration.harness import settings_for

    person = Person(action) if action else None
    settings = settings_for(source_loaded, confirm_writes="destructive", confirm_rows_threshold=100)
    async with (
        open_app(settings) as app,
        Client(build_server(app), elicitation_callback=person) as client,  # type: ignore[arg-type]
    ):
        await add_target(client, target_db)
        args = {
            "source_connection_id": "default",
            "query": "SELECT * FROM items WHERE id <= 500",
            "target_connection_id": "target",
            "target_table": "items",
        }
        result = payload(await client.call_tool("copy_data", args))
        small = payload(
            await client.call_tool("copy_data", {**args, "query": "SELECT * FROM items WHERE id > 199990"})
        )
    assert small["success"] is True and small["rows_copied"] == 10  # under the threshold: not asked
    if action == "accept":
        assert result["success"] is True and result["rows_copied"] == 500
        assert "500 rows" in person.messages[0] and "items" in person.messages[0]
        assert await target.fetchval("SELECT count(*) FROM items") == 510
    else:
        assert result["error_type"] == ("declined" if action else "confirmation_required")
        assert await target.fetchval("SELECT count(*) FROM items") == 10
