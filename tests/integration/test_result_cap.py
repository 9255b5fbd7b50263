"""MAX_RESULT_BYTES keeps exactly the longest prefix of rows that fits, wherever the limit falls.

The executor sizes rows in chunks (one orjson call per chunk) and row by row only in
the chunk that crosses the limit; these cases put the limit inside a chunk, on a
chunk boundary and one byte either side of it, and check the answer against the
plain row-by-row rule: keep rows while the running total of ``len(row JSON) + 1``
stays within the limit (the first row is always kept).
"""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import PgServer
from tests.integration.harness import call_ok, running

QUERY = "SELECT g AS id, repeat('x', (g * 37) % 200) AS pad FROM generate_series(1, 300) AS g"


def row(g: int) -> dict[str, object]:
    return {"id": g, "pad": "x" * ((g * 37) % 200)}


def cumulative(n: int) -> int:
    return sum(len(orjson.dumps(row(g))) + 1 for g in range(1, n + 1))


def expected_rows(budget: int) -> int:
    n = 1
    while n < 300 and cumulative(n + 1) <= budget:
        n += 1
    return n


@pytest.mark.parametrize(
    "budget",
    [
        1024,
        cumulative(64) - 1,  # the first chunk does not fit by one byte
        cumulative(64),  # exactly the first chunk
        cumulative(64) + 1,
        cumulative(128),  # exactly two chunks
        cumulative(200) + 50,  # inside the fourth chunk
    ],
)
async def test_the_byte_cap_keeps_the_longest_prefix_that_fits(module_db: PgServer, budget: int) -> None:
    async with running(module_db, max_result_bytes=budget) as (_, client):
        data = await call_ok(client, "execute_query", connection_id="default", query=QUERY)
    n = expected_rows(budget)
    assert data["row_count"] == n and data["rows"] == [row(g) for g in range(1, n + 1)]
    assert data["truncated"] is True and "MAX_RESULT_BYTES" in data["hint"]
    assert cumulative(n) <= budget < cumulative(n + 1)


async def test_a_result_under_the_cap_is_whole(module_db: PgServer) -> None:
    async with running(module_db, max_result_bytes=cumulative(300)) as (_, client):
        data = await call_ok(client, "execute_query", connection_id="default", query=QUERY)
    assert data["row_count"] == 300 and data["truncated"] is False and "hint" not in data
    assert data["rows"] == [row(g) for g in range(1, 301)]


async def test_a_single_row_over_the_cap_still_comes_back(module_db: PgServer) -> None:
    wide = "SELECT 1 AS id, repeat('y', 5000) AS pad UNION ALL SELECT 2, 'z'"
    async with running(module_db, max_result_bytes=1024) as (_, client):
        data = await call_ok(client, "execute_query", connection_id="default", query=wide)
    assert data["row_count"] == 1 and data["rows"][0]["pad"] == "y" * 5000
    assert data["truncated"] is True
