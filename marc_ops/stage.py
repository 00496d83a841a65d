"""What a stage returns to its driver, and the registry the DVC driver looks stages up in."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass(frozen=True)
class StageResult:
    """Files written, scalar facts and tables worth showing (Dagster metadata, CLI summary)."""

    outputs: dict[str, Path]
    metadata: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)


StageFn = Callable[..., StageResult]


@dataclass(frozen=True)
class Stage:
    """One asset's implementation. A partitioned stage has ``partition``: it turns a partition key
    (``0.6`` for ``cgrpo_checkpoint``, ``synthetic|marc@0.6`` for ``benchmark_scores``) into the
    keyword arguments the stage function takes."""

    run: StageFn
    partition: Callable[[str], dict[str, Any]] | None = None

    def __call__(self, paths: Any, params: Any, partition_key: str | None = None) -> StageResult:
        if self.partition is None:
            if partition_key is not None:
                raise ValueError(f"stage {self.run.__name__} is not partitioned; drop the partition {partition_key!r}")
            return self.run(paths, params)
        if partition_key is None:
            raise ValueError(f"stage {self.run.__name__} is partitioned: give a partition key")
        return self.run(paths, params, **self.partition(partition_key))


def tau_partition(key: str) -> dict[str, Any]:
    return {"tau": float(key)}


def benchmark_method_partition(key: str) -> dict[str, Any]:
    """``"synthetic|marc@0.6"`` (Dagster's multi-partition key) → benchmark and method."""
    benchmark, sep, method = key.partition("|")
    if not sep:
        raise ValueError(f"partition key {key!r} must be '<benchmark>|<method>', e.g. 'synthetic|marc@0.6'")
    return {"benchmark": benchmark, "method": method}


@functools.cache
def stage_registry() -> dict[str, Stage]:
    """Every stage by asset name: lookup by name is what ``marc stage NAME`` (DVC) needs."""
    from marc_ops.data import stages as data_stages
    from marc_ops.eval import efficiency
    from marc_ops.eval import stages as eval_stages
    from marc_ops.model import stages as model_stages
    from marc_ops.train import cgrpo, sft, teacher
    from marc_ops.vmr import stages as vmr_stages

    return {
        "videor1_source": Stage(data_stages.videor1_source),
        "videor1_manifest": Stage(data_stages.videor1_manifest),
        "train_subset": Stage(data_stages.train_subset),
        "shot_segments": Stage(vmr_stages.shot_segments),
        "retriever_checkpoint": Stage(vmr_stages.retriever_checkpoint),
        "clip_embeddings": Stage(vmr_stages.clip_embeddings),
        "vmr_selection": Stage(vmr_stages.vmr_selection),
        "base_model": Stage(model_stages.base_model),
        "teacher_rewards": Stage(teacher.teacher_rewards_stage),
        "sft_checkpoint": Stage(sft.sft_checkpoint_stage),
        "cgrpo_checkpoint": Stage(cgrpo.cgrpo_checkpoint_stage, partition=tau_partition),
        "efficiency_profile": Stage(efficiency.efficiency_profile_stage),
        "benchmark_scores": Stage(eval_stages.benchmark_scores_stage, partition=benchmark_method_partition),
        "report": Stage(eval_stages.report_stage),
    }
