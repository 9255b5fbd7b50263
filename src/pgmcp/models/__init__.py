"""Result models: the tools' output schemas (SPEC §3). Leaves: anyone may import them.

Top-level fields are typed; list items are plain objects whose fields SPEC §3
and the tool descriptions name, which keeps tools/list small in a model's
context. The item models below document those fields for Python users.

Lists of objects are advertised as ``{"type": "array"}`` without an ``items``
schema: a client that validates structured content (the official Python client
does, with ``jsonschema``) would otherwise check every row on every call, about
11 µs a row there, 11 ms of the client's CPU for a 1,000-row result, to learn
only that each row is an object.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

JsonScalar = str | int | float | bool | None
JsonValue = str | int | float | bool | None | list[Any] | dict[str, Any]
Objects = Annotated[list[dict[str, Any]], WithJsonSchema({"type": "array"})]


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    success: bool


class PoolStats(BaseModel):
    """``size``: the pool's ceiling (pool_size); ``open`` = ``idle_connections`` + ``active_connections``;
    ``waiting``: calls waiting for a connection (the pool's, or a slot under MAX_CONNECTIONS)."""

    size: int
    open: int
    idle_connections: int
    active_connections: int
    waiting: int


class AddConnectionResult(_Result):
    connection_id: str
    message: str
    pool_stats: PoolStats


class RemoveConnectionResult(_Result):
    connection_id: str
    message: str


class ConnectionInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    connection_id: str
    host: str
    port: int
    database: str
    user: str
    readonly: bool
    pool_stats: PoolStats


class ListConnectionsResult(_Result):
    connections: Objects


class TestConnectionResult(_Result):
    connection_id: str
    is_healthy: bool
    latency_ms: float | None
    server_version: str | None
    pool_stats: PoolStats


class Column(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    type: str


class ExecuteQueryResult(_Result):
    columns: Objects
    rows: Objects
    row_count: int
    truncated: bool
    duration_ms: float


class StatementResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    row_count: int
    rows: Objects | None = None


class ExecuteTransactionResult(_Result):
    results: Objects
    committed: bool


class BatchExecuteResult(_Result):
    rows_affected: int
    batch_size: int
    duration_ms: float


class SchemaInfo(BaseModel):
    schema_name: str
    owner: str | None
    table_count: int


class ListSchemasResult(_Result):
    schemas: Objects


class TableInfo(BaseModel):
    table_name: str
    schema_: str = Field(alias="schema")
    table_type: str
    row_estimate: int | None
    size_bytes: int | None
    comment: str | None

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ListTablesResult(_Result):
    tables: Objects
    truncated: bool = False


class ColumnInfo(BaseModel):
    name: str
    data_type: str
    nullable: bool
    default: str | None
    comment: str | None


class IndexInfo(BaseModel):
    name: str
    columns: list[str]
    unique: bool
    definition: str


class ForeignKeyInfo(BaseModel):
    name: str
    columns: list[str]
    referenced_schema: str
    referenced_table: str
    referenced_columns: list[str]


class TableSchemaResult(_Result):
    table_name: str
    schema_: str = Field(alias="schema")
    columns: Objects
    primary_key: list[str]
    indexes: Objects
    foreign_keys: Objects
    row_estimate: int | None

    model_config = ConfigDict(extra="allow", populate_by_name=True, serialize_by_alias=True)


class PlanSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    total_cost: float | None
    plan_rows: float | None
    execution_time_ms: float | None = None


class ExplainResult(_Result):
    plan: Objects
    summary: PlanSummary
    warnings: list[str]


class HealthResult(_Result):
    is_healthy: bool
    status: str
    uptime_seconds: float
    memory_percent: float | None
    cpu_percent: float | None
    disk_percent: float | None
    connections: dict[str, Any]
    warnings: list[str]


class MetricsResult(_Result):
    total_queries: int
    successful_queries: int
    failed_queries: int
    blocked_queries: int
    avg_query_time_ms: float
    p95_query_time_ms: float
    queries_by_type: dict[str, int]
    pools: dict[str, Any]
    system: dict[str, Any]


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    connection_id: str
    query: str | None
    query_type: str
    duration_ms: float
    success: bool
    row_count: int | None
    timestamp: str


class QueryHistoryResult(_Result):
    queries: Objects


class BusinessMetric(BaseModel):
    count: int = Field(description="Events in the window.")
    sum: float = Field(description="Sum of their values.")
    avg: float = Field(description="Average value (0 without events).")


class BusinessMetricsResult(_Result):
    window_seconds: int = Field(description="The window the figures cover, in seconds.")
    metrics: dict[str, BusinessMetric] = Field(description="Per event type recorded by plugins.")
