"""Every stage by asset name: what ``marc stage NAME`` (DVC) and the Dagster assets look up.

A stage is one function ``<asset>_stage(paths, params, **partition)`` in its package's
``stages.py``; a partitioned stage also parses its partition key (``0.6`` for
``cgrpo_checkpoint``, ``synthetic|marc@0.6`` for ``benchmark_scores``) into keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from marc_ops.config import Params, ProjectPaths
from marc_ops.config.methods import METHODS
from marc_ops.config.tasks import TASKS
from marc_ops.data import stages as data
from marc_ops.eval import stages as evaluation
from marc_ops.stage import StageResult
from marc_ops.train import stages as train
from marc_ops.vmr import stages as vmr

StageFn = Callable[..., StageResult]


@dataclass(frozen=True)
class Stage:
    """One asset's implementation, and for a partitioned asset how its partition key becomes arguments."""

    run: StageFn
    partition: Callable[[str], dict[str, Any]] | None = None

    def __call__(self, paths: ProjectPaths, params: Params, partition_key: str | None = None) -> StageResult:
        if self.partition is None:
            if partition_key is not None:
                raise ValueError(
                    f"stage {self.run.__name__} is not partitioned; drop the partition {partition_key!r}"
                )
            return self.run(paths, params)
        if partition_key is None:
            raise ValueError(f"stage {self.run.__name__} is partitioned: give a partition key")
        return self.run(paths, params, **self.partition(partition_key))


def tau_keys(params: Params) -> list[str]:
    """The ``cgrpo_checkpoint`` partition keys: the profile's ``train.taus`` (``0.6`` → ``"0.6"``)."""
    return [f"{tau:g}" for tau in params.train.taus]


def benchmark_keys() -> list[str]:
    """The benchmark axis of ``benchmark_scores``: every declared benchmark (:data:`TASKS`)."""
    return list(TASKS)


def method_keys(params: Params) -> list[str]:
    """The method axis of ``benchmark_scores``: every declared method (:data:`METHODS`), then any other
    the profile evaluates (``marc@<tau>`` of a τ beyond the declared ones)."""
    return list(dict.fromkeys([*METHODS, *params.eval.methods]))


def tau_partition(key: str) -> dict[str, Any]:
    return {"tau": float(key)}


def benchmark_method_partition(key: str) -> dict[str, Any]:
    """``"synthetic|marc@0.6"`` (Dagster's multi-partition key) → benchmark and method."""
    benchmark, sep, method = key.partition("|")
    if not sep:
        raise ValueError(f"partition key {key!r} must be '<benchmark>|<method>', e.g. 'synthetic|marc@0.6'")
    return {"benchmark": benchmark, "method": method}


STAGES: dict[str, Stage] = {
    "videor1_source": Stage(data.videor1_source_stage),
    "videor1_manifest": Stage(data.videor1_manifest_stage),
    "train_subset": Stage(data.train_subset_stage),
    "shot_segments": Stage(vmr.shot_segments_stage),
    "retriever_checkpoint": Stage(vmr.retriever_checkpoint_stage),
    "clip_embeddings": Stage(vmr.clip_embeddings_stage),
    "vmr_selection": Stage(vmr.vmr_selection_stage),
    "base_model": Stage(train.base_model_stage),
    "teacher_rewards": Stage(train.teacher_rewards_stage),
    "sft_checkpoint": Stage(train.sft_checkpoint_stage),
    "cgrpo_checkpoint": Stage(train.cgrpo_checkpoint_stage, partition=tau_partition),
    "score_pseudo_videos": Stage(data.score_pseudo_videos_stage),
    "score_ce_base": Stage(train.score_ce_base_stage),
    "score_policy_stage1": Stage(train.score_policy_stage1_stage),
    "score_policy": Stage(train.score_policy_stage),
    "efficiency_profile": Stage(evaluation.efficiency_profile_stage),
    "benchmark_scores": Stage(evaluation.benchmark_scores_stage, partition=benchmark_method_partition),
    "report": Stage(evaluation.report_stage),
}
