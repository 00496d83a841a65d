"""The library's architecture holds: its layers (docs/design.md, "Layers"), no import cycle, no Dagster.

The contracts live in pyproject.toml ([tool.importlinter]); `make lint` runs the same check.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in (
        "marc_ops is layered",
        "no import cycle among marc_ops modules",
        "never imports the orchestrator",
    ):
        assert contract in result.stdout
    assert "BROKEN" not in result.stdout


def _function_local_imports(path: Path) -> list[str]:
    """``marc_ops`` imports inside a function body of ``path``, as ``file:line``."""
    found = []
    for func in ast.walk(ast.parse(path.read_text())):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(name == "marc_ops" or name.startswith("marc_ops.") for name in names):
                found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    return found


def test_no_function_local_import_of_the_library():
    """Imports sit at the top of a module, so the layer contracts see every dependency."""
    offenders = [
        hit
        for path in sorted((REPO_ROOT / "marc_ops").rglob("*.py"))
        for hit in _function_local_imports(path)
    ]
    assert offenders == []


def test_the_check_sees_a_function_local_import(tmp_path: Path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from marc_ops.config import Params\n    return Params\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    assert _function_local_imports(bad) == ["bad.py:2"]
