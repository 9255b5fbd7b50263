#!/usr/bin/env bash
# Development stack of the PostgreSQL MCP Server: Docker Compose with the demo data.
# Run ./scripts/dev.sh --help for usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILES=(-f "$ROOT/deployment/docker/docker-compose.yml" -f "$ROOT/deployment/docker/docker-compose.dev.yml")
ENV_FILE=".env.dev"
TIMEOUT=180
COMMAND=""
SERVICE=""
VOLUMES=0

usage() {
    cat <<'EOF'
Usage: scripts/dev.sh COMMAND [SERVICE] [--env-file FILE] [--timeout SECONDS]

Development stack (compose project pgmcp-dev): postgres:15 loaded with the
handbook's demo data (src/pgmcp/demo/init-db-dev.sql) and the MCP server on
http://127.0.0.1:3000, logged in as mcp_writer.
(Without Docker: `make run` serves the same demo data on an embedded PostgreSQL.)

Commands:
  start               build the image, start the stack, wait for /health
  logs [SERVICE]      follow the logs (mcp-server or postgres; default both)
  restart [SERVICE]   mcp-server (default): rebuild the image from the working
                      tree and recreate the container; postgres: restart it
  status              show the containers and /health
  stop [--volumes]    stop and remove the containers; --volumes also drops the
                      database volume (the demo data is loaded again on start)

Options:
  --env-file FILE     settings file (default .env.dev)
  --timeout SECONDS   how long start/restart wait for /health (default 180)
  -h, --help          this help
EOF
}

die() {
    printf 'dev.sh: %s\n' "$*" >&2
    exit 1
}

# ---- arguments ------------------------------------------------------------
while (($# > 0)); do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --env-file)
            (($# >= 2)) || { usage >&2; exit 2; }
            ENV_FILE="$2"
            shift 2
            ;;
        --env-file=*)
            ENV_FILE="${1#*=}"
            shift
            ;;
        --timeout)
            (($# >= 2)) || { usage >&2; exit 2; }
            TIMEOUT="$2"
            shift 2
            ;;
        --timeout=*)
            TIMEOUT="${1#*=}"
            shift
            ;;
        -v | --volumes)
            VOLUMES=1
            shift
            ;;
        start | logs | restart | status | stop)
            [[ -z "$COMMAND" ]] || { printf 'dev.sh: one command at a time\n' >&2; exit 2; }
            COMMAND="$1"
            shift
            ;;
        -*)
            printf 'dev.sh: unknown option %s\n\n' "$1" >&2
            usage >&2
            exit 2
            ;;
        *)
            if [[ ("$COMMAND" == "logs" || "$COMMAND" == "restart") && -z "$SERVICE" ]]; then
                SERVICE="$1"
                shift
            else
                printf 'dev.sh: unknown command %s\n\n' "$1" >&2
                usage >&2
                exit 2
            fi
            ;;
    esac
done
if [[ -z "$COMMAND" ]]; then
    usage >&2
    exit 2
fi
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout needs a number of seconds, got '$TIMEOUT'"
if [[ -n "$SERVICE" && "$SERVICE" != "mcp-server" && "$SERVICE" != "postgres" ]]; then
    die "unknown service '$SERVICE' (mcp-server or postgres)"
fi
((VOLUMES == 0)) || [[ "$COMMAND" == "stop" ]] || die "--volumes goes with stop"

# ---- environment file -----------------------------------------------------
cd "$ROOT"
[[ -f "$ENV_FILE" ]] || die "env file '$ENV_FILE' not found (the repository ships .env.dev)"
ENV_FILE="$(cd "$(dirname "$ENV_FILE")" && pwd)/$(basename "$ENV_FILE")"
export MCP_ENV_FILE="$ENV_FILE"

env_value() {
    local key="$1" line value=""
    if [[ -n "${!key:-}" ]]; then
        printf '%s' "${!key}"
        return 0
    fi
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line%$'\r'}"
        if [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?${key}[[:space:]]*=(.*)$ ]]; then
            value="${BASH_REMATCH[2]}"
        fi
    done <"$ENV_FILE"
    value="${value#"${value%%[![:space:]]*}"}"
    value="${value%"${value##*[![:space:]]}"}"
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
        value="${BASH_REMATCH[1]}"
    fi
    printf '%s' "$value"
}

missing=()
for key in MCP_AUTH_TOKEN DB_PASSWORD POSTGRES_PASSWORD; do
    [[ -n "$(env_value "$key")" ]] || missing+=("$key")
done
((${#missing[@]} == 0)) || die "set ${missing[*]} in $ENV_FILE (or the environment)"

# ---- docker / compose -------------------------------------------------------
COMPOSE=()
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    die "Docker Compose not found: install Docker with the compose plugin ('docker compose') or docker-compose. Without Docker, 'make run' starts the server on an embedded PostgreSQL with the same demo data."
fi
if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    die "the Docker engine is not reachable (docker info failed). Start Docker, or check DOCKER_HOST and your permissions on the Docker socket."
fi

compose() {
    "${COMPOSE[@]}" --env-file "$ENV_FILE" "${COMPOSE_FILES[@]}" "$@"
}

PORT="$(env_value MCP_SERVER_PORT)"
PORT="${PORT:-3000}"
HEALTH_URL="http://127.0.0.1:${PORT}/health"

health_status() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -m 5 -w '%{http_code}' "$HEALTH_URL" 2>/dev/null || true
    else
        python3 - "$HEALTH_URL" <<'PY' 2>/dev/null || true
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status, end="")
except urllib.error.HTTPError as exc:
    print(exc.code, end="")
except Exception:
    print("000", end="")
PY
    fi
}

wait_healthy() {
    local deadline=$((SECONDS + TIMEOUT)) code=""
    printf 'Waiting for %s (up to %ss) ' "$HEALTH_URL" "$TIMEOUT"
    while ((SECONDS < deadline)); do
        code="$(health_status)"
        if [[ "$code" == "200" ]]; then
            printf ' healthy\n'
            return 0
        fi
        printf '.'
        sleep 3
    done
    printf ' timed out (last HTTP status %s)\n' "${code:-000}"
    compose logs --tail=50 mcp-server || true
    return 1
}

case "$COMMAND" in
    start)
        compose up -d --build
        wait_healthy || die "the server did not become healthy; see the logs above"
        printf 'MCP endpoint: http://127.0.0.1:%s/mcp  (token: MCP_AUTH_TOKEN in %s)\n' "$PORT" "$ENV_FILE"
        printf 'Demo database: psql -h 127.0.0.1 -p %s -U postgres %s\n' \
            "$(env_value POSTGRES_PORT | sed 's/^$/5432/')" "$(env_value DB_DATABASE | sed 's/^$/postgres/')"
        ;;
    logs)
        if [[ -n "$SERVICE" ]]; then
            compose logs -f --tail=200 "$SERVICE"
        else
            compose logs -f --tail=200
        fi
        ;;
    restart)
        if [[ "$SERVICE" == "postgres" ]]; then
            compose restart postgres
        else
            compose up -d --build --force-recreate --no-deps mcp-server
        fi
        wait_healthy || die "the server did not become healthy; see the logs above"
        ;;
    status)
        compose ps
        printf '\n/health: HTTP %s\n' "$(health_status)"
        ;;
    stop)
        if ((VOLUMES)); then
            compose down --volumes
        else
            compose down
        fi
        ;;
esac
