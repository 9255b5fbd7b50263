#!/usr/bin/env python3
"""Run pgmcp's test suite: ``python run_tests.py [unit|integration|embedded|all] [pytest args...]``.

A thin wrapper over the pytest suite that ``make test`` runs (without its
lint/type-check steps and without installing anything): it runs
``.venv/bin/python -m pytest`` when the project's virtualenv exists, else the
interpreter running this script, from the repository root, and exits with
pytest's exit code.

- ``all`` (default): the whole suite (``tests/``), on the PostgreSQL that
  tests/conftest.py finds (``PGMCP_TEST_DSN``, else 127.0.0.1:5432, else embedded);
- ``unit``: ``tests/unit`` (no database);
- ``integration``: ``tests/integration``;
- ``embedded``: ``tests/integration`` on the embedded PostgreSQL (``PGMCP_TEST_EMBEDDED=1``),
  without the tests marked slow, as ``make test`` does in its second pass.

Anything after the target goes to pytest: ``python run_tests.py unit -k logs -x``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TARGETS: dict[str, list[str]] = {
    "all": [],
    "unit": ["tests/unit"],
    "integration": ["tests/integration"],
    "embedded": ["tests/integration", "-m", "not slow"],
}


def command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The pytest command line and environment for ``argv`` (this script's arguments)."""
    target = "all"
    if argv and argv[0] in TARGETS:
        target, argv = argv[0], argv[1:]
    elif argv and not argv[0].startswith("-"):
        raise SystemExit(f"run_tests.py: unknown target {argv[0]!r}; use one of {', '.join(TARGETS)}")
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    env = dict(os.environ)
    if target == "embedded":
        env["PGMCP_TEST_EMBEDDED"] = "1"
    return [python, "-m", "pytest", "-q", *TARGETS[target], *argv], env


def main() -> None:
    args, env = command(sys.argv[1:])
    os.chdir(ROOT)
    os.execve(args[0], args, env)  # pytest's exit code is this process's exit code


if __name__ == "__main__":
    main()
