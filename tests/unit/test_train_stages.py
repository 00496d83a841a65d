"""The training stages on a tiny project: teacher_rewards -> cgrpo_checkpoint[tau], and sft_checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import torch
import yaml

from marc_ops.config import DataConfig, ModelConfig, ProjectPaths
from marc_ops.data import load_videor1
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.io import write_json
from marc_ops.model import build_tiny_checkpoint
from marc_ops.train.cgrpo import CGRPORun, cgrpo_checkpoint_stage
from marc_ops.train.config import CGRPOTrainConfig, SFTTrainConfig, TeacherConfig, TrainParams
from marc_ops.train.sft import SFTRun, sft_checkpoint_stage
from marc_ops.train.teacher import teacher_rewards_stage
from marc_ops.video import VideoConfig

SMALL_CORPUS = SyntheticConfig(n_train_videos=4, n_eval_videos=0, n_train_images=2, n_eval_images=0)
CPU = {"bf16": False, "gradient_checkpointing": False, "max_steps": 1, "save_steps": 1}


def cached_dir(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """Built once per test session, shared by every test_train_* module."""
    path, done = factory.getbasetemp() / name, factory.getbasetemp() / f"{name}.done"
    if not done.exists():
        build(path)
        done.touch()
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny tensors: a second OpenMP thread only adds synchronisation (and stalls when the cores are shared).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def project(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[ProjectPaths, SimpleNamespace]:
    """A project whose train_subset and base_model assets exist, and the params the stages read."""
    model = cached_dir(tmp_path_factory, "train_tiny_qwen2_5_vl", build_tiny_checkpoint)
    corpus = cached_dir(tmp_path_factory, "train_corpus", lambda path: generate_corpus(SMALL_CORPUS, path))
    paths = ProjectPaths(tmp_path)
    subset = load_videor1(corpus / "Video-R1-260k.json", corpus).rows
    subset = pl.concat(
        [subset.filter(pl.col("data_type") == t).head(n) for t, n in (("video", 2), ("image", 1))]
    )
    paths.asset("train_subset").mkdir(parents=True)
    subset.write_parquet(paths.asset("train_subset") / "train_subset.parquet")
    write_json(
        paths.asset("base_model") / "model.json", {"source": "tiny", "model_id": "", "path": str(model)}
    )
    # Params gains `train: TrainParams` in marc_ops.config; until then the stages read this stand-in.
    params = SimpleNamespace(
        data=DataConfig(
            source="synthetic",
            data_root=str(corpus),
            eval_dir=str(corpus / "eval"),
            train_size=3,
            cot_file="Video-R1-COT-165k.json",
        ),
        video=VideoConfig(max_frames=8),
        model=ModelConfig(dtype="float32", device="cpu"),
        train=TrainParams(
            taus=(0.6,),
            teacher=TeacherConfig(num_generations=2, max_completion_length=8),
            cgrpo=CGRPOTrainConfig(
                num_generations=4, per_device_train_batch_size=4, max_completion_length=8, **CPU
            ),
            sft=SFTTrainConfig(train_size=2, learning_rate=1e-3, **CPU),
        ),
    )
    return paths, params


def test_teacher_then_cgrpo_stage(project: tuple[ProjectPaths, SimpleNamespace]) -> None:
    paths, params = project
    teacher = teacher_rewards_stage(paths, params)
    assert teacher.metadata["video_samples"] == 2 and teacher.metadata["failed"] == 0

    result = cgrpo_checkpoint_stage(paths, params, tau=0.6)

    assert result.outputs["model"] == paths.asset("cgrpo_checkpoint") / "tau_0.6" / "model"
    assert (result.outputs["model"] / "model.safetensors").is_file()
    assert result.metadata["global_step"] == 1 and result.metadata["skipped_samples"] == 0
    assert "cgrpo/eta" in result.tables["steps"].columns
    # the recorded run reloads, for `accelerate launch -m marc_ops.train.cgrpo --config run.yaml`
    run = CGRPORun.model_validate(yaml.safe_load(result.outputs["run"].read_text()))
    assert run.cgrpo == params.train.cgrpo_for(0.6) and run.video == params.video


def test_sft_stage(project: tuple[ProjectPaths, SimpleNamespace]) -> None:
    paths, params = project
    result = sft_checkpoint_stage(paths, params)
    assert (result.outputs["model"] / "model.safetensors").is_file()
    assert result.metadata["rows"] == 2 and result.metadata["global_step"] == 1
    assert result.metadata["first_loss"] > 0
    run = SFTRun.model_validate(yaml.safe_load(result.outputs["run"].read_text()))
    assert run.sft == params.train.sft
    assert json.loads((paths.asset("sft_checkpoint") / "skipped_samples.json").read_text()) == []
