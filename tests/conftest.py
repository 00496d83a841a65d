"""Shared fixtures; helpers live in tests_support.py (importable by tests, unlike a conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tests_support import small_tiny_params, write_params  # noqa: E402


@pytest.fixture()
def small_project(tmp_path: Path) -> Path:
    """An empty project directory whose params.yaml is a shrunk tiny profile."""
    write_params(tmp_path, small_tiny_params())
    return tmp_path
