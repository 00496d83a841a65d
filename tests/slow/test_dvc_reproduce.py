"""`dvc repro` in a fresh clone in another folder writes the same bytes as the run its `dvc.lock` records: every
output's hash matches, except the outputs declared as varying (measured seconds, LanceDB's file names) and the
metrics, which `unreproducible_outputs` lists with the reason.

- the fast lineage: one clone runs it and commits its lock, a second clone elsewhere reproduces it (~10 min);
- the embedded default: the `dvc.lock` committed in the repository, reproduced by a fresh clone (20 to 40 min).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from tests_support import DVC, GIT, REPO_ROOT, clone_project, fast_lineage_params, run_checked

from marc_ops.config import load_params
from marc_ops.registry.dvcfile import unreproducible_outputs

# Past the suite's 900 s per-test timeout (pyproject) on a shared machine: their own limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def output_hashes(lock_file: Path) -> dict[str, str]:
    """Every output path recorded in ``lock_file`` and its hash (a folder's ``.dir`` hash)."""
    lock = yaml.safe_load(lock_file.read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def assert_reproduced(recorded: Path, reproduced: Path) -> None:
    """The reproducible outputs of ``recorded`` (a dvc.lock) have the same hashes in ``reproduced``."""
    varying = unreproducible_outputs(load_params(reproduced.parent / "params.yaml"))
    before, after = output_hashes(recorded), output_hashes(reproduced)
    assert before.keys() == after.keys()
    compared = sorted(path for path in before if path not in varying)
    differ = [path for path in compared if before[path] != after[path]]
    assert not differ, f"{len(differ)} of {len(compared)} reproducible outputs differ: {differ}"
    assert len(compared) > len(varying)  # most of the lineage is compared, not excluded


def test_a_run_in_another_folder_writes_the_same_bytes(tmp_path: Path):
    first = clone_project(tmp_path / "one" / "first", fast_lineage_params())
    run_checked([sys.executable, "-m", "marc_ops.cli", "dvc-yaml"], first)  # the stages of these params
    run_checked([*GIT, "commit", "-qam", "stages"], first)
    run_checked([DVC, "repro"], first, timeout=1500)
    run_checked([*GIT, "add", "dvc.lock"], first)
    run_checked([*GIT, "commit", "-qm", "run"], first)

    second = tmp_path / "two" / "levels" / "second"
    second.parent.mkdir(parents=True)
    run_checked(["git", "clone", "-q", str(first), str(second)], tmp_path)
    run_checked([DVC, "repro"], second, timeout=1500)
    assert_reproduced(first / "dvc.lock", second / "dvc.lock")


def test_the_committed_lock_of_the_embedded_default_reproduces(tmp_path: Path):
    committed = REPO_ROOT / "dvc.lock"
    assert committed.is_file(), "dvc.lock of the embedded default is committed with the repository"
    clone = clone_project(tmp_path / "fresh", yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    run_checked([DVC, "repro"], clone, timeout=3000)
    assert_reproduced(committed, clone / "dvc.lock")
