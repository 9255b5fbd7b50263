"""JSON ⇄ PostgreSQL conversion, against a real database (SPEC §3).

Every case goes the whole way: JSON input → :func:`convert_params` → asyncpg →
PostgreSQL (stored in a typed column) → asyncpg → :func:`make_row_encoder` →
JSON output, compared exactly. Where PostgreSQL's own text matters (numeric
digits) the stored value is also checked with ``::text`` on the server.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgmcp.db.convert import (
    column_info,
    column_names,
    convert_params,
    encode_value,
    make_row_encoder,
    setup_connection_codecs,
)
from pgmcp.errors import InvalidInput

UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

# column -> SQL type of the table every round trip goes through
COLUMNS: dict[str, str] = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "numeric": "numeric",
    "numeric_10_2": "numeric(10,2)",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "text": "text",
    "varchar": "varchar(20)",
    "bpchar": "char(3)",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "time": "time",
    "timetz": "timetz",
    "interval": "interval",
    "uuid": "uuid",
    "json": "json",
    "jsonb": "jsonb",
    "bytea": "bytea",
    "inet": "inet",
    "cidr": "cidr",
    "macaddr": "macaddr",
    "money": "money",
    "bit": "bit(3)",
    "varbit": "varbit",
    "xml": "xml",
    "tsvector": "tsvector",
    "point": "point",
    "int_arr": "integer[]",
    "int_arr2": "integer[][]",
    "text_arr": "text[]",
    "numeric_arr": "numeric[]",
    "tstz_arr": "timestamptz[]",
    "uuid_arr": "uuid[]",
    "jsonb_arr": "jsonb[]",
    "bytea_arr": "bytea[]",
    "int4range": "int4range",
    "tstzrange": "tstzrange",
    "mood": "mood",
    "mood_arr": "mood[]",
    "posint": "posint",
    "price": "price",
    "comp": "comp",
}

SCHEMA = """
CREATE TYPE mood AS ENUM ('happy', 'sad', 'ok');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN price AS numeric(10,2);
CREATE TYPE comp AS (x integer, y text);
CREATE TABLE vals (id serial PRIMARY KEY, {columns});
CREATE TABLE orders (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    placed_local timestamp NOT NULL,
    total numeric(12,2) NOT NULL,
    details jsonb NOT NULL,
    tags text[] NOT NULL,
    qty integer[] NOT NULL
);
""".format(columns=", ".join(f"c_{name} {sql}" for name, sql in COLUMNS.items()))


@pytest.fixture(scope="module")
async def schema(module_db: Any) -> AsyncIterator[None]:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    yield


@pytest.fixture
async def db(schema: None, conn: asyncpg.Connection) -> asyncpg.Connection:
    """The test connection set up as the pool sets up its connections."""
    await conn.execute("SET TimeZone = 'UTC'")
    await setup_connection_codecs(conn)
    return conn


async def query(conn: asyncpg.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """What execute_query does with one statement: prepare, convert, fetch, encode."""
    stmt = await conn.prepare(sql)
    args = convert_params(list(params), stmt.get_parameters())
    records = await stmt.fetch(*args)
    encode = make_row_encoder(stmt.get_attributes())
    rows = [encode(r) for r in records]
    # Whatever comes out must be plain JSON that orjson writes and reads back unchanged.
    assert orjson.loads(orjson.dumps(rows)) == rows
    return rows


async def store_and_read(conn: asyncpg.Connection, column: str, value: Any) -> Any:
    (row,) = await query(conn, f"INSERT INTO vals (c_{column}) VALUES ($1) RETURNING id", [value])
    (back,) = await query(conn, f"SELECT c_{column} FROM vals WHERE id = $1", [row["id"]])
    return back[f"c_{column}"]


# --- the handbook's own calls ----------------------------------------------------


async def test_handbook_parameters_work_as_written(db: asyncpg.Connection) -> None:
    await query(
        db,
        "INSERT INTO orders VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        [
            UUID,
            "2024-01-15T10:00:00Z",
            "2024-01-15 10:00:00",
            299.99,
            {"status": "paid", "items": [{"sku": "A-1", "qty": 2}]},
            ["vip", "gift"],
            [1, 2],
        ],
    )
    checks: list[tuple[str, list[Any]]] = [
        ("SELECT count(*) AS n FROM orders WHERE created_at > $1", ["2024-01-01"]),
        ("SELECT count(*) AS n FROM orders WHERE placed_local = $1", ["2024-01-15 10:00:00"]),
        ("SELECT count(*) AS n FROM orders WHERE total = $1", [299.99]),
        ("SELECT count(*) AS n FROM orders WHERE id = $1", [UUID]),
        ("SELECT count(*) AS n FROM orders WHERE details @> $1", [{"status": "paid"}]),
        ("SELECT count(*) AS n FROM orders WHERE tags && $1", [["gift"]]),
        ("SELECT count(*) AS n FROM orders WHERE id = ANY($1)", [[UUID]]),
        ("SELECT count(*) AS n FROM orders WHERE created_at BETWEEN $1 AND $2", ["2024-01-15", "2024-01-16"]),
    ]
    for sql, params in checks:
        assert await query(db, sql, params) == [{"n": 1}], sql
    # 299.99 is stored as exactly 299.99, not 299.990000000000009094947017729282379150390625
    assert await db.fetchval("SELECT total::text FROM orders") == "299.99"
    (row,) = await query(db, "SELECT * FROM orders")
    assert row == {
        "id": UUID,
        "created_at": "2024-01-15T10:00:00+00:00",
        "placed_local": "2024-01-15T10:00:00",
        "total": "299.99",
        "details": {"status": "paid", "items": [{"sku": "A-1", "qty": 2}]},
        "tags": ["vip", "gift"],
        "qty": [1, 2],
    }


# --- every type, JSON in and JSON out --------------------------------------------

BIG_JSONB_TEXT = (
    '{"name": "Zoë 東京 🎉", "big": 12345678901234567890, "safe": 9007199254740991,'
    ' "exact": 0.1000000000000000055511151231257827, "small": 1.5, "neg": -2.5e-3,'
    ' "nested": {"list": [1, null, true, false, "x"], "empty": {}}}'
)

ROUND_TRIPS: list[tuple[str, Any, Any]] = [
    # integers: numbers, beyond ±(2^53-1) strings
    ("int2", 7, 7),
    ("int2", -32768, -32768),
    ("int4", "123", 123),
    ("int4", 3.0, 3),
    ("int4", 2147483647, 2147483647),
    ("int8", 9007199254740991, 9007199254740991),
    ("int8", -9007199254740991, -9007199254740991),
    ("int8", 9007199254740993, "9007199254740993"),
    ("int8", -(2**63), "-9223372036854775808"),
    ("int8", 2**63 - 1, "9223372036854775807"),
    ("int8", "-9223372036854775808", "-9223372036854775808"),
    # numeric: strings with every digit PostgreSQL prints
    ("numeric", 299.99, "299.99"),
    ("numeric", "12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
    ("numeric", 100, "100"),
    ("numeric", "1.50", "1.50"),
    ("numeric", "1e-20", "0.00000000000000000001"),
    ("numeric", "1E+20", "100000000000000000000"),
    ("numeric", "-0.000", "0.000"),
    ("numeric", "NaN", "NaN"),
    ("numeric", "Infinity", "Infinity"),
    ("numeric", "-Infinity", "-Infinity"),
    ("numeric", 12345678901234567890123, "12345678901234567890123"),
    ("numeric_10_2", 1.5, "1.50"),
    ("numeric_10_2", "7", "7.00"),
    # floats: numbers, NaN/Infinity as strings
    ("float8", 0.1, 0.1),
    ("float8", 1e308, 1e308),
    ("float8", -2.5, -2.5),
    ("float8", 5, 5.0),
    ("float8", "NaN", "NaN"),
    ("float8", "Infinity", "Infinity"),
    ("float8", "-Infinity", "-Infinity"),
    ("float4", 1.1, 1.1),
    ("float4", 3.14159, 3.14159),
    ("float4", "NaN", "NaN"),
    ("float4", "-Infinity", "-Infinity"),
    # booleans
    ("bool", True, True),
    ("bool", "f", False),
    ("bool", "yes", True),
    # text: numbers and booleans as their text
    ("text", "héllo wörld ✓", "héllo wörld ✓"),
    ("text", 123, "123"),
    ("text", 1.5, "1.5"),
    ("text", True, "true"),
    ("text", {"a": 1}, '{"a":1}'),
    ("varchar", "abc", "abc"),
    ("bpchar", "ab", "ab "),
    # dates and times: ISO 8601
    ("date", "2024-01-01", "2024-01-01"),
    ("date", "9999-12-30", "9999-12-30"),
    ("date", "9999-12-31", "9999-12-31"),
    ("date", "0001-01-01", "0001-01-01"),
    ("date", "infinity", "infinity"),
    ("date", "-infinity", "-infinity"),
    ("timestamp", "2024-01-15 10:00:00", "2024-01-15T10:00:00"),
    ("timestamp", "2024-01-15T10:00:00.123456", "2024-01-15T10:00:00.123456"),
    ("timestamp", "2024-01-15 10:00:00.000001", "2024-01-15T10:00:00.000001"),
    ("timestamp", "2024-01-15 10:00:00+08:00", "2024-01-15T10:00:00"),
    ("timestamp", "2024-02-29", "2024-02-29T00:00:00"),
    ("timestamp", "infinity", "infinity"),
    ("timestamp", "-infinity", "-infinity"),
    ("timestamptz", "2024-01-15T10:00:00Z", "2024-01-15T10:00:00+00:00"),
    ("timestamptz", "2024-01-15 10:00:00+08:00", "2024-01-15T02:00:00+00:00"),
    ("timestamptz", "2024-01-15 10:00:00-0530", "2024-01-15T15:30:00+00:00"),
    ("timestamptz", "2024-01-15 10:00:00", "2024-01-15T10:00:00+00:00"),
    ("timestamptz", "2024-01-01", "2024-01-01T00:00:00+00:00"),
    ("timestamptz", "2024-07-01 12:00:00 Europe/Paris", "2024-07-01T10:00:00+00:00"),
    ("timestamptz", "2024-01-15 10:00:00.999999 UTC", "2024-01-15T10:00:00.999999+00:00"),
    ("timestamptz", "2024-01-15 10:00:00.0000005", "2024-01-15T10:00:00.000001+00:00"),
    ("timestamptz", "9999-12-31T23:59:59.999998+00:00", "9999-12-31T23:59:59.999998+00:00"),
    ("timestamptz", "epoch", "1970-01-01T00:00:00+00:00"),
    ("timestamptz", "infinity", "infinity"),
    ("timestamptz", "-infinity", "-infinity"),
    ("time", "10:30:00", "10:30:00"),
    ("time", "10:30:00.5", "10:30:00.500000"),
    ("time", "23:59", "23:59:00"),
    ("timetz", "10:30:00+02:00", "10:30:00+02:00"),
    ("timetz", "10:30:00", "10:30:00+00:00"),
    # intervals: PostgreSQL's text, months and days preserved
    ("interval", "1 mon 2 days 03:04:05", "1 mon 2 days 03:04:05"),
    ("interval", "P1Y2M3DT4H5M6S", "1 year 2 mons 3 days 04:05:06"),
    ("interval", "90 minutes", "01:30:00"),
    ("interval", "01:30:00", "01:30:00"),
    ("interval", "1 day", "1 day"),
    ("interval", "-1 day +02:00", "-1 days +02:00:00"),
    ("interval", "1.5 seconds", "00:00:01.5"),
    ("interval", 3600, "01:00:00"),
    ("interval", "P0001-02-03T04:05:06", "1 year 2 mons 3 days 04:05:06"),
    # identifiers and addresses
    ("uuid", UUID, UUID),
    ("uuid", UUID.upper(), UUID),
    ("uuid", "{" + UUID + "}", UUID),
    ("inet", "192.168.1.5/24", "192.168.1.5/24"),
    ("inet", "10.0.0.1", "10.0.0.1"),
    ("inet", "::1", "::1"),
    ("inet", "2001:db8::1/64", "2001:db8::1/64"),
    ("cidr", "10.0.0.0/8", "10.0.0.0/8"),
    ("cidr", "2001:db8::/32", "2001:db8::/32"),
    ("macaddr", "08:00:2b:01:02:03", "08:00:2b:01:02:03"),
    # json / jsonb: nested JSON
    ("jsonb", {"a": 1, "b": [1, 2, {"c": None}]}, {"a": 1, "b": [1, 2, {"c": None}]}),
    ("jsonb", [1, "two", 3.5, True, None], [1, "two", 3.5, True, None]),
    ("jsonb", "hello", "hello"),
    ("jsonb", '"quoted"', "quoted"),
    ("jsonb", "[1, 2]", [1, 2]),
    ("jsonb", 5, 5),
    ("jsonb", 299.99, 299.99),
    ("jsonb", False, False),
    ("jsonb", {"big": 12345678901234567890}, {"big": "12345678901234567890"}),
    (
        "jsonb",
        BIG_JSONB_TEXT,
        {
            "name": "Zoë 東京 🎉",
            "big": "12345678901234567890",
            "safe": 9007199254740991,
            "exact": "0.1000000000000000055511151231257827",
            "small": 1.5,
            "neg": -0.0025,
            "nested": {"list": [1, None, True, False, "x"], "empty": {}},
        },
    ),
    ("json", {"b": 1, "a": [1, 2]}, {"b": 1, "a": [1, 2]}),
    ("json", '{"n": 1e400, "m": 18446744073709551616}', {"n": "1e400", "m": "18446744073709551616"}),
    # bytea: base64
    ("bytea", "3q2+7w==", "3q2+7w=="),
    ("bytea", "\\xdeadbeef", "3q2+7w=="),
    ("bytea", "", ""),
    # arrays: NULL elements, several dimensions, element conversion
    ("int_arr", [1, None, 3], [1, None, 3]),
    ("int_arr", ["1", 2.0], [1, 2]),
    ("int_arr", [], []),
    ("int_arr2", [[1, 2], [3, None]], [[1, 2], [3, None]]),
    ("text_arr", ["a", None, "b c", 'q"uote'], ["a", None, "b c", 'q"uote']),
    ("numeric_arr", [1.5, "2.25", None, "NaN"], ["1.5", "2.25", None, "NaN"]),
    ("tstz_arr", ["2024-01-01", None, "infinity"], ["2024-01-01T00:00:00+00:00", None, "infinity"]),
    ("uuid_arr", [UUID], [UUID]),
    ("jsonb_arr", [{"a": 1}, None, [2]], [{"a": 1}, None, [2]]),
    ("bytea_arr", ["3q2+7w==", None], ["3q2+7w==", None]),
    # ranges
    ("int4range", "[1,5)", {"lower": 1, "upper": 5, "lower_inc": True, "upper_inc": False, "empty": False}),
    ("int4range", [1, 5], {"lower": 1, "upper": 5, "lower_inc": True, "upper_inc": False, "empty": False}),
    (
        "int4range",
        "(,10]",
        {"lower": None, "upper": 11, "lower_inc": False, "upper_inc": False, "empty": False},
    ),
    (
        "int4range",
        "empty",
        {"lower": None, "upper": None, "lower_inc": False, "upper_inc": False, "empty": True},
    ),
    (
        "tstzrange",
        {"lower": "2024-01-01", "upper": "2024-02-01"},
        {
            "lower": "2024-01-01T00:00:00+00:00",
            "upper": "2024-02-01T00:00:00+00:00",
            "lower_inc": True,
            "upper_inc": False,
            "empty": False,
        },
    ),
    # enums, domains, composites
    ("mood", "happy", "happy"),
    ("mood_arr", ["happy", None, "sad"], ["happy", None, "sad"]),
    ("posint", 5, 5),
    ("posint", "42", 42),
    ("price", 299.99, "299.99"),
    ("comp", [1, "x"], {"x": 1, "y": "x"}),
    ("comp", {"x": 2, "y": None}, {"x": 2, "y": None}),
    # the rest: PostgreSQL's text
    ("bit", "101", "101"),
    ("varbit", "1100110011", "1100110011"),
    ("tsvector", "b a", "'a' 'b'"),
    ("point", [1, 2.5], "(1,2.5)"),
    ("point", "(3,4)", "(3,4)"),
]


@pytest.mark.parametrize(("column", "given", "expected"), ROUND_TRIPS, ids=lambda v: repr(v)[:40])
async def test_round_trip(db: asyncpg.Connection, column: str, given: Any, expected: Any) -> None:
    got = await store_and_read(db, column, given)
    assert got == expected
    assert type(got) is type(expected)


async def test_null_for_every_type(db: asyncpg.Connection) -> None:
    names = list(COLUMNS)
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    columns = ", ".join(f"c_{name}" for name in names)
    (row,) = await query(
        db, f"INSERT INTO vals ({columns}) VALUES ({placeholders}) RETURNING *", [None] * len(names)
    )
    assert {k: v for k, v in row.items() if k != "id"} == {f"c_{name}": None for name in names}


async def test_money_keeps_its_text(db: asyncpg.Connection) -> None:
    got = await store_and_read(db, "money", "12.34")
    assert isinstance(got, str)
    assert got.endswith("12.34")


async def test_xml_keeps_its_text(db: asyncpg.Connection) -> None:
    try:
        got = await store_and_read(db, "xml", "<a>1</a>")
    except asyncpg.FeatureNotSupportedError:
        pytest.skip("this PostgreSQL is built without libxml")
    assert got == "<a>1</a>"


async def test_numeric_digits_are_postgresql_text(db: asyncpg.Connection) -> None:
    digits = "12345678901234567890.123456789012345678"
    rows = await query(db, "SELECT $1::numeric AS n, $1::numeric::text AS t", [digits])
    assert rows == [{"n": digits, "t": digits}]
    rows = await query(db, "SELECT $1::numeric(10,2) = 299.99 AS same, ($1::numeric)::text AS t", [299.99])
    assert rows == [{"same": True, "t": "299.99"}]


async def test_real_infinity_and_a_real_9999_12_31_are_told_apart(db: asyncpg.Connection) -> None:
    rows = await query(
        db,
        "SELECT 'infinity'::date AS a, '9999-12-31'::date AS b,"
        " 'infinity'::timestamp AS c, '9999-12-31 23:59:59.999999'::timestamp AS d,"
        " '-infinity'::timestamptz AS e, '0001-01-01 00:00:00+00'::timestamptz AS f",
    )
    assert rows == [
        {
            "a": "infinity",
            "b": "9999-12-31",
            "c": "infinity",
            "d": "9999-12-31T23:59:59.999999",
            "e": "-infinity",
            "f": "0001-01-01T00:00:00+00:00",
        }
    ]


async def test_dates_python_cannot_hold_come_back_as_postgresql_text(db: asyncpg.Connection) -> None:
    rows = await query(
        db,
        "SELECT '0044-03-15 BC'::date AS a, '10000-01-01'::date AS b, '5874897-12-31'::date AS c,"
        " '4713-01-01 BC'::date AS d, ARRAY['0001-12-31 BC'::date, NULL, 'infinity'] AS e,"
        " daterange('2024-01-01', 'infinity') AS f",
    )
    assert rows == [
        {
            "a": "0044-03-15 BC",
            "b": "10000-01-01",
            "c": "5874897-12-31",
            "d": "4713-01-01 BC",
            "e": ["0001-12-31 BC", None, "infinity"],
            "f": {
                "lower": "2024-01-01",
                "upper": "infinity",
                "lower_inc": True,
                "upper_inc": False,
                "empty": False,
            },
        }
    ]
    for text in ("0044-03-15 BC", "10000-01-01", "5874897-12-31", "4713-01-01 BC", "0001-12-31 BC"):
        assert await db.fetchval(
            "SELECT $1::date::text = $2", await db.fetchval("SELECT $1::date", text), text
        )


async def test_values_without_a_table(db: asyncpg.Connection) -> None:
    (row,) = await query(
        db,
        """
        SELECT 9007199254740992::int8 AS edge,
               -9007199254740991::int8 AS safe_neg,
               'NaN'::float4 AS f4nan,
               '{{1.5,NULL},{NULL,2}}'::numeric[] AS numeric_2d,
               ARRAY['1 mon'::interval, NULL] AS intervals,
               ROW(1, 'a', NULL) AS anon,
               ROW(1, 'x')::comp AS named,
               ARRAY[ROW(2, 'y')::comp] AS named_arr,
               '{[1,3),[5,7)}'::int4multirange AS multi,
               '[1.5,2.5]'::numrange AS nr,
               '0/16B6C50'::pg_lsn AS lsn,
               '(0,1)'::tid AS tid,
               '{"a": [1, 2]}'::json -> 'a' AS json_arr,
               'a fat cat'::text AS plain,
               '<(1,2),3>'::circle AS circle,
               '((0,0),(1,1))'::box AS box,
               '[(0,0),(1,1)]'::path AS open_path,
               'happy'::mood AS mood,
               5::posint AS domain_value,
               B'1010' AS bits,
               '1 year 2 mons 3 days 04:05:06.789'::interval AS iv,
               now() - now() AS zero_iv
        """,
    )
    assert row == {
        "edge": "9007199254740992",
        "safe_neg": -9007199254740991,
        "f4nan": "NaN",
        "numeric_2d": [["1.5", None], [None, "2"]],
        "intervals": ["1 mon", None],
        "anon": [1, "a", None],
        "named": {"x": 1, "y": "x"},
        "named_arr": [{"x": 2, "y": "y"}],
        "multi": [
            {"lower": 1, "upper": 3, "lower_inc": True, "upper_inc": False, "empty": False},
            {"lower": 5, "upper": 7, "lower_inc": True, "upper_inc": False, "empty": False},
        ],
        "nr": {"lower": "1.5", "upper": "2.5", "lower_inc": True, "upper_inc": True, "empty": False},
        "lsn": "0/16B6C50",
        "tid": "(0,1)",
        "json_arr": [1, 2],
        "plain": "a fat cat",
        "circle": "<(1,2),3>",
        "box": "(1,1),(0,0)",
        "open_path": "[(0,0),(1,1)]",
        "mood": "happy",
        "domain_value": 5,
        "bits": "1010",
        "iv": "1 year 2 mons 3 days 04:05:06.789",
        "zero_iv": "00:00:00",
    }


# --- columns ---------------------------------------------------------------------


async def test_duplicate_column_names_keep_every_value(db: asyncpg.Connection) -> None:
    sql = "SELECT 1 AS a, 2 AS a, 3 AS a_2, 4 AS a, 5 AS b"
    rows = await query(db, sql)
    assert rows == [{"a": 1, "a_3": 2, "a_2": 3, "a_4": 4, "b": 5}]
    stmt = await db.prepare(sql)
    assert [c["name"] for c in column_info(stmt.get_attributes())] == ["a", "a_3", "a_2", "a_4", "b"]
    assert column_names(stmt.get_attributes()) == ["a", "a_3", "a_2", "a_4", "b"]


async def test_column_info_names_types_as_postgresql_does(db: asyncpg.Connection) -> None:
    stmt = await db.prepare(
        "SELECT 1::int2 AS a, 1 AS b, 1::int8 AS c, 1.0 AS d, 1::real AS e, 1::float8 AS f,"
        " true AS g, 'x'::varchar AS h, now() AS i, now()::timestamp AS j, '{}'::jsonb AS k,"
        " '\\x00'::bytea AS l, ARRAY[1] AS m, ARRAY['\\x00'::bytea] AS n, 'happy'::mood AS o,"
        " '1 day'::interval AS p, gen_random_uuid() AS q, 'x'::text AS r, now()::date AS s"
    )
    info = column_info(stmt.get_attributes())
    assert info == [
        {"name": "a", "type": "smallint"},
        {"name": "b", "type": "integer"},
        {"name": "c", "type": "bigint"},
        {"name": "d", "type": "numeric"},
        {"name": "e", "type": "real"},
        {"name": "f", "type": "double precision"},
        {"name": "g", "type": "boolean"},
        {"name": "h", "type": "character varying"},
        {"name": "i", "type": "timestamp with time zone"},
        {"name": "j", "type": "timestamp without time zone"},
        {"name": "k", "type": "jsonb"},
        {"name": "l", "type": "bytea (base64)", "encoding": "base64"},
        {"name": "m", "type": "integer[]"},
        {"name": "n", "type": "bytea[] (base64)", "encoding": "base64"},
        {"name": "o", "type": "mood"},
        {"name": "p", "type": "interval"},
        {"name": "q", "type": "uuid"},
        {"name": "r", "type": "text"},
        {"name": "s", "type": "date"},
    ]


async def test_empty_column_list(db: asyncpg.Connection) -> None:
    stmt = await db.prepare("SELECT")
    encode = make_row_encoder(stmt.get_attributes())
    assert encode(await stmt.fetchrow()) == {}
    assert column_info(stmt.get_attributes()) == []


async def test_column_names_cannot_inject_code(db: asyncpg.Connection) -> None:
    sql = 'SELECT 1 AS "x}; import os #", 2 AS "\'\'\'", 3 AS "n0", 4 AS "c0"'
    assert await query(db, sql) == [{"x}; import os #": 1, "'''": 2, "n0": 3, "c0": 4}]


# --- bad parameters: InvalidInput naming $n, nothing else ------------------------

BAD_PARAMS: list[tuple[str, list[Any], str]] = [
    ("SELECT $1::timestamptz", ["abc"], "Parameter $1: expected a timestamp with time zone"),
    ("SELECT $1::int, $2::int", [1, "x"], "Parameter $2: expected an integer"),
    ("SELECT $1::int", [1.5], "Parameter $1: expected an integer, got 1.5"),
    ("SELECT $1::int", [2**40], "Parameter $1: expected an integer, got 1099511627776"),
    ("SELECT $1::int2", [40000], "Parameter $1"),
    ("SELECT $1::int8", [2**63], "Parameter $1"),
    ("SELECT $1::int", [True], "Parameter $1: expected an integer, got true"),
    ("SELECT $1::int", ["1.5"], "Parameter $1"),
    ("SELECT $1::uuid", ["not-a-uuid"], "Parameter $1: expected a UUID, got 'not-a-uuid'"),
    ("SELECT $1::jsonb", ["{bad json"], "Parameter $1: expected JSON"),
    ("SELECT $1::jsonb", ["[1, 2"], "Parameter $1: expected JSON"),
    ("SELECT $1::date", ["2024-13-01"], "Parameter $1: expected a date"),
    ("SELECT $1::date", ["0000-01-01"], "Parameter $1: expected a date"),
    ("SELECT $1::date", ["10000-02-30"], "Parameter $1: expected a date"),
    ("SELECT $1::timestamp", ["yesterday-ish"], "Parameter $1: expected a timestamp"),
    ("SELECT $1::timestamptz", [1700000000], "Parameter $1: expected a timestamp with time zone"),
    ("SELECT $1::time", ["25:00"], "Parameter $1: expected a time"),
    ("SELECT $1::interval", ["abc"], "Parameter $1: expected an interval"),
    ("SELECT $1::interval", ["1 fortnight"], "Parameter $1: expected an interval"),
    ("SELECT $1::numeric", ["12abc"], "Parameter $1: expected a numeric value"),
    ("SELECT $1::numeric", [True], "Parameter $1: expected a numeric value"),
    ("SELECT $1::float8", ["fast"], "Parameter $1: expected a number"),
    ("SELECT $1::real", [1e39], "Parameter $1: expected a number (real)"),
    ("SELECT $1::bool", ["maybe"], "Parameter $1: expected a boolean"),
    ("SELECT $1::bytea", ["not base64!"], "Parameter $1: expected bytea"),
    ("SELECT $1::inet", ["999.1.1.1"], "Parameter $1: expected an IP address"),
    ("SELECT $1::cidr", ["10.0.0.1/8"], "Parameter $1: expected a network address"),
    ("SELECT $1::int[]", [[1, "a"]], "Parameter $1, element [2]: expected an integer, got 'a'"),
    ("SELECT $1::int[]", [[[1], [2, "b"]]], "Parameter $1, element [2][2]: expected an integer, got 'b'"),
    ("SELECT $1::int[]", ["{1,2}"], "Parameter $1: expected a JSON array of integer"),
    ("SELECT $1::int4range", ["[1,x)"], "Parameter $1: expected a range of integer"),
    ("SELECT $1::bit(3)", ["102"], "Parameter $1: expected a bit string"),
    ("SELECT $1::point", ["(1)"], "Parameter $1: expected a point"),
    ("SELECT $1::int, $2::text, $3::uuid", [1, "a", "zzz"], "Parameter $3"),
    ("SELECT $1::int, $2::int", [1, 2, 3], "The query expects 2 parameters ($1..$2), got 3"),
    ("SELECT $1::int", [], "The query expects 1 parameter ($1), got 0"),
    ("SELECT 1", [1], "The query expects no parameters, got 1"),
]


@pytest.mark.parametrize(("sql", "params", "message"), BAD_PARAMS, ids=lambda v: repr(v)[:40])
async def test_bad_parameters_are_invalid_input_naming_the_parameter(
    db: asyncpg.Connection, sql: str, params: list[Any], message: str
) -> None:
    stmt = await db.prepare(sql)
    with pytest.raises(InvalidInput) as caught:
        convert_params(params, stmt.get_parameters())
    assert type(caught.value) is InvalidInput
    assert str(caught.value).startswith(message), str(caught.value)
    assert caught.value.error_type == "invalid_input"
    # a sentence for a person: no driver exception chained, no traceback text
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__
    assert "Traceback" not in str(caught.value)


async def test_long_bad_values_are_shortened_in_the_message(db: asyncpg.Connection) -> None:
    stmt = await db.prepare("SELECT $1::int")
    with pytest.raises(InvalidInput) as caught:
        convert_params(["x" * 10_000], stmt.get_parameters())
    assert len(str(caught.value)) < 200


async def test_every_accepted_value_is_accepted_by_the_driver(db: asyncpg.Connection) -> None:
    """The converted values are what asyncpg's codecs want: no DataError at execution."""
    stmt = await db.prepare(
        "SELECT $1::int2, $2::int4, $3::int8, $4::numeric, $5::float4, $6::float8, $7::bool, $8::text,"
        " $9::date, $10::timestamp, $11::timestamptz, $12::time, $13::timetz, $14::interval, $15::uuid,"
        " $16::json, $17::jsonb, $18::bytea, $19::inet, $20::cidr, $21::macaddr, $22::varbit, $23::point,"
        " $24::box, $25::circle, $26::lseg, $27::line, $28::polygon, $29::path, $30::oid, $31::pg_lsn,"
        " $32::int8range, $33::daterange, $34::numrange, $35::tsrange, $36::int4multirange, $37::mood,"
        " $38::regclass, $39::tsquery, $40::money, $41::comp[]"
    )
    values: list[Any] = [
        "1",
        2,
        3.0,
        "4.5",
        "5",
        6,
        "on",
        7,
        "2024-01-01 10:00",
        "2024-01-01",
        "now",
        "10:00",
        "10:00+01",
        "1 hour",
        UUID,
        [1],
        "null",
        "AAEC",
        "10.1.2.3",
        "10.1.0.0/16",
        "08:00:2b:01:02:03",
        "1 0 1",
        {"x": 1, "y": 2},
        [[0, 0], [1, 1]],
        "<(0,0),1>",
        "[(0,0),(1,1)]",
        "{1,-1,0}",
        "((0,0),(1,0),(1,1))",
        "[(0,0),(1,1),(2,0)]",
        "1259",
        "0/0",
        {"lower": 1, "upper": None},
        '["2024-01-01","2024-02-01")',
        [1.5, 2.5],
        ["2024-01-01 00:00", "2024-01-02 00:00"],
        ["[1,2)", {"lower": 5, "upper": 6, "upper_inc": True}],
        "ok",
        "pg_class",
        "cat & dog",
        12.5,
        [[1, "a"], None],
    ]
    row = await stmt.fetchrow(*convert_params(values, stmt.get_parameters()))
    encoded = make_row_encoder(stmt.get_attributes())(row)
    assert len(encoded) == len(values)
    assert orjson.loads(orjson.dumps(encoded)) == encoded
    assert encoded["pg_lsn"] == "0/0"
    assert encoded["int8range"] == {
        "lower": 1,
        "upper": None,
        "lower_inc": True,
        "upper_inc": False,
        "empty": False,
    }
    assert encoded["line"] == "{1,-1,0}"
    assert encoded["polygon"] == "((0,0),(1,0),(1,1))"
    assert encoded["path"] == "[(0,0),(1,1),(2,0)]"
    assert encoded["box"] == "(1,1),(0,0)"
    assert encoded["regclass"] == "pg_class"
    assert encoded["comp"] == [{"x": 1, "y": "a"}, None]


# --- generic fallback -------------------------------------------------------------


def test_encode_value_by_python_type() -> None:
    assert encode_value(None) is None
    assert encode_value(True) is True
    assert encode_value(2**53) == "9007199254740992"
    assert encode_value(2**53 - 1) == 2**53 - 1
    assert encode_value(math.inf) == "Infinity"
    assert encode_value(Decimal("1E+2")) == "100"
    assert encode_value(Decimal("-Infinity")) == "-Infinity"
    assert encode_value(b"\x00\xff") == "AP8="
    assert encode_value(dt.date(2024, 1, 1)) == "2024-01-01"
    assert (
        encode_value(dt.datetime(2024, 1, 1, 1, 2, 3, 4, tzinfo=dt.UTC)) == "2024-01-01T01:02:03.000004+00:00"
    )
    assert encode_value(dt.timedelta(days=1, hours=2, minutes=3, seconds=4)) == "1 day 02:03:04"
    assert encode_value(dt.timedelta(seconds=-1)) == "-00:00:01"
    assert encode_value({"a": [Decimal("1.50"), None]}) == {"a": ["1.50", None]}
    assert encode_value((1, "x")) == [1, "x"]


# --- properties: exact round trips through PostgreSQL ---------------------------

INT8 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _decimal(digits: int, scale: int, negative: bool) -> Decimal:
    return Decimal(f"{'-' if negative else ''}{digits}").scaleb(-scale)


DECIMALS = st.builds(
    _decimal,
    st.integers(min_value=0, max_value=10**38 - 1),
    st.integers(min_value=0, max_value=38),
    st.booleans(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=INT8)
async def test_property_int8_round_trips_exactly(db: asyncpg.Connection, value: int) -> None:
    rows = await query(db, "SELECT $1::int8 AS v, $1::int8::text AS t", [value])
    expected: Any = value if abs(value) <= 2**53 - 1 else str(value)
    assert rows == [{"v": expected, "t": str(value)}]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=DECIMALS)
async def test_property_numeric_round_trips_exactly(db: asyncpg.Connection, value: Decimal) -> None:
    text = format(value, "f")
    rows = await query(db, "SELECT $1::numeric AS v, $1::numeric::text AS t", [text])
    (row,) = rows
    assert row["v"] == row["t"]  # every digit, as PostgreSQL prints it
    assert Decimal(row["v"]) == value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.floats(allow_nan=True, allow_infinity=True))
async def test_property_float8_round_trips_exactly(db: asyncpg.Connection, value: float) -> None:
    (row,) = await query(db, "SELECT $1::float8 AS v", [value])
    if math.isnan(value):
        assert row["v"] == "NaN"
    elif math.isinf(value):
        assert row["v"] == ("Infinity" if value > 0 else "-Infinity")
    else:
        assert row["v"] == value
        assert orjson.loads(orjson.dumps(row["v"])) == value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
async def test_property_json_float_to_numeric_keeps_its_shortest_text(
    db: asyncpg.Connection, value: float
) -> None:
    (row,) = await query(db, "SELECT $1::numeric AS v", [value])
    assert Decimal(row["v"]) == Decimal(repr(value))


async def test_python_values_from_custom_tools_are_accepted(db: asyncpg.Connection) -> None:
    """The extension API runs Python callers' parameters through the same conversion."""
    import ipaddress
    import uuid

    rows = await query(
        db,
        "SELECT $1::timestamptz AS a, $2::timestamp AS b, $3::date AS c, $4::time AS d, $5::uuid AS e,"
        " $6::bytea AS f, $7::inet AS g, $8::numeric AS h, $9::int AS i, $10::interval AS j, $11::jsonb AS k",
        [
            dt.datetime(2024, 1, 15, 10, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            dt.datetime(2024, 1, 15, 10),
            dt.date(2024, 1, 15),
            dt.time(10, 30),
            uuid.UUID(UUID),
            b"\x00\x01",
            ipaddress.ip_address("10.0.0.1"),
            Decimal("1.10"),
            Decimal("7"),
            dt.timedelta(days=1, seconds=1),
            {"when": dt.date(2024, 1, 1), "amount": Decimal("1.10")},
        ],
    )
    assert rows == [
        {
            "a": "2024-01-15T08:00:00+00:00",
            "b": "2024-01-15T10:00:00",
            "c": "2024-01-15",
            "d": "10:30:00",
            "e": UUID,
            "f": "AAE=",
            "g": "10.0.0.1",
            "h": "1.10",
            "i": 7,
            "j": "1 day 00:00:01",
            "k": {"when": "2024-01-01", "amount": "1.10"},
        }
    ]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e-5, max_value=1e-5)
    | st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(
                alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _lossless(value: Any) -> Any:
    """What a JSON document comes back as: integers beyond ±(2^53-1) as strings."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 - 1 else str(value)
    if isinstance(value, float):
        return value
    if isinstance(value, list):
        return [_lossless(v) for v in value]
    if isinstance(value, dict):
        return {k: _lossless(v) for k, v in value.items()}
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES)
async def test_property_jsonb_round_trips_without_loss(db: asyncpg.Connection, value: Any) -> None:
    if isinstance(value, str):
        value = {"s": value}  # a bare string parameter that is itself JSON text would be taken as that text
    (row,) = await query(db, "SELECT $1::jsonb AS v, $1::json AS w", [value])
    expected = _lossless(value)
    assert row["v"] == expected
    assert row["w"] == expected


async def test_row_encoders_are_cached_by_column_list(db: asyncpg.Connection) -> None:
    first = await db.prepare("SELECT 1 AS a, now() AS b")
    again = await db.prepare("SELECT 2 AS a, now() - interval '1 day' AS b")
    other = await db.prepare("SELECT 1 AS a, now() AS c")
    encode = make_row_encoder(first.get_attributes())
    assert make_row_encoder(again.get_attributes()) is encode
    assert make_row_encoder(other.get_attributes()) is not encode
    assert list(make_row_encoder(other.get_attributes())(await other.fetchrow())) == ["a", "c"]
