"""Materialize the data assets on a shrunk tiny profile, in process and through the CLIs; `dvc repro`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from tests_support import clone_project

from marc_ops.config import ProjectPaths
from marc_ops.data.stages import DataRootMissingError, videor1_source_stage
from pipelines.defs.assets import data as data_assets
from pipelines.defs.resources import MarcResource

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL_TRAIN_SIZE = 8
DATA_ASSETS = [data_assets.videor1_source, data_assets.videor1_manifest, data_assets.train_subset]


def _materialize(project: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(DATA_ASSETS, resources={"marc": MarcResource(project_dir=str(project))})


def test_materialize_data_assets(small_project: Path):
    result = _materialize(small_project)
    assert result.success
    manifest = pl.read_parquet(small_project / "assets/videor1_manifest/manifest.parquet")
    quarantine = pl.read_parquet(small_project / "assets/videor1_manifest/quarantine.parquet")
    subset = pl.read_parquet(small_project / "assets/train_subset/train_subset.parquet")
    assert manifest.height > SMALL_TRAIN_SIZE and quarantine.height == 0
    assert subset.height == SMALL_TRAIN_SIZE
    assert set(subset["problem_id"]) <= set(manifest["problem_id"])
    assert manifest["category"].n_unique() >= 2

    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    meta = events["videor1_manifest"].materialization.metadata
    assert meta["rows"].value == manifest.height
    assert meta["quarantined"].value == 0
    assert "| category |" in meta["categories"].value
    assert events["train_subset"].materialization.metadata["rows"].value == SMALL_TRAIN_SIZE
    source = json.loads((small_project / "assets/videor1_source/source.json").read_text())
    assert [f["name"] for f in source["annotation_files"]] == ["Video-R1-260k.json"]

    # A second materialization reuses the corpus and reproduces the subset exactly.
    again = _materialize(small_project)
    regenerated = {e.asset_key.to_user_string(): e for e in again.get_asset_materialization_events()}
    assert regenerated["videor1_source"].materialization.metadata["generated_now"].value is False
    assert pl.read_parquet(small_project / "assets/train_subset/train_subset.parquet").equals(subset)


def test_broken_rows_are_quarantined_in_the_asset(small_project: Path):
    assert _materialize(small_project).success
    corpus = small_project / "assets/videor1_source/corpus"
    rows = json.loads((corpus / "Video-R1-260k.json").read_text())
    rows[0]["path"] = "./SynthMissing/gone.mp4"
    rows[1]["solution"] = "no tags"
    (corpus / "Video-R1-260k.json").write_text(json.dumps(rows))
    assert _materialize(small_project).success
    quarantine = pl.read_parquet(small_project / "assets/videor1_manifest/quarantine.parquet")
    assert quarantine["reason_code"].to_list() == ["missing_media", "solution_without_answer"]
    manifest = pl.read_parquet(small_project / "assets/videor1_manifest/manifest.parquet")
    assert manifest.height == len(rows) - 2


def test_paper_profile_without_data_root_names_the_missing_path(tmp_path: Path, monkeypatch):
    missing = tmp_path / "no-such-videor1"
    monkeypatch.setenv("MARC_VIDEOR1_ROOT", str(missing))
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "configs/paper.yaml").read_text())
    paths = ProjectPaths(tmp_path)
    with pytest.raises(DataRootMissingError, match="Video-R1-260k.json") as info:
        videor1_source_stage(paths, paths.params())
    assert str(missing) in str(info.value)
    missing.mkdir()
    with pytest.raises(DataRootMissingError, match=f"{missing} lacks Video-R1-260k.json"):
        videor1_source_stage(paths, paths.params())


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MARC_PROJECT_DIR=str(project),
        DAGSTER_HOME=str(project / ".dagster_home"),
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
    )
    (project / ".dagster_home").mkdir(exist_ok=True)
    (project / ".dagster_home/dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return env


def test_dagster_cli_materializes_with_a_selection(small_project: Path):
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "pipelines.definitions", "--select", "*train_subset"],
        cwd=REPO_ROOT,
        env=_env(small_project),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (
        pl.read_parquet(small_project / "assets/train_subset/train_subset.parquet").height == SMALL_TRAIN_SIZE
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webserver_serves_the_asset_graph(small_project: Path):
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m",
            "pipelines.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO_ROOT,
        env=_env(small_project),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql",
                    data=query,
                    headers={"Content-Type": "application/json"},
                )
                payload = json.loads(urllib.request.urlopen(request, timeout=5).read())
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(1)
        nodes = {n["assetKey"]["path"][0]: n["groupName"] for n in payload["data"]["assetNodes"]}
        assert nodes["train_subset"] == "data" and "videor1_manifest" in nodes
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


# The first repro trains the tiny model's caption warm-up (minutes): on a shared 2-core machine it needs
# more than the suite's 900 s per-test limit.
@pytest.mark.timeout(1500)
def test_dvc_repro_twice_changes_nothing_the_second_time(tmp_path: Path):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["synthetic"].update(n_train_videos=4, n_eval_videos=2, n_train_images=2, n_eval_images=2)
    params["data"]["train_size"] = 6
    params["vmr"]["retriever_training"]["steps"] = 20
    project = clone_project(tmp_path / "clone", params)
    env = _env(project)
    dvc = str(Path(sys.executable).parent / "dvc")

    listed = subprocess.run(
        [dvc, "stage", "list"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0, listed.stderr
    assert "cgrpo_checkpoint@0.6" in listed.stdout and "efficiency_profile" in listed.stdout
    # Reproduce the data and VMR lineage (training and evaluation have their own tests).
    first = subprocess.run(
        [dvc, "repro", "vmr_selection", "base_model"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("train_subset", "shot_segments", "clip_embeddings", "vmr_selection", "base_model"):
        assert f"Running stage '{stage}'" in first.stdout
    assert pl.read_parquet(project / "assets/train_subset/train_subset.parquet").height == 6

    second = subprocess.run(
        [dvc, "repro", "vmr_selection", "base_model"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Running stage" not in second.stdout
    status = subprocess.run(
        [dvc, "status", "vmr_selection", "base_model"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Data and pipelines are up to date" in status.stdout
