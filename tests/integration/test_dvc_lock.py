"""A Dagster materialization is recorded in dvc.lock as `dvc repro` would record it: afterwards `dvc status`
is clean and `dvc repro` runs nothing; an edit to a stage's declared code makes DVC name that stage."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
import yaml
from tests_support import DVC, GIT, REPO_ROOT, SMALL_SYNTHETIC, SMALL_TRAIN_SIZE, clone_project

from marc_ops.registry.lock import locked_hashes, record_stage
from pipelines.defs.assets import data as data_assets
from pipelines.defs.resources import MarcResource

pytestmark = pytest.mark.integration
DATA = ["videor1_source", "videor1_manifest", "train_subset"]


def _clone(tmp_path: Path) -> Path:
    """A fresh clone of the work tree with a shrunk corpus."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["synthetic"].update(SMALL_SYNTHETIC)
    params["data"]["train_size"] = SMALL_TRAIN_SIZE
    return clone_project(tmp_path / "clone", params)


def _dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([DVC, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300)


def _record(project: str, name: str) -> str:
    recorded = record_stage(Path(project), name, None)
    assert recorded is not None
    return recorded.stage


def test_dagster_materializations_are_dvc_runs(tmp_path: Path):
    project = _clone(tmp_path)
    assets = [getattr(data_assets, name) for name in DATA]
    result = dg.materialize(assets, resources={"marc": MarcResource(project_dir=str(project))})
    assert result.success

    status = _dvc(project, "status", *DATA)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout + status.stderr
    repro = _dvc(project, "repro", "train_subset")
    assert repro.returncode == 0 and "Running stage" not in repro.stdout, repro.stdout + repro.stderr

    # The asset's data version is DVC's hash of its outputs, and the materialization names both.
    for name in DATA:
        event = result.asset_materializations_for_node(name)[0]
        hashes = locked_hashes(project, name)
        assert event.metadata["dvc_stage"].value == name
        assert event.metadata["dvc_hashes"].value == hashes and all(hashes.values())
        assert event.tags["dagster/data_version"]
    assert locked_hashes(project, "train_subset")["assets/train_subset"].endswith(".dir")

    # Push to a remote; a second clone of the same commit pulls it: clean status, the same bytes.
    remote = tmp_path / "remote"
    subprocess.run([*GIT, "add", "dvc.lock"], cwd=project, check=True)
    subprocess.run([*GIT, "commit", "-qm", "run"], cwd=project, check=True)
    assert _dvc(project, "remote", "add", "--local", "--force", "local", str(remote)).returncode == 0
    pushed = _dvc(project, "push", *DATA)
    assert pushed.returncode == 0, pushed.stderr
    second = tmp_path / "second"
    subprocess.run(["git", "clone", "-q", str(project), str(second)], check=True)
    assert _dvc(second, "remote", "add", "--local", "--force", "local", str(remote)).returncode == 0
    pulled = _dvc(second, "pull", *DATA)
    assert pulled.returncode == 0, pulled.stderr
    assert "Data and pipelines are up to date" in _dvc(second, "status", *DATA).stdout
    subset = "assets/train_subset/train_subset.parquet"
    assert (second / subset).read_bytes() == (project / subset).read_bytes()

    # Editing a module of marc_ops/data makes DVC name the stages whose declared code holds it.
    sampling = project / "marc_ops/data/sampling.py"
    sampling.write_text(sampling.read_text() + "\n# edited\n")
    changed = _dvc(project, "status", *DATA, "shot_segments", "retriever_checkpoint")
    for name in DATA:
        assert f"{name}:" in changed.stdout
    assert "modified:           marc_ops/data" in changed.stdout
    sampling.write_text(sampling.read_text().removesuffix("\n# edited\n"))
    assert "Data and pipelines are up to date" in _dvc(project, "status", *DATA).stdout

    # Two materializations that end together both land in dvc.lock (they take turns on it).
    lock = project / "dvc.lock"
    lock.unlink()
    with ProcessPoolExecutor(2) as pool:
        stages = list(pool.map(_record, [str(project)] * 2, ["videor1_manifest", "train_subset"]))
    assert stages == ["videor1_manifest", "train_subset"]
    assert set(yaml.safe_load(lock.read_text())["stages"]) == {"videor1_manifest", "train_subset"}


def test_a_project_without_dvc_is_not_recorded(small_project: Path):
    assert record_stage(small_project, "train_subset", None) is None
