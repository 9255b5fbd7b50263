"""scripts/check_imports.py keeps the house as drawn: it passes on src and fails on a circle or an upward import."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_imports.py"


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_imports", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_imports"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "src"


LAYERS = [["fix.edge"], ["fix.db"], ["fix.errors"]]


def test_src_is_as_drawn() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "no circle" in run.stdout


def test_a_circle_fails_and_names_its_loop(checker: ModuleType, tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "fix/__init__.py": "",
            "fix/edge.py": "from fix import db\n",
            "fix/db/__init__.py": "from fix.db.pool import Pool\n",
            # A lazy import is still a circle: the reader sees it.
            "fix/db/pool.py": "class Pool:\n    def run(self):\n        from fix.db import helpers\n",
            "fix/db/helpers.py": "from .pool import Pool\n",
            "fix/errors.py": "",
        },
    )
    problems = checker.check(src, "fix", layers=LAYERS, allowed={}, empty_packages={"fix"})
    assert len(problems) == 1, problems
    assert problems[0].startswith("import circle among fix.db.helpers, fix.db.pool")
    assert "fix.db.pool -> fix.db.helpers" in problems[0] and "fix.db.helpers -> fix.db.pool" in problems[0]


def test_an_upward_import_and_an_unplaced_module_fail(checker: ModuleType, tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "fix/__init__.py": "",
            "fix/edge.py": "import fix.db\n",
            "fix/db.py": "import fix.errors\nfrom fix.edge import App\n",
            "fix/errors.py": "",
            "fix/stray.py": "",
        },
    )
    problems = checker.check(src, "fix", layers=LAYERS, allowed={}, empty_packages={"fix"})
    assert any("fix.db imports fix.edge: upward" in p for p in problems), problems
    assert any(p.startswith("fix.stray: in no layer") for p in problems), problems
    assert any(p.startswith("import circle among fix.db, fix.edge") for p in problems), problems


def test_an_import_under_type_checking_is_no_dependency(checker: ModuleType, tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "fix/__init__.py": "",
            "fix/edge.py": "import fix.db\n",
            "fix/db.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fix.edge import App\n",
            "fix/errors.py": "",
        },
    )
    assert checker.check(src, "fix", layers=LAYERS, allowed={}, empty_packages={"fix"}) == []


def test_an_allowed_edge_is_skipped_and_a_stale_one_reported(checker: ModuleType, tmp_path: Path) -> None:
    files = {
        "fix/__init__.py": "",
        "fix/edge.py": "from fix.db import x\n",
        "fix/db.py": "def f():\n    from fix.edge import y\n",
        "fix/errors.py": "",
    }
    src = _package(tmp_path, files)
    allowed = {("fix.db", "fix.edge"): "temporary"}
    assert checker.check(src, "fix", layers=LAYERS, allowed=allowed, empty_packages={"fix"}) == []
    (src / "fix/db.py").write_text("")
    problems = checker.check(src, "fix", layers=LAYERS, allowed=allowed, empty_packages={"fix"})
    assert problems == ["allowed edge no longer exists, remove it from ALLOWED: fix.db -> fix.edge"]


def test_siblings_in_one_layer_are_independent(checker: ModuleType, tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {"fix/__init__.py": "", "fix/a.py": "from fix import b\n", "fix/b.py": ""},
    )
    problems = checker.check(src, "fix", layers=[["fix.a", "fix.b"]], allowed={}, empty_packages={"fix"})
    assert problems == [
        f"{src / 'fix/a.py'}:1: fix.a imports fix.b: fix.a and fix.b are independent (one layer)"
    ]


def test_the_command_fails_on_a_circle(tmp_path: Path) -> None:
    src = _package(
        tmp_path,
        {
            "pgmcp/__init__.py": "",
            "pgmcp/errors.py": "from pgmcp import config\n",
            "pgmcp/config.py": "from pgmcp import errors\n",
        },
    )
    run = subprocess.run([sys.executable, str(SCRIPT), str(src)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "import circle among pgmcp.config, pgmcp.errors" in run.stderr


def test_the_architecture_document_names_modules_that_exist() -> None:
    """documentation/ARCHITECTURE.md follows the code: a module moved or renamed fails here until it is updated."""
    text = (ROOT / "documentation" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z0-9_./-]+(?:\.py|/))`", text))
    assert len(named) > 20, named
    missing = sorted(
        name
        for name in named
        if not any((base / name).exists() for base in (ROOT, ROOT / "src", ROOT / "src" / "pgmcp"))
    )
    assert not missing, f"ARCHITECTURE.md names files that do not exist: {missing}"
