"""Running the examples of the documentation against a real server, so the docs cannot drift.

The convention, in ``documentation/guides/USER_GUIDE.md`` and
``documentation/MCP_SERVER_HANDBOOK.md`` (Markdown, read top to bottom like a notebook):

- A fenced ```` ```python ```` block that calls a tool — ``await execute_query(...)``,
  ``await add_connection(...)`` … — is **executed**, in document order, all blocks of a
  document in one namespace (a later block sees the variables of an earlier one).
  Top-level ``await`` is allowed. The tools are functions named like the tools that
  forward keyword arguments to ``client.call_tool`` and return the structured result,
  exactly what the guide's "the examples in this guide" helper does over HTTP.
  Tools take keyword arguments only (MCP passes arguments by name).
- Every call must succeed, unless the block is preceded by
  ``<!-- docs-test: expect-error TYPE[,TYPE] -->``: then the failures of its calls must
  have those ``error_type`` values, and each listed type must occur.
- ``<!-- docs-test: skip -->`` before a block: shown, not run (e.g. it needs 30 seconds).
- ``<!-- docs-test: output EXPR -->`` before a ```` ```json ```` block: the block is the
  real value of the Python expression ``EXPR`` after the preceding example. Its keys
  must equal the live value's keys, recursively (values are not compared: durations
  change), except ``error``, ``error_type`` and ``message``, compared exactly. Trimming
  is explicit and keeps the block valid JSON: the string ``"…"`` stands for any value,
  a ``"…"`` element in an array for more elements, a ``"…": "…"`` member in an object
  for more members, and ``…`` inside an error message for any text.
- ``<!-- docs-test: http GET /path -->`` before a ```` ```json ```` block: the same check
  against the HTTP endpoint's live JSON.
- ``<!-- docs-test: log -->`` before a ```` ```json ```` block of log lines (one JSON object
  per line): each line has the keys of a real log line with the same ``event``.
- ``<!-- docs-test: metrics -->`` before a ```` ```text ```` block of Prometheus lines:
  each ``mcp_server_*`` sample exists in the live ``/metrics`` with the same labels.

Host names in ``add_connection`` examples are ``localhost``; the test maps them, and
the database names the docs use (:data:`DOC_DATABASES`), to databases it creates on
the test server from the demo data. A reader reproduces them with
``createdb sales && psql -d sales -f src/pgmcp/demo/init-db-dev.sql``.

``python -m tests.integration.docs_support DOC.md`` runs a document against the
machine's PostgreSQL (127.0.0.1:5432) and prints the live value of every output
block, trimmed, for pasting into the document.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
USER_GUIDE = ROOT / "documentation" / "guides" / "USER_GUIDE.md"
HANDBOOK = ROOT / "documentation" / "MCP_SERVER_HANDBOOK.md"
SECURITY = ROOT / "documentation" / "SECURITY.md"

#: The databases the documents' add_connection examples name (host ``localhost``):
#: the test makes each one a fresh copy of the demo database.
DOC_DATABASES = ("sales", "customer", "warehouse", "legacy_app", "modern_app")
#: Databases the documents name to show a failure: passed on unchanged (they do not exist).
DOC_MISSING_DATABASES = ("no_such_db",)

ELLIPSIS = "…"
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*([^\n]*?)\s*-->\s*\Z")
_TOOL_CALL = re.compile(r"\bawait\s+([a-z_]+)\s*\(")


@dataclass
class Block:
    """One fenced code block and the docs-test directive right above it (if any)."""

    lang: str
    code: str
    line: int
    directive: str | None

    @property
    def where(self) -> str:
        return f"line {self.line}"


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, in order, with its directive."""
    found: list[Block] = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        directive = _DIRECTIVE.search(before)
        # The directive belongs to this block only when nothing but blank space separates them.
        found.append(
            Block(
                lang=match.group(1).lower(),
                code=match.group(2),
                line=text.count("\n", 0, match.start()) + 1,
                directive=directive.group(1) if directive else None,
            )
        )
    return found


def tool_calls(code: str, tools: set[str] | frozenset[str]) -> list[str]:
    """The tool names a code block awaits."""
    return [name for name in _TOOL_CALL.findall(code) if name in tools]


def is_example(block: Block, tools: set[str] | frozenset[str]) -> bool:
    """Whether a block is an executed example: Python that awaits a tool, not marked skip."""
    return block.lang == "python" and bool(tool_calls(block.code, tools)) and block.directive != "skip"


# --- comparing documented output with live output -----------------------------------------------

EXACT_KEYS = frozenset({"error", "error_type", "message"})


def _text_matches(doc: str, live: str) -> bool:
    """``doc`` equals ``live``, where each ``…`` in ``doc`` stands for any text."""
    pattern = ".*".join(re.escape(part) for part in doc.split(ELLIPSIS))
    return re.fullmatch(pattern, live, re.DOTALL) is not None


def compare(doc: Any, live: Any, path: str = "$") -> list[str]:
    """Where the documented JSON's shape differs from the live value (empty: it matches)."""
    if doc == ELLIPSIS:
        return []
    if isinstance(doc, dict):
        if not isinstance(live, dict):
            return [f"{path}: documented an object, live is {type(live).__name__}"]
        problems: list[str] = []
        documented = {k for k in doc if k != ELLIPSIS}
        missing = documented - set(live)
        if missing:
            problems.append(f"{path}: documented keys not in the live output: {sorted(missing)}")
        if ELLIPSIS not in doc:
            extra = set(live) - documented
            if extra:
                problems.append(
                    f"{path}: live keys not documented (add them or a '…' member): {sorted(extra)}"
                )
        for key in sorted(documented & set(live)):
            sub = f"{path}.{key}"
            if key in EXACT_KEYS and isinstance(doc[key], str):
                if not isinstance(live[key], str) or not _text_matches(doc[key], live[key]):
                    problems.append(f"{sub}: documented {doc[key]!r}, live {live[key]!r}")
                continue
            problems.extend(compare(doc[key], live[key], sub))
        return problems
    if isinstance(doc, list):
        if not isinstance(live, list):
            return [f"{path}: documented an array, live is {type(live).__name__}"]
        problems = []
        items = [d for d in doc if d != ELLIPSIS]
        for i, item in enumerate(items):
            if i < len(live):
                problems.extend(compare(item, live[i], f"{path}[{i}]"))
            elif live and isinstance(item, dict | list):
                problems.extend(compare(item, live[0], f"{path}[{i}]"))
        return problems
    if isinstance(live, dict | list) and doc is not None:
        return [f"{path}: documented a scalar, live is {type(live).__name__}"]
    return []


def trim(value: Any, *, items: int = 3, depth: int = 0) -> Any:
    """A shorter copy for pasting: long arrays keep their first ``items`` and a ``"…"``."""
    if isinstance(value, dict):
        return {k: trim(v, items=items, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        head = [trim(v, items=items, depth=depth + 1) for v in value[:items]]
        return [*head, ELLIPSIS] if len(value) > items else head
    return value


def log_lines(code: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in code.splitlines() if line.strip()]


_SAMPLE = re.compile(r"^(mcp_server_\w+)(?:\{([^}]*)\})?\s+\S+", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="')


def metric_samples(text: str) -> dict[str, set[frozenset[str]]]:
    """``{sample name: {label-name sets}}`` of the ``mcp_server_*`` lines of an exposition."""
    samples: dict[str, set[frozenset[str]]] = {}
    for name, labels in _SAMPLE.findall(text):
        samples.setdefault(name, set()).add(frozenset(_LABEL.findall(labels or "")))
    return samples


_JQ = re.compile(r"""\bjq\b(?:\s+-\w+)*\s+'([^']*)'""")
_JQ_FIELD = re.compile(r"(?<![\w])\.([A-Za-z_]\w*)")


def jq_fields(text: str) -> set[str]:
    """The field names (``.level``, ``.connection_id`` …) the jq filters over **logs** read.

    A command reads logs when it pipes ``docker logs``, ``… logs`` of a script, or a
    server's stderr (``2>&1``) into jq; jq over ``/health`` output is not about logs.
    """
    fields: set[str] = set()
    for block in blocks(text):
        for line in block.code.splitlines():
            if " logs " in line or "2>&1" in line:
                for program in _JQ.findall(line):
                    fields.update(_JQ_FIELD.findall(program))
    return fields


# --- running a document ----------------------------------------------------------------------------


@dataclass
class Problem:
    block: Block
    message: str

    def __str__(self) -> str:
        return f"{self.block.where}: {self.message}"


@dataclass
class DocRun:
    """What running one document found; tests assert on it."""

    path: Path
    examples: int = 0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[Problem] = field(default_factory=list)  # examples that did not run as documented
    outputs: list[Problem] = field(default_factory=list)  # output blocks that do not match
    outputs_checked: int = 0
    log_blocks: list[Block] = field(default_factory=list)
    http_blocks: list[Block] = field(default_factory=list)
    metrics_blocks: list[Block] = field(default_factory=list)
    live: dict[int, Any] = field(default_factory=dict)  # block line -> live value of an output block


CallTool = Callable[[str, dict[str, Any]], Any]


class ToolShim:
    """Functions named like the tools, forwarding keyword arguments to the MCP client."""

    def __init__(
        self,
        call_tool: CallTool,
        tools: set[str],
        map_connection: Callable[[dict[str, Any]], dict[str, Any]],
        unmap: Callable[[Any], Any] = lambda value: value,
    ) -> None:
        self._call_tool = call_tool
        self.tools = tools
        self._map = map_connection
        self._unmap = unmap
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {"__name__": "docs_example", "json": json}
        for name in self.tools:
            ns[name] = self._function(name)
        return ns

    def _function(self, name: str) -> Callable[..., Any]:
        async def tool(*args: Any, **arguments: Any) -> dict[str, Any]:
            if args:
                raise TypeError(
                    f"{name}() was called with positional arguments {args!r}: MCP passes tool "
                    "arguments by name, write them as keywords (connection_id=...)"
                )
            sent = self._map(arguments) if name == "add_connection" else arguments
            result = await self._call_tool(name, sent)
            data = result.structured_content
            if data is None:
                text = result.content[0].text
                data = json.loads(text[text.find("{") : text.rfind("}") + 1])
            data = self._unmap(data)
            self.calls.append((name, data))
            return dict(data)

        tool.__name__ = name
        return tool


async def run_document(
    path: Path,
    shim: ToolShim,
    *,
    http_get: Callable[[str], Any] | None = None,
) -> DocRun:
    """Execute the examples of ``path`` in order and compare its output blocks with live values."""
    text = path.read_text(encoding="utf-8")
    run = DocRun(path=path)
    namespace = shim.namespace()
    for block in blocks(text):
        directive = block.directive or ""
        if is_example(block, shim.tools):
            run.examples += 1
            await _run_example(block, namespace, shim, run)
        elif directive.startswith("output ") and block.lang == "json":
            expr = directive.removeprefix("output ").strip()
            try:
                live = eval(expr, namespace)  # the document's own variable, e.g. `result`
            except Exception as exc:
                run.outputs.append(Problem(block, f"cannot evaluate {expr!r}: {exc!r}"))
                continue
            _check_output(block, live, run)
        elif directive.startswith("http ") and block.lang == "json":
            run.http_blocks.append(block)
            if http_get is not None:
                _, _, route = directive.partition(" GET ")
                _check_output(block, await http_get(route.strip()), run)
        elif directive == "log":
            run.log_blocks.append(block)
        elif directive == "metrics":
            run.metrics_blocks.append(block)
    run.calls = shim.calls
    return run


def _check_output(block: Block, live: Any, run: DocRun) -> None:
    run.outputs_checked += 1
    run.live[block.line] = live
    try:
        documented = json.loads(block.code)
    except json.JSONDecodeError as exc:
        run.outputs.append(Problem(block, f"the block is not valid JSON: {exc}"))
        return
    run.outputs.extend(Problem(block, p) for p in compare(documented, live))


async def _run_example(block: Block, namespace: dict[str, Any], shim: ToolShim, run: DocRun) -> None:
    directive = block.directive or ""
    expected = (
        {t.strip() for t in directive.removeprefix("expect-error").split(",") if t.strip()}
        if directive.startswith("expect-error")
        else set()
    )
    first_call = len(shim.calls)
    try:
        code = compile(
            block.code, f"{run.path.name}:{block.line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        pending = eval(code, namespace)
        if pending is not None:
            await pending
    except Exception as exc:
        run.failures.append(Problem(block, f"raised {type(exc).__name__}: {exc}"))
        return
    results = shim.calls[first_call:]
    failed = [(name, data) for name, data in results if not data.get("success")]
    got = {data.get("error_type") for _, data in failed}
    for name, data in failed:
        if data.get("error_type") not in expected:
            run.failures.append(
                Problem(block, f"{name} failed: {data.get('error_type')}: {data.get('error')}")
            )
    for missing in sorted(expected - got):
        run.failures.append(Problem(block, f"documented to fail with {missing}, but no call did"))


def iter_tool_names() -> Iterator[str]:
    """The built-in tool names, as pgmcp registers them (tools/list of a default server)."""
    from pgmcp.server import TOOL_GROUPS

    for names in TOOL_GROUPS.values():
        yield from names


# --- printing live outputs for the writer ------------------------------------------------------------


async def _print_outputs(path: Path) -> None:  # pragma: no cover - a writer's tool
    from dataclasses import replace

    import asyncpg

    from tests.conftest import PgServer, create_database, drop_database
    from tests.integration.harness import load_demo, running

    base = PgServer("127.0.0.1", 5432, "postgres", None, "postgres", "local")
    template = replace(base, database="docs_print_template")
    await create_database(base, template.database)
    await load_demo(template)
    names = {name: f"docs_print_{name}" for name in ("default", *DOC_DATABASES)}
    admin = await asyncpg.connect(base.dsn())
    for real in names.values():
        await admin.execute(f'DROP DATABASE IF EXISTS "{real}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{real}" TEMPLATE "{template.database}"')
    await admin.close()

    def map_connection(arguments: dict[str, Any]) -> dict[str, Any]:
        return map_doc_connection(arguments, base, names)

    try:
        async with running(replace(base, database=names["default"])) as (_, client):
            tools = {t.name for t in (await client.list_tools()).tools}
            shim = ToolShim(client.call_tool, tools, map_connection, unmapper(base, names))
            run = await run_document(path, shim)
        for problem in run.failures:
            print(f"FAILED {problem}", file=sys.stderr)
        text = path.read_text(encoding="utf-8")
        dump = os.environ.get("DOCS_DUMP")
        if dump:  # every live value, in document order, for a script that fills the blocks
            values = [[b.directive, run.live[b.line]] for b in blocks(text) if b.line in run.live]
            Path(dump).write_text(json.dumps(values, ensure_ascii=False, default=str), encoding="utf-8")
        for block in blocks(text):
            if block.line in run.live:
                print(f"----- {block.where}: {block.directive}")
                print(json.dumps(trim(run.live[block.line]), indent=2, ensure_ascii=False))
        for problem in run.outputs:
            print(f"MISMATCH {problem}", file=sys.stderr)
    finally:
        for real in names.values():
            await drop_database(base, real)
        await drop_database(base, template.database)


def unmapper(server: Any, names: dict[str, str]) -> Callable[[Any], Any]:
    """The reverse of :func:`map_doc_connection` for results: the test server's address and
    database names read as the document's (``localhost:5432``, ``sales`` …) in every string."""
    replacements = [(f"{server.host}:{server.port}", "localhost:5432")]
    replacements += [(real, doc) for doc, real in names.items() if doc in DOC_DATABASES]

    def unmap(value: Any) -> Any:
        if isinstance(value, str):
            for real, doc in replacements:
                value = value.replace(real, doc)
            return value
        if isinstance(value, dict):
            return {k: unmap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unmap(v) for v in value]
        return value

    return unmap


def map_doc_connection(arguments: dict[str, Any], server: Any, names: dict[str, str]) -> dict[str, Any]:
    """add_connection arguments of a document, pointed at the test server's databases.

    Raises:
        AssertionError: the document uses another host than ``localhost`` or a database
            that is not in :data:`DOC_DATABASES`.
    """
    mapped = dict(arguments)
    if "dsn" in arguments:
        # A URI example: its host and database must be the documents' too; it is pointed at the
        # test server as a URI again (its query parameters dropped: the test server's own apply).
        from dataclasses import replace

        from pgmcp.dsn import parse_dsn

        parts = parse_dsn(arguments["dsn"])
        if parts.get("host") != "localhost":
            raise AssertionError(
                f"add_connection examples use host='localhost' (found {parts.get('host')!r})"
            )
        if parts.get("database") not in DOC_DATABASES:
            raise AssertionError(
                f"database {parts.get('database')!r} is not one of DOC_DATABASES {DOC_DATABASES}"
            )
        mapped["dsn"] = replace(server, database=names.get(parts["database"], parts["database"])).dsn()
        return mapped
    host = arguments.get("host")
    if host != "localhost":
        raise AssertionError(f"add_connection examples use host='localhost' (found {host!r})")
    database = arguments.get("database")
    if database not in DOC_DATABASES and database not in DOC_MISSING_DATABASES:
        raise AssertionError(f"database {database!r} is not one of DOC_DATABASES {DOC_DATABASES}")
    mapped.update(
        host=server.host, port=server.port, database=names.get(database, database), user=server.user
    )
    if server.password:
        if "password" in mapped:
            mapped["password"] = server.password
        env = mapped.get("password_env")
        if env:
            os.environ[env] = server.password
    elif mapped.get("password_env"):
        os.environ.setdefault(mapped["password_env"], "unused-with-trust-authentication")
    return mapped


if __name__ == "__main__":  # pragma: no cover
    import asyncio

    asyncio.run(_print_outputs(Path(sys.argv[1])))
