"""pgmcp beside the PostgreSQL MCP servers it is compared with, measured in one run on this machine.

    make bench-peers                         # = .venv/bin/python benchmarks/peers.py
    .venv/bin/python benchmarks/peers.py --big   # also SELECT * FROM big (1,000,000 rows)

The peers are the npm packages pinned in ``benchmarks/peers/package.json``: the
archived reference server (``@modelcontextprotocol/server-postgres``, stdio) and
DBHub (``@bytebase/dbhub``, stdio and Streamable HTTP). They are installed there
with ``npm ci`` on first use; Node.js and npm are needed for this benchmark only.

Each server gets the same database, the same client (the official ``mcp``
Python client, as in ``run.py``) and the same statement through its SQL tool.
The servers take turns, round after round, so that a change in the machine's
load falls on all of them; the figures are the medians over the rounds:
``SELECT 1`` p50/p95 of 1,000 calls (after 200 warm-up calls), the server's CPU
per call (psutil, its pid) and the client's. With ``--big``, one
``SELECT * FROM big`` per stdio server from a bare JSON-RPC peer (the official
client needs minutes to read a 200 MB answer): time to the whole answer,
response bytes, rows, and the server's peak RSS growth.

Results: a table on stdout, ``benchmarks/results/peers.json`` and the peers
section of ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
import psutil  # noqa: E402
from common import (  # noqa: E402
    PGMCP,
    ROOT,
    Postgres,
    find_postgres,
    free_port,
    http_server,
    scratch_database,
    server_env,
    stdio_server,
    stop_process,
    summary_ms,
    time_calls,
)
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from run import cpu_of, machine, rss_sampler  # noqa: E402

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
RESULTS = HERE / "results" / "peers.json"
README = HERE / "README.md"
BEGIN, END = "<!-- peers:begin (written by benchmarks/peers.py) -->", "<!-- peers:end -->"


@dataclass(frozen=True)
class Server:
    """One server under test: how to start it and how to ask it for ``sql``."""

    name: str
    transport: str
    tool: str
    arguments: Callable[[str], dict[str, Any]]
    command: Callable[[Postgres, int], list[str]] | None = None  # None: pgmcp itself

    @property
    def label(self) -> str:
        return f"{self.name} ({self.transport})"


def _bin(package: str, script: str) -> str:
    return str(PEERS / "node_modules" / package / script)


REFERENCE = ("@modelcontextprotocol/server-postgres", "dist/index.js")
DBHUB = ("@bytebase/dbhub", "dist/index.js")

SERVERS = [
    Server("pgmcp", "stdio", "execute_query", lambda sql: {"connection_id": "default", "query": sql}),
    Server(
        "reference server-postgres 0.6.2",
        "stdio",
        "query",
        lambda sql: {"sql": sql},
        lambda db, _: ["node", _bin(*REFERENCE), db.dsn()],
    ),
    Server(
        "dbhub 1.4.0",
        "stdio",
        "execute_sql",
        lambda sql: {"sql": sql},
        lambda db, _: ["node", _bin(*DBHUB), "--transport", "stdio", f"--dsn={db.dsn()}?sslmode=disable"],
    ),
    Server("pgmcp", "http", "execute_query", lambda sql: {"connection_id": "default", "query": sql}),
    Server(
        "dbhub 1.4.0",
        "http",
        "execute_sql",
        lambda sql: {"sql": sql},
        lambda db, port: [
            "node",
            _bin(*DBHUB),
            "--transport",
            "http",
            f"--port={port}",
            f"--dsn={db.dsn()}?sslmode=disable",
        ],
    ),
]


def install_peers() -> None:
    """``npm ci`` into benchmarks/peers unless its node_modules is already there."""
    if all((PEERS / "node_modules" / pkg / script).exists() for pkg, script in (REFERENCE, DBHUB)):
        return
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("benchmarks/peers.py needs Node.js and npm to run the peers (they are npm packages)")
    print("installing the peers: npm ci in benchmarks/peers", flush=True)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=PEERS, check=True, stdout=sys.stderr
    )


@contextlib.asynccontextmanager
async def connected(server: Server, db: Postgres, log_dir: Path) -> AsyncIterator[tuple[Client, int]]:
    """The server started and an official client connected to it: ``(client, server pid)``."""
    if server.command is None:
        start = stdio_server if server.transport == "stdio" else http_server
        async with start(db, log_dir) as running:
            yield running.client, running.pid
        return
    log = (log_dir / f"{server.name.split()[0]}-{server.transport}.log").open("w")
    with log:
        env = _peer_env()
        if server.transport == "stdio":
            before = {p.pid for p in psutil.Process().children(recursive=True)}
            command = server.command(db, 0)
            params = StdioServerParameters(command=command[0], args=command[1:], env=env)
            async with Client(stdio_client(params, errlog=log), read_timeout_seconds=600) as client:
                new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
                yield client, new[-1].pid
            return
        port = free_port()
        proc = subprocess.Popen(server.command(db, port), env=env, stdout=log, stderr=log)
        try:
            await _wait_port(port, proc)
            async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=600) as client:
                yield client, proc.pid
        finally:
            stop_process(proc, 10)


async def _wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


async def select1(server: Server, db: Postgres, log_dir: Path, calls: int) -> dict[str, Any]:
    async with connected(server, db, log_dir) as (client, pid):
        arguments = server.arguments("SELECT 1")

        async def call() -> None:
            result = await client.call_tool(server.tool, arguments)
            if result.is_error:
                raise RuntimeError(f"{server.label}: SELECT 1 failed: {result}")

        await time_calls(call, 0, warmup=200)
        samples, server_cpu, client_cpu = await cpu_of(pid, lambda: time_calls(call, calls, warmup=0))
    return {
        **summary_ms(samples),
        "server_cpu_ms_per_call": round(server_cpu / calls * 1000, 4),
        "client_cpu_ms_per_call": round(client_cpu / calls * 1000, 4),
    }


async def big(server: Server, db: Postgres, log_dir: Path) -> dict[str, Any]:
    """``SELECT * FROM big`` over stdio from a bare JSON-RPC peer: the time to the whole answer,
    its size, the rows in it and the server's peak RSS growth.

    Not the official client: it takes minutes to read a 200 MB line (580 s for the
    reference server's answer here), which would measure the client, not the server.
    """
    if server.command is None:
        command, env = [PGMCP, "serve", "--transport", "stdio"], server_env(db)
    else:
        command, env = server.command(db, 0), _peer_env()
    with (log_dir / f"big-{server.name.split()[0]}.log").open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def send(message: dict[str, Any]) -> None:
            stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
            stdin.flush()

        def handshake() -> None:
            send({"id": 1, "method": "initialize", "params": _INITIALIZE})
            stdout.readline()
            send({"method": "notifications/initialized"})
            send(
                {
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": server.tool, "arguments": server.arguments("SELECT 1")},
                }
            )
            stdout.readline()  # a first call, so that start-up is not counted as the query's memory

        def ask() -> tuple[float, bytes]:
            started = time.perf_counter()
            arguments = server.arguments("SELECT * FROM big")
            send({"id": 3, "method": "tools/call", "params": {"name": server.tool, "arguments": arguments}})
            line = stdout.readline()
            return time.perf_counter() - started, line

        try:
            await asyncio.to_thread(handshake)
            async with rss_sampler(proc.pid, every=0.01) as rss:
                seconds, line = await asyncio.to_thread(ask)
        finally:
            stdin.close()
            stop_process(proc, 30, terminate=False)
    result = orjson.loads(line).get("result") or {}
    data = result.get("structuredContent") or {}
    rows = data.get("row_count")
    if rows is None and result.get("content"):  # the peers answer with text only
        with contextlib.suppress(ValueError, AttributeError, KeyError, TypeError):
            parsed = orjson.loads(result["content"][0]["text"])
            if isinstance(parsed, list):  # the reference server: the rows
                rows = len(parsed)
            else:  # dbhub: {"data": {"statements": [{"rows": [...], "count": n}]}}
                rows = sum(len(st["rows"]) for st in parsed["data"]["statements"])
    return {
        "seconds": round(seconds, 3),
        "rows": rows,
        "truncated": data.get("truncated"),
        "response_bytes": len(line),
        "rss_growth_mb": round((rss["peak"] - rss["before"]) / 2**20, 1),
    }


_INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"},
}


def _peer_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "MCP_", "PGMCP_"))}


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    db = await find_postgres()
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="pgmcp-bench-peers-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"server logs: {log_dir}", flush=True)
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    rounds: dict[str, list[dict[str, Any]]] = {s.label: [] for s in SERVERS}
    bigs: dict[str, dict[str, Any]] = {}
    async with scratch_database(db, big_rows=args.big_rows if args.big else 10) as scratch:
        for r in range(args.rounds):
            for server in SERVERS:
                figures = await select1(server, scratch, log_dir, args.calls)
                rounds[server.label].append(figures)
                print(
                    f"round {r + 1}: {server.label:38} p50 {figures['p50_ms']:.3f} ms, "
                    f"server CPU {figures['server_cpu_ms_per_call']:.3f} ms/call",
                    flush=True,
                )
        if args.big:
            for server in (s for s in SERVERS if s.transport == "stdio"):
                bigs[server.label] = await big(server, scratch, log_dir)
                print(f"SELECT * FROM big: {server.label:38} {bigs[server.label]}", flush=True)
    select = {
        label: {key: _median([f[key] for f in runs]) for key in runs[0]} | {"rounds": runs}
        for label, runs in rounds.items()
    }
    return {
        "date": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine(),
        "postgres": {"kind": db.kind, "version": db.version},
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "calls": args.calls,
        "select1": select,
        "big": bigs,
        "big_rows": args.big_rows if args.big else None,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Run of {result['date']} on {m['nproc']} cores ({m['cpu_model']}), PostgreSQL "
        f"{result['postgres']['version']}, client: mcp {m['packages'].get('mcp', '?')} (official Python client); "
        f"load average {result['load_average']['start'][0]:.2f} at start, "
        f"{result['load_average']['end'][0]:.2f} at end. Medians over "
        f"{len(next(iter(result['select1'].values()))['rounds'])} interleaved rounds of "
        f"{result['calls']:,} calls.",
        "",
        "| `SELECT 1` through the SQL tool | p50 | p95 | server CPU/call | client CPU/call |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, f in result["select1"].items():
        lines.append(
            f"| {label} | {f['p50_ms']:.3f} ms | {f['p95_ms']:.3f} ms | {f['server_cpu_ms_per_call']:.3f} ms "
            f"| {f['client_cpu_ms_per_call']:.3f} ms |"
        )
    if result["big"]:
        lines += [
            "",
            f"| `SELECT * FROM big` ({result['big_rows']:,} rows), stdio, bare peer | time | rows returned "
            "| response | server RSS growth |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for label, f in result["big"].items():
            if "error" in f:
                lines.append(f"| {label} | failed: {f['error']} | | | |")
                continue
            lines.append(
                f"| {label} | {f['seconds']:.3f} s | {f['rows']:,} | {f['response_bytes'] / 2**20:.1f} MB "
                f"| {f['rss_growth_mb']:.1f} MB |"
            )
    return "\n".join(lines)


def write_readme(text: str) -> None:
    body = README.read_text()
    if BEGIN not in body or END not in body:
        body = body.rstrip() + f"\n\n## Side by side with the peers\n\n{BEGIN}\n{END}\n"
    head, _, rest = body.partition(BEGIN)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed SELECT 1 calls per server and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over all servers")
    parser.add_argument("--big", action="store_true", help="also SELECT * FROM big once per server")
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--log-dir", help="where the servers' stderr goes (default: a new temporary directory)"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave README.md and results/ alone"
    )
    args = parser.parse_args()
    install_peers()
    result = asyncio.run(run(args))
    text = render(result)
    print()
    print(text)
    if not args.no_write:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_readme(text)
        print(f"\nwrote {RESULTS.relative_to(ROOT)} and {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
