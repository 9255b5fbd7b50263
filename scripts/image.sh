#!/usr/bin/env bash
# Build the container image postgresql-mcp-server:<version> (`make image`).
#
#   scripts/image.sh [build|engine|base|wheels] [--help]
#
#   build    (default) the image, with docker when an engine answers, else with podman
#   engine   print the engine this script would use (docker or podman); exit 3 if none
#   base     make the local base image from Debian packages (podman/docker import)
#   wheels   make the wheelhouse build/wheels/ (pip download of the project and its
#            build requirements, on the host)
#
# Environment:
#   ENGINE        docker | podman (default: docker if `docker info` answers, else podman)
#   IMAGE         the tag to build (default postgresql-mcp-server:<version of pyproject.toml>)
#   PYTHON_IMAGE  the base image; default python:3.11-slim when the engine has it or can
#                 pull it within PULL_TIMEOUT seconds (default 30), else the local base
#                 pgmcp-base:bookworm (used as it is when an earlier run made it; else made
#                 with debootstrap, which needs root and Debian's mirror, about a minute)
#   OFFLINE       1: build from the wheelhouse (made when missing) so nothing in the build
#                 reaches a package index; 0: pip inside the build uses the index. Default:
#                 1 with the local base (its containers are assumed offline), else 0
#   PODMAN_FLAGS  global podman flags (default: --storage-driver vfs --runtime runc, which
#                 work where overlay mounts and crun do not)
#
# Exit codes: 0 built; 1 failed; 2 usage; 3 no container engine on this machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WHEELS="$ROOT/build/wheels"
BASE_TAG="pgmcp-base:bookworm"
# Containers here may not raise resource limits; these are harmless elsewhere.
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

host_python() {
    if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"; else command -v python3; fi
}

version() {
    # The one place the version is written (pyproject.toml reads it from there too).
    sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/pgmcp/_version.py
}

pick_engine() {
    if [[ -n "${ENGINE:-}" ]]; then
        command -v "$ENGINE" >/dev/null 2>&1 || { say "ENGINE=$ENGINE is not installed"; return 3; }
        echo "$ENGINE"
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    elif command -v podman >/dev/null 2>&1; then
        echo podman
    else
        say "no container engine: neither a docker engine answers nor podman is installed"
        say "(Debian: apt-get install podman runc)"
        return 3
    fi
}

# eng ARGS...: the engine with its global flags (ENGINE_CMD, set once the engine is known).
eng() { "${ENGINE_CMD[@]}" "$@"; }

has_image() { eng image inspect "$1" >/dev/null 2>&1; }

make_base() {
    if has_image "$BASE_TAG"; then
        say "local base $BASE_TAG exists"
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is needed for the local base (apt-get install debootstrap)"
    local rootfs
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/pgmcp-base.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the trap must remove this very folder
    trap "rm -rf '$rootfs'" EXIT
    say "no registry image: making the local base $BASE_TAG from Debian packages (debootstrap, bookworm)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$rootfs" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | eng import --change 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
    rm -f "$rootfs.log"
    say "local base $BASE_TAG made"
}

make_wheels() {
    local py
    py="$(host_python)"
    mkdir -p "$WHEELS"
    say "wheelhouse: pip download of the project and its build requirements into build/wheels/"
    # setuptools and wheel: what stage 1 needs to build the project's wheel without an index.
    "$py" -m pip download --quiet --disable-pip-version-check --dest "$WHEELS" \
        --only-binary=:all: . "setuptools>=77" wheel pip 2>&1 | grep -v 'is ignored' >&2 || true
    ls "$WHEELS"/*.whl >/dev/null 2>&1 || die "the wheelhouse is empty: pip download failed"
    say "wheelhouse: $(find "$WHEELS" -name '*.whl' | wc -l) wheels"
}

pick_base() {
    if [[ -n "${PYTHON_IMAGE:-}" ]]; then
        echo "$PYTHON_IMAGE"
        return
    fi
    local official=python:3.11-slim
    if has_image "$official"; then
        echo "$official"
        return
    fi
    if has_image "$BASE_TAG"; then # made by an earlier run here: no registry to try again
        say "using the local base $BASE_TAG (PYTHON_IMAGE=$official to try the registry)"
        echo "$BASE_TAG"
        return
    fi
    if timeout "${PULL_TIMEOUT:-30}" "${ENGINE_CMD[@]}" pull -q "docker.io/library/$official" >/dev/null 2>&1; then
        echo "$official"
        return
    fi
    say "cannot pull $official (no registry reachable?)"
    make_base
    echo "$BASE_TAG"
}

build() {
    local tag base offline started
    tag="${IMAGE:-postgresql-mcp-server:$(version)}"
    base="$(pick_base)"
    offline="${OFFLINE:-}"
    [[ -n "$offline" ]] || { [[ "$base" == "$BASE_TAG" ]] && offline=1 || offline=0; }
    if [[ "$offline" == 1 ]]; then
        make_wheels
    else
        rm -rf "$WHEELS" # a stale wheelhouse would silently pin old versions
    fi
    local args=(build -f deployment/docker/Dockerfile -t "$tag" --build-arg "PYTHON_IMAGE=$base")
    if [[ "$ENGINE_NAME" == podman ]]; then
        args+=(--format docker "${ULIMITS[@]}") # --format docker keeps HEALTHCHECK
    fi
    say "building $tag with $ENGINE_NAME on $base ($([[ "$offline" == 1 ]] && echo offline, from build/wheels || echo online))"
    started=$SECONDS
    eng "${args[@]}" . >&2
    say "built $tag in $((SECONDS - started)) s; size $(eng image inspect --format '{{.Size}}' "$tag" |
        awk '{printf "%.0f MB", $1 / 1000000}')"
    echo "$tag"
}

cmd="${1:-build}"
case "$cmd" in
    -h | --help) usage; exit 0 ;;
    engine) pick_engine; exit $? ;;
    build | base | wheels) ;;
    *) say "unknown command $cmd"; usage >&2; exit 2 ;;
esac
if [[ "$cmd" == wheels ]]; then
    make_wheels
    exit 0
fi
ENGINE_NAME="$(pick_engine)" || exit 3
if [[ "$ENGINE_NAME" == podman ]]; then
    # shellcheck disable=SC2206 # PODMAN_FLAGS is a list of flags
    ENGINE_CMD=(podman ${PODMAN_FLAGS:---storage-driver vfs --runtime runc})
else
    ENGINE_CMD=(docker)
fi
case "$cmd" in
    base) make_base ;;
    build) build ;;
esac
