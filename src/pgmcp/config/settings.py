"""The one :class:`Settings` object: every setting of SPEC §5, typed, with its default and description."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pgmcp.config.connections import ConnectionSpec, SslMode, spec_fields_from_dsn
from pgmcp.dsn import DsnError
from pgmcp.errors import register_secret

__all__ = ["Settings"]

CsvList = Annotated[list[str], NoDecode]


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of SPEC §5, with the handbook's names and defaults."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, validate_default=True
    )

    # --- server -----------------------------------------------------------
    mcp_server_host: str = Field("127.0.0.1", description="Address the HTTP transport binds to.")
    mcp_server_port: int = Field(3000, ge=0, le=65535, description="Port of the HTTP transport.")
    mcp_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level of the JSON logs on stderr."
    )
    mcp_auth_token: SecretStr | None = Field(
        None, description="Bearer token required on /mcp, /metrics and /connections when set."
    )
    mcp_allow_unauthenticated: bool = Field(
        False, description="Allow binding a non-loopback host without MCP_AUTH_TOKEN (warns)."
    )
    mcp_stateless: bool = Field(
        False, description="Stateless Streamable HTTP (replicas behind a load balancer)."
    )
    mcp_allowed_hosts: CsvList = Field(
        default_factory=list,
        description="Extra Host header values accepted by /mcp (behind a load balancer), e.g. mcp.example.com:*.",
    )
    mcp_config_file: Path | None = Field(None, description="TOML file declaring named connections.")
    mcp_max_request_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest accepted HTTP request body."
    )
    mcp_fast_path: bool = Field(
        True,
        description="Answer tools/call without the MCP SDK's dispatcher where the answer is the SDK's "
        "byte for byte (stdio, 2026-07-28 HTTP); false sends every message through the SDK.",
    )
    mcp_stdio_fast_path: bool = Field(
        True,
        description="Answer tools/call over stdio without the MCP SDK's dispatcher (same answers, less CPU).",
    )
    mcp_http_fast_path: bool = Field(
        True,
        description="Answer 2026-07-28 tools/call POSTs without the MCP SDK's dispatcher (same answers, less CPU).",
    )
    shutdown_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="On SIGTERM/SIGINT, how long in-flight calls may finish before they are cancelled.",
    )

    # --- pools ------------------------------------------------------------
    default_pool_size: int = Field(10, ge=1, le=1000, description="Pool size of a new connection.")
    max_connections: int = Field(
        20,
        ge=1,
        description="Most connections open at once, all pools together (pools grow on demand to pool_size).",
    )
    pool_idle_timeout: float = Field(
        300,
        gt=0,
        description="Seconds after which an idle pooled connection is closed (each pool keeps one warm).",
    )
    connection_timeout: float = Field(
        30, gt=0, description="Seconds to open a connection or get one from a pool."
    )
    query_timeout: float = Field(30, gt=0, description="Seconds before the database cancels a statement.")
    copy_timeout: float = Field(
        3600, gt=0, description="Seconds one copy_data call may run (its source COPY's statement_timeout)."
    )

    # --- policy -----------------------------------------------------------
    readonly_mode: bool = Field(
        False, description="Only read statements anywhere; transactions run READ ONLY."
    )
    readonly_role: str | None = Field(
        None,
        description="A role every read path switches to (SET LOCAL ROLE): reads meet its grants.",
    )
    refuse_superuser: bool = Field(
        False, description="Refuse connections whose database role is a superuser."
    )
    allowed_operations: CsvList = Field(
        default_factory=lambda: ["SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "EXPLAIN"],
        description="Statement kinds allowed, by leading keyword.",
    )
    blocked_keywords: CsvList = Field(
        default_factory=lambda: ["DROP", "TRUNCATE", "ALTER"],
        description="Statement kinds / SQL keyword tokens that are always refused.",
    )
    max_query_length: int = Field(10000, ge=1, description="Longest accepted query text, in characters.")
    max_batch_size: int = Field(10000, ge=1, description="Most parameter rows accepted by batch_execute.")
    max_transaction_queries: int = Field(
        1000, ge=1, description="Most statements in one execute_transaction."
    )
    allow_runtime_connections: bool = Field(
        True, description="Whether add_connection/remove_connection may be used."
    )
    allowed_db_hosts: CsvList = Field(
        default_factory=lambda: ["*"], description="Hosts or CIDRs add_connection may reach ('*' = any)."
    )
    allow_inline_passwords: bool = Field(
        True, description="Whether add_connection accepts a password argument."
    )
    sensitive_tables: CsvList = Field(
        default_factory=list, description="Tables whose access is warned about."
    )
    sensitive_tables_action: Literal["warn", "block"] = Field(
        "warn", description="What access to SENSITIVE_TABLES does: warn or block."
    )
    require_limit_for_select_star: bool = Field(False, description="Block SELECT * without LIMIT.")
    allowed_functions: CsvList = Field(
        default_factory=list,
        description="VOLATILE functions read paths may call anyway (never the always-blocked ones).",
    )
    blocked_functions: CsvList = Field(
        default_factory=list, description="Functions refused on every path, however they are called."
    )

    # --- results ------------------------------------------------------------
    default_fetch_size: int = Field(
        1000, ge=1, description="Rows returned by execute_query unless fetch_size says."
    )
    max_fetch_size: int = Field(100000, ge=1, description="Largest fetch_size a caller may ask for.")
    max_result_bytes: int = Field(1048576, ge=1024, description="Cap on the JSON size of returned rows.")
    wrap_untrusted_data: bool = Field(True, description="Wrap database data in untrusted-data boundaries.")
    confirm_writes: Literal["never", "destructive", "always"] = Field(
        "never",
        description="Ask the user before writes run: never, destructive (DELETE/UPDATE/MERGE/TRUNCATE/DROP/ALTER "
        "or a preview above CONFIRM_ROWS_THRESHOLD rows) or always.",
    )
    confirm_rows_threshold: int = Field(
        1000,
        ge=0,
        description="With CONFIRM_WRITES=destructive, a write touching more rows is confirmed too.",
    )
    progress_interval: float = Field(
        5, gt=0, description="Seconds between progress notifications of a long execute_query."
    )

    # --- default connection (DATABASE_URL or DB_*) -------------------------
    database_url: SecretStr | None = Field(
        None,
        description="postgresql:// URI of the 'default' connection (instead of DB_HOST, DB_PORT, ...).",
    )
    db_host: str | None = Field(
        None, description="Host of the 'default' connection; unset = embedded PostgreSQL."
    )
    db_port: int = Field(5432, ge=1, le=65535, description="Port of the 'default' connection.")
    db_database: str = Field("postgres", description="Database of the 'default' connection.")
    db_user: str = Field("postgres", description="User of the 'default' connection.")
    db_password: SecretStr | None = Field(None, description="Password of the 'default' connection.")
    db_pool_size: int | None = Field(
        None, ge=1, le=1000, description="Pool size of 'default' (DEFAULT_POOL_SIZE)."
    )
    db_ssl_mode: SslMode = Field(
        "prefer", description="TLS mode: disable, allow, prefer, require, verify-ca, verify-full."
    )
    db_ssl_cert: str | None = Field(
        None, description="Client certificate file of 'default', presented in every TLS mode."
    )
    db_ssl_key: str | None = Field(None, description="Key file of DB_SSL_CERT.")
    db_ssl_root_cert: str | None = Field(
        None,
        description="CA certificate file verify-ca/verify-full trust (also for connections that name none).",
    )
    pgmcp_data_dir: Path | None = Field(None, description="Data directory of the embedded PostgreSQL.")
    pgmcp_embedded: bool = Field(
        True, description="Without DB_HOST, start the embedded PostgreSQL with demo data as 'default'."
    )

    # --- observability ----------------------------------------------------
    enable_metrics: bool = Field(True, description="Serve /metrics and collect Prometheus metrics.")
    enable_query_logging: bool = Field(True, description="Keep query text in logs and query history.")
    health_check_interval: float = Field(
        30, gt=0, description="Seconds between background connection probes."
    )
    memory_warning_threshold: float = Field(
        80, ge=0, le=100, description="Memory percent that degrades health."
    )
    cpu_warning_threshold: float = Field(80, ge=0, le=100, description="CPU percent that degrades health.")
    disk_warning_threshold: float = Field(90, ge=0, le=100, description="Disk percent that degrades health.")
    slow_query_threshold_ms: float = Field(1000, ge=0, description="Queries slower than this log slow_query.")
    query_history_size: int = Field(1000, ge=0, description="Queries kept for get_query_history.")
    audit_log_file: Path | None = Field(None, description="Append-only JSON-lines audit file.")
    console_enabled: bool = Field(
        True, description="Serve the web console at /console on the HTTP transport."
    )
    console_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="With the stdio transport, also serve the web console on 127.0.0.1:P.",
    )
    console_session_seconds: int = Field(
        8 * 3600, ge=60, description="How long a web console login lasts (with MCP_AUTH_TOKEN)."
    )
    audit_log_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Audit file size before rotation."
    )

    # --- database intelligence (analyze_db_health, get_activity, recommend_indexes) ---
    health_unused_index_min_bytes: int = Field(
        1024 * 1024, ge=0, description="analyze_db_health reports never-scanned indexes at least this big."
    )
    health_index_bloat_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Estimated bloat fraction of a B-tree index that analyze_db_health reports.",
    )
    health_index_bloat_min_bytes: int = Field(
        10 * 1024 * 1024, ge=0, description="Indexes smaller than this are not checked for bloat."
    )
    health_dead_tuple_ratio: float = Field(
        0.2, gt=0, le=1, description="Dead fraction of a table's rows that analyze_db_health reports."
    )
    health_dead_tuples_min: int = Field(
        1000, ge=0, description="Tables with fewer dead rows than this are not reported."
    )
    health_xid_age_warning: int = Field(
        1_000_000_000,
        ge=1,
        description="Transaction-ID age (of a database or table) reported as a warning; 1.5x is critical.",
    )
    health_sequence_used_ratio: float = Field(
        0.9, gt=0, le=1, description="Fraction of a sequence's range used that is a warning (0.99: critical)."
    )
    health_connections_used_ratio: float = Field(
        0.8, gt=0, le=1, description="Fraction of max_connections in use that is a warning (0.95: critical)."
    )
    health_idle_in_transaction_seconds: float = Field(
        60, ge=0, description="Sessions idle in a transaction longer than this are reported."
    )
    health_cache_hit_ratio: float = Field(
        0.95, ge=0, le=1, description="Heap or index cache hit ratio below this is reported."
    )
    health_replication_lag_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description="Replication lag, or WAL a replication slot retains, beyond this is reported.",
    )
    activity_long_transaction_seconds: float = Field(
        300, ge=0, description="get_activity lists transactions open longer than this as long_transactions."
    )
    index_advisor_min_improvement: float = Field(
        0.1,
        ge=0,
        le=1,
        description="recommend_indexes keeps indexes that cut the estimated cost by this fraction.",
    )

    # --- tools, auth, extensions ----------------------------------------------
    enabled_tools: CsvList = Field(
        default_factory=list,
        description="Tools or groups (read, write, admin, monitoring, intelligence) to expose; empty = all.",
    )
    mcp_oidc_issuer: str | None = Field(None, description="OIDC issuer whose JWTs are accepted.")
    mcp_oidc_audience: str | None = Field(None, description="Audience the JWTs must carry.")
    mcp_oidc_jwks_url: str | None = Field(None, description="JWKS URL for the JWT signing keys.")
    mcp_plugins: CsvList = Field(default_factory=list, description="Plugin modules to load at start.")
    mcp_plugins_skip_broken: bool = Field(
        False, description="Skip a plugin that fails to load (warn) instead of stopping."
    )

    # Connections declared in MCP_CONFIG_FILE (filled by load_settings, not from the environment).
    connections: list[ConnectionSpec] = Field(default_factory=list, exclude=True)

    @field_validator(
        "allowed_operations",
        "blocked_keywords",
        "allowed_db_hosts",
        "sensitive_tables",
        "allowed_functions",
        "blocked_functions",
        "enabled_tools",
        "mcp_plugins",
        "mcp_allowed_hosts",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("allowed_operations", "blocked_keywords")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [v.upper() for v in value]

    @field_validator("readonly_role", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("mcp_log_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _remember_secrets(self) -> Settings:
        for secret in (self.db_password, self.mcp_auth_token):
            if secret is not None:
                register_secret(secret.get_secret_value())
        if self.database_url is not None:
            if self.db_host:
                raise ValueError("database_url: give either DATABASE_URL or DB_HOST, not both")
            try:
                spec_fields_from_dsn(self.database_url.get_secret_value())
            except DsnError as exc:
                raise ValueError(f"database_url: {exc}") from None
        return self

    @property
    def embedded(self) -> bool:
        """True when neither DATABASE_URL nor DB_HOST is given: the embedded PostgreSQL serves 'default'."""
        return not self.db_host and self.database_url is None

    def default_connection(self) -> ConnectionSpec | None:
        tls = {"ssl_mode": self.db_ssl_mode, "ssl_cert": self.db_ssl_cert, "ssl_key": self.db_ssl_key}
        tls["ssl_root_cert"] = self.db_ssl_root_cert
        if self.database_url is not None:
            fields = {**tls, **spec_fields_from_dsn(self.database_url.get_secret_value())}
            return ConnectionSpec(
                connection_id="default", pool_size=self.db_pool_size, required=True, **fields
            )
        if not self.db_host:
            return None
        return ConnectionSpec(
            connection_id="default",
            host=self.db_host,
            port=self.db_port,
            database=self.db_database,
            user=self.db_user,
            password=self.db_password,
            pool_size=self.db_pool_size,
            required=True,
            **tls,
        )
