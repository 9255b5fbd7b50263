"""Example pgmcp plugin: the handbook's ``calculate_revenue_metrics`` tool.

The handbook (擴展與客製化) adds this tool by editing ``src/tools/`` and
``server.py``. As a plugin it needs neither: pgmcp calls :func:`register` at
start-up (entry point ``pgmcp.plugins`` → ``revenue = "pgmcp_revenue"``, or
``MCP_PLUGINS=pgmcp_revenue``), and the tool gets what built-in tools get:
argument validation, the response shape, the policy, ``QUERY_TIMEOUT``, a
``READ ONLY`` transaction, row caps, metrics, logs and query history.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field

from pgmcp import InvalidInput, PostgreSQLMCPServer

__all__ = ["AnalyticsTool", "register"]

GroupBy = Literal["day", "week", "month", "quarter"]

# group_by is a bound parameter ($3), never text pasted into the SQL: the only
# values that reach date_trunc are the four the Literal type lets through, and
# even a fifth would be data, not SQL. The end date is inclusive (whole day).
REVENUE_SQL = """
SELECT date_trunc($3, order_date)          AS period,
       sum(total_amount)                   AS total_revenue,
       count(*)                            AS order_count,
       round(avg(total_amount), 2)         AS avg_order_value,
       count(DISTINCT customer_id)         AS unique_customers
  FROM orders
 WHERE order_date >= $1::date
   AND order_date <  $2::date + 1
   AND status = 'completed'
 GROUP BY 1
 ORDER BY 1
"""

#: The business event recorded by every successful call (value: the revenue reported).
EVENT = "revenue_report"


class AnalyticsTool:
    """The handbook's ``AnalyticsTool``, written against the public ``pgmcp`` API."""

    def __init__(self, server: PostgreSQLMCPServer) -> None:
        self.server = server

    async def calculate_revenue_metrics(
        self,
        connection_id: Annotated[str, Field(min_length=1, description="A registered connection.")],
        start_date: Annotated[dt.date, Field(description="First day, ISO 8601 (2024-01-01).")],
        end_date: Annotated[dt.date, Field(description="Last day, inclusive, ISO 8601 (2024-03-31).")],
        group_by: Annotated[GroupBy, Field(description="Period to group completed orders by.")] = "month",
    ) -> dict[str, Any]:
        """Revenue of completed orders between two dates, per day, week, month or quarter:
        total revenue, order count, average order value and unique customers per period."""
        if end_date < start_date:
            raise InvalidInput(f"end_date {end_date} is before start_date {start_date}")
        result = await self.server.execute_query(
            connection_id, REVENUE_SQL, [start_date, end_date, group_by], fetch_size=5000
        )
        total = sum((Decimal(row["total_revenue"]) for row in result.rows), Decimal(0))
        self.server.record_business_event(EVENT, float(total))
        return {
            "metrics": result.rows,
            "period_type": group_by,
            "date_range": {"start": start_date.isoformat(), "end": end_date.isoformat()},
            "total_revenue": str(total),
            "truncated": result.truncated,
        }


def register(server: PostgreSQLMCPServer) -> None:
    """Called by pgmcp at start-up: register the revenue tool on ``server``."""
    analytics = AnalyticsTool(server)

    # The handbook's spelling (`self.app.tool()`); `server.tool()` is the same thing.
    server.app.tool()(analytics.calculate_revenue_metrics)
