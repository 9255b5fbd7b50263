"""A sweep of the catalog (issue 14, item 7): every function that takes no argument or one
argument of a type we can make up, called every way, through ``execute_query`` in READONLY_MODE.

Forms: called directly (schema-qualified), in FROM, in attribute notation ``(arg).f`` and inside
a function that runs SQL text. After each group of calls the effect probes run: advisory locks
held, large objects, a sacrificial backend still alive, files in the data directory (not the
temp directory: other sessions of a shared server use it),
replication slots and origins, statistics reset times, and the next call's role and settings on
the same pooled session (pool of one). The counts are printed; any effect fails the test, after
the group's passing statements are run again one at a time to name the one that had it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import asyncpg

from tests.conftest import PgServer
from tests.integration.harness import call, running

# One literal per argument type the sweep can supply.
PROBES: dict[str, str] = {
    "int2": "0::int2",
    "int4": "0",
    "int8": "0::int8",
    "oid": "0::oid",
    "float4": "0::float4",
    "float8": "0::float8",
    "numeric": "0::numeric",
    "bool": "false",
    "text": "'pgmcp_sweep'::text",
    "varchar": "'pgmcp_sweep'::varchar",
    "name": "'pgmcp_sweep'::name",
    "bytea": "'\\x00'::bytea",
    "interval": "'0 s'::interval",
    "timestamptz": "now()",
    "date": "current_date",
    "json": "'{}'::json",
    "jsonb": "'{}'::jsonb",
    "xml": "'<a/>'::xml",
    "uuid": "'00000000-0000-0000-0000-000000000000'::uuid",
    "pg_lsn": "'0/0'::pg_lsn",
    "inet": "'127.0.0.1'::inet",
    "regclass": "'pg_class'::regclass",
    "regtype": "'int4'::regtype",
    "regnamespace": "'public'::regnamespace",
    "anyelement": "0",
    "anyarray": "ARRAY[0]",
    "any": "0",
}
GROUP = 80  # statements between effect probes
CANDIDATES = """
SELECT p.proname, n.nspname,
       ARRAY(SELECT t.typname::text FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY a(oid, i)
             JOIN pg_catalog.pg_type t ON t.oid = a.oid ORDER BY a.i),
       n.nspname IN ('pg_catalog', 'public')
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prokind = 'f' AND p.pronargs <= 2
ORDER BY n.nspname, p.proname, 3
"""
EFFECTS = """
SELECT (SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
        WHERE l.locktype = 'advisory' AND d.datname = current_database()) AS advisory_locks,
       (SELECT count(*) FROM pg_largeobject_metadata) AS large_objects,
       (SELECT count(*) FROM pg_replication_slots) AS slots,
       (SELECT count(*) FROM pg_replication_origin) AS origins,
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) AS db_stats_reset,
       (SELECT stats_reset FROM pg_stat_bgwriter) AS bgwriter_stats_reset,
       (SELECT count(*) FROM pg_ls_dir('.')) AS data_dir_entries,
       (SELECT count(*) FROM pg_prepared_xacts) AS prepared_xacts,
       (SELECT count(*) FROM pg_stat_activity WHERE pid = $1) AS sacrificial_alive
"""
SESSION = (
    "SELECT current_user AS u, session_user AS s, current_setting('search_path') AS sp, "
    "(SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings WHERE source = 'session') AS st, "
    "(SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql) >= 0 AS ps, "
    "(SELECT count(*) FROM pg_cursors) AS cursors, "
    "(SELECT count(*) FROM pg_listening_channels()) AS listening"
)


def statements(rows: list[Any]) -> list[str]:
    """The statements of the sweep: each function called every way its arguments allow."""
    out = []
    for name, schema, argtypes, visible in rows:
        qualified = f'"{schema}"."{name}"'
        args = [PROBES.get(t) for t in argtypes]
        if None in args:
            continue  # an argument type the sweep cannot make up
        text = ", ".join(a for a in args if a)
        out += [f"SELECT {qualified}({text})", f"SELECT * FROM {qualified}({text})"]
        if len(args) == 1 and visible:
            out.append(f"SELECT ({text}).{name}" if name == name.lower() else f'SELECT ({text})."{name}"')
        out.append(f"SELECT * FROM query_to_xml($q$SELECT {qualified}({text})$q$, true, false, '')")
    return out


async def sweep(
    db: PgServer, todo: list[str] | None = None, *, trap: str | None = None
) -> tuple[Counter[str], list[str]]:
    """Run ``todo`` (default: the whole catalog) through execute_query; the outcomes and the effects.

    ``trap``: SQL run by the admin first, with ``{pid}`` the sacrificial backend (for the test
    that shows the sweep sees an effect).
    """
    admin = await asyncpg.connect(db.dsn())
    sacrificial = await asyncpg.connect(db.dsn())
    outcomes: Counter[str] = Counter()
    effects: list[str] = []
    try:
        sacrificial_pid = await sacrificial.fetchval("SELECT pg_backend_pid()")
        if trap is not None:
            await admin.execute(trap.format(pid=sacrificial_pid))
        if todo is None:
            todo = statements(await admin.fetch(CANDIDATES))
        async with running(db, readonly_mode=True, db_pool_size=1, query_timeout=3) as (_, client):

            async def state() -> dict[str, Any]:
                """Every effect class, the pooled session's role and settings included."""
                found = dict(await admin.fetchrow(EFFECTS, sacrificial_pid))
                session = await call(client, "execute_query", connection_id="default", query=SESSION)
                found["session"] = session.get("rows")
                return found

            async def run(sql: str) -> str:
                data = await call(client, "execute_query", connection_id="default", query=sql)
                if data["success"]:
                    return "passed"
                return (
                    "refused by policy"
                    if data["error_type"] == "query_blocked"
                    else "stopped by the database"
                )

            before = await state()
            assert before["session"], "the session probe must itself pass"
            for start in range(0, len(todo), GROUP):
                passed: list[str] = []
                for sql in todo[start : start + GROUP]:
                    outcome = await run(sql)
                    outcomes[outcome] += 1
                    if outcome == "passed":
                        passed.append(sql)
                after = await state()
                if after == before:
                    continue
                # Something took effect: run the group's passing statements one by one to name it.
                named = len(effects)
                before = after
                for sql in passed:
                    await run(sql)
                    now = await state()
                    if now != before:
                        changed = {k: (before[k], now[k]) for k in now if before[k] != now[k]}
                        effects.append(f"{sql}: {changed}")
                        before = now
                if len(effects) == named:
                    effects.append(
                        f"group {start // GROUP} changed {after}, no statement alone did: {passed}"
                    )
        outcomes["tried"] = len(todo)
    finally:
        await sacrificial.close()
        await admin.close()
    return outcomes, effects


async def test_no_function_in_the_catalog_has_an_effect_through_execute_query(module_db: PgServer) -> None:
    started = time.perf_counter()
    outcomes, effects = await sweep(module_db)
    print(  # noqa: T201 (the sweep's report)
        f"\nsweep: {outcomes['tried']} tried, {outcomes['refused by policy']} refused by policy, "
        f"{outcomes['stopped by the database']} stopped by the database, "
        f"{outcomes['passed']} passed without effect, in {time.perf_counter() - started:.1f} s"
    )
    assert not effects, "\n".join(effects)
    assert outcomes["refused by policy"] > 0 and outcomes["passed"] > 0


async def test_the_sweep_names_a_function_that_has_an_effect(module_db: PgServer) -> None:
    """A function mislabelled STABLE (what only the role can stop) is caught and named by the probes."""
    # pg_terminate_backend(pid, 5000) waits until the backend is gone, so the next probe sees it.
    trap = "CREATE FUNCTION public.sweep_trap() RETURNS bool LANGUAGE sql STABLE AS 'SELECT pg_terminate_backend({pid}, 5000)'"
    try:
        outcomes, effects = await sweep(
            module_db, ["SELECT 1", "SELECT public.sweep_trap()", "SELECT 2"], trap=trap
        )
    finally:
        conn = await asyncpg.connect(module_db.dsn())
        try:
            await conn.execute("DROP FUNCTION IF EXISTS public.sweep_trap()")
        finally:
            await conn.close()
    assert outcomes["passed"] == 3
    # The backend dies once: the one-by-one rerun cannot repeat it, so the group's suspects are named.
    assert len(effects) == 1 and "'sacrificial_alive': 0" in effects[0] and "sweep_trap()" in effects[0], (
        effects
    )


def test_every_probe_type_is_a_real_type() -> None:
    assert all(isinstance(v, str) and v for v in PROBES.values()), PROBES
    sample: list[Any] = [
        ("f", "pg_catalog", [], True),
        ("g", "public", ["int4"], True),
        ("h", "x", ["cstring"], False),
    ]
    assert statements(sample) == [
        'SELECT "pg_catalog"."f"()',
        'SELECT * FROM "pg_catalog"."f"()',
        'SELECT * FROM query_to_xml($q$SELECT "pg_catalog"."f"()$q$, true, false, \'\')',
        'SELECT "public"."g"(0)',
        'SELECT * FROM "public"."g"(0)',
        "SELECT (0).g",
        'SELECT * FROM query_to_xml($q$SELECT "public"."g"(0)$q$, true, false, \'\')',
    ]
