"""The alert rules and the Grafana dashboard only name series the server exports, and they work.

``promtool`` (Debian/Ubuntu package ``prometheus``) runs ``check rules`` and
behavioural ``test rules`` cases when it is installed; without it those tests
are skipped and the metric-name checks still run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgmcp.config import load_settings
from pgmcp.monitoring import Monitor

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read alerts.yml")

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deployment" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deployment" / "grafana" / "dashboard.json"
PROMETHEUS_YML = ROOT / "deployment" / "prometheus" / "prometheus.yml"
METRIC = re.compile(r"\bmcp_server_[a-z0-9_]+")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Sample names of a live Monitor's /metrics after one of everything."""
    monitor = Monitor(load_settings(slow_query_threshold_ms=1))
    monitor.record_query(
        connection_id="main_db",
        query_type="SELECT",
        duration_ms=5.0,
        success=True,
        row_count=1,
        query="SELECT 1",
    )
    monitor.record_query(
        connection_id="main_db",
        query_type="SELECT",
        duration_ms=9.0,
        success=False,
        row_count=None,
        query=None,
    )
    monitor.record_blocked(
        connection_id="main_db", reason="blocked_keyword", query_type="DROP", message="blocked", query=None
    )
    monitor.record_tool_call(tool="execute_query", status="success", duration_ms=6.0)
    monitor.record_business_event("order_placed", 2.0)
    monitor.set_pool_source(lambda: {"main_db": {"size": 10, "idle_connections": 9, "active_connections": 1}})
    body, _ = monitor.render_prometheus()
    return {s.name for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_the_handbook_alerts_are_all_there() -> None:
    names = {rule["alert"] for rule in rules()}
    assert names >= {
        "MCPServerDown",
        "HighQueryLatency",
        "HighMemoryUsage",
        "HighQueryFailureRate",
        "BlockedQueriesSpike",
        "ConnectionPoolSaturated",
    }
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_metric_in_the_alerts_is_exported(exported: set[str]) -> None:
    for rule in rules():
        names = set(METRIC.findall(rule["expr"]))
        assert names or rule["alert"] == "MCPServerDown", rule["alert"]
        # Exact sample names: a bare histogram name (the handbook's
        # avg(mcp_server_query_duration_seconds)) matches no series and is caught here.
        assert names <= exported, f"{rule['alert']} names unknown series {sorted(names - exported)}"


def test_every_metric_in_the_dashboard_is_exported(exported: set[str]) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        unknown = set(METRIC.findall(expr)) - exported
        assert not unknown, f"dashboard query names unknown series {sorted(unknown)}: {expr}"
    joined = "\n".join(exprs)
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(mcp_server_query_duration_seconds_bucket" in joined


def test_the_check_itself_catches_a_bare_histogram_name(exported: set[str]) -> None:
    assert "mcp_server_query_duration_seconds" not in exported
    assert {"mcp_server_query_duration_seconds_sum", "mcp_server_query_duration_seconds_count"} <= exported


def test_dashboard_panels_are_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert doc["uid"] == "pgmcp-overview"
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "job", "instance", "connection"}
    for panel in doc["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_alerts_use_the_job_name_prometheus_scrapes() -> None:
    if not PROMETHEUS_YML.exists():
        pytest.skip("deployment/prometheus/prometheus.yml not written yet")
    config = yaml.safe_load(PROMETHEUS_YML.read_text(encoding="utf-8"))
    assert "alerts.yml" in config.get("rule_files", [])
    assert "mcp-server" in {job["job_name"] for job in config["scrape_configs"]}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    # Grafana variables replaced by what they expand to, then each query checked as a recording rule.
    def concrete(expr: str) -> str:
        return (
            expr.replace("$__rate_interval", "1m")
            .replace('"$job"', '"mcp-server"')
            .replace("$instance", ".*")
            .replace("$connection", ".*")
        )

    group = {
        "name": "dashboard",
        "rules": [
            {"record": f"dashboard:q{i}", "expr": concrete(e)} for i, e in enumerate(dashboard_exprs())
        ],
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}), encoding="utf-8")
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# Behaviour: series fed to the real rule engine, alerts expected (or not) at given times.
# Series values use promtool's expanding notation: 'a+bxN' = a, a+b, ... N more samples.
S = 'job="mcp-server", instance="mcp:3000"'
CONN = S + ', connection_id="main_db"'
SEL = CONN + ', query_type="SELECT"'
JOB = {"job": "mcp-server"}
RULE_TESTS: list[dict[str, Any]] = [
    {
        "interval": "1m",
        "input_series": [{"series": f"up{{{S}}}", "values": "1 0 0 0"}],
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "MCPServerDown", "exp_alerts": []},
            {
                "eval_time": "3m",
                "alertname": "MCPServerDown",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "critical", "job": "mcp-server", "instance": "mcp:3000"},
                        "exp_annotations": {
                            "summary": "MCP Server is down",
                            "description": "mcp:3000 has not answered /metrics for a minute.",
                        },
                    }
                ],
            },
        ],
    },
    {
        # 60 queries a minute taking 120 s in all: 2 s on average.
        "interval": "1m",
        "input_series": [
            {"series": f"mcp_server_query_duration_seconds_sum{{{SEL}}}", "values": "0+120x20"},
            {"series": f"mcp_server_query_duration_seconds_count{{{SEL}}}", "values": "0+60x20"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="1.0"}}', "values": "0x20"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="2.5"}}', "values": "0+60x20"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="5.0"}}', "values": "0+60x20"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="+Inf"}}', "values": "0+60x20"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "12m",
                "alertname": "HighQueryLatency",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", **JOB},
                        "exp_annotations": {
                            "summary": "High query latency detected",
                            "description": "Average query time over 5 minutes is 2s (threshold 1s).",
                        },
                    }
                ],
            },
            # p95 is about 2.4 s: under the 5 s of HighQueryLatencyP95.
            {"eval_time": "20m", "alertname": "HighQueryLatencyP95", "exp_alerts": []},
        ],
    },
    {
        # 10 % of 100 queries a minute fail; the low-volume job fails 50 % of 2 a minute.
        "interval": "1m",
        "input_series": [
            {"series": f'mcp_server_queries_total{{{SEL}, status="success"}}', "values": "0+90x20"},
            {"series": f'mcp_server_queries_total{{{SEL}, status="error"}}', "values": "0+10x20"},
            {
                "series": 'mcp_server_queries_total{job="quiet", instance="q:3000", connection_id="x", query_type="SELECT", status="success"}',
                "values": "0+1x20",
            },
            {
                "series": 'mcp_server_queries_total{job="quiet", instance="q:3000", connection_id="x", query_type="SELECT", status="error"}',
                "values": "0+1x20",
            },
        ],
        "alert_rule_test": [
            {"eval_time": "4m", "alertname": "HighQueryFailureRate", "exp_alerts": []},
            {
                "eval_time": "15m",
                "alertname": "HighQueryFailureRate",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", **JOB},
                        "exp_annotations": {
                            "summary": "High query failure rate",
                            "description": "10% of queries failed at the database over 5 minutes (threshold 5%).",
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {
                "series": f'mcp_server_queries_blocked_total{{{CONN}, reason="blocked_keyword"}}',
                "values": "0+20x10",
            },
            {"series": f'mcp_server_queries_blocked_total{{{CONN}, reason="readonly"}}', "values": "0+1x10"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "8m",
                "alertname": "BlockedQueriesSpike",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "reason": "blocked_keyword", **JOB},
                        "exp_annotations": {
                            "summary": "Many queries blocked by the policy (blocked_keyword)",
                            "description": "20.0 queries a minute are blocked for blocked_keyword (threshold 10).",
                        },
                    }
                ],
            }
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": f"mcp_server_connections_active{{{CONN}}}", "values": "10x10"},
            {"series": f"mcp_server_pool_size{{{CONN}}}", "values": "10x10"},
            {"series": f'mcp_server_connections_active{{{S}, connection_id="calm"}}', "values": "5x10"},
            {"series": f'mcp_server_pool_size{{{S}, connection_id="calm"}}', "values": "10x10"},
            {"series": f'mcp_server_connections_active{{{S}, connection_id="empty"}}', "values": "0x10"},
            {"series": f'mcp_server_pool_size{{{S}, connection_id="empty"}}', "values": "0x10"},
            {"series": f"mcp_server_memory_usage_bytes{{{S}}}", "values": "2147483648x15"},
        ],
        "alert_rule_test": [
            {"eval_time": "3m", "alertname": "ConnectionPoolSaturated", "exp_alerts": []},
            {
                "eval_time": "7m",
                "alertname": "ConnectionPoolSaturated",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": "mcp-server",
                            "instance": "mcp:3000",
                            "connection_id": "main_db",
                        },
                        "exp_annotations": {
                            "summary": "Connection pool of main_db is nearly exhausted",
                            "description": "100% of the pool of main_db on mcp:3000 is in use (threshold 90%); "
                            "raise DEFAULT_POOL_SIZE / pool_size or look for long queries.",
                        },
                    }
                ],
            },
            {
                "eval_time": "12m",
                "alertname": "HighMemoryUsage",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "job": "mcp-server", "instance": "mcp:3000"},
                        "exp_annotations": {
                            "summary": "High memory usage",
                            "description": "mcp:3000 uses 2.00 GiB of resident memory (threshold 1 GiB).",
                        },
                    }
                ],
            },
        ],
    },
    {
        "interval": "1m",
        "input_series": [
            {"series": f"mcp_server_slow_queries_total{{{CONN}}}", "values": "0+5x30"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="5.0"}}', "values": "0x30"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="10.0"}}', "values": "0+60x30"},
            {"series": f'mcp_server_query_duration_seconds_bucket{{{SEL}, le="+Inf"}}', "values": "0+60x30"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "25m",
                "alertname": "SlowQueriesFrequent",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "info", "connection_id": "main_db", **JOB},
                        "exp_annotations": {
                            "summary": "Frequent slow queries on main_db",
                            "description": "75 queries over SLOW_QUERY_THRESHOLD_MS in 15 minutes; "
                            "see get_query_history(min_duration_ms=...).",
                        },
                    }
                ],
            },
            {
                "eval_time": "25m",
                "alertname": "HighQueryLatencyP95",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "warning", "connection_id": "main_db", **JOB},
                        "exp_annotations": {
                            "summary": "Slow queries on main_db",
                            "description": "95th percentile query time on main_db is 9.75s (threshold 5s).",
                        },
                    }
                ],
            },
        ],
    },
]


@needs_promtool
def test_alerts_fire_when_they_should_and_not_otherwise(tmp_path: Path) -> None:
    spec = {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": RULE_TESTS}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
