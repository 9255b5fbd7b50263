#!/usr/bin/env bash
# The suite's driver- and SDK-facing part on the lowest and the highest asyncpg and mcp
# that pyproject.toml allows.
#
#   scripts/ci-versions.sh [--help]
#
# pgmcp uses private API of both (tests/unit/test_driver_internals.py and
# test_sdk_internals.py list it), so each end of the allowed ranges is installed into a
# venv of its own (the project's .venv is left alone) and runs tests/unit plus the
# integration modules that exercise those internals: the fast paths and their
# differential test, the warm connection, value conversion, the transports.
# Each run is bounded by PGMCP_CI_VERSIONS_TIMEOUT seconds (default 300).
# Needs: python3 with venv, PyPI through pip, the test PostgreSQL the suite uses.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

TESTS=(
    tests/unit
    tests/integration/test_fast_path_differential.py
    tests/integration/test_stdio_fast_path.py
    tests/integration/test_http_fast_path.py
    tests/integration/test_warm_connection.py
    tests/integration/test_convert.py
    tests/integration/test_transports.py
)
BUDGET="${PGMCP_CI_VERSIONS_TIMEOUT:-300}"
PYTHON="${PYTHON:-python3}"

work="$(mktemp -d "${TMPDIR:-/tmp}/pgmcp-versions.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet -e '.[test]'

# "lowest highest" of each pinned package: the releases on the index inside pyproject's range.
ends() {
    local name="$1" listed
    listed="$("$py" -m pip index versions "$name" 2>/dev/null | sed -n 's/^Available versions: //p')"
    if [[ -z "$listed" ]]; then
        echo "ci-versions: pip could not list the releases of $name" >&2
        return 1
    fi
    "$py" - "$name" "$listed" <<'EOF'
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

name, listed = sys.argv[1], sys.argv[2]
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
spec = next(Requirement(d) for d in deps if Requirement(d).name == name).specifier
allowed = sorted(v for v in map(Version, listed.split(", ")) if spec.contains(v))
if not allowed:
    sys.exit(f"ci-versions: no release of {name} on the index satisfies {spec}")
print(allowed[0], allowed[-1])
EOF
}

asyncpg_ends="$(ends asyncpg)"
mcp_ends="$(ends mcp)"
read -r asyncpg_low asyncpg_high <<<"$asyncpg_ends"
read -r mcp_low mcp_high <<<"$mcp_ends"

status=0
for end in lowest highest; do
    if [[ "$end" == lowest ]]; then
        pins=("asyncpg==$asyncpg_low" "mcp==$mcp_low")
    else
        pins=("asyncpg==$asyncpg_high" "mcp==$mcp_high")
    fi
    echo "== ci-versions: $end allowed: ${pins[*]} =="
    "$py" -m pip install --quiet "${pins[@]}"
    "$py" -m pip check >/dev/null || { echo "ci-versions: pip check failed for ${pins[*]}" >&2; "$py" -m pip check >&2 || true; }
    started=$SECONDS
    if ! timeout --kill-after=10 "$BUDGET" "$py" -m pytest -q -p no:cacheprovider -m "not slow" "${TESTS[@]}"; then
        echo "ci-versions: FAILED on ${pins[*]} (or past ${BUDGET} s)" >&2
        status=1
    fi
    echo "== ci-versions: $end took $((SECONDS - started)) s =="
done
exit $status
