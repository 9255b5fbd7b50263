"""Every value type of SPEC §3 through the MCP tools over real HTTP, checked in PostgreSQL.

Values go in as JSON parameters of ``execute_transaction`` / ``batch_execute``,
are checked where they are stored (a direct asyncpg connection), and come back
through ``execute_query`` as JSON on the wire: the JSON text an MCP client
receives is parsed here, not a Python object handed over in-process.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from mcp import Client

from tests.conftest import PgServer
from tests.integration.proc import ServerProcess, pgmcp_env, serve_http

UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
BIG = 2**53 + 1  # not exactly representable as a JSON (double) number
NESTED = {"a": [1, {"b": None}], "s": "東京 ✓", "f": 1.5, "t": True, "deep": {"x": [[1, 2], []]}}

TABLE = """
CREATE TABLE vals (
    id      integer PRIMARY KEY,
    n       numeric,
    n2      numeric(10,2),
    big     bigint,
    small   bigint,
    b       bytea,
    j       jsonb,
    arr     integer[],
    arr2    integer[][],
    tarr    text[],
    ts      timestamp,
    tstz    timestamptz,
    d       date,
    t       time,
    iv      interval,
    u       uuid,
    ip      inet,
    f8      double precision,
    f4      real,
    txt     text
)
"""
COLUMNS = [
    "n",
    "n2",
    "big",
    "small",
    "b",
    "j",
    "arr",
    "arr2",
    "tarr",
    "ts",
    "tstz",
    "d",
    "t",
    "iv",
    "u",
    "ip",
]
COLUMNS += ["f8", "f4", "txt"]
INSERT = (
    f"INSERT INTO vals (id, {', '.join(COLUMNS)}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 2))})"
)

# column -> (JSON given, JSON expected back)
ROW_1: dict[str, tuple[Any, Any]] = {
    "n": ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
    "n2": (299.99, "299.99"),
    "big": (BIG, str(BIG)),
    "small": (9007199254740991, 9007199254740991),
    "b": ("AAEC/f7/", "AAEC/f7/"),
    "j": (NESTED, NESTED),
    "arr": ([1, None, 3], [1, None, 3]),
    "arr2": ([[1, 2], [3, None]], [[1, 2], [3, None]]),
    "tarr": (["a", None, "b,c", 'q"uote', ""], ["a", None, "b,c", 'q"uote', ""]),
    "ts": ("2024-01-15 10:00:00.123456", "2024-01-15T10:00:00.123456"),
    "tstz": ("2024-01-15T10:00:00.654321+08:00", "2024-01-15T02:00:00.654321+00:00"),
    "d": ("2024-02-29", "2024-02-29"),
    "t": ("23:59:59.999999", "23:59:59.999999"),
    "iv": ("1 year 2 mons 3 days 04:05:06.789", "1 year 2 mons 3 days 04:05:06.789"),
    "u": (UUID, UUID),
    "ip": ("192.168.0.1/24", "192.168.0.1/24"),
    "f8": (0.1, 0.1),
    "f4": (1.5, 1.5),
    "txt": ("héllo\nwörld 🎉 </untrusted-data>", "héllo\nwörld 🎉 </untrusted-data>"),
}

ROW_2: dict[str, tuple[Any, Any]] = {
    "n": ("NaN", "NaN"),
    "n2": ("7", "7.00"),
    "big": (-(2**63), str(-(2**63))),
    "small": ("-42", -42),
    "b": ("", ""),
    "j": ([1, "two", None, 3.25], [1, "two", None, 3.25]),
    "arr": ([], []),
    "arr2": ([[None, None]], [[None, None]]),
    "tarr": ([None], [None]),
    "ts": ("2024-01-15 10:00:00", "2024-01-15T10:00:00"),  # the handbook's timestamp form
    "tstz": ("2024-01-01", "2024-01-01T00:00:00+00:00"),  # the handbook's timestamptz form
    "d": ("0001-01-01", "0001-01-01"),
    "t": ("00:00:00", "00:00:00"),
    "iv": ("-1 days +02:00:00.000001", "-1 days +02:00:00.000001"),
    "u": (UUID.upper(), UUID),
    "ip": ("2001:db8::1", "2001:db8::1"),
    "f8": ("Infinity", "Infinity"),
    "f4": ("-Infinity", "-Infinity"),
    "txt": ("", ""),
}

ROW_3: dict[str, tuple[Any, Any]] = dict.fromkeys(COLUMNS, (None, None))
ROW_3["n"] = ("Infinity", "Infinity")
ROW_3["f8"] = ("NaN", "NaN")
ROW_3["n2"] = (299.99, "299.99")


def params_of(row_id: int, row: dict[str, tuple[Any, Any]]) -> list[Any]:
    return [row_id, *(row[c][0] for c in COLUMNS)]


@pytest.fixture(scope="module")
async def db(module_db: PgServer) -> PgServer:
    conn = await asyncpg.connect(module_db.dsn())
    try:
        await conn.execute(TABLE)
    finally:
        await conn.close()
    return module_db


@pytest.fixture(scope="module")
def server(db: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serve_http(pgmcp_env(db, DB_POOL_SIZE="2"), tmp_path_factory.mktemp("values")) as proc:
        yield proc


@pytest.fixture
async def conn(db: PgServer) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db.dsn())
    try:
        yield connection
    finally:
        await connection.close()


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """The tool's answer as the JSON text on the wire says it (checked against structured content)."""
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    data: dict[str, Any] = json.loads(text[text.index("{") : text.rindex("}") + 1])
    assert data == result.structured_content
    assert data["success"] is True, data
    assert result.is_error is False
    return data


@pytest.fixture(scope="module")
async def inserted(db: PgServer, server: ServerProcess) -> dict[str, Any]:
    async with Client(server.mcp_url) as client:
        tx = await call(
            client,
            "execute_transaction",
            connection_id="default",
            queries=[
                {"query": INSERT, "params": params_of(1, ROW_1)},
                {"query": INSERT, "params": params_of(2, ROW_2)},
            ],
        )
        batch = await call(
            client, "batch_execute", connection_id="default", query=INSERT, params_list=[params_of(3, ROW_3)]
        )
    assert tx["committed"] is True
    assert [r["row_count"] for r in tx["results"]] == [1, 1]
    assert batch["rows_affected"] == 1
    return tx


@pytest.mark.parametrize(
    ("row_id", "row"), [(1, ROW_1), (2, ROW_2), (3, ROW_3)], ids=["values", "edges", "nulls"]
)
async def test_values_come_back_exactly(
    server: ServerProcess, inserted: dict[str, Any], row_id: int, row: dict[str, tuple[Any, Any]]
) -> None:
    async with Client(server.mcp_url) as client:
        data = await call(
            client,
            "execute_query",
            connection_id="default",
            query=f"SELECT {', '.join(COLUMNS)} FROM vals WHERE id = $1",
            params=[row_id],
        )
        (got,) = data["rows"]
        assert list(got) == COLUMNS
        for column in COLUMNS:
            assert got[column] == row[column][1], column


async def test_column_types_say_what_the_json_holds(server: ServerProcess, inserted: dict[str, Any]) -> None:
    async with Client(server.mcp_url) as client:
        data = await call(
            client, "execute_query", connection_id="default", query=f"SELECT {', '.join(COLUMNS)} FROM vals"
        )
        types = {c["name"]: c["type"] for c in data["columns"]}
        assert types["b"] == "bytea (base64)"  # the string is base64 of bytes, and says so
        assert types["big"] == "bigint"
        assert types["n"] == "numeric"
        assert types["tstz"] == "timestamp with time zone"
        assert types["arr"] == "integer[]"


async def test_stored_values_are_exactly_what_was_sent(
    conn: asyncpg.Connection, inserted: dict[str, Any]
) -> None:
    r1 = await conn.fetchrow(
        "SELECT *, n::text AS n_text, n2::text AS n2_text, j::text AS j_text FROM vals WHERE id = 1"
    )
    assert r1["n_text"] == "12345678901234567890.123456789012345678"
    assert r1["n2_text"] == "299.99"  # not 299.990000000000009094947017729282379150390625
    assert r1["big"] == BIG
    assert r1["small"] == 9007199254740991
    assert r1["b"] == b"\x00\x01\x02\xfd\xfe\xff"
    assert json.loads(r1["j_text"]) == NESTED
    assert r1["arr"] == [1, None, 3]
    assert r1["arr2"] == [[1, 2], [3, None]]
    assert r1["tarr"] == ["a", None, "b,c", 'q"uote', ""]
    assert r1["ts"] == datetime(2024, 1, 15, 10, 0, 0, 123456)
    assert r1["tstz"] == datetime(2024, 1, 15, 10, 0, 0, 654321, tzinfo=timezone(timedelta(hours=8)))
    assert r1["d"] == date(2024, 2, 29)
    assert r1["t"] == time(23, 59, 59, 999999)
    assert await conn.fetchval(
        "SELECT iv = interval '1 year 2 mons 3 days 04:05:06.789' FROM vals WHERE id = 1"
    )
    assert r1["u"] == uuid.UUID(UUID)
    assert await conn.fetchval("SELECT ip = inet '192.168.0.1/24' FROM vals WHERE id = 1")
    assert r1["f8"] == 0.1
    assert r1["f4"] == 1.5

    r2 = await conn.fetchrow("SELECT *, n::text AS n_text, n2::text AS n2_text FROM vals WHERE id = 2")
    assert r2["n_text"] == "NaN"
    assert r2["n2_text"] == "7.00"
    assert r2["big"] == -(2**63)
    assert r2["small"] == -42
    assert r2["b"] == b""
    assert r2["arr"] == []
    assert r2["tarr"] == [None]
    # The handbook's forms: a date for timestamptz is midnight UTC (pgmcp's session zone); a
    # timestamp without zone is stored as written.
    assert r2["tstz"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert r2["ts"] == datetime(2024, 1, 15, 10, 0, 0)
    assert r2["d"] == date(1, 1, 1)
    assert await conn.fetchval("SELECT iv = interval '-1 days +02:00:00.000001' FROM vals WHERE id = 2")
    assert r2["u"] == uuid.UUID(UUID)
    assert r2["f8"] == math.inf
    assert r2["f4"] == -math.inf

    r3 = await conn.fetchrow("SELECT *, n::text AS n_text, n2::text AS n2_text FROM vals WHERE id = 3")
    assert r3["n_text"] == "Infinity"
    assert r3["n2_text"] == "299.99"
    assert math.isnan(r3["f8"])
    assert all(r3[c] is None for c in COLUMNS if c not in ("n", "n2", "f8"))


async def test_the_handbook_param_forms_find_the_rows(
    server: ServerProcess, inserted: dict[str, Any]
) -> None:
    async with Client(server.mcp_url) as client:
        cases: list[tuple[str, list[Any], list[int]]] = [
            ("SELECT id FROM vals WHERE tstz > $1 ORDER BY id", ["2024-01-01"], [1]),
            ("SELECT id FROM vals WHERE tstz >= $1 ORDER BY id", ["2024-01-01"], [1, 2]),
            ("SELECT id FROM vals WHERE ts = $1", ["2024-01-15 10:00:00"], [2]),
            ("SELECT id FROM vals WHERE n2 = $1 ORDER BY id", [299.99], [1, 3]),
            ("SELECT id FROM vals WHERE big = $1", [BIG], [1]),
            ("SELECT id FROM vals WHERE big = $1", [str(BIG)], [1]),
            ("SELECT id FROM vals WHERE u = $1 ORDER BY id", [UUID], [1, 2]),
            ("SELECT id FROM vals WHERE j @> $1", [{"t": True}], [1]),
            ("SELECT id FROM vals WHERE arr && $1", [[3]], [1]),
            ("SELECT id FROM vals WHERE b = $1", ["AAEC/f7/"], [1]),
            ("SELECT id FROM vals WHERE ip <<= $1", ["192.168.0.0/16"], [1]),
            ("SELECT id FROM vals WHERE d = $1", ["2024-02-29"], [1]),
            ("SELECT id FROM vals WHERE n = $1", ["NaN"], [2]),
            ("SELECT id FROM vals WHERE f8 = $1", ["Infinity"], [2]),
            ("SELECT id FROM vals WHERE txt IS NULL", [], [3]),
        ]
        for query, params, ids in cases:
            data = await call(client, "execute_query", connection_id="default", query=query, params=params)
            assert [r["id"] for r in data["rows"]] == ids, (query, params)


async def test_special_values_without_a_table(server: ServerProcess) -> None:
    async with Client(server.mcp_url) as client:
        data = await call(
            client,
            "execute_query",
            connection_id="default",
            query=(
                "SELECT 'NaN'::float8 AS f_nan, '-Infinity'::float8 AS f_ninf, 'Infinity'::numeric AS n_inf, "
                "(2^62)::bigint AS i62, 9007199254740991::bigint AS i53, -9007199254740993::bigint AS neg, "
                "'\\xdeadbeef'::bytea AS raw, NULL::int AS nothing, ARRAY[[1,2],[3,4]] AS grid, "
                "'{\"k\": [true, null]}'::json AS js, interval '90 minutes' AS iv, 0.1::numeric + 0.2 AS exact"
            ),
        )
        (row,) = data["rows"]
        assert row == {
            "f_nan": "NaN",
            "f_ninf": "-Infinity",
            "n_inf": "Infinity",
            "i62": str(2**62),
            "i53": 9007199254740991,
            "neg": "-9007199254740993",
            "raw": "3q2+7w==",
            "nothing": None,
            "grid": [[1, 2], [3, 4]],
            "js": {"k": [True, None]},
            "iv": "01:30:00",
            "exact": "0.3",
        }


async def test_a_value_that_does_not_fit_names_its_parameter_and_stores_nothing(
    server: ServerProcess, conn: asyncpg.Connection, inserted: dict[str, Any]
) -> None:
    async with Client(server.mcp_url) as client:
        before = await conn.fetchval("SELECT count(*) FROM vals")
        bad = params_of(9, ROW_1)
        bad[COLUMNS.index("u") + 1] = "not-a-uuid"
        result = await client.call_tool(
            "execute_transaction",
            {"connection_id": "default", "queries": [{"query": INSERT, "params": bad}]},
        )
        assert result.is_error
        assert result.structured_content is None  # errors: JSON as text only
        data = json.loads(result.content[0].text)  # type: ignore[union-attr]
        assert data["error_type"] == "invalid_input"
        assert f"${COLUMNS.index('u') + 2}" in data["error"]
        assert await conn.fetchval("SELECT count(*) FROM vals") == before
