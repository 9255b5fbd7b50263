"""Metrics, health and query history: what the one execute path reports to.

One :class:`Monitor` per server. The execute path calls :meth:`Monitor.record_query`
(or :meth:`Monitor.record_blocked`), the tool layer :meth:`Monitor.record_tool_call`;
``get_metrics``, ``get_query_history``, ``health_check``, ``/health`` and
``/metrics`` read from it.

So that ``get_metrics`` and ``/metrics`` never disagree, the counters are plain
integers kept under one lock, and ``/metrics`` is rendered from those same
integers at scrape time by a custom collector (:mod:`.exposition`), not by
separate ``prometheus_client`` Counter objects. Each Monitor has its own
``CollectorRegistry``, so several servers in one process do not collide.

What is counted where:

- ``total_queries`` = statements that reached the database =
  ``successful_queries`` + ``failed_queries`` (``mcp_server_queries_total``,
  ``status`` = ``success`` | ``error``).
- ``blocked_queries`` were refused by the policy and never reached the
  database: they are in neither ``total_queries`` nor ``failed_queries``
  (``mcp_server_queries_blocked_total{connection_id,reason}``), and not in the
  query history.
- ``avg_query_time_ms`` is over every query since start (= the histogram's
  sum / count); ``p95_query_time_ms`` over the last :data:`RESERVOIR_SIZE`.

Modules: :mod:`.monitor` (the Monitor), :mod:`.exposition` (Prometheus
families), :mod:`.health` (system readings and the health verdict),
:mod:`.business` (the handbook's business events), :mod:`.timeseries` (the
last hour in 10-second buckets, for the web console's charts).

For the console the Monitor also keeps the last :data:`BLOCKED_HISTORY_SIZE`
blocked statements (reason, message, tool, caller) and gives each history
entry an ``id`` and the caller's ``principal``; ``get_query_history``'s rows
are unchanged.
"""

from pgmcp.monitoring.business import BUSINESS_RETENTION_SECONDS
from pgmcp.monitoring.exposition import DURATION_BUCKETS_SECONDS
from pgmcp.monitoring.health import Status
from pgmcp.monitoring.monitor import BLOCKED_HISTORY_SIZE, RESERVOIR_SIZE, Monitor, PoolSource, QueryRecord

__all__ = [
    "BLOCKED_HISTORY_SIZE",
    "BUSINESS_RETENTION_SECONDS",
    "DURATION_BUCKETS_SECONDS",
    "RESERVOIR_SIZE",
    "Monitor",
    "PoolSource",
    "QueryRecord",
    "Status",
]
