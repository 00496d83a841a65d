"""dvc.yaml is rendered from the stage declarations: the committed file is what they render, and what they
render is what DVC runs (one stage per asset partition, persisted caches, metrics out of the cache)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from tests_support import DVC, REPO_ROOT, small_tiny_params, write_params

from marc_ops.config import ProjectPaths
from marc_ops.registry import STAGES
from marc_ops.registry.dvcfile import dvc_name, missing_params, render_dvc_yaml


def test_committed_dvc_yaml_is_the_rendered_one():
    paths = ProjectPaths(REPO_ROOT)
    assert (REPO_ROOT / "dvc.yaml").read_text() == render_dvc_yaml(paths.params(), REPO_ROOT), (
        "dvc.yaml differs from the stage declarations in marc_ops/registry: run `marc dvc-yaml`"
    )


def _stages(params: dict, project: Path) -> dict:
    write_params(project, params)
    return yaml.safe_load(render_dvc_yaml(ProjectPaths(project).params(), project))["stages"]


def test_one_stage_per_benchmark_and_method_with_its_own_checkpoint(tmp_path: Path):
    params = small_tiny_params()
    params["eval"]["methods"] = ["baseline-16f", "marc@0.6", "score@0.25"]
    params["eval"]["benchmarks"] = ["synthetic"]
    stages = _stages(params, tmp_path)
    items = stages["benchmark_scores"]["foreach"]
    assert set(items) == {"synthetic-baseline-16f", "synthetic-marc-0.6", "synthetic-score-0.25"}
    deps = {key: {v for k, v in item.items() if k.startswith("dep")} for key, item in items.items()}
    # Retraining one τ re-runs only the methods that answer with it.
    assert deps["synthetic-marc-0.6"] == {"assets/cgrpo_checkpoint/tau_0.6", "assets/vmr_selection"}
    assert deps["synthetic-baseline-16f"] == {"assets/sft_checkpoint"}  # train.init: sft
    assert deps["synthetic-score-0.25"] == {"assets/sft_checkpoint", "assets/score_policy"}
    body = stages["benchmark_scores"]["do"]
    assert body["cmd"].endswith("--partition '${item.partition}'")
    assert {"assets/benchmark_scores/${item.benchmark}/${item.method}.jsonl": {"persist": True}} in body[
        "outs"
    ]
    assert body["metrics"] == ["assets/benchmark_scores/${item.benchmark}/${item.method}.summary.json"]
    # The compression layer and the reward are code every training stage runs.
    for name in ("sft_checkpoint", "teacher_rewards", "score_policy"):
        assert {"marc_ops/compression", "marc_ops/rewards"} <= set(stages[name]["deps"])
    assert "assets/sft_checkpoint" in stages["cgrpo_checkpoint"]["do"]["deps"]
    assert "assets/train_subset" in stages["cgrpo_checkpoint"]["do"]["deps"]
    assert {"assets/retriever_checkpoint", "assets/clip_embeddings/lancedb"} <= set(
        stages["vmr_selection"]["deps"]
    )
    assert {"assets/cgrpo_checkpoint/tau_0.6", "assets/score_policy"} <= set(stages["report"]["deps"])
    assert stages["shot_segments"]["outs"] == [{"assets/shot_segments": {"persist": True}}]


def test_paper_profile_tracks_the_release_files_by_hash(tmp_path: Path, monkeypatch):
    """On the paper profile the annotation, CoT and benchmark files (outside the project) are dependencies."""
    root = tmp_path / "videor1"
    monkeypatch.setenv("MARC_VIDEOR1_ROOT", str(root))
    monkeypatch.setenv("MARC_EVAL_DIR", str(root / "eval"))
    params = yaml.safe_load((REPO_ROOT / "configs" / "paper.yaml").read_text())
    project = tmp_path / "project"
    project.mkdir()
    stages = _stages(params, project)
    assert str(root / "Video-R1-260k.json") in stages["videor1_manifest"]["deps"]
    assert str(root / "Video-R1-COT-165k.json") in stages["videor1_manifest"]["deps"]
    item = next(iter(stages["benchmark_scores"]["foreach"].values()))
    assert any(str(value).startswith(str(root / "eval" / "eval_")) for value in item.values())


def test_dvc_reads_the_rendered_file(tmp_path: Path):
    """DVC itself lists every declared stage partition from the rendered file."""
    project = tmp_path / "p"
    project.mkdir()
    params = small_tiny_params()
    params["eval"]["methods"] = ["baseline-16f", "marc@0.6"]
    write_params(project, params)
    for name in ("marc_ops", "pipelines"):
        shutil.copytree(REPO_ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "dvc.yaml").write_text(render_dvc_yaml(ProjectPaths(project).params(), project))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([DVC, "init", "-q"], cwd=project, check=True)
    listed = subprocess.run([DVC, "stage", "list"], cwd=project, capture_output=True, text=True, check=True)
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    expected = {dvc_name(n, None) for n, s in STAGES.items() if s.partitions is None}
    expected |= {dvc_name("cgrpo_checkpoint", f"{tau:g}") for tau in params["train"]["taus"]}
    expected |= {dvc_name("benchmark_scores", f"synthetic|{m}") for m in params["eval"]["methods"]}
    assert names == expected


def test_every_shipped_profile_sets_every_param_a_stage_reads():
    for profile in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        if profile.name == "dagster.yaml":
            continue
        assert missing_params(yaml.safe_load(profile.read_text())) == {}, profile
    sparse = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    del sparse["train"]["launch"]["teacher"], sparse["model"]
    assert missing_params(sparse) == {"train.launch.teacher": "teacher_rewards", "model": "base_model"}
