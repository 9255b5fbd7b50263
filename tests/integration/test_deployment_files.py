"""The deployment files: env templates, database init scripts, Kubernetes and Compose.

The SQL files are loaded into a real PostgreSQL (the test server of conftest.py:
local 15 or the embedded 18) with ``psql -v ON_ERROR_STOP=1`` when psql is on PATH,
else through asyncpg (the psql prelude of init-db.sql is replaced by the settings it
would set). scripts/check-deployment.sh runs the tool-based checks (shellcheck,
hadolint, docker compose config, kubernetes-validate) on top of these.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from pgmcp.config import Settings, load_settings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEMO_SQL = ROOT / "src" / "pgmcp" / "demo" / "init-db-dev.sql"
INIT_SQL = ROOT / "deployment" / "db" / "init-db.sql"
PRELUDE_END = "-- ---- end of psql prelude"
EMAIL_RE = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"


# ---------------------------------------------------------------------------
# env templates


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"(?m)^#?[ \t]*([A-Z][A-Z0-9_]*)=", text))
    missing = [
        name.upper() for name in Settings.model_fields if name != "connections" and name.upper() not in listed
    ]
    assert not missing, f".env.example does not list {missing}"


@pytest.mark.parametrize("name", [".env.example", ".env.dev", ".env.test", ".env.prod"])
def test_env_templates_load(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.upper() in {n.upper() for n in Settings.model_fields}:
            monkeypatch.delenv(var)
    settings = load_settings(ROOT / name)
    if name == ".env.test":  # the handbook's test template: read-only on port 3001
        assert settings.readonly_mode and settings.mcp_server_port == 3001
        assert settings.allowed_operations == ["SELECT", "WITH", "EXPLAIN"]
    if name == ".env.prod":
        assert settings.mcp_log_level == "WARNING" and settings.max_query_length == 5000
        assert "GRANT" in settings.blocked_keywords
        # init-db.sql's role, never a superuser
        assert settings.db_user == "mcp_user" and settings.refuse_superuser
    if name == ".env.example":  # defaults, embedded database, no secrets
        assert settings.db_host is None and settings.mcp_auth_token is None
        assert settings.mcp_server_port == 3000


# ---------------------------------------------------------------------------
# SQL: load both files into the module's fresh database


@dataclass
class Loaded:
    dsn: str
    reader: str
    writer: str
    reader_password: str
    via: str


def _psql_env(server: Any) -> dict[str, str]:
    env = dict(os.environ)
    if server.password:
        env["PGPASSWORD"] = server.password
    return env


def _psql(server: Any, path: Path, **variables: str) -> None:
    psql = shutil.which("psql")
    assert psql is not None
    args = [
        psql,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        server.host,
        "-p",
        str(server.port),
        "-U",
        server.user,
    ]
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    args += ["-d", server.database, "-f", str(path)]
    result = subprocess.run(
        args, env=_psql_env(server), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"psql -f {path.name} failed:\n{result.stderr}"


async def _asyncpg_init_db(conn: asyncpg.Connection, **variables: str) -> None:
    """init-db.sql without psql: set what its prelude would set, run the SQL after it."""
    sql = INIT_SQL.read_text(encoding="utf-8")
    assert PRELUDE_END in sql
    for key, value in variables.items():
        await conn.execute("SELECT set_config($1, $2, false)", f"pgmcp.{key}", value)
    await conn.execute(sql.split(PRELUDE_END, 1)[1].split("\n", 1)[1])


async def _load(server: Any, **roles: str) -> str:
    if shutil.which("psql"):
        _psql(server, DEMO_SQL)
        _psql(server, INIT_SQL, **roles)
        return "psql"
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(DEMO_SQL.read_text(encoding="utf-8"))
        await _asyncpg_init_db(conn, **roles)
    finally:
        await conn.close()
    return "asyncpg"


@pytest.fixture(scope="module")
async def loaded(module_db: Any) -> AsyncIterator[Loaded]:
    tag = uuid.uuid4().hex[:8]
    roles = {
        "mcp_role": f"mcp_user_t{tag}",  # role names are cluster-wide: one per run
        "mcp_writer_role": f"mcp_writer_t{tag}",
        "mcp_password": f"pw-{uuid.uuid4().hex}",
        "mcp_writer_password": f"wpw-{uuid.uuid4().hex}",
    }
    via = await _load(module_db, **roles)
    try:
        yield Loaded(module_db.dsn(), roles["mcp_role"], roles["mcp_writer_role"], roles["mcp_password"], via)
    finally:
        conn = await asyncpg.connect(module_db.dsn())
        try:
            await conn.execute(f'DROP OWNED BY "{roles["mcp_writer_role"]}", "{roles["mcp_role"]}"')
            await conn.execute(f'DROP ROLE IF EXISTS "{roles["mcp_writer_role"]}"')
            await conn.execute(f'DROP ROLE IF EXISTS "{roles["mcp_role"]}"')
        finally:
            await conn.close()


async def test_demo_data_serves_the_handbook_scenarios(loaded: Loaded) -> None:
    conn = await asyncpg.connect(loaded.dsn)
    try:
        counts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM customers) AS customers, (SELECT count(*) FROM products) AS products,
                      (SELECT count(*) FROM inventory) AS inventory, (SELECT count(*) FROM orders) AS orders,
                      (SELECT count(*) FROM order_items) AS items, (SELECT count(*) FROM logs) AS logs"""
        )
        assert (counts["customers"], counts["products"], counts["inventory"]) == (2000, 500, 500)
        assert (counts["orders"], counts["logs"]) == (20000, 5000)
        assert 45000 <= counts["items"] <= 55000
        # scenario 1: monthly sales of 2024 (12 months) and customer segments
        months = await conn.fetch(
            """SELECT DATE_TRUNC('month', order_date) AS month, SUM(total_amount) AS revenue, COUNT(*) AS order_count
               FROM orders WHERE order_date >= $1 GROUP BY month ORDER BY month""",
            dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        )
        assert len(months) == 12 and all(m["revenue"] > 0 for m in months)
        segments = {
            r["customer_segment"] for r in await conn.fetch("SELECT DISTINCT customer_segment FROM customers")
        }
        assert segments == {"enterprise", "smb", "consumer"}
        # scenario 2: some e-mails are invalid on purpose
        invalid = await conn.fetchval("SELECT count(*) FROM customers WHERE email !~ $1", EMAIL_RE)
        assert 0 < invalid < 200
        # the tool examples
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = 'user@example.com'") == 1
        assert await conn.fetchval("SELECT stock FROM inventory WHERE product_id = 456") > 0
        # orders.total and total_amount agree; a second schema with views
        assert (
            await conn.fetchval("SELECT count(*) FROM orders WHERE total IS DISTINCT FROM total_amount") == 0
        )
        assert await conn.fetchval("SELECT count(*) FROM analytics.monthly_revenue") >= 24
        # scenario 4: orders.customer_id is a foreign key with no index
        indexed = await conn.fetchval(
            """SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
               WHERE i.indrelid = 'public.orders'::regclass AND a.attname = 'customer_id'"""
        )
        assert indexed == 0
        plan = await conn.fetchval("EXPLAIN (FORMAT JSON) SELECT * FROM orders WHERE customer_id = 42")
        assert '"Seq Scan"' in plan
        # every table and column has a comment
        bare = await conn.fetch(
            """SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
               WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
                 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL"""
        )
        assert not bare, f"columns without a comment: {bare}"
    finally:
        await conn.close()


async def test_handbook_writes_work_on_the_demo_data(loaded: Loaded) -> None:
    conn = await asyncpg.connect(loaded.dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            row = await conn.fetchrow(
                "INSERT INTO orders (user_id, total) VALUES ($1, $2) RETURNING status, total, total_amount",
                123,
                Decimal("299.99"),
            )
            assert row["status"] == "pending" and row["total_amount"] == row["total"]
            status = await conn.execute(
                "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2", 1, 456
            )
            assert status == "UPDATE 1"
            await conn.execute(
                "INSERT INTO logs (level, message, timestamp) VALUES ($1, $2, $3)",
                "INFO",
                "User login",
                dt.datetime(2024, 1, 15, 10, 0),
            )
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def _connect_as(
    loaded: Loaded, module_db: Any, role: str, password: str
) -> tuple[asyncpg.Connection, bool]:
    """A real login as ``role``; where pg_hba refuses it, a superuser session with SET ROLE."""
    try:
        conn = await asyncpg.connect(
            host=module_db.host,
            port=module_db.port,
            user=role,
            password=password,
            database=module_db.database,
        )
        return conn, True
    except (asyncpg.PostgresError, OSError):
        conn = await asyncpg.connect(loaded.dsn)
        await conn.execute(f'SET ROLE "{role}"')
        return conn, False


async def test_mcp_user_reads_but_cannot_write_or_create(loaded: Loaded, module_db: Any) -> None:
    conn, logged_in = await _connect_as(loaded, module_db, loaded.reader, loaded.reader_password)
    try:
        assert await conn.fetchval("SELECT count(*) FROM orders") == 20000
        assert await conn.fetchval("SELECT count(*) FROM analytics.monthly_revenue") > 0
        if logged_in:  # the role's default: every transaction is read-only
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("INSERT INTO logs (level, message) VALUES ('INFO', 'x')")
        await conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO logs (level, message) VALUES ('INFO', 'x')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE inventory SET stock = 0 WHERE product_id = 456")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.pgmcp_should_not_exist (i int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE analytics.pgmcp_should_not_exist (i int)")
    finally:
        await conn.close()


async def test_mcp_writer_writes_but_cannot_create(loaded: Loaded, module_db: Any) -> None:
    conn = await asyncpg.connect(loaded.dsn)
    try:
        await conn.execute(f'SET ROLE "{loaded.writer}"')
        tx = conn.transaction()
        await tx.start()
        try:
            # a serial id: needs USAGE on the sequence
            await conn.execute("INSERT INTO orders (user_id, total) VALUES (123, 299.99)")
            await conn.execute("UPDATE inventory SET stock = stock - 1 WHERE product_id = 456")
        finally:
            await tx.rollback()
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE public.pgmcp_should_not_exist (i int)")
        # writes are granted in public only
        assert not await conn.fetchval("SELECT has_table_privilege('analytics.monthly_revenue', 'INSERT')")
    finally:
        await conn.close()


async def test_both_files_are_rerunnable(loaded: Loaded, module_db: Any) -> None:
    conn = await asyncpg.connect(loaded.dsn)
    try:
        before = await conn.fetchval("SELECT sum(total_amount) FROM orders")
        roles = {"mcp_role": loaded.reader, "mcp_writer_role": loaded.writer}
        if loaded.via == "psql":
            _psql(module_db, DEMO_SQL)
            _psql(module_db, INIT_SQL, **roles)
        else:
            await conn.execute(DEMO_SQL.read_text(encoding="utf-8"))
            await _asyncpg_init_db(conn, **roles)
        assert await conn.fetchval("SELECT count(*) FROM orders") == 20000
        assert await conn.fetchval("SELECT sum(total_amount) FROM orders") == before
        # a re-run without a password keeps the existing one
        assert await conn.fetchval(
            "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1", loaded.reader
        )
    finally:
        await conn.close()


async def test_demo_sql_loads_through_asyncpg_like_the_embedded_server(pg_server: Any) -> None:
    """The embedded server runs the file with one conn.execute: one implicit transaction."""
    name = f"t_demo_asyncpg_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(pg_server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            conn = await asyncpg.connect(pg_server.dsn(name))
            try:
                await conn.execute(DEMO_SQL.read_text(encoding="utf-8"))
                assert await conn.fetchval("SELECT count(*) FROM orders") == 20000
                # deterministic: the same data on every load (hash-based, no random())
                totals = await conn.fetchrow(
                    "SELECT (SELECT sum(total_amount) FROM orders) AS orders,"
                    " (SELECT sum(quantity) FROM order_items) AS units"
                )
                assert (totals["orders"], totals["units"]) == (Decimal("45897885.61"), 129718)
            finally:
                await conn.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_deployment_db_dev_sql_is_the_packaged_file() -> None:
    linked = ROOT / "deployment" / "db" / "init-db-dev.sql"
    assert linked.resolve() == DEMO_SQL.resolve()


# ---------------------------------------------------------------------------
# Kubernetes and Compose


def _k8s(kind: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((ROOT / "deployment" / "k8s").glob("*.yaml")):
        docs += [
            d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d and d.get("kind") == kind
        ]
    return docs


def test_k8s_deployment_has_three_replicas_and_liveness_readiness_probes() -> None:
    (deployment,) = _k8s("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    (container,) = spec["template"]["spec"]["containers"]
    # A database outage takes pods out of the Service (readiness), it restarts none (liveness).
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 3000}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 3000}
    assert container["livenessProbe"]["initialDelaySeconds"] == 30
    assert container["readinessProbe"]["initialDelaySeconds"] == 5
    assert container["resources"] == {
        "limits": {"memory": "512Mi", "cpu": "500m"},
        "requests": {"memory": "256Mi", "cpu": "250m"},
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MCP_STATELESS"] == "true" and env["MCP_SERVER_HOST"] == "0.0.0.0"
    assert {next(iter(ref)) for ref in container["envFrom"]} == {"configMapRef", "secretRef"}
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    (service,) = _k8s("Service")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == 3000


def test_k8s_config_file_declares_connections_pgmcp_loads(tmp_path: Path) -> None:
    config = {c["metadata"]["name"]: c["data"] for c in _k8s("ConfigMap")}
    settings_map = config["mcp-server-config"]
    assert "DB_PASSWORD" not in settings_map and "MCP_AUTH_TOKEN" not in settings_map
    toml = tmp_path / "connections.toml"
    toml.write_text(config["mcp-server-connections"]["connections.toml"], encoding="utf-8")
    settings = load_settings(mcp_config_file=toml)
    assert settings.connections and all(c.password_env for c in settings.connections)
    (secret,) = _k8s("Secret")
    assert {c.password_env for c in settings.connections} <= set(secret["stringData"])
    assert {"DB_PASSWORD", "MCP_AUTH_TOKEN"} <= set(secret["stringData"])


def test_compose_waits_for_a_healthy_database() -> None:
    compose = yaml.safe_load(
        (ROOT / "deployment" / "docker" / "docker-compose.yml").read_text(encoding="utf-8")
    )
    services = compose["services"]
    assert services["mcp-server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/health" in " ".join(services["mcp-server"]["healthcheck"]["test"])
    assert services["postgres"]["image"] == "postgres:15"
    assert services["mcp-server"]["env_file"]
    assert "${MCP_AUTH_TOKEN:?" in services["mcp-server"]["environment"]["MCP_AUTH_TOKEN"]
    assert any("init-db.sql:/docker-entrypoint-initdb.d/" in v for v in services["postgres"]["volumes"])


def test_compose_dev_mounts_the_packaged_demo_sql() -> None:
    dev = yaml.safe_load(
        (ROOT / "deployment" / "docker" / "docker-compose.dev.yml").read_text(encoding="utf-8")
    )
    (mount,) = [v for v in dev["services"]["postgres"]["volumes"] if "init-db-dev.sql" in v]
    source = mount.split(":", 1)[0]
    assert (ROOT / "deployment" / "docker" / source).resolve() == DEMO_SQL.resolve()
