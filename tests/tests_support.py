"""Test helpers: a small copy of the tiny profile in a temporary project directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

# Nothing in the tests may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# A corpus small enough for seconds, large enough for every category and problem type.
# A small corpus for the integration tests; the long held-out videos (SynthLong) are left out (their shots
# are tested in tests/unit/test_shots.py, the whole lineage on them by `make demo`).
SMALL_SYNTHETIC = {
    "n_train_videos": 6,
    "n_eval_videos": 3,
    "n_train_images": 4,
    "n_eval_images": 2,
    "n_eval_long_videos": 0,
}
SMALL_TRAIN_SIZE = 8


def small_tiny_params() -> dict:
    params = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    params["synthetic"] = {**params.get("synthetic", {}), **SMALL_SYNTHETIC}
    params["data"]["train_size"] = SMALL_TRAIN_SIZE
    # The caption pretraining of the tiny model takes minutes; the tests that need it switch it on.
    params["model"]["align"] = None
    return params


def write_params(project_dir: Path, params: dict) -> Path:
    path = project_dir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


# One method of each input kind: the initial policy, the VMR clip, a C-GRPO student, SCORE's policy.
FAST_LINEAGE_METHODS = ["baseline-16f", "vmr-64f", "marc@0.6", "score@0.25"]


def fast_lineage_params() -> dict:
    """The small tiny profile cut to the fewest steps that still run every stage: the whole lineage in a couple
    of minutes (its models learn nothing)."""
    params = small_tiny_params()
    params["train"]["taus"] = [0.6]
    params["train"]["sft"].update(max_steps=2, save_steps=1)
    params["train"]["cgrpo"].update(max_steps=1, save_steps=1)
    params["vmr"]["retriever_training"]["steps"] = 10
    params["eval"].update(limit=3, methods=FAST_LINEAGE_METHODS, benchmarks=["synthetic"])
    params["score"]["data"].update(stage1_size=4, stage2_max_videos=2)
    params["score"]["train"].update(stage1_steps=1, stage2_steps=1, save_steps=1)
    return params


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
DVC = str(Path(sys.executable).parent / "dvc")


def run_checked(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``cmd`` in ``cwd`` as DVC's stages run (this interpreter's ``python`` first on PATH), which must succeed;
    the failure names the command and the ends of its output."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # DVC's `python`
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def clone_project(target: Path, params: dict) -> Path:
    """The repository's files (tracked, and untracked but not ignored, as in the working tree) copied into a
    new git repository at ``target`` with ``params`` as its params.yaml, committed: a fresh clone of the work
    tree, DVC configuration included."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        if (REPO_ROOT / rel).is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_bytes((REPO_ROOT / rel).read_bytes())
    write_params(target, params)
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=target, check=True)
    subprocess.run([*GIT, "commit", "-qm", "copy"], cwd=target, check=True)
    return target


STATE = "trainer_state.json"


def killed_training_runs(last_step: int) -> dict[str, list[str]]:
    """What a SIGKILL of a training run that saves every step leaves missing from its folder, at three points: after
    checkpoint-1, while the Trainer saved checkpoint-2 (its weights written, its state not yet), and after the last
    checkpoint, before the final model."""
    later = [f"checkpoint-{step}" for step in range(3, last_step + 1)]
    return {
        "after checkpoint-1": [f"checkpoint-{step}" for step in range(2, last_step + 1)] + ["model", STATE],
        "while saving checkpoint-2": [
            *later,
            "model",
            STATE,
            *(f"checkpoint-2/{name}" for name in (STATE, "optimizer.pt", "rng_state.pth", "scheduler.pt")),
        ],
        "after its last checkpoint, before its final model": ["model", STATE],
    }


def run_files(out_dir: Path) -> dict[str, bytes]:
    """What DVC hashes of a training run's folder (less TensorBoard events, pickled arguments, model cards)."""
    return {
        path.relative_to(out_dir).as_posix(): path.read_bytes()
        for path in sorted(out_dir.rglob("*"))
        if path.is_file() and "runs" not in path.parts and path.name not in ("training_args.bin", "README.md")
    }


def assert_killed_runs_resume_to(
    uninterrupted: Path, train: Callable[[Path], object], last_step: int
) -> None:
    """Each folder a kill of the run ``uninterrupted`` would leave (:func:`killed_training_runs`), trained again by
    ``train(folder)``, ends with the bytes of ``uninterrupted`` (a run that saved every step and kept them all)."""
    expected = run_files(uninterrupted)
    for point, lost in killed_training_runs(last_step).items():
        killed = uninterrupted.parent / point.replace(" ", "_")
        shutil.copytree(uninterrupted, killed)
        for name in lost:
            (shutil.rmtree if (killed / name).is_dir() else Path.unlink)(killed / name)
        assert (killed / "checkpoint-1" / STATE).is_file()  # there is something to resume
        train(killed)
        resumed = run_files(killed)
        assert resumed.keys() == expected.keys(), point
        assert [name for name in expected if resumed[name] != expected[name]] == [], point


def declared_check(asset: str, name: str):
    """Check ``name`` of ``asset``, as ``marc_ops.checks`` declares it (its ``run`` reads the files)."""
    from marc_ops.checks import (
        ASSET_CHECKS,
    )  # here: conftest imports this module, and the checks import torch

    return next(check for check in ASSET_CHECKS[asset] if check.name == name)
