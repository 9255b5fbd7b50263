"""The catalog SQL of analyze_db_health, one statement per check (pgmcp's own text, never a caller's).

:mod:`pgmcp.tools.health` runs them in one READ ONLY transaction of the execute path and
turns their rows into findings.
"""

from __future__ import annotations

USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"

INVALID_INDEXES = f"""
SELECT n.nspname AS schema, c.relname AS index, t.relname AS table, pg_relation_size(c.oid) AS size_bytes
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT i.indisvalid AND {USER_SCHEMAS}
 ORDER BY 1, 2
"""

# Indexes with the same table, key, operator classes, collations, expressions and predicate.
# The first of each group (primary key, then unique, then oldest) is the one to keep.
DUPLICATE_INDEXES = f"""
SELECT n.nspname AS schema, t.relname AS table,
       array_agg(c.relname::text ORDER BY i.indisprimary DESC, i.indisunique DESC, c.oid) AS indexes,
       array_agg(pg_relation_size(c.oid) ORDER BY i.indisprimary DESC, i.indisunique DESC, c.oid) AS sizes,
       array_agg(i.indisunique OR i.indisprimary ORDER BY i.indisprimary DESC, i.indisunique DESC, c.oid)
         AS constraints
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.indisvalid AND {USER_SCHEMAS}
 GROUP BY n.nspname, t.relname, i.indrelid, i.indkey::text, i.indclass::text, i.indcollation::text,
          coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), ''),
          c.relam
HAVING count(*) > 1
 ORDER BY 1, 2
"""

UNUSED_INDEXES = f"""
SELECT n.nspname AS schema, s.indexrelname AS index, s.relname AS table,
       pg_relation_size(s.indexrelid) AS size_bytes, s.idx_scan
  FROM pg_stat_user_indexes s
  JOIN pg_index i ON i.indexrelid = s.indexrelid
  JOIN pg_class c ON c.oid = s.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND i.indisvalid
   AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = s.indexrelid)
   AND pg_relation_size(s.indexrelid) >= $1 AND {USER_SCHEMAS}
 ORDER BY 4 DESC
"""

# A rough B-tree bloat estimate: the pages the index would need for its rows at the default
# fill factor (tuple header + key widths from pg_stats + line pointer), against the pages it has.
INDEX_BLOAT = f"""
SELECT n.nspname AS schema, c.relname AS index, t.relname AS table,
       pg_relation_size(c.oid) AS size_bytes, c.relpages AS pages,
       ceil(c.reltuples * (8 + 4 + coalesce((
             SELECT sum(coalesce(s.avg_width, 8)) FROM unnest(i.indkey::int2[]) AS k(attnum)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = t.relname
                                   AND s.attname = a.attname), 8))
            / ((current_setting('block_size')::int - 24) * 0.9)) AS expected_pages
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_am am ON am.oid = c.relam
 WHERE am.amname = 'btree' AND i.indisvalid AND c.reltuples > 0 AND pg_relation_size(c.oid) >= $1
   AND i.indexprs IS NULL AND {USER_SCHEMAS}
"""

DEAD_TUPLES = """
SELECT schemaname AS schema, relname AS table, n_live_tup AS live, n_dead_tup AS dead,
       last_autovacuum, last_vacuum, last_autoanalyze
  FROM pg_stat_user_tables
 WHERE n_dead_tup >= $1 AND n_dead_tup::float8 / greatest(n_live_tup + n_dead_tup, 1) >= $2
 ORDER BY n_dead_tup DESC
"""

DATABASE_AGE = """
SELECT datname AS database, age(datfrozenxid)::bigint AS xid_age
  FROM pg_database WHERE datallowconn AND age(datfrozenxid) >= $1 ORDER BY 2 DESC
"""

TABLE_AGE = f"""
SELECT n.nspname AS schema, c.relname AS table, age(c.relfrozenxid)::bigint AS xid_age
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm', 't') AND age(c.relfrozenxid) >= $1 AND {USER_SCHEMAS}
 ORDER BY 3 DESC LIMIT 20
"""

SEQUENCES = """
SELECT schemaname AS schema, sequencename AS sequence, last_value, min_value, max_value, increment_by,
       CASE WHEN increment_by > 0
            THEN (last_value - min_value)::float8 / greatest(max_value - min_value, 1)
            ELSE (max_value - last_value)::float8 / greatest(max_value - min_value, 1) END AS used
  FROM pg_sequences
 WHERE last_value IS NOT NULL AND NOT cycle
"""

CONNECTIONS = """
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used,
       current_setting('max_connections')::int AS max,
       current_setting('superuser_reserved_connections')::int AS reserved
"""

IDLE_IN_TRANSACTION = """
SELECT pid, usename AS user, datname AS database, application_name, state,
       extract(epoch FROM now() - state_change)::float8 AS idle_seconds,
       extract(epoch FROM now() - xact_start)::float8 AS transaction_seconds
  FROM pg_stat_activity
 WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
   AND now() - state_change >= make_interval(secs => $1) AND pid <> pg_backend_pid()
 ORDER BY state_change
"""

CACHE = """
SELECT coalesce(sum(heap_blks_hit), 0)::bigint AS heap_hit, coalesce(sum(heap_blks_read), 0)::bigint AS heap_read,
       coalesce(sum(idx_blks_hit), 0)::bigint AS idx_hit, coalesce(sum(idx_blks_read), 0)::bigint AS idx_read
  FROM pg_statio_user_tables
"""

REPLICATION = """
SELECT application_name, client_addr::text AS client, state,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS lag_bytes,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_seconds
  FROM pg_stat_replication
"""

SLOTS = """
SELECT slot_name, slot_type, active,
       CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END AS retained_bytes
  FROM pg_replication_slots
"""

NOT_VALID = f"""
SELECT n.nspname AS schema, t.relname AS table, con.conname AS constraint,
       CASE con.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE con.contype::text END AS kind
  FROM pg_constraint con
  JOIN pg_class t ON t.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE NOT con.convalidated AND {USER_SCHEMAS}
 ORDER BY 1, 2, 3
"""
