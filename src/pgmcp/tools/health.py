"""analyze_db_health: the checks a DBA runs first, each finding with its object, metric and a remedy.

Every check is catalog SQL of pgmcp's own, run in one READ ONLY transaction of the
execute path; thresholds are settings (``HEALTH_*``, documented in the user guide).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.config import Settings
from pgmcp.tools import ConnectionId
from pgmcp.tools import health_sql as sql

Check = Literal["all", "indexes", "vacuum", "sequences", "connections", "cache", "replication", "constraints"]
CHECKS = ("indexes", "vacuum", "sequences", "connections", "cache", "replication", "constraints")

#: Fewer block accesses than this are too few to judge a cache hit ratio.
CACHE_MIN_BLOCKS = 1000

_RANK = {"ok": 0, "info": 1, "warning": 2, "critical": 3}


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _finding(check: str, severity: str, obj: str, metric: dict[str, Any], message: str) -> dict[str, Any]:
    return {"check": check, "severity": severity, "object": obj, "metric": metric, "message": message}


def _queries(check: str, s: Settings) -> list[tuple[str, tuple[Any, ...]]]:
    if check == "indexes":
        return [
            (sql.INVALID_INDEXES, ()),
            (sql.DUPLICATE_INDEXES, ()),
            (sql.UNUSED_INDEXES, (s.health_unused_index_min_bytes,)),
            (sql.INDEX_BLOAT, (s.health_index_bloat_min_bytes,)),
        ]
    if check == "vacuum":
        return [
            (sql.DEAD_TUPLES, (s.health_dead_tuples_min, s.health_dead_tuple_ratio)),
            (sql.DATABASE_AGE, (s.health_xid_age_warning,)),
            (sql.TABLE_AGE, (s.health_xid_age_warning,)),
        ]
    if check == "sequences":
        return [(sql.SEQUENCES, ())]
    if check == "connections":
        return [(sql.CONNECTIONS, ()), (sql.IDLE_IN_TRANSACTION, (s.health_idle_in_transaction_seconds,))]
    if check == "cache":
        return [(sql.CACHE, ())]
    if check == "replication":
        return [(sql.REPLICATION, ()), (sql.SLOTS, ())]
    return [(sql.NOT_VALID, ())]


def _indexes(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    invalid, duplicates, unused, bloat = rows
    out = [
        _finding(
            "indexes",
            "warning",
            f"{r['schema']}.{r['index']}",
            {"size_bytes": r["size_bytes"], "table": f"{r['schema']}.{r['table']}"},
            f"Index {r['schema']}.{r['index']} on {r['table']} is invalid (a failed CREATE INDEX CONCURRENTLY "
            "or REINDEX): it is maintained on every write but never used. Rebuild it with REINDEX INDEX "
            f"CONCURRENTLY {r['schema']}.{r['index']}, or drop it.",
        )
        for r in invalid
    ]
    for r in duplicates:
        keep = r["indexes"][0]
        for name, size, is_constraint in zip(
            r["indexes"][1:], r["sizes"][1:], r["constraints"][1:], strict=True
        ):
            out.append(
                _finding(
                    "indexes",
                    "warning",
                    f"{r['schema']}.{name}",
                    {"size_bytes": size, "duplicate_of": f"{r['schema']}.{keep}"},
                    f"Index {r['schema']}.{name} duplicates {keep} on {r['table']} (same columns and "
                    f"definition): it costs {_mb(size)} and slows every write for nothing. "
                    + (
                        "It backs a constraint: drop the constraint or the other index."
                        if is_constraint
                        else f"DROP INDEX CONCURRENTLY {r['schema']}.{name};"
                    ),
                )
            )
    out += [
        _finding(
            "indexes",
            "info",
            f"{r['schema']}.{r['index']}",
            {
                "size_bytes": r["size_bytes"],
                "idx_scan": r["idx_scan"],
                "table": f"{r['schema']}.{r['table']}",
            },
            f"Index {r['schema']}.{r['index']} on {r['table']} ({_mb(r['size_bytes'])}) has never been scanned "
            "since statistics were last reset. If that covers a full business cycle, and no replica uses it, "
            f"consider DROP INDEX CONCURRENTLY {r['schema']}.{r['index']}.",
        )
        for r in unused
    ]
    for r in bloat:
        pages, expected = int(r["pages"] or 0), float(r["expected_pages"] or 0)
        ratio = 1 - expected / pages if pages else 0.0
        if ratio >= s.health_index_bloat_ratio:
            out.append(
                _finding(
                    "indexes",
                    "warning",
                    f"{r['schema']}.{r['index']}",
                    {"size_bytes": r["size_bytes"], "estimated_bloat_ratio": round(ratio, 3)},
                    f"Index {r['schema']}.{r['index']} is about {ratio:.0%} bloat (estimate): "
                    f"REINDEX INDEX CONCURRENTLY {r['schema']}.{r['index']} to reclaim the space.",
                )
            )
    return out


def _vacuum(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    dead, databases, tables = rows
    out = []
    for r in dead:
        ratio = r["dead"] / max(r["live"] + r["dead"], 1)
        last = r["last_autovacuum"] or r["last_vacuum"]
        out.append(
            _finding(
                "vacuum",
                "warning",
                f"{r['schema']}.{r['table']}",
                {
                    "dead_tuples": r["dead"],
                    "live_tuples": r["live"],
                    "dead_ratio": round(ratio, 3),
                    "last_autovacuum": r["last_autovacuum"].isoformat() if r["last_autovacuum"] else None,
                    "last_vacuum": r["last_vacuum"].isoformat() if r["last_vacuum"] else None,
                },
                f"Table {r['schema']}.{r['table']} has {r['dead']:,} dead rows ({ratio:.0%}); last vacuumed "
                f"{last.isoformat() if last else 'never'}. Run VACUUM (ANALYZE) {r['schema']}.{r['table']} and "
                "check that autovacuum keeps up (autovacuum_vacuum_scale_factor for big tables).",
            )
        )
    critical = s.health_xid_age_warning * 1.5
    out.extend(
        _finding(
            "vacuum",
            "critical" if r["xid_age"] >= critical else "warning",
            r["database"],
            {"xid_age": r["xid_age"]},
            f"Database {r['database']} has transaction-ID age {r['xid_age']:,} (wraparound at 2^31): "
            "run VACUUM (FREEZE) on its oldest tables and find what blocks autovacuum.",
        )
        for r in databases
    )
    out.extend(
        _finding(
            "vacuum",
            "critical" if r["xid_age"] >= critical else "warning",
            f"{r['schema']}.{r['table']}",
            {"xid_age": r["xid_age"]},
            f"Table {r['schema']}.{r['table']} has transaction-ID age {r['xid_age']:,}: "
            f"VACUUM (FREEZE) {r['schema']}.{r['table']}.",
        )
        for r in tables
    )
    return out


def _sequences(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    out = []
    for r in rows[0]:
        used = float(r["used"])
        if used < s.health_sequence_used_ratio:
            continue
        out.append(
            _finding(
                "sequences",
                "critical" if used >= 0.99 else "warning",
                f"{r['schema']}.{r['sequence']}",
                {"used_ratio": round(used, 4), "last_value": r["last_value"], "max_value": r["max_value"]},
                f"Sequence {r['schema']}.{r['sequence']} has used {used:.1%} of its range (at {r['last_value']:,} "
                f"of {r['max_value']:,}): when it runs out, inserts fail. Widen it (ALTER SEQUENCE … AS bigint "
                "MAXVALUE …, and the column to bigint) before it does.",
            )
        )
    return out


def _connections(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    (usage,), idle = rows
    out = []
    available = max(usage["max"] - usage["reserved"], 1)
    ratio = usage["used"] / available
    if ratio >= s.health_connections_used_ratio:
        out.append(
            _finding(
                "connections",
                "critical" if ratio >= 0.95 else "warning",
                "max_connections",
                {"used": usage["used"], "max_connections": usage["max"], "used_ratio": round(ratio, 3)},
                f"{usage['used']} of {available} connections are in use ({ratio:.0%}): new clients will soon be "
                "refused. Use a connection pooler (PgBouncer), lower pool sizes, or raise max_connections.",
            )
        )
    out.extend(
        _finding(
            "connections",
            "warning",
            f"pid {r['pid']}",
            {
                "pid": r["pid"],
                "idle_seconds": round(r["idle_seconds"], 1),
                "transaction_seconds": round(r["transaction_seconds"] or 0, 1),
                "user": r["user"],
                "application_name": r["application_name"],
            },
            f"Session {r['pid']} ({r['user']}@{r['database']}, {r['application_name'] or 'no application'}) "
            f"is {r['state']} for {r['idle_seconds']:.0f} s: it holds its locks and stops vacuum from "
            "cleaning up. Fix the client to commit promptly, set idle_in_transaction_session_timeout, or "
            f"end it: SELECT pg_terminate_backend({r['pid']}).",
        )
        for r in idle
    )
    return out


def _cache(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    (r,) = rows[0]
    out = []
    for kind, hit, read in (("heap", r["heap_hit"], r["heap_read"]), ("index", r["idx_hit"], r["idx_read"])):
        if hit + read < CACHE_MIN_BLOCKS:
            continue
        ratio = hit / (hit + read)
        if ratio < s.health_cache_hit_ratio:
            out.append(
                _finding(
                    "cache",
                    "warning",
                    f"{kind} cache",
                    {"hit_ratio": round(ratio, 4), "blocks_hit": hit, "blocks_read": read},
                    f"The {kind} cache hit ratio is {ratio:.1%}: reads go to disk. Raise shared_buffers, add "
                    "memory, or find the queries that scan the most (get_top_queries sort_by=shared_blks_read).",
                )
            )
    return out


def _replication(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    standbys, slots = rows
    out = []
    for r in standbys:
        lag = r["lag_bytes"]
        if lag is not None and lag >= s.health_replication_lag_bytes:
            out.append(
                _finding(
                    "replication",
                    "warning",
                    r["application_name"] or r["client"] or "standby",
                    {"lag_bytes": lag, "replay_lag_seconds": r["replay_lag_seconds"]},
                    f"Standby {r['application_name'] or r['client']} is {_mb(lag)} behind: check its disk, "
                    "network and long queries on it.",
                )
            )
    for r in slots:
        retained = r["retained_bytes"]
        if not r["active"]:
            out.append(
                _finding(
                    "replication",
                    "warning",
                    r["slot_name"],
                    {"active": False, "retained_bytes": retained},
                    f"Replication slot {r['slot_name']} is inactive and keeps WAL on disk"
                    + (f" ({_mb(retained)})" if retained is not None else "")
                    + f": reconnect its consumer or SELECT pg_drop_replication_slot('{r['slot_name']}').",
                )
            )
        elif retained is not None and retained >= s.health_replication_lag_bytes:
            out.append(
                _finding(
                    "replication",
                    "warning",
                    r["slot_name"],
                    {"active": True, "retained_bytes": retained},
                    f"Replication slot {r['slot_name']} retains {_mb(retained)} of WAL: its consumer lags.",
                )
            )
    return out


def _constraints(rows: list[list[Any]], s: Settings) -> list[dict[str, Any]]:
    return [
        _finding(
            "constraints",
            "warning",
            f"{r['schema']}.{r['table']}.{r['constraint']}",
            {"kind": r["kind"]},
            f"The {r['kind']} constraint {r['constraint']} on {r['schema']}.{r['table']} is NOT VALID: existing "
            f"rows were never checked. ALTER TABLE {r['schema']}.{r['table']} VALIDATE CONSTRAINT "
            f"{r['constraint']};",
        )
        for r in rows[0]
    ]


_ANALYSE: dict[str, Callable[[list[list[Any]], Settings], list[dict[str, Any]]]] = {
    "indexes": _indexes,
    "vacuum": _vacuum,
    "sequences": _sequences,
    "connections": _connections,
    "cache": _cache,
    "replication": _replication,
    "constraints": _constraints,
}


class HealthTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def analyze_db_health(
        self,
        connection_id: ConnectionId,
        checks: Annotated[
            list[Check],
            Field(description="Checks to run."),
        ] = ["all"],  # noqa: B006 - pydantic copies defaults
    ) -> dict[str, Any]:
        """DBA checks: indexes, vacuum, sequences, connections, cache, replication."""
        wanted = list(CHECKS) if not checks or "all" in checks else [c for c in CHECKS if c in checks]
        plan = [(check, _queries(check, self.app.settings)) for check in wanted]
        results = await self.app.executor.catalog(
            connection_id, [q for _, qs in plan for q in qs], tool="analyze_db_health"
        )
        findings: list[dict[str, Any]] = []
        summary: dict[str, str] = {}
        at = 0
        for check, qs in plan:
            rows = [list(r) for r in results[at : at + len(qs)]]
            at += len(qs)
            found = _ANALYSE[check](rows, self.app.settings)
            findings += found
            worst = max((f["severity"] for f in found), key=_RANK.__getitem__, default="ok")
            summary[check] = worst
        return {"success": True, "checks": wanted, "findings": findings, "summary": summary, "warnings": []}
