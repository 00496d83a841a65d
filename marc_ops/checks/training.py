"""Checks of the training assets: the teacher's rewards, and every checkpoint's weights and training log.

A checkpoint asset passes when its weights are safetensors only, they load (every tensor reads back,
finite) and its training log shows a finite loss at every logged step. The Trainer's own resume state
beside the weights (``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, ``training_args.bin``) is
listed, not counted as weights: transformers writes it in that format, and only a resumed run reads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import torch
from safetensors import SafetensorError, safe_open

from marc_ops.checks.outcome import CheckFn, CheckOutcome, one_per_id, plural
from marc_ops.config import Params, ProjectPaths
from marc_ops.io import PICKLE_SUFFIXES
from marc_ops.registry import tau_partition
from marc_ops.train.dataset import STATE_FILE
from marc_ops.train.teacher import TABLE_FILE
from marc_ops.vmr.retriever_training import TRAINING_FILE

# What transformers' Trainer writes beside a checkpoint's weights to resume it.
TRAINER_STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth")


def teacher_rows(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """``teacher_rewards`` holds exactly one row per video sample of ``train_subset`` (images get no
    teacher), and every scored row an a_full in [0, 1]."""
    subset = pl.read_parquet(paths.asset("train_subset") / "train_subset.parquet")
    expected = set(subset.filter(pl.col("data_type") == "video")["problem_id"])
    table = pl.read_parquet(paths.asset("teacher_rewards") / TABLE_FILE)
    counts = dict(table.group_by("problem_id").len("rows").iter_rows())
    bad_a_full = table.filter(
        (pl.col("status") == "ok") & ~(pl.col("a_full").is_between(0.0, 1.0) & pl.col("a_full").is_finite())
    )
    problems = one_per_id(
        sorted(expected), counts, expected, unit="row", foreign="not a video sample of train_subset"
    ) + [
        {"problem_id": r["problem_id"], "problem": f"a_full {r['a_full']}"}
        for r in bad_a_full.iter_rows(named=True)
    ]
    facts = {
        "video_samples": len(expected),
        "rows": table.height,
        "failed": table.filter(pl.col("status") == "failed").height,
        "samples_with_problems": len({p["problem_id"] for p in problems}),
    }
    if not problems:
        return CheckOutcome(True, f"one row for each of the {plural(len(expected), 'video sample')}", facts)
    return CheckOutcome(
        False,
        f"{plural(facts['samples_with_problems'], 'sample')} without exactly one valid row (first: "
        f"{problems[0]['problem_id']}: {problems[0]['problem']})",
        facts,
        pl.DataFrame(problems),
    )


# --- checkpoints ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """Where one checkpoint asset (partition) keeps what these checks read.

    Attributes:
        folder: everything the asset (partition) wrote, the weights among it (searched for pickled weights).
        weights: what the stages downstream load: a model folder or one ``.safetensors`` file; None when
            the weights come from outside the project (the paper profile's retriever from the HF cache).
        config: the file the loader reads beside the weights (``config.json`` of a transformers model).
        losses: the training loss at each logged step; None when nothing was trained here.
    """

    folder: Path
    weights: Path | None
    config: Path | None
    losses: list[float] | None


# (project paths, active params, partition key) -> where that checkpoint's files are
Locator = Callable[[ProjectPaths, Params, str | None], Checkpoint]


def _trainer_losses(run_dir: Path) -> list[float]:
    """The loss of every logged step in a Trainer's final ``trainer_state.json``."""
    history = json.loads((run_dir / STATE_FILE).read_text())["log_history"]
    return [float(entry["loss"]) for entry in history if "loss" in entry]


def sft_checkpoint(paths: ProjectPaths, params: Params, partition: str | None) -> Checkpoint:
    folder = paths.asset("sft_checkpoint")
    return Checkpoint(folder, paths.sft_model(), paths.sft_model() / "config.json", _trainer_losses(folder))


def cgrpo_checkpoint(paths: ProjectPaths, params: Params, partition: str | None) -> Checkpoint:
    assert partition is not None, "cgrpo_checkpoint is partitioned by τ"
    tau = tau_partition(partition)["tau"]
    model = paths.cgrpo_model(tau)
    return Checkpoint(
        paths.cgrpo_run(tau), model, model / "config.json", _trainer_losses(paths.cgrpo_run(tau))
    )


def _score_policy(stage: Literal["stage1", "stage2"]) -> Locator:
    def locate(paths: ProjectPaths, params: Params, partition: str | None) -> Checkpoint:
        policy = paths.score_policy(stage)
        log = policy.parent / "training_log.parquet"  # absent when the stage trained no step
        losses = pl.read_parquet(log)["loss"].to_list() if log.is_file() else None
        return Checkpoint(policy.parent, policy, policy.with_suffix(".json"), losses)

    return locate


def retriever_checkpoint(paths: ProjectPaths, params: Params, partition: str | None) -> Checkpoint:
    folder = paths.asset("retriever_checkpoint")
    if params.vmr.retriever_training is None:  # weights from the HF cache, checked by the stage itself
        return Checkpoint(folder, None, None, None)
    weights = Path(params.vmr.resolved_embedder(paths.project_dir).pretrained)
    losses = json.loads((weights / TRAINING_FILE).read_text())["loss_curve"]
    return Checkpoint(folder, weights, weights / "open_clip_config.json", losses)


CHECKPOINTS: dict[str, Locator] = {
    "retriever_checkpoint": retriever_checkpoint,
    "sft_checkpoint": sft_checkpoint,
    "cgrpo_checkpoint": cgrpo_checkpoint,
    "score_policy_stage1": _score_policy("stage1"),
    "score_policy": _score_policy("stage2"),
}


def _is_trainer_state(path: Path) -> bool:
    return any(path.match(pattern) for pattern in TRAINER_STATE_FILES)


def weights_are_safetensors(checkpoint: Checkpoint) -> CheckOutcome:
    """No file of the asset holds weights in a pickle-based format, and its weights are safetensors."""
    files = sorted(p for p in checkpoint.folder.rglob("*") if p.is_file())
    pickled = [p for p in files if p.suffix in PICKLE_SUFFIXES and not _is_trainer_state(p)]
    state = [p for p in files if _is_trainer_state(p)]
    tensors = [p for p in files if p.suffix == ".safetensors"]
    facts = {
        "safetensors_files": len(tensors),
        "safetensors_mb": round(sum(p.stat().st_size for p in tensors) / 2**20, 2),
        "pickled_weight_files": len(pickled),
        "trainer_state_files": len(state),
    }
    if checkpoint.weights is None:
        return CheckOutcome(
            not pickled, "weights come from outside the project; no pickled weights in the asset", facts
        )
    evidence = pl.DataFrame(
        [{"file": str(p.relative_to(checkpoint.folder)), "kind": "pickled weights"} for p in pickled]
        + [{"file": str(p.relative_to(checkpoint.folder)), "kind": "trainer resume state"} for p in state],
        schema={"file": pl.String, "kind": pl.String},
    )
    if pickled:
        return CheckOutcome(
            False,
            f"{plural(len(pickled), 'pickled weights file')}: {', '.join(p.name for p in pickled)}",
            facts,
            evidence,
        )
    if not tensors:
        return CheckOutcome(False, f"no .safetensors file in {checkpoint.folder}", facts, evidence)
    return CheckOutcome(
        True,
        f"weights in {plural(len(tensors), 'safetensors file')}, none pickled",
        facts,
        evidence if len(evidence) else None,
    )


def weights_load(checkpoint: Checkpoint) -> CheckOutcome:
    """Every tensor of the weights reads back and is finite; a model folder's ``config.json`` parses."""
    if checkpoint.weights is None:
        return CheckOutcome(True, "weights come from outside the project; the stage checked them", {})
    weights = checkpoint.weights
    files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else [weights]
    problems: list[dict[str, str]] = []
    n_tensors = n_values = 0
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not a mapping)
                    tensor = handle.get_tensor(name)
                    n_tensors, n_values = n_tensors + 1, n_values + tensor.numel()
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                        problems.append({"file": file.name, "problem": f"{name} holds NaN or inf"})
        except (SafetensorError, OSError) as error:
            problems.append({"file": file.name, "problem": f"cannot be read: {error}"})
    if not files:
        problems.append({"file": str(weights), "problem": "no .safetensors file"})
    if checkpoint.config is not None:
        try:
            json.loads(checkpoint.config.read_text())
        except (OSError, json.JSONDecodeError) as error:
            problems.append({"file": checkpoint.config.name, "problem": f"cannot be read: {error}"})
    facts = {"files": len(files), "tensors": n_tensors, "parameters": n_values}
    if not problems:
        return CheckOutcome(
            True, f"{plural(n_tensors, 'tensor')} ({n_values:,} values) load, all finite", facts
        )
    return CheckOutcome(
        False,
        f"{plural(len(problems), 'problem')} loading {weights.name}: {problems[0]['file']}: {problems[0]['problem']}",
        facts,
        pl.DataFrame(problems),
    )


def training_loss_finite(checkpoint: Checkpoint) -> CheckOutcome:
    """The training log has a loss at one step at least, and every logged loss is finite."""
    if checkpoint.losses is None:
        return CheckOutcome(True, "nothing trained in this project; no training log to check", {})
    losses = checkpoint.losses
    bad = [{"logged_step": i + 1, "loss": loss} for i, loss in enumerate(losses) if not math.isfinite(loss)]
    facts = {
        "steps_logged": len(losses),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "non_finite": len(bad),
    }
    if not losses:
        return CheckOutcome(False, "the training log holds no loss", facts)
    if bad:
        return CheckOutcome(
            False,
            f"{plural(len(bad), 'logged loss')} of {len(losses)} not finite (first at logged step {bad[0]['logged_step']})",
            facts,
            pl.DataFrame(bad, schema={"logged_step": pl.Int64, "loss": pl.Float64}),
        )
    return CheckOutcome(
        True, f"{plural(len(losses), 'logged loss')}, all finite (last {losses[-1]:.4g})", facts
    )


def checkpoint_check(asset: str, check: Callable[[Checkpoint], CheckOutcome]) -> CheckFn:
    """``check`` of checkpoint asset ``asset``, as a check function of the asset's partition."""
    locate = CHECKPOINTS[asset]

    def run(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
        return check(locate(paths, params, partition))

    return run
