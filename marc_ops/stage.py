"""What a stage returns to its driver, and the registry the DVC driver looks stages up in."""

from __future__ import annotations

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


def stage_registry() -> dict[str, StageFn]:
    """Every stage by asset name: lookup by name is what ``marc stage NAME`` (DVC) needs."""
    from marc_ops.data import stages as data_stages
    from marc_ops.model import stages as model_stages
    from marc_ops.vmr import stages as vmr_stages

    return {
        "videor1_source": data_stages.videor1_source,
        "videor1_manifest": data_stages.videor1_manifest,
        "train_subset": data_stages.train_subset,
        "shot_segments": vmr_stages.shot_segments,
        "retriever_checkpoint": vmr_stages.retriever_checkpoint,
        "clip_embeddings": vmr_stages.clip_embeddings,
        "vmr_selection": vmr_stages.vmr_selection,
        "base_model": model_stages.base_model,
    }
