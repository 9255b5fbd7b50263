#!/usr/bin/env bash
# Production deployment of the PostgreSQL MCP Server with Docker Compose.
# Run ./scripts/deploy.sh --help for usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$ROOT/deployment/docker/docker-compose.yml"
ENV_FILE=".env"
TIMEOUT=180
COMMAND=""
SERVICE=""

usage() {
    cat <<'EOF'
Usage: scripts/deploy.sh [COMMAND] [--env-file FILE] [--timeout SECONDS]

Deploy the PostgreSQL MCP Server (mcp-server + postgres:15) with Docker Compose
(deployment/docker/docker-compose.yml).

Commands:
  deploy            build the image, start the stack, wait for /health (default)
  status            show the containers and the server's /health
  logs [SERVICE]    follow the logs (mcp-server or postgres; default both)
  stop              stop and remove the containers (the database volume is kept;
                    remove it with: docker compose -p pgmcp down -v)

Options:
  --env-file FILE   settings file (default .env; start from .env.example). It is
                    used for the compose variables and handed to the server.
                    Required in it or in the environment: MCP_AUTH_TOKEN,
                    DB_PASSWORD, POSTGRES_PASSWORD.
  --timeout SECONDS how long deploy waits for /health (default 180)
  -h, --help        this help

Examples:
  cp .env.example .env && $EDITOR .env && ./scripts/deploy.sh
  ./scripts/deploy.sh deploy --env-file .env.prod
  ./scripts/deploy.sh logs mcp-server
EOF
}

die() {
    printf 'deploy.sh: %s\n' "$*" >&2
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
        deploy | status | logs | stop)
            [[ -z "$COMMAND" ]] || { printf 'deploy.sh: one command at a time\n' >&2; exit 2; }
            COMMAND="$1"
            shift
            ;;
        -*)
            printf 'deploy.sh: unknown option %s\n\n' "$1" >&2
            usage >&2
            exit 2
            ;;
        *)
            if [[ "$COMMAND" == "logs" && -z "$SERVICE" ]]; then
                SERVICE="$1"
                shift
            else
                printf 'deploy.sh: unknown command %s\n\n' "$1" >&2
                usage >&2
                exit 2
            fi
            ;;
    esac
done
COMMAND="${COMMAND:-deploy}"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "--timeout needs a number of seconds, got '$TIMEOUT'"

# ---- environment file -----------------------------------------------------
cd "$ROOT"
if [[ ! -f "$ENV_FILE" ]]; then
    die "env file '$ENV_FILE' not found. Create it first: cp .env.example $ENV_FILE (then set MCP_AUTH_TOKEN, DB_PASSWORD, POSTGRES_PASSWORD)"
fi
ENV_FILE="$(cd "$(dirname "$ENV_FILE")" && pwd)/$(basename "$ENV_FILE")"
# The server container reads the same file (env_file in the compose file).
export MCP_ENV_FILE="$ENV_FILE"

# Value of KEY: the environment wins over the env file (as in docker compose).
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

# ---- docker / compose -------------------------------------------------------
COMPOSE=()
find_compose() {
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        die "Docker Compose not found: install Docker with the compose plugin ('docker compose') or docker-compose. See https://docs.docker.com/compose/install/"
    fi
    if command -v docker >/dev/null 2>&1; then
        if ! docker info >/dev/null 2>&1; then
            die "the Docker engine is not reachable (docker info failed). Start Docker, or check DOCKER_HOST and your permissions on the Docker socket."
        fi
    fi
}

compose() {
    "${COMPOSE[@]}" --env-file "$ENV_FILE" -f "$COMPOSE_FILE" "$@"
}

PORT="$(env_value MCP_SERVER_PORT)"
PORT="${PORT:-3000}"
HEALTH_URL="http://127.0.0.1:${PORT}/health"

# Prints the HTTP status of /health (000 when nothing answers).
health_status() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -m 5 -w '%{http_code}' "$HEALTH_URL" 2>/dev/null || true
    elif command -v python3 >/dev/null 2>&1; then
        python3 - "$HEALTH_URL" <<'PY' 2>/dev/null || true
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status, end="")
except urllib.error.HTTPError as exc:
    print(exc.code, end="")
except Exception:
    print("000", end="")
PY
    else
        die "neither curl nor python3 found to probe $HEALTH_URL"
    fi
}

show_health() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -m 5 "$HEALTH_URL" || printf '(no answer from %s)' "$HEALTH_URL"
    else
        python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
            "$HEALTH_URL" 2>/dev/null || printf '(no answer from %s)' "$HEALTH_URL"
    fi
    printf '\n'
}

check_required() {
    local missing=() key
    for key in MCP_AUTH_TOKEN DB_PASSWORD POSTGRES_PASSWORD; do
        [[ -n "$(env_value "$key")" ]] || missing+=("$key")
    done
    if ((${#missing[@]} > 0)); then
        die "set ${missing[*]} in $ENV_FILE (or the environment). A token: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
    fi
}

wait_healthy() {
    local deadline=$((SECONDS + TIMEOUT)) code
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
    compose ps || true
    compose logs --tail=50 mcp-server || true
    return 1
}

# ---- commands ---------------------------------------------------------------
case "$COMMAND" in
    deploy)
        check_required
        find_compose
        printf 'Deploying with %s (env file %s)\n' "${COMPOSE[*]}" "$ENV_FILE"
        compose up -d --build
        wait_healthy || die "the server did not become healthy; see the logs above"
        show_health
        printf 'MCP endpoint: http://127.0.0.1:%s/mcp (header: Authorization: Bearer <MCP_AUTH_TOKEN>)\n' "$PORT"
        ;;
    status)
        check_required
        find_compose
        compose ps
        printf '\n/health: HTTP %s\n' "$(health_status)"
        show_health
        ;;
    logs)
        check_required
        find_compose
        if [[ -n "$SERVICE" ]]; then
            compose logs -f --tail=200 "$SERVICE"
        else
            compose logs -f --tail=200
        fi
        ;;
    stop)
        check_required
        find_compose
        compose down
        ;;
esac
