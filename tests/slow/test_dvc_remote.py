"""A whole lineage reproduced by `dvc repro` in one clone, pushed to the remote and pulled into a second clone
of the same commit: the second clone's `dvc status` is clean, `dvc repro` runs nothing and its report is
byte-identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests_support import GIT, clone_project, fast_lineage_params

pytestmark = pytest.mark.slow
DVC = str(Path(sys.executable).parent / "dvc")
REPORT = ["assets/report/report.md", "assets/report/report.html", "assets/report/accuracy_vs_tokens.png"]


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # DVC's `python`
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_push_then_pull_into_another_clone(tmp_path: Path):
    first = clone_project(tmp_path / "first", fast_lineage_params())
    _run([sys.executable, "-m", "marc_ops.cli", "dvc-yaml"], first)  # the stages of these params
    _run([*GIT, "commit", "-qam", "stages"], first)

    _run([DVC, "repro"], first, timeout=1500)
    _run([*GIT, "add", "dvc.lock"], first)
    _run([*GIT, "commit", "-qm", "run"], first)
    remote = tmp_path / "remote"
    _run([DVC, "remote", "add", "--local", "--force", "local", str(remote)], first)
    _run([DVC, "push"], first)

    second = tmp_path / "second"
    _run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    _run([DVC, "remote", "add", "--local", "--force", "local", str(remote)], second)
    _run([DVC, "pull"], second)
    assert "Data and pipelines are up to date" in _run([DVC, "status"], second).stdout
    assert "Running stage" not in _run([DVC, "repro"], second).stdout
    for rel in REPORT:
        assert (second / rel).read_bytes() == (first / rel).read_bytes(), rel
