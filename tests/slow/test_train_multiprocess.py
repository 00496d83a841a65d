"""The C-GRPO entry point under ``accelerate launch --num_processes 2`` on the CPU (the multi-process code path)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from marc_ops.config.train import LaunchConfig, TeacherConfig
from marc_ops.data import load_videor1
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.model import build_tiny_checkpoint
from marc_ops.train.launch import run_command
from marc_ops.train.teacher import (
    RECORDS_FILE,
    RUN_FILE,
    SHARD_GLOB,
    TeacherRun,
    compute_teacher_rewards,
    launch_teacher,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_cgrpo_runs_two_steps_in_two_cpu_processes(tmp_path: Path) -> None:
    model = build_tiny_checkpoint(tmp_path / "tiny")
    corpus = tmp_path / "corpus"
    generate_corpus(
        SyntheticConfig(n_train_videos=4, n_eval_videos=0, n_train_images=2, n_eval_images=0), corpus
    )
    rows = load_videor1(corpus / "Video-R1-260k.json", corpus).rows
    rows.write_parquet(tmp_path / "rows.parquet")
    teacher = compute_teacher_rewards(
        rows,
        model,
        TeacherConfig(num_generations=2, max_completion_length=8),
        tmp_path / "teacher",
        progress=False,
    )
    out = tmp_path / "cgrpo"
    run = {
        "model_path": str(model),
        "train_rows": str(tmp_path / "rows.parquet"),
        "teacher_rewards": str(teacher.table_path),
        "output_dir": str(out),
        "video": {"max_frames": 8},
        "cgrpo": {
            "num_generations": 4,
            "per_device_train_batch_size": 4,  # one whole group per process and step
            "max_completion_length": 16,
            "max_steps": 2,
            "save_steps": 1,
            "bf16": False,
            "gradient_checkpointing": False,
            "learning_rate": 1e-5,
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "info"}
    command = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file",
        "configs/accelerate/cpu_2proc.yaml",
        "--num_processes",
        "2",
        "--main_process_port",
        str(free_port()),
        "-m",
        "marc_ops.train.cgrpo",
        "--config",
        str(tmp_path / "run.yaml"),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    # two processes of 4 completions each, so one step consumes 8 rows (two groups)
    assert "Total train batch size (w. parallel, distributed & accumulation) = 8" in log, log[-6000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert [e["step"] for e in state["log_history"] if "reward" in e] == [1, 2]
    assert (out / "model" / "model.safetensors").is_file() and (out / "checkpoint-2").is_dir()


@pytest.mark.slow
def test_teacher_shards_samples_across_two_cpu_processes(tmp_path: Path) -> None:
    """``accelerate launch`` of the teacher with two processes: each scores half the samples into its own shard,
    process 0 merges them, and the merged records are the single-process records, sample by sample."""
    model = build_tiny_checkpoint(tmp_path / "tiny")
    corpus = tmp_path / "corpus"
    generate_corpus(
        SyntheticConfig(n_train_videos=4, n_eval_videos=0, n_train_images=2, n_eval_images=0), corpus
    )
    rows = load_videor1(corpus / "Video-R1-260k.json", corpus).rows
    rows.write_parquet(tmp_path / "rows.parquet")
    teacher = TeacherConfig(num_generations=2, max_completion_length=8, batch_size=2)
    single = compute_teacher_rewards(rows, model, teacher, tmp_path / "single", progress=False)
    out = tmp_path / "sharded"
    out.mkdir()
    run = TeacherRun(
        model_path=str(model),
        train_rows=tmp_path / "rows.parquet",
        output_dir=out,
        project_dir=REPO_ROOT,
        teacher=teacher.model_copy(update={"batch_size": 3}),  # not a setting: the same completions
    )
    run.write(out / RUN_FILE)
    launch = LaunchConfig(processes=2, accelerate_config=Path("configs/accelerate/cpu_2proc.yaml"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    launch_teacher(out / RUN_FILE, REPO_ROOT, launch, run_command)

    def by_id(path: Path) -> dict[str, dict]:
        return {r["problem_id"]: r for r in map(json.loads, path.read_text().splitlines())}

    assert not list(out.glob(SHARD_GLOB))
    merged = by_id(out / RECORDS_FILE)
    assert merged == by_id(single.records_path)
    assert len(merged) == single.n_video_samples
