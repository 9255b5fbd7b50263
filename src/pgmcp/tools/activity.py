"""get_activity: what the database is doing now — statements, who blocks whom, long transactions, locks."""

from __future__ import annotations

from typing import Any

from pgmcp.app import AppContext
from pgmcp.tools import ConnectionId

# Query text as pg_stat_activity shows it to this role: '<insufficient privilege>' for other
# roles' sessions unless the role has pg_read_all_stats. Shown as null, never guessed.
_SESSIONS = """
SELECT pid, usename AS user, datname AS database, application_name, client_addr::text AS client_addr,
       state, wait_event_type, wait_event,
       round(extract(epoch FROM now() - query_start)::numeric * 1000, 1)::float8 AS query_duration_ms,
       round(extract(epoch FROM now() - xact_start)::numeric, 3)::float8 AS transaction_seconds,
       round(extract(epoch FROM now() - state_change)::numeric, 3)::float8 AS state_seconds,
       CASE WHEN query = '<insufficient privilege>' THEN NULL ELSE query END AS query,
       pg_blocking_pids(pid) AS blocked_by,
       backend_xid IS NOT NULL AS holds_xid
  FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
 ORDER BY xact_start NULLS LAST, pid
"""

_LOCKS = """
SELECT locktype, mode, granted, count(*)::int AS count
  FROM pg_locks
 WHERE pid <> pg_backend_pid()
 GROUP BY 1, 2, 3
 ORDER BY granted, count DESC, locktype, mode
"""


def _chain(pid: int, blocked_by: dict[int, list[int]]) -> list[int]:
    """From the first session that blocks without being blocked down to ``pid``."""
    chain = [pid]
    while blocked_by.get(chain[0]) and blocked_by[chain[0]][0] not in chain:
        chain.insert(0, blocked_by[chain[0]][0])
    return chain


class ActivityTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def get_activity(self, connection_id: ConnectionId) -> dict[str, Any]:
        """Running sessions, blocking chains, long transactions, locks."""
        sessions_rows, lock_rows = await self.app.executor.catalog(
            connection_id, [(_SESSIONS, ()), (_LOCKS, ())], tool="get_activity"
        )
        rows = [dict(r) for r in sessions_rows]
        by_pid = {r["pid"]: r for r in rows}
        blocked_by = {r["pid"]: list(r["blocked_by"] or []) for r in rows}
        blocking = []
        for r in rows:
            if not blocked_by[r["pid"]]:
                continue
            blockers = blocked_by[r["pid"]]
            blocking.append(
                {
                    "pid": r["pid"],
                    "blocked_by": blockers,
                    "chain": _chain(r["pid"], blocked_by),
                    "waiting_seconds": r["state_seconds"],
                    "wait_event": r["wait_event"],
                    "query": r["query"],
                    "blocking_queries": [
                        {"pid": b, "state": by_pid[b]["state"], "query": by_pid[b]["query"]}
                        for b in blockers
                        if b in by_pid
                    ],
                }
            )
        threshold = self.app.settings.activity_long_transaction_seconds
        long_transactions = [
            {
                "pid": r["pid"],
                "user": r["user"],
                "database": r["database"],
                "application_name": r["application_name"],
                "state": r["state"],
                "transaction_seconds": r["transaction_seconds"],
                "query": r["query"],
            }
            for r in rows
            if r["transaction_seconds"] is not None and r["transaction_seconds"] >= threshold
        ]
        long_transactions.sort(key=lambda t: -(t["transaction_seconds"] or 0))
        sessions = [
            {k: v for k, v in r.items() if k not in ("holds_xid",)} for r in rows if r["state"] != "idle"
        ]
        warnings = []
        if any(r["query"] is None and r["state"] not in (None, "idle") for r in rows):
            warnings.append(
                "Some sessions belong to other roles: their query text is hidden (grant pg_read_all_stats to see it)."
            )
        return {
            "success": True,
            "sessions": sessions,
            "blocking": blocking,
            "long_transactions": long_transactions,
            "locks": [dict(r) for r in lock_rows],
            "warnings": warnings,
        }
