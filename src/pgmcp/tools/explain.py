"""explain_query: PostgreSQL's JSON plan, a summary and warnings a person can act on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import Field

from pgmcp.app import AppContext
from pgmcp.errors import InvalidInput
from pgmcp.tools import ConnectionId, Params
from pgmcp.tools.advisor import AdvisorTools, HypotheticalIndex

# A sequential scan over fewer rows than this is not worth a warning.
SEQ_SCAN_ROWS = 10_000
# Estimated vs actual rows off by more than this factor suggests stale statistics.
MISESTIMATE_FACTOR = 10


def _nodes(plan: dict[str, Any], under_limit: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every node, with whether a Limit above it may have stopped it early."""
    yield plan, under_limit
    below = under_limit or plan.get("Node Type") == "Limit"
    for child in plan.get("Plans", ()):
        yield from _nodes(child, below)


def plan_warnings(root: dict[str, Any], analyzed: bool) -> list[str]:
    """Sentences about the plan: big sequential scans, misestimates, sorts and hashes spilling to disk."""
    warnings: list[str] = []
    for node, under_limit in _nodes(root):
        kind = node.get("Node Type", "")
        relation = node.get("Relation Name")
        schema = node.get("Schema")
        name = f"{schema}.{relation}" if schema and relation else relation
        rows = node.get("Actual Rows", node.get("Plan Rows", 0)) or 0
        loops = node.get("Actual Loops", 1) or 1
        if kind == "Seq Scan" and relation:
            scanned = rows * loops + (node.get("Rows Removed by Filter", 0) or 0) * loops
            if scanned >= SEQ_SCAN_ROWS or (node.get("Plan Rows", 0) or 0) >= SEQ_SCAN_ROWS:
                filt = node.get("Filter")
                advice = f"; an index on the columns of its filter ({filt}) may help" if filt else ""
                warnings.append(
                    f"Sequential scan on {name} reads about {int(max(scanned, rows)):,} rows{advice}."
                )
        # Under a Limit, fewer rows than estimated is expected: the Limit stopped the node.
        stopped_early = under_limit and node.get("Actual Rows", 0) < node.get("Plan Rows", 0)
        if analyzed and "Actual Rows" in node and node.get("Plan Rows") and not stopped_early:
            estimated = node["Plan Rows"]
            actual = node["Actual Rows"]
            if (
                max(estimated, actual) >= 100
                and max(estimated, 1) / max(actual, 1) >= MISESTIMATE_FACTOR
                or (
                    max(actual, 1) / max(estimated, 1) >= MISESTIMATE_FACTOR and max(estimated, actual) >= 100
                )
            ):
                where = f" on {name}" if name else ""
                warnings.append(
                    f"{kind}{where} estimated {estimated:,} rows but found {actual:,}: statistics may be stale "
                    f"(run ANALYZE{' ' + name if name else ''})."
                )
        if node.get("Sort Space Type") == "Disk":
            warnings.append(
                f"Sort spilled to disk ({node.get('Sort Space Used', '?')} kB): raise work_mem or sort fewer rows."
            )
        if kind == "Hash" and (node.get("Hash Batches", 1) or 1) > 1:
            warnings.append(f"Hash used {node['Hash Batches']} batches (spilled to disk): raise work_mem.")
        if kind == "Nested Loop" and analyzed and rows * loops >= 1_000_000:
            warnings.append(f"Nested Loop produced {rows * loops:,} rows: check the join conditions.")
    return list(dict.fromkeys(warnings))


class ExplainTools:
    def __init__(self, app: AppContext) -> None:
        self.app = app

    async def explain_query(
        self,
        connection_id: ConnectionId,
        query: Annotated[str, Field(min_length=1, description="The statement to explain.")],
        params: Params = [],  # noqa: B006 - pydantic copies defaults
        analyze: Annotated[bool, Field(description="Run it for timings (writes rolled back).")] = False,
        hypothetical_indexes: Annotated[
            list[HypotheticalIndex],
            Field(description="Also plan as if these indexes existed (hypopg)."),
        ] = [],  # noqa: B006 - pydantic copies defaults
    ) -> dict[str, Any]:
        """PostgreSQL's JSON plan with a summary and warnings."""
        if hypothetical_indexes:
            if analyze:
                raise InvalidInput(
                    "hypothetical_indexes cannot be combined with analyze=true: a hypothetical index "
                    "cannot be executed, only planned"
                )
            plain, with_indexes, made = await AdvisorTools(self.app).explain_hypothetical(
                connection_id, query, list(params or ()), hypothetical_indexes
            )
            plain_root = plain.get("Plan", {})
            root = with_indexes.get("Plan", {})
            return {
                "success": True,
                "plan": [plain],
                "summary": _summary(plain, plain_root, False),
                "warnings": plan_warnings(plain_root, False),
                "analyzed": False,
                "hypothetical": {
                    "indexes": made,
                    "plan": [with_indexes],
                    "summary": _summary(with_indexes, root, False),
                    "warnings": plan_warnings(root, False),
                },
            }
        raw, decision, duration_ms = await self.app.executor.explain(
            connection_id, query, params or (), analyze=analyze
        )
        document = raw[0] if isinstance(raw, list) and raw else raw
        root = document.get("Plan", {}) if isinstance(document, dict) else {}
        summary = _summary(document, root, analyze)
        result: dict[str, Any] = {
            "success": True,
            "plan": raw,
            "summary": summary,
            "warnings": plan_warnings(root, analyze) + list(decision.warnings),
            "analyzed": analyze,
        }
        if analyze and not decision.is_read:
            result["rolled_back"] = True
        return result


def _summary(document: Any, root: dict[str, Any], analyze: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "total_cost": root.get("Total Cost"),
        "plan_rows": root.get("Plan Rows"),
        "node_type": root.get("Node Type"),
    }
    if isinstance(document, dict):
        if "Planning Time" in document:
            summary["planning_time_ms"] = document["Planning Time"]
        if "Execution Time" in document:
            summary["execution_time_ms"] = document["Execution Time"]
        if analyze:
            summary["actual_rows"] = root.get("Actual Rows")
    return summary
