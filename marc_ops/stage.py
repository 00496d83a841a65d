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
    """One asset's implementation. ``partition`` names the keyword a partitioned stage takes
    (``tau`` for ``cgrpo_checkpoint``) and ``parse`` turns a partition key into its value."""

    run: StageFn
    partition: str | None = None
    parse: Callable[[str], Any] = str

    def __call__(self, paths: Any, params: Any, partition_key: str | None = None) -> StageResult:
        if self.partition is None:
            if partition_key is not None:
                raise ValueError(f"stage {self.run.__name__} is not partitioned; drop the partition {partition_key!r}")
            return self.run(paths, params)
        if partition_key is None:
            raise ValueError(f"stage {self.run.__name__} is partitioned by {self.partition}: give a partition key")
        return self.run(paths, params, **{self.partition: self.parse(partition_key)})


@functools.cache
def stage_registry() -> dict[str, Stage]:
    """Every stage by asset name: lookup by name is what ``marc stage NAME`` (DVC) needs."""
    from marc_ops.data import stages as data_stages
    from marc_ops.eval import efficiency
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
        "cgrpo_checkpoint": Stage(cgrpo.cgrpo_checkpoint_stage, partition="tau", parse=float),
        "efficiency_profile": Stage(efficiency.efficiency_profile_stage),
    }
