"""The documentation's examples, run against a real server: the docs cannot drift from the product.

``documentation/guides/USER_GUIDE.md`` and ``documentation/MCP_SERVER_HANDBOOK.md`` are run top
to bottom (the convention is in :mod:`tests.integration.docs_support`): every tool example is
called through the MCP client on a server whose ``default`` is a fresh copy of the demo data,
and whose ``localhost`` databases (``sales``, ``customer`` …) are fresh copies too. Each call
must succeed or fail with the documented ``error_type``; each output block must have the live
result's keys and, for errors, its exact message. The log lines, ``jq`` filters, metrics,
policy tables, command-line help and the messages the troubleshooting sections quote are
checked against what the server really writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest

from pgmcp import cli
from pgmcp.config import SettingsError, load_settings
from pgmcp.errors import QueryBlocked
from pgmcp.http import build_http_app
from pgmcp.logs import configure_logging
from pgmcp.monitoring import Monitor
from pgmcp.security import Policy
from pgmcp.server import TOOL_GROUPS, build_server
from tests.conftest import PgServer, drop_database
from tests.integration import docs_support as ds
from tests.integration.harness import ServerInTask, call_err, load_demo, running

DOCS = [ds.USER_GUIDE, ds.HANDBOOK]
BUILTIN_TOOLS = {name for names in TOOL_GROUPS.values() for name in names}


def doc_id(path: Path) -> str:
    return path.name


def text_of(path: Path) -> str:
    if not path.exists():
        pytest.fail(f"{path.relative_to(ds.ROOT)} does not exist")
    return path.read_text(encoding="utf-8")


# --- running each document once, on its own fresh databases ---------------------------------------


class _Tee(io.TextIOBase):
    """stderr that also keeps what is written (pgmcp's logs look up sys.stderr per line)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class Result:
    run: ds.DocRun
    log_lines: list[dict[str, Any]] = field(default_factory=list)
    metrics: str = ""


@pytest.fixture(scope="module")
async def template(module_db: PgServer) -> PgServer:
    """The demo data, never connected to by a server: the documents' databases are copies of it."""
    await load_demo(module_db)
    return module_db


@contextlib.contextmanager
def captured_logs() -> Iterator[_Tee]:
    tee = _Tee(sys.stderr)
    saved = sys.stderr
    configure_logging("DEBUG")
    sys.stderr = tee
    try:
        yield tee
    finally:
        sys.stderr = saved
        configure_logging("INFO")


async def _copies(template: PgServer, tag: str) -> dict[str, str]:
    names = {name: f"t_docs_{tag}_{name}_{uuid.uuid4().hex[:6]}" for name in ("default", *ds.DOC_DATABASES)}
    admin = await asyncpg.connect(template.dsn("postgres"))
    try:
        for real in names.values():
            await admin.execute(f'CREATE DATABASE "{real}" TEMPLATE "{template.database}"')
    finally:
        await admin.close()
    return names


async def run_doc(path: Path, template: PgServer) -> Result:
    tag = "guide" if path == ds.USER_GUIDE else "handbook"
    names = await _copies(template, tag)
    default = replace(template, database=names["default"])

    def map_connection(arguments: dict[str, Any]) -> dict[str, Any]:
        return ds.map_doc_connection(arguments, template, names)

    try:
        with captured_logs() as tee:
            async with ServerInTask(default) as (app, client):
                tools = {t.name for t in (await client.list_tools()).tools}
                shim = ds.ToolShim(client.call_tool, tools, map_connection, ds.unmapper(template, names))
                asgi = build_http_app(app, build_server(app))
                transport = httpx2.ASGITransport(app=asgi)
                async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:3000") as http:

                    async def http_get(route: str) -> Any:
                        response = await http.get(route)
                        return response.json()

                    run = await ds.run_document(path, shim, http_get=http_get)
                metrics = app.monitor.render_prometheus()[0].decode()
        lines = []
        for line in "".join(tee.parts).splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return Result(run=run, log_lines=lines, metrics=metrics)
    finally:
        for real in names.values():
            await drop_database(template, real)


class Runs:
    """Each document runs once per module, on first use (so its cost lands on one test)."""

    def __init__(self, template: PgServer) -> None:
        self.template = template
        self.done: dict[Path, Result] = {}

    async def get(self, path: Path) -> Result:
        if not path.exists():
            pytest.fail(f"{path.relative_to(ds.ROOT)} does not exist")
        if path not in self.done:
            self.done[path] = await run_doc(path, self.template)
        return self.done[path]


@pytest.fixture(scope="module")
def runs(template: PgServer) -> Runs:
    return Runs(template)


# --- the examples and their outputs ---------------------------------------------------------------


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
async def test_every_example_runs_as_documented(runs: Runs, path: Path) -> None:
    run = (await runs.get(path)).run
    assert run.examples >= 20, f"only {run.examples} executable examples found: is the convention broken?"
    assert not run.failures, "\n".join(str(p) for p in run.failures)


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
async def test_every_output_block_has_the_live_keys_and_messages(runs: Runs, path: Path) -> None:
    run = (await runs.get(path)).run
    assert run.outputs_checked >= 20
    assert not run.outputs, "\n".join(str(p) for p in run.outputs)


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
async def test_every_tool_is_called_by_an_example(runs: Runs, path: Path) -> None:
    called = {name for name, _ in (await runs.get(path)).run.calls}
    assert BUILTIN_TOOLS - called == set()


async def test_examples_that_fail_really_fail(runs: Runs) -> None:
    """The documented failures are real tool errors (isError), not examples that happen to pass."""
    run = (await runs.get(ds.USER_GUIDE)).run
    failed = {data["error_type"] for _, data in run.calls if not data["success"]}
    assert failed >= {
        "connection_not_found",
        "query_blocked",
        "invalid_input",
        "database_error",
        "connection_failed",
        "limit_exceeded",
    }


async def test_host_and_database_of_a_failed_connection_read_as_the_documents(
    runs: Runs, template: PgServer
) -> None:
    """What the reverse mapping hides from the outputs: nothing of the test server leaks into the docs."""
    text = text_of(ds.USER_GUIDE)
    assert "t_docs_" not in text and "docs_print_" not in text
    if not template.host.startswith("/"):
        assert f"{template.host}:{template.port}/" not in text


# --- logs, jq, metrics ------------------------------------------------------------------------------


async def test_log_examples_are_real_log_lines(runs: Runs) -> None:
    result = await runs.get(ds.USER_GUIDE)
    assert result.run.log_blocks, "the guide shows no log lines"
    real: dict[str, list[set[str]]] = {}
    for line in result.log_lines:
        real.setdefault(line.get("event", ""), []).append(set(line))
    for block in result.run.log_blocks:
        for line in ds.log_lines(block.code):
            event = line["event"]
            assert event in real, f"{block.where}: no real '{event}' line was logged"
            assert set(line) in real[event], (
                f"{block.where}: '{event}' has keys {sorted(line)}; real ones: {[sorted(k) for k in real[event]]}"
            )
            assert list(line)[:3] == ["timestamp", "level", "event"]
            assert line["level"] == line["level"].upper()


@pytest.mark.parametrize("path", DOCS, ids=doc_id)
async def test_jq_filters_read_fields_the_logs_have(runs: Runs, path: Path) -> None:
    fields = ds.jq_fields(text_of(path))
    assert {"level", "event", "connection_id", "query_type"} <= fields, fields
    logged = set().union(*(set(line) for line in (await runs.get(ds.USER_GUIDE)).log_lines))
    assert fields - logged == set(), f"jq reads fields no log line has: {sorted(fields - logged)}"
    assert {
        "timestamp",
        "level",
        "event",
        "connection_id",
        "query_type",
        "duration_ms",
        "row_count",
    } <= logged


async def test_metrics_example_matches_the_live_exposition(runs: Runs) -> None:
    result = await runs.get(ds.USER_GUIDE)
    assert result.run.metrics_blocks
    live = ds.metric_samples(result.metrics)
    for block in result.run.metrics_blocks:
        documented = ds.metric_samples(block.code)
        assert documented, f"{block.where}: no mcp_server_* samples"
        for name, label_sets in documented.items():
            assert name in live, f"{block.where}: {name} is not exported"
            assert label_sets <= live[name], f"{block.where}: labels of {name}: {label_sets} vs {live[name]}"


# --- policy tables -------------------------------------------------------------------------------------

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "read-only": {
        "readonly_mode": True,
        "allowed_operations": "SELECT,WITH,EXPLAIN",
        "blocked_keywords": "INSERT,UPDATE,DELETE,DROP,TRUNCATE,ALTER,CREATE",
    },
    "development": {
        "readonly_mode": False,
        "allowed_operations": "SELECT,INSERT,UPDATE,DELETE,WITH,EXPLAIN",
        "blocked_keywords": "DROP,TRUNCATE,ALTER",
        "max_query_length": 10000,
    },
    "production": {
        "readonly_mode": False,
        "allowed_operations": "SELECT,INSERT,UPDATE,DELETE",
        "blocked_keywords": "DROP,TRUNCATE,ALTER,CREATE,GRANT,REVOKE,COPY",
        "max_query_length": 5000,
        "enable_query_logging": True,
    },
}

_TABLE_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*policy-table\s+([^\n]*?)\s*-->\n((?:\|[^\n]*\n)+)")


def policy_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    tables = []
    for match in _TABLE_DIRECTIVE.finditer(text):
        profiles = match.group(1).split()
        rows = []
        for line in match.group(2).splitlines()[2:]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append(cells)
        tables.append((profiles, rows))
    return tables


def outcome(profile: str, sql: str) -> str:
    """``allowed`` or ``blocked: <message>`` for ``sql`` under a profile, as the write tools
    check it; the pseudo-profile ``execute_query`` is the default settings with that tool's
    reads-only rule."""
    settings = PROFILES["default" if profile == "execute_query" else profile]
    policy = Policy.from_settings(load_settings(pgmcp_embedded=False, **settings))
    try:
        policy.check(sql, require_read=profile == "execute_query")
    except Exception as exc:
        return f"blocked: {exc}"
    return "allowed"


@pytest.mark.parametrize("path", [ds.USER_GUIDE, ds.HANDBOOK, ds.SECURITY], ids=doc_id)
def test_policy_tables_say_what_the_policy_does(path: Path) -> None:
    tables = policy_tables(text_of(path))
    assert tables, "no policy table"
    for profiles, rows in tables:
        for cells in rows:
            sql = cells[0].strip("`")
            for profile, documented in zip(profiles, cells[1:], strict=True):
                live = outcome(profile, sql)
                if documented in ("allowed", "允許"):
                    assert live == "allowed", f"{sql!r} under {profile}: documented allowed, live {live}"
                else:
                    fragment = re.sub(r"^(blocked|阻擋)[:：]\s*", "", documented).strip("`")
                    assert live.startswith("blocked"), (
                        f"{sql!r} under {profile}: documented blocked, live allowed"
                    )
                    assert fragment in live, (
                        f"{sql!r} under {profile}: documented {fragment!r}, live {live!r}"
                    )


@pytest.mark.parametrize("path", [ds.USER_GUIDE, ds.HANDBOOK], ids=doc_id)
def test_profiles_shown_are_the_profiles_checked(path: Path) -> None:
    text = text_of(path)
    for name, values in PROFILES.items():
        for key, value in values.items():
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            assert f"{key.upper()}={shown}" in text, f"profile {name}: {key.upper()}={shown} not shown"


# --- the command line and the messages the docs quote -------------------------------------------------------


def cli_output(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    with contextlib.suppress(SystemExit):
        cli.main(argv)
    out, err = capsys.readouterr()
    return out + err


def _blocks_with(path: Path, directive: str) -> list[ds.Block]:
    return [b for b in ds.blocks(text_of(path)) if b.directive == directive]


@pytest.mark.parametrize("path", [ds.USER_GUIDE, ds.HANDBOOK], ids=doc_id)
def test_serve_help_is_the_real_help(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [block] = _blocks_with(path, "command pgmcp serve --help")
    assert block.code.split() == cli_output(["serve", "--help"], monkeypatch, capsys).split()


def startup_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    messages = []
    for key, value in (("QUERY_TIMEOUT", "abc"),):
        with pytest.raises(SettingsError) as bad:
            load_settings(**{key.lower(): value})
        messages.append(f"pgmcp: {bad.value}")
    with pytest.raises(SettingsError) as missing:
        load_settings("nope.env")
    messages.append(f"pgmcp: {missing.value}")
    config = tmp_path / "connections.toml"
    config.write_text(
        '[connections.analytics_db]\nhost = "h"\ndatabase = "d"\nuser = "u"\npassword = "x"\n',
        encoding="utf-8",
    )
    with pytest.raises(SettingsError) as inline:
        load_settings(mcp_config_file=config)
    messages.append(str(inline.value))
    monkeypatch.delenv("MCP_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("MCP_ALLOW_UNAUTHENTICATED", raising=False)
    refusal = cli_output(["serve", "--host", "0.0.0.0"], monkeypatch, capsys).strip()
    assert refusal.startswith("pgmcp: refusing to serve on 0.0.0.0")
    messages.append(refusal)
    return messages


@pytest.mark.parametrize("path", [ds.USER_GUIDE, ds.HANDBOOK], ids=doc_id)
def test_start_up_errors_quoted_are_the_real_ones(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = text_of(path)
    for message in startup_messages(tmp_path, monkeypatch, capsys):
        assert message in text, f"not quoted as the server writes it: {message}"


def numbers_as_n(text: str) -> str:
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


async def test_timeout_and_memory_messages_quoted_are_the_real_ones(template: PgServer) -> None:
    """The troubleshooting sections quote these with the defaults (30 s, 80 %); here, for real."""
    async with running(template, query_timeout=1) as (_, client):
        timeout = await call_err(
            client, "execute_query", "timeout", connection_id="default", query="SELECT pg_sleep(3)"
        )
    health = Monitor(load_settings(pgmcp_embedded=False, memory_warning_threshold=0)).health({})
    memory = next(w for w in health["warnings"] if w.startswith("Memory"))
    assert health["status"] == "degraded"
    for path in (ds.USER_GUIDE, ds.HANDBOOK):
        text = numbers_as_n(text_of(path))
        assert numbers_as_n(timeout["error"]) in text, f"{path.name}: {timeout['error']}"
        assert numbers_as_n(memory) in text, f"{path.name}: {memory}"
        assert "Query timeout after 30 seconds" in text_of(path)


async def test_troubleshooting_commands_name_real_paths_and_scripts() -> None:
    for path in (ds.USER_GUIDE, ds.HANDBOOK):
        text = text_of(path)
        for script in re.findall(r"\./scripts/([\w-]+\.sh)", text):
            assert (ds.ROOT / "scripts" / script).exists(), f"{path.name}: scripts/{script}"
        for ref in re.findall(
            r"\b(deployment/[\w./-]+\.(?:ya?ml|sql|json|md)|src/pgmcp/[\w./-]+\.(?:py|sql))", text
        ):
            assert (ds.ROOT / ref).exists(), f"{path.name}: {ref} does not exist"


def test_the_reader_can_reach_the_docs_the_guide_links_to() -> None:
    for path in (ds.USER_GUIDE, ds.HANDBOOK, ds.SECURITY):
        text = text_of(path)
        for target in re.findall(r"\]\((?!https?:|mailto:|#)([^)#\s]+)", text):
            assert (path.parent / target).resolve().exists(), f"{path.name}: broken link {target}"


# --- the handbook's extension chapter ----------------------------------------------------------------

EXTENDING_ZH = ds.ROOT / "documentation" / "_extending.zh-TW.md"


def test_handbook_carries_the_extension_writers_chapter_unchanged() -> None:
    """The chapter is written next to the English EXTENDING.md and merged here; they must not diverge."""
    if not EXTENDING_ZH.exists():
        pytest.skip("the chapter lives only in the handbook now")
    body = re.sub(r"\A<!--.*?-->\s*", "", EXTENDING_ZH.read_text(encoding="utf-8"), flags=re.DOTALL).strip()
    assert body in text_of(ds.HANDBOOK), "merge documentation/_extending.zh-TW.md into the handbook again"


def test_handbook_rule_example_warns_and_blocks_as_documented() -> None:
    [block] = [b for b in ds.blocks(text_of(ds.HANDBOOK)) if "def no_secret_plans" in b.code]
    namespace: dict[str, Any] = {}
    exec(compile(block.code, str(ds.HANDBOOK), "exec"), namespace)
    policy = Policy()
    policy.add_rule(namespace["no_secret_plans"])
    with pytest.raises(QueryBlocked, match="^Query blocked: secret_plans is off limits to agents$"):
        policy.check("SELECT * FROM secret_plans")
    assert policy.check("SELECT count(*) FROM logs").warnings == ("Reading logs: mind personal data",)
