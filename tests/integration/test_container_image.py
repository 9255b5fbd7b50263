"""The container image, built and run for real (issue 21; handbook "Docker 部署").

``scripts/image.sh build`` (``make image``) builds ``postgresql-mcp-server:<version>``
with docker or podman, offline from a host wheelhouse where no registry is
reachable. The image is then run as a user would: with no database settings (the
embedded PostgreSQL inside), and against this module's database on the host, each
answering ``/health`` and an MCP ``tools/call`` over HTTP from the host; as a
non-root user; with a HEALTHCHECK that passes inside; stopping on SIGTERM with exit
code 0, a cleanly shut down data directory and no process left; refusing to serve
on 0.0.0.0 without ``MCP_AUTH_TOKEN``. A second build reuses every layer.

Skipped (with the reason) only where no container engine is installed. Marked slow:
the embedded re-run of the integration suite leaves it out, one run is enough.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import PgServer
from tests.integration.proc import free_port, http_get

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "image.sh"
TOKEN = f"image-token-{uuid.uuid4().hex}"
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BUILD_TIMEOUT = 900


@dataclass(frozen=True)
class Engine:
    argv: list[str]  # the engine and its global flags
    image: str

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.argv, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{shlex.join([*self.argv, *args])} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc


def _build() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "build"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    which = subprocess.run(["bash", str(SCRIPT), "engine"], capture_output=True, text=True, check=False)
    if which.returncode == 3:
        pytest.skip(f"no container engine here: {which.stderr.strip()}")
    assert which.returncode == 0, which.stderr
    name = which.stdout.strip()
    argv = ["docker"] if name == "docker" else ["podman", "--storage-driver", "vfs", "--runtime", "runc"]
    if name == "podman" and os.environ.get("PODMAN_FLAGS"):
        argv = ["podman", *shlex.split(os.environ["PODMAN_FLAGS"])]
    started = time.monotonic()
    built = _build()
    assert built.returncode == 0, f"image build failed:\n{built.stderr[-6000:]}"
    image = built.stdout.strip().splitlines()[-1]
    first = time.monotonic() - started
    size = Engine(argv, image).run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip()
    print(f"\nimage {image}: built in {first:.0f} s with {name}, {int(size) / 1e6:.0f} MB")
    yield Engine(argv, image)


class Container:
    """One container of the image on the host network, removed afterwards."""

    def __init__(self, engine: Engine, env: dict[str, str], volume: Path | None = None) -> None:
        self.engine = engine
        self.name = f"pgmcp-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        args = ["run", "-d", "--name", self.name, "--network", "host", *ULIMITS]
        for key, value in {"MCP_SERVER_PORT": str(self.port), **env}.items():
            args += ["-e", f"{key}={value}"]
        if volume is not None:
            args += ["-v", f"{volume}:/home/pgmcp/data"]
        engine.run(*args, engine.image)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        proc = self.engine.run("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def state(self) -> dict[str, object]:
        out = self.engine.run("inspect", "--format", "{{json .State}}", self.name).stdout
        state: dict[str, object] = json.loads(out)
        return state

    def wait_health(self, timeout: float = 90) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.state().get("Running"):
                raise AssertionError(f"container exited before /health answered:\n{self.logs()}")
            try:
                status, body = http_get(f"{self.base_url}/health", timeout=3)
            except OSError:
                time.sleep(0.5)
                continue
            if status in (200, 503):
                health: dict[str, object] = json.loads(body)
                return health
            time.sleep(0.5)
        raise AssertionError(f"/health did not answer within {timeout} s:\n{self.logs()}")

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.engine.run("exec", self.name, *argv, check=False)

    def remove(self) -> None:
        self.engine.run("rm", "-f", "-t", "5", self.name, check=False, timeout=60)


def _tools_call(base_url: str, sql: str) -> dict[str, object]:
    """execute_query over stateless Streamable HTTP from the host, with the bearer token."""
    import httpx2

    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "execute_query", "arguments": {"connection_id": "default", "query": sql}},
    }
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2025-11-25",
    }
    response = httpx2.post(f"{base_url}/mcp", json=request, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    text = response.text
    if "text/event-stream" in response.headers.get("content-type", ""):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    structured: dict[str, object] = json.loads(text)["result"]["structuredContent"]
    return structured


def _assert_healthy(health: dict[str, object]) -> None:
    """``healthy``; or ``degraded`` only by this machine's own CPU, memory or disk load (the
    suite runs beside the container), never by a connection."""
    connections = health["connections"]
    assert isinstance(connections, dict)
    assert connections["default"]["is_healthy"] is True, health
    if health["status"] != "healthy":
        warnings = health.get("warnings") or []
        assert health["status"] == "degraded" and warnings, health
        assert all(any(w in str(x).lower() for w in ("cpu", "memory", "disk")) for x in warnings), health


# sha256 over the package's .py files: of src/pgmcp given as argument, else of the installed pgmcp.
_DIGEST = """
import hashlib, pathlib, sys
root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__import__("pgmcp").__file__).parent
h = hashlib.sha256()
for f in sorted(root.rglob("*.py")):
    h.update(str(f.relative_to(root)).encode() + b"\\0" + f.read_bytes())
print(h.hexdigest())
"""


def _source_digest() -> str:
    out = subprocess.run(
        ["python3", "-c", _DIGEST, str(ROOT / "src" / "pgmcp")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _container_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


SERVE_ENV = {"MCP_AUTH_TOKEN": TOKEN, "MCP_STATELESS": "true"}


def test_embedded_image_serves_health_and_mcp_runs_non_root_and_stops_cleanly(
    engine: Engine, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)  # the image's user owns its data volume
    box = Container(engine, SERVE_ENV, volume=data)
    try:
        _assert_healthy(box.wait_health())
        answer = _tools_call(box.base_url, "SELECT count(*) AS n FROM customers")
        assert answer["success"] is True, answer
        rows = answer["rows"]
        assert isinstance(rows, list) and rows[0]["n"] > 0  # the demo data is loaded inside

        # The image runs the working tree's code, not a layer cached from an older build.
        installed = box.exec("python", "-c", _DIGEST)
        assert installed.stdout.strip() == _source_digest(), installed

        uid = box.exec("sh", "-c", "awk '/^Uid:/ {print $2}' /proc/1/status")
        assert uid.stdout.strip() == "10001", uid
        config = json.loads(engine.run("image", "inspect", engine.image).stdout)[0]
        # docker keeps it under Config, podman (--format docker) at the top.
        test = (config.get("Config", {}).get("Healthcheck") or config.get("Healthcheck") or {}).get("Test")
        assert test, "the image has no HEALTHCHECK (podman needs --format docker)"
        assert test[0] == "CMD", test
        probe = box.exec(*test[1:])
        assert probe.returncode == 0, probe

        started = time.monotonic()
        engine.run("stop", "-t", "30", box.name, timeout=60)
        stopped_in = time.monotonic() - started
        state = box.state()
        assert state["ExitCode"] == 0, (state, box.logs())
        assert stopped_in < 30, f"SIGTERM took {stopped_in:.1f} s (grace 30 s): killed, not stopped"
        assert "ERROR" not in box.logs().replace('"level": "error"', ""), box.logs()
        # A clean shutdown: the postmaster removed its pid file, and nothing of the container runs.
        assert not list(data.rglob("postmaster.pid")), list(data.rglob("*"))[:20]
        assert list(data.rglob("PG_VERSION")), "the embedded cluster is not on the volume"
        assert _container_processes(box.name) == []
        assert _container_processes("/home/pgmcp/data") == []

        # The same volume serves again: the cluster it left is consistent.
        again = Container(engine, SERVE_ENV, volume=data)
        try:
            _assert_healthy(again.wait_health())
        finally:
            again.remove()
    finally:
        box.remove()


def test_image_against_the_hosts_postgresql(engine: Engine, module_db: PgServer) -> None:
    if module_db.host.startswith("/"):
        pytest.skip("the test PostgreSQL listens on a unix socket the container cannot reach")
    env = {**SERVE_ENV, **module_db.env(), "DB_SSL_MODE": "disable"}
    box = Container(engine, env)
    try:
        _assert_healthy(box.wait_health())
        answer = _tools_call(box.base_url, "SELECT current_database() AS db")
        assert answer["success"] is True, answer
        assert answer["rows"] == [{"db": module_db.database}]
        assert "PGDATA" not in box.logs() and "embedded" not in box.logs().lower()
    finally:
        box.remove()


def test_image_refuses_all_interfaces_without_a_token(engine: Engine) -> None:
    box = Container(engine, {})
    try:
        deadline = time.monotonic() + 60
        while box.state().get("Running") and time.monotonic() < deadline:
            time.sleep(0.5)
        state = box.state()
        assert not state.get("Running"), "served on 0.0.0.0 without MCP_AUTH_TOKEN"
        assert state["ExitCode"] != 0
        assert "MCP_AUTH_TOKEN" in box.logs()
    finally:
        box.remove()


def test_second_build_reuses_the_layers(engine: Engine) -> None:
    before = engine.run("image", "inspect", "--format", "{{.Id}}", engine.image).stdout.strip()
    built = _build()
    assert built.returncode == 0, built.stderr[-4000:]
    after = engine.run("image", "inspect", "--format", "{{.Id}}", engine.image).stdout.strip()
    assert after == before, "an unchanged context built a different image: the layer cache was not used"
    assert "cache" in built.stderr.lower(), built.stderr[-2000:]
