"""search_objects and the bounded list_tables, on a database of 5,000 tables."""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.conftest import PgServer
from tests.integration.harness import call_err, call_ok, running

TABLES = 5000

pytestmark = pytest.mark.slow  # 5,000 tables take ~15 s to create


@pytest.fixture(scope="module")
async def wide(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        for start in range(1, TABLES + 1, 250):  # one transaction each: max_locks_per_transaction
            await conn.execute(
                f"""DO $$ BEGIN
                      FOR i IN {start}..{start + 249} LOOP
                        EXECUTE format('CREATE TABLE public.item_%s (id int, label text, amount_%s numeric)', i, i);
                      END LOOP;
                    END $$"""
            )
        await conn.execute(
            """CREATE TABLE public.customer_accounts (id int PRIMARY KEY, email text NOT NULL);
                COMMENT ON TABLE public.customer_accounts IS 'who pays';
                CREATE INDEX customer_accounts_email_idx ON public.customer_accounts (email);
                CREATE VIEW public.customer_view AS SELECT id FROM public.customer_accounts;
                CREATE FUNCTION public.customer_count() RETURNS bigint LANGUAGE sql
                  AS 'SELECT count(*) FROM public.customer_accounts';
                CREATE SCHEMA billing; CREATE TABLE billing.customer_invoices (id int);
                ANALYZE public.customer_accounts;"""
        )
    finally:
        await conn.close()
    return module_db


async def test_a_broad_search_on_5000_tables_answers_within_the_cap_truncated_with_a_useful_page(
    wide: PgServer,
) -> None:
    async with running(wide) as (app, client):
        result = await client.call_tool("search_objects", {"connection_id": "default", "pattern": "item"})
        data = result.structured_content
        assert data is not None and data["success"] is True
        assert data["truncated"] is True and "hint" in data
        assert len(data["objects"]) == 50
        assert len(json.dumps(data["objects"], separators=(",", ":"))) <= 32768
        first = data["objects"][0]
        assert first == {"kind": "table", "schema": "public", "name": "item_1"}
        # A higher limit is still held to the byte cap.
        many = await call_ok(client, "search_objects", connection_id="default", pattern="item", limit=1000)
        assert many["truncated"] is True
        assert len(json.dumps(many["objects"], separators=(",", ":"))) <= min(
            32768, app.settings.max_result_bytes
        )
        assert 100 < len(many["objects"]) < 1000


async def test_search_finds_each_kind_with_summary_detail(wide: PgServer) -> None:
    async with running(wide) as (_, client):
        data = await call_ok(
            client, "search_objects", connection_id="default", pattern="customer", detail="summary"
        )
        assert data["truncated"] is False
        found = {(o["kind"], o["schema"], o["name"]) for o in data["objects"]}
        assert {
            ("table", "public", "customer_accounts"),
            ("table", "billing", "customer_invoices"),
            ("view", "public", "customer_view"),
            ("function", "public", "customer_count"),
            ("index", "public", "customer_accounts_email_idx"),
        } <= found
        table = next(o for o in data["objects"] if o["name"] == "customer_accounts")
        assert table["column_count"] == 2 and table["comment"] == "who pays" and table["type"] == "BASE TABLE"
        index = next(o for o in data["objects"] if o["kind"] == "index")
        assert index["table"] == "customer_accounts"
        columns = await call_ok(
            client,
            "search_objects",
            connection_id="default",
            pattern="email",
            kinds=["column"],
            detail="summary",
        )
        assert columns["objects"] == [
            {
                "kind": "column",
                "schema": "public",
                "name": "email",
                "table": "customer_accounts",
                "data_type": "text",
                "nullable": False,
                "comment": None,
            }
        ]


async def test_like_patterns_schema_filter_and_full_detail(wide: PgServer) -> None:
    async with running(wide) as (_, client):
        data = await call_ok(
            client, "search_objects", connection_id="default", pattern="item_4999", kinds=["table"]
        )
        assert [o["name"] for o in data["objects"]] == ["item_4999"]
        like = await call_ok(
            client, "search_objects", connection_id="default", pattern="item_12_", kinds=["table"], limit=100
        )
        assert {o["name"] for o in like["objects"]} == {f"item_12{d}" for d in range(10)}
        billing = await call_ok(
            client, "search_objects", connection_id="default", pattern="customer", schema="billing"
        )
        assert [(o["kind"], o["name"]) for o in billing["objects"]] == [("table", "customer_invoices")]
        full = await call_ok(
            client,
            "search_objects",
            connection_id="default",
            pattern="customer_accounts",
            kinds=["table"],
            detail="full",
        )
        (table,) = full["objects"]
        assert table["primary_key"] == ["id"] and [c["name"] for c in table["columns"]] == ["id", "email"]
        await call_err(client, "search_objects", "invalid_input", connection_id="default", pattern="")
        await call_err(
            client, "search_objects", "connection_not_found", connection_id="nowhere", pattern="customer"
        )


async def test_list_tables_on_5000_tables_is_bounded_with_a_hint(wide: PgServer) -> None:
    async with running(wide) as (_, client):
        data = await call_ok(client, "list_tables", connection_id="default")
        assert len(data["tables"]) == 500
        assert data["truncated"] is True and "search_objects" in data["hint"]
        everything = await call_ok(client, "list_tables", connection_id="default", limit=10000)
        assert len(everything["tables"]) == TABLES + 2  # and the view
        assert everything.get("truncated", False) is False
