"""batch_execute's column-at-a-time parameter conversion gives what the row-by-row one gives.

``rows_converter`` (db/convert/params.py) skips the per-value converter for values that
already have their type; these rows mix in every value that must not take that shortcut.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from pgmcp.db.convert import params_converter, rows_converter, setup_connection_codecs
from pgmcp.errors import InvalidInput

QUERY = "SELECT $1::int4, $2::int8, $3::text, $4::numeric, $5::varchar(10), $6::float8, $7::bool, $8::jsonb"

GOOD: list[list[Any]] = [
    [1, 2, "a", "1.50", "x", 1.5, True, {"k": 1}],
    [None, None, None, None, None, None, None, None],
    [3.0, "42", 5, 7, True, "2", "yes", [1, 2]],
    [-(2**31), 2**63 - 1, "", "  12.5e3 ", "", "NaN", False, "5"],
    [0, 0, "tab\t", "NaN", "z", 0, 0, None],
    [7, 8, "b", 2.25, "y", -1, 1, "null"],
]


@pytest.fixture
async def types(conn: asyncpg.Connection) -> Any:
    await setup_connection_codecs(conn)
    return (await conn.prepare(QUERY)).get_parameters()


async def test_the_column_pass_gives_the_same_values_as_row_by_row(types: Any) -> None:
    one = params_converter(types)
    many = rows_converter(types)
    assert [list(r) for r in many(GOOD)] == [one(r) for r in GOOD]
    ints = [[i, i, f"t{i}", f"{i}.25", "v", float(i), i % 2 == 0, {}] for i in range(1000)]
    converted = many(ints)
    assert [list(r) for r in converted] == [one(r) for r in ints]
    assert converted[3][3] == Decimal("3.25")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([2**31, 1, "a", "1", "x", 1, True, 1], "params_list[2]: Parameter $1"),
        ([True, 1, "a", "1", "x", 1, True, 1], "params_list[2]: Parameter $1"),
        ([1, 1, "a", "abc", "x", 1, True, 1], "params_list[2]: Parameter $4"),
        ([1, 1, "a", "1"], "params_list[2]: The query expects 8 parameters"),
    ],
)
async def test_a_bad_row_is_named_as_row_by_row_names_it(types: Any, bad: list[Any], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        rows_converter(types)([GOOD[0], GOOD[2], bad, GOOD[3]])
    assert str(caught.value).startswith(message), str(caught.value)
