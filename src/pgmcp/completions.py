"""Values for ``completion/complete``: connection ids, schemas and tables, by prefix.

From the registry (connection ids) and the catalog (schemas, tables of a schema), through the
one execute path (``Executor.catalog``: READ ONLY, QUERY_TIMEOUT). Catalog answers are cached
for CACHE_SECONDS per (connection, schema), so typing a name does not query per keystroke;
at most :data:`MAX_VALUES` values are returned (the protocol's limit), with the total.
"""

from __future__ import annotations

import time
from typing import Any

from pgmcp.app import AppContext
from pgmcp.errors import PgMcpError

__all__ = ["ARGUMENT_KINDS", "MAX_VALUES", "Completer"]

MAX_VALUES = 100
CACHE_SECONDS = 30.0
_CACHE_ENTRIES = 256

#: Which kind of name each completable argument holds (resource template and prompt arguments).
ARGUMENT_KINDS = {
    "connection_id": "connection",
    "connections": "connection",
    "source": "connection",
    "target": "connection",
    "schema": "schema",
    "schema_name": "schema",
    "table": "table",
    "table_name": "table",
}

_SCHEMAS = """
SELECT n.nspname FROM pg_namespace n
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
   AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'
   AND has_schema_privilege(n.oid, 'USAGE')
 ORDER BY 1
"""

_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
 ORDER BY 1 LIMIT 20000
"""


class Completer:
    """Completes names for one application; see the module docstring."""

    def __init__(self, app: AppContext) -> None:
        self.app = app
        self._cache: dict[tuple[str, ...], tuple[float, list[str]]] = {}

    async def complete(self, argument: str, prefix: str, given: dict[str, Any]) -> tuple[list[str], int]:
        """At most MAX_VALUES names for ``argument`` starting with ``prefix`` (case-insensitive), and their total.

        ``given`` holds the arguments already chosen (the connection, the schema). An
        unknown argument, connection or failing catalog gives no values, never an error.
        """
        kind = ARGUMENT_KINDS.get(argument)
        if kind is None:
            return [], 0
        if kind == "connection":
            names = sorted(c.connection_id for c in self.app.registry.all())
        else:
            connection_id = str(given.get("connection_id") or given.get("source") or "default")
            schema = str(given.get("schema_name") or given.get("schema") or "public")
            try:
                names = await self._catalog(kind, connection_id, schema)
            except PgMcpError:
                return [], 0
        head = ""
        if argument == "connections":  # a comma-separated list: complete its last item
            head, comma, prefix = prefix.rpartition(",")
            head += comma
        wanted = prefix.strip().lower()
        matches = [head + n for n in names if n.lower().startswith(wanted)]
        return matches[:MAX_VALUES], len(matches)

    async def _catalog(self, kind: str, connection_id: str, schema: str) -> list[str]:
        key = (kind, connection_id, schema)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        sql, args = (_SCHEMAS, ()) if kind == "schema" else (_TABLES, (schema,))
        (rows,) = await self.app.executor.catalog(connection_id, [(sql, args)], tool="completion")
        names = [str(r[0]) for r in rows]
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.clear()
        self._cache[key] = (now, names)
        return names
