#!/usr/bin/env python3
"""The house as drawn: no import circle in ``src/pgmcp`` and nothing imports a layer above it.

    python scripts/check_imports.py [SRC_DIR]      # default: src (the package pgmcp in it)

Every ``import`` that runs counts: at module level and inside functions (a lazy
import hides a circle from the interpreter, not from the reader). Imports under
``TYPE_CHECKING`` never run and are left out (import-linter's
``exclude_type_checking_imports``): a lower module may name an upper one's type in an
annotation, as ``db/session.py`` names ``PgMcpConnection``.
Each module belongs to the longest container (a module, or a package with all
its submodules) named in :data:`LAYERS`. An import may go to a lower layer, or
stay inside its own container; containers in the same layer are independent of
each other. A module in no container fails the check: place it in :data:`LAYERS`.
Exits 1 and names every violation. Stdlib only, so it runs before anything is installed.
See documentation/ARCHITECTURE.md for the picture.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Top first. Within one layer the containers are independent of each other.
LAYERS: list[list[str]] = [
    ["pgmcp.__main__"],
    # Entry points: the command line, and the public API re-exported lazily by the package root
    # (``pgmcp`` holds only itself: a top-level name is no prefix).
    ["pgmcp.cli", "pgmcp"],
    # The HTTP edge (/mcp, /health, /metrics, /connections); the role set-up command.
    ["pgmcp.http", "pgmcp.setup_role"],
    ["pgmcp.console"],
    # Builds the MCP server: the built-in tools, resources and prompts, then the plugins.
    ["pgmcp.server"],
    # The extension API object and the plugin loader; the MCP resources (table schemas, connections).
    ["pgmcp.extension", "pgmcp.resources"],
    # Tool registration: the wrapper every call runs in, annotations, the ENABLED_TOOLS groups.
    ["pgmcp.registration"],
    # The MCP server class (argument errors in the one shape, tools/list, stdio on the event loop).
    ["pgmcp.mcp_server"],
    # stdio pipes; tools/list schema shaping; the one response shape (tool_result).
    ["pgmcp.stdio", "pgmcp.tool_schemas", "pgmcp.responses"],
    # The tool families, the prompts, and the fast paths (tools/call without the SDK's dispatcher).
    ["pgmcp.tools", "pgmcp.prompts", "pgmcp.fastpath"],
    # What the MCP edge and the tools share: asking the person, completions; CONFIRM_WRITES.
    ["pgmcp.elicit", "pgmcp.completions"],
    ["pgmcp.confirm"],
    # The application context: settings, registry, executor, policy, monitor, audit of one process.
    ["pgmcp.app"],
    # Data moved between two connections through the execute path (copy_data), and one copy's
    # byte stream (batches, the run's state, how its failures read).
    ["pgmcp.db.copy"],
    ["pgmcp.db.copy_stream"],
    # The one execute path (Executor: policy check, reads), the audit log, the embedded PostgreSQL.
    ["pgmcp.db.execute", "pgmcp.audit", "pgmcp.db.embedded"],
    # The execute path's write paths and plan sessions (run with the Executor handed to them),
    # and the catalog reads the execute path and the tools share.
    ["pgmcp.db.writes", "pgmcp.db.plans", "pgmcp.db.catalog"],
    # Its transaction (BEGIN to COMMIT/ROLLBACK); reading and capping rows.
    ["pgmcp.db.transaction", "pgmcp.db.reading"],
    # How its failures read; its result dataclasses.
    ["pgmcp.db.failures", "pgmcp.db.results"],
    # What the execute path consults: the policy, the metrics and health, the pools.
    ["pgmcp.security", "pgmcp.monitoring", "pgmcp.db.registry", "pgmcp.intelligence"],
    # What the registry is made of: opening and closing a pool, lending a connection, probing.
    ["pgmcp.db.pools", "pgmcp.db.lending", "pgmcp.db.health"],
    # One named connection's record, and the connection class of its pools.
    ["pgmcp.db.connection"],
    # Below the pools: session reset, privileges, limits, tunnels, TLS, value conversion; who is calling.
    [
        "pgmcp.db.session",
        "pgmcp.db.privileges",
        "pgmcp.db.limits",
        "pgmcp.db.tunnel",
        "pgmcp.db.tls",
        "pgmcp.db.convert",
        "pgmcp.auth",
    ],
    # Every use of asyncpg's private API.
    ["pgmcp.db._driver"],
    # Leaves anyone may import.
    ["pgmcp.config", "pgmcp.logs", "pgmcp.models"],
    ["pgmcp.errors", "pgmcp.dsn", "pgmcp.hosts", "pgmcp.progress", "pgmcp._version"],
]

# Package ``__init__`` modules that import nothing of the package and hold no code to place.
EMPTY_PACKAGES: frozenset[str] = frozenset({"pgmcp.db"})

# Edges known to break the drawing, each with why and until when. Keep this empty.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class Import:
    source: str
    target: str
    line: int
    path: Path
    typing: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``src``, by dotted name."""
    return {module_name(p, src): p for p in sorted((src / package).rglob("*.py"))}


def imports(src: Path, package: str) -> tuple[dict[str, Path], list[Import]]:
    """The modules of ``package`` and every import of one of them by another (resolved to modules)."""
    found = modules(src, package)
    edges: list[Import] = []
    for name, path in found.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    # ``from pkg import submodule`` imports the submodule; ``from pkg import name`` the package.
                    targets.append(sub if sub in found else base)
            for target in targets:
                resolved = _owner(target, found)
                if resolved is not None and resolved != name:
                    edges.append(Import(name, resolved, node.lineno, path, id(node) in typing_only))
    return found, edges


def _absolute(name: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, module] if module else parts)


def _owner(target: str, found: Mapping[str, Path]) -> str | None:
    """The module ``target`` names, or the nearest package of it that is ours (``import a.b.C``)."""
    while target:
        if target in found:
            return target
        target = target.rpartition(".")[0]
    return None


def container(module: str, layers: Sequence[Sequence[str]]) -> tuple[int, str] | None:
    """(layer index, container) of ``module``: the longest container that is it or holds it.

    A top-level name (the package root, ``pgmcp``) holds only itself, not the whole package.
    """
    best: tuple[int, str] | None = None
    for index, layer in enumerate(layers):
        for name in layer:
            holds = "." in name and module.startswith(name + ".")
            if (module == name or holds) and (best is None or len(name) > len(best[1])):
                best = (index, name)
    return best


def circles(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = graph[node]
            if child < len(successors):
                work.append((node, child + 1))
                nxt = successors[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def cycle(component: Sequence[str], edges: Sequence[Import]) -> list[Import]:
    """One shortest loop through the first module of ``component`` (a strongly connected set)."""
    members = set(component)
    start = component[0]
    inside = [e for e in edges if e.source in members and e.target in members]
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for edge in inside:
                if edge.source != node:
                    continue
                if edge.target == start:
                    loop = [edge]
                    while loop[0].source != start:
                        loop.insert(0, came[loop[0].source])
                    return loop
                if edge.target not in came:
                    came[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    return inside


def check(
    src: Path,
    package: str = "pgmcp",
    *,
    layers: Sequence[Sequence[str]] = LAYERS,
    allowed: Mapping[tuple[str, str], str] = ALLOWED,
    empty_packages: Iterable[str] = EMPTY_PACKAGES,
) -> list[str]:
    """Every violation in ``src/package``, as a readable line each; empty when the house is as drawn."""
    found, edges = imports(src, package)
    empty = set(empty_packages)
    problems: list[str] = []
    for module in sorted(found):
        if module in empty:
            if any(e.source == module for e in edges):
                problems.append(f"{module}: listed as an empty package but imports modules of {package}")
        elif container(module, layers) is None:
            problems.append(f"{module}: in no layer; place it in LAYERS of scripts/check_imports.py")
    counted = [e for e in edges if (e.source, e.target) not in allowed and not e.typing]
    for edge in counted:
        here, there = container(edge.source, layers), container(edge.target, layers)
        if here is None or there is None or here[1] == there[1]:
            continue
        where = f"{edge.path}:{edge.line}: {edge.source} imports {edge.target}"
        if there[0] < here[0]:
            problems.append(f"{where}: upward ({there[1]} is in a layer above {here[1]})")
        elif there[0] == here[0]:
            problems.append(f"{where}: {here[1]} and {there[1]} are independent (one layer)")
    for component in circles(found, [(e.source, e.target) for e in counted]):
        links = [f"{e.source} -> {e.target} ({e.path}:{e.line})" for e in cycle(component, counted)]
        problems.append(
            f"import circle among {', '.join(component)}; one of its loops:\n    " + "\n    ".join(links)
        )
    unused = [f"{a} -> {b}" for a, b in allowed if not any(e.source == a and e.target == b for e in edges)]
    problems.extend(f"allowed edge no longer exists, remove it from ALLOWED: {u}" for u in unused)
    return list(dict.fromkeys(problems))  # one line per problem, however many names an import brings


def main(argv: Sequence[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "src"
    problems = check(src)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(
            f"check_imports: {len(problems)} problem(s); the layers are in scripts/check_imports.py",
            file=sys.stderr,
        )
        return 1
    print(f"check_imports: ok ({len(modules(src, 'pgmcp'))} modules, {len(LAYERS)} layers, no circle)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
