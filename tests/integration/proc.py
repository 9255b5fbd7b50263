"""Running ``pgmcp serve`` as a real subprocess, the way users and probes see it.

- :func:`pgmcp_env` builds a clean environment: the parent's pgmcp settings
  are dropped so a developer's shell cannot change what a test sees.
- :func:`serve_http` picks a free port, starts ``pgmcp serve --transport http``,
  waits for ``/health`` and, on exit, stops it with SIGTERM (or the signal
  given) and asserts exit code 0 and that nothing it started is left running.
- stderr always goes to a file, so a chatty server can never block on a full
  pipe, and tests can read its JSON log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pgmcp.config import Settings
from tests.conftest import PgServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PGMCP = str(BIN / "pgmcp")
PYTHON = sys.executable

# Every variable pgmcp reads, so none leaks in from the shell running the tests.
_SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pgmcp_env(db: PgServer | None, **settings: str) -> dict[str, str]:
    """The parent's environment without pgmcp settings, plus ``db``'s DB_* and ``settings``."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SETTING_NAMES}
    env.pop("PGMCP_TEST_EMBEDDED", None)
    env["PYTHONUNBUFFERED"] = "1"
    # Background probes would only add noise to the logs the tests read.
    env["HEALTH_CHECK_INTERVAL"] = "3600"
    if db is not None:
        env.update(db.env())
    env.update(settings)
    return env


def json_lines(text: str) -> list[dict[str, Any]]:
    """The log lines of a stderr capture; asserts every non-empty line is a JSON object."""
    lines = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"stderr line is not JSON: {line!r}") from None
        assert isinstance(obj, dict), line
        lines.append(obj)
    return lines


def postgres_processes(marker: str) -> list[psutil.Process]:
    """Live PostgreSQL processes whose command line mentions ``marker`` (e.g. a data dir)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            is_postgres = "postgres" in (proc.info["name"] or "") + cmdline
            if is_postgres and marker in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, str]:
    """(status, body) of a GET; 4xx/5xx are returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


@dataclass
class ServerProcess:
    """A running ``pgmcp serve``; ``stderr_text()`` reads its log so far."""

    popen: subprocess.Popen[bytes]
    stderr_path: Path
    port: int | None = None
    descendants: list[psutil.Process] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        return json_lines(self.stderr_text())

    def wait_healthy(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"pgmcp exited with {self.popen.returncode} before /health answered:\n{self.stderr_text()}"
                )
            with contextlib.suppress(OSError):
                status, body = http_get(f"{self.base_url}/health", timeout=2)
                if status in (200, 503):
                    self.remember_descendants()
                    result: dict[str, Any] = json.loads(body)
                    return result
                last = f"{status} {body}"
            time.sleep(0.05)
        self.popen.kill()
        raise AssertionError(f"/health did not answer within {timeout} s ({last}):\n{self.stderr_text()}")

    def remember_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.descendants = psutil.Process(self.pid).children(recursive=True)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig``, wait for the exit and return the exit code (kills after ``timeout``)."""
        if self.popen.poll() is None:
            self.remember_descendants()
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
                raise AssertionError(
                    f"pgmcp did not exit within {timeout} s of signal {sig}:\n{self.stderr_text()}"
                ) from None
        return int(self.popen.returncode)

    def leftovers(self) -> list[psutil.Process]:
        """Processes this server started that are still alive after it exited."""
        alive = []
        for proc in self.descendants:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        return alive


def spawn(
    args: list[str], env: dict[str, str], stderr_path: Path, *, command: tuple[str, ...] = (PGMCP,)
) -> ServerProcess:
    """Start ``pgmcp <args>`` (or ``command <args>``), stdin and stdout closed, stderr to a file."""
    handle = stderr_path.open("wb")
    try:
        popen = subprocess.Popen(
            [*command, *args],
            env=env,
            cwd=str(stderr_path.parent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=handle,
        )
    finally:
        handle.close()
    return ServerProcess(popen=popen, stderr_path=stderr_path)


@contextlib.contextmanager
def serve_http(
    env: dict[str, str],
    tmp_path: Path,
    *,
    extra_args: tuple[str, ...] = (),
    stop_signal: int = signal.SIGTERM,
    health_timeout: float = 60,
    name: str = "server",
) -> Iterator[ServerProcess]:
    """``pgmcp serve --transport http`` on a free port, healthy; stopped and checked on exit."""
    port = free_port()
    server = spawn(
        ["serve", "--transport", "http", "--port", str(port), *extra_args],
        env,
        tmp_path / f"{name}-{port}.stderr",
    )
    server.port = port
    try:
        server.wait_healthy(health_timeout)
        yield server
    except BaseException:
        if server.popen.poll() is None:
            server.popen.kill()
            server.popen.wait(10)
        raise
    code = server.stop(stop_signal)
    assert code == 0, f"pgmcp exited with {code} after signal {stop_signal}:\n{server.stderr_text()}"
    left = server.leftovers()
    assert not left, f"processes left running after pgmcp exited: {[p.cmdline() for p in left]}"
    assert "Traceback" not in server.stderr_text(), server.stderr_text()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``pgmcp <args>`` to completion (for commands that should refuse to start)."""
    return subprocess.run(
        [PGMCP, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
    )
