"""MAX_CONNECTIONS caps the connections actually open, across all pools (SPEC §5).

PostgreSQL's own ``pg_stat_activity`` is the judge: it is sampled while the
calls run, so a pool that opened more than the cap allows cannot hide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from mcp import Client

from tests.conftest import PgServer
from tests.integration.faults import free_port, wait_until
from tests.integration.harness import ServerInTask, call, call_err, call_ok

CAP = 20
POOLS = ("default", "second", "third")


async def _count_ours(admin: asyncpg.Connection, database: str) -> int:
    n: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgmcp'",
        database,
    )
    return n


@contextlib.asynccontextmanager
async def sampling(db: PgServer) -> AsyncIterator[list[int]]:
    """Counts of the server's backends in ``db``, every 10 ms while the block runs."""
    samples: list[int] = []
    admin = await asyncpg.connect(db.dsn())
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            samples.append(await _count_ours(admin, db.database))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        stop.set()
        await task
        samples.append(await _count_ours(admin, db.database))
        await admin.close()


async def _add(client: Client, db: PgServer, connection_id: str, **extra: object) -> dict[str, object]:
    return await call_ok(client, "add_connection", connection_id=connection_id, **db.spec_args(), **extra)


async def test_thirty_slow_calls_over_three_pools_of_ten_never_open_more_than_max_connections(
    module_db: PgServer,
) -> None:
    async with ServerInTask(
        module_db, db_pool_size=10, default_pool_size=10, max_connections=CAP, connection_timeout=60
    ) as (app, client):
        for cid in POOLS[1:]:
            added = await _add(client, module_db, cid)
            assert added["pool_stats"]["size"] == 10 and "note" not in added, added
        async with sampling(module_db) as samples:
            results = await asyncio.gather(
                *(
                    call(
                        client,
                        "execute_query",
                        connection_id=POOLS[i % 3],
                        query="SELECT pg_sleep(0.4) AS slept, $1::int AS i",
                        params=[i],
                    )
                    for i in range(30)
                )
            )
        failed = [r for r in results if not r["success"]]
        assert not failed, failed[:3]
        assert sorted(r["rows"][0]["i"] for r in results) == list(range(30))
        assert max(samples) <= CAP, f"PostgreSQL saw {max(samples)} connections of pgmcp (cap {CAP})"
        # The cap was really pressed: 30 calls of 0.4 s needed every slot.
        assert max(samples) >= CAP - 2, samples
        assert app.registry.open_connections() <= CAP
        for cid in POOLS:
            stats = app.registry.get(cid).pool_stats()
            assert stats["size"] == 10 and stats["waiting"] == 0 and stats["active_connections"] == 0, stats
            assert stats["open"] == stats["idle_connections"] <= 10, stats


async def test_a_call_waits_while_every_slot_is_busy_then_fails_naming_max_connections_and_holders(
    module_db: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ServerInTask(module_db, db_pool_size=2, max_connections=2, connection_timeout=1.0) as (
        app,
        client,
    ):
        await _add(client, module_db, "other")  # its first connection is closed to make room below
        holders = [
            asyncio.create_task(
                call(client, "execute_query", connection_id="default", query="SELECT pg_sleep(2.5) AS s")
            )
            for _ in range(2)
        ]

        async def default_holds_both() -> bool:
            return app.registry.get("default").pool_stats()["active_connections"] == 2

        await wait_until(default_holds_both, timeout=5, what="default holds both slots")
        assert app.registry.get("other").pool_stats()["open"] == 0
        started = time.monotonic()
        refused = await call_err(
            client, "execute_query", "limit_exceeded", connection_id="other", query="SELECT 1"
        )
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 2.0, elapsed
        assert "MAX_CONNECTIONS=2" in refused["error"], refused
        assert "'default' 2 (2 busy)" in refused["error"], refused
        assert "CONNECTION_TIMEOUT=1" in refused["error"], refused
        reached = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if '"max_connections_reached"' in line
        ]
        assert reached and reached[-1]["holders"] == {"default": 2}, reached
        assert reached[-1]["connection_id"] == "other" and reached[-1]["max_connections"] == 2
        assert all(h["success"] for h in await asyncio.gather(*holders))
        # Once the holders are done, an idle connection of 'default' makes room at once.
        started = time.monotonic()
        ok = await call_ok(client, "execute_query", connection_id="other", query="SELECT 2 AS two")
        assert ok["rows"] == [{"two": 2}]
        assert time.monotonic() - started < 0.9
        assert app.registry.open_connections() <= 2


async def test_a_waiting_call_gets_a_slot_as_soon_as_a_call_of_another_pool_ends(module_db: PgServer) -> None:
    async with ServerInTask(module_db, db_pool_size=1, max_connections=1, connection_timeout=10) as (
        app,
        client,
    ):
        await _add(client, module_db, "other")
        holder = asyncio.create_task(
            call(client, "execute_query", connection_id="default", query="SELECT pg_sleep(0.5) AS s")
        )

        async def busy() -> bool:
            return app.registry.get("default").pool_stats()["active_connections"] == 1

        await wait_until(busy, timeout=5, what="default busy")
        started = time.monotonic()
        waiter = asyncio.create_task(
            call(client, "execute_query", connection_id="other", query="SELECT 3 AS three")
        )

        async def waiting() -> bool:
            return app.registry.get("other").pool_stats()["waiting"] == 1

        await wait_until(waiting, timeout=5, what="the call on 'other' waiting")
        assert (await holder)["success"]
        assert (await waiter)["rows"] == [{"three": 3}]
        assert time.monotonic() - started < 3, "the waiter must not sit out CONNECTION_TIMEOUT"


async def test_add_connection_to_an_unreachable_host_reports_connection_failed_not_the_cap(
    module_db: PgServer,
) -> None:
    async with ServerInTask(
        module_db, db_pool_size=10, default_pool_size=10, max_connections=CAP, connection_timeout=5
    ) as (_app, client):
        await _add(client, module_db, "sales_db")
        await _add(client, module_db, "crm_db")
        args = module_db.spec_args()
        args.update(host="127.0.0.1", port=free_port())
        failed = await call_err(
            client, "add_connection", "connection_failed", connection_id="nowhere", **args
        )
        assert "MAX_CONNECTIONS" not in failed["error"], failed
        listed = await call_ok(client, "list_connections")
        assert "nowhere" not in {c["connection_id"] for c in listed["connections"]}


async def test_idle_connections_are_closed_after_pool_idle_timeout_but_one_stays_warm(
    module_db: PgServer,
) -> None:
    async with ServerInTask(module_db, db_pool_size=5, pool_idle_timeout=0.3) as (app, client):
        results = await asyncio.gather(
            *(
                call(client, "execute_query", connection_id="default", query="SELECT pg_sleep(0.2) AS s")
                for _ in range(5)
            )
        )
        assert all(r["success"] for r in results)
        assert app.registry.get("default").pool_stats()["open"] == 5

        async def shrunk() -> dict[str, int] | None:
            stats = app.registry.get("default").pool_stats()
            return stats if stats["open"] == 1 else None

        stats = await wait_until(shrunk, timeout=5, what="the pool back to its warm connection")
        assert stats["idle_connections"] == 1, stats
        assert app.registry.open_connections() == 1
        async with sampling(module_db) as samples:
            pass
        assert samples[-1] == 1, samples


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "postgresql://u@h1,h2/db", "postgresql://u@h:99999/db"])
async def test_a_bad_dsn_is_invalid_input_without_its_password(module_db: PgServer, bad: str) -> None:
    secret = "dsn-secret-Zq9"
    bad = bad.replace("u@", f"u:{secret}@")
    async with ServerInTask(module_db) as (_app, client):
        refused = await call_err(client, "add_connection", "invalid_input", connection_id="bad", dsn=bad)
        assert secret not in refused["error"], refused
        assert "dsn" in refused["error"]
