"""A whole lineage reproduced by `dvc repro` in one clone, pushed to the remote and pulled into a second clone
of the same commit: the second clone's `dvc status` is clean, `dvc repro` runs nothing and its report is
byte-identical."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tests_support import DVC, GIT, clone_project, fast_lineage_params, run_checked

pytestmark = pytest.mark.slow
REPORT = ["assets/report/report.md", "assets/report/report.html", "assets/report/accuracy_vs_tokens.png"]


def test_push_then_pull_into_another_clone(tmp_path: Path):
    first = clone_project(tmp_path / "first", fast_lineage_params())
    run_checked([sys.executable, "-m", "marc_ops.cli", "dvc-yaml"], first)  # the stages of these params
    run_checked([*GIT, "commit", "-qam", "stages"], first)

    run_checked([DVC, "repro"], first, timeout=1500)
    run_checked([*GIT, "add", "dvc.lock"], first)
    run_checked([*GIT, "commit", "-qm", "run"], first)
    remote = tmp_path / "remote"
    run_checked([DVC, "remote", "add", "--local", "--force", "local", str(remote)], first)
    run_checked([DVC, "push"], first)

    second = tmp_path / "second"
    run_checked(["git", "clone", "-q", str(first), str(second)], tmp_path)
    run_checked([DVC, "remote", "add", "--local", "--force", "local", str(remote)], second)
    run_checked([DVC, "pull"], second)
    assert "Data and pipelines are up to date" in run_checked([DVC, "status"], second).stdout
    assert "Running stage" not in run_checked([DVC, "repro"], second).stdout
    for rel in REPORT:
        assert (second / rel).read_bytes() == (first / rel).read_bytes(), rel
