"""Checks of what the stages wrote: each asset's files read back and judged, by asset name.

A check is a function ``(paths, params, partition key) -> CheckOutcome`` that reads one asset's files (one
partition of a partitioned asset) and says whether they hold what the stages downstream assume, with the
figures behind the verdict. :data:`ASSET_CHECKS` declares, once, which checks each asset has, what each
guards and whether a failure must stop the assets downstream. The Dagster code location turns each into an
asset check that runs with its asset (``pipelines/defs/checks.py``); ``marc check`` runs them on the files
on disk (after ``dvc repro``, say).
"""

from __future__ import annotations

from dataclasses import dataclass

from marc_ops.checks import data, evaluation, training, vmr
from marc_ops.checks.outcome import CheckFn, CheckOutcome

__all__ = ["ASSET_CHECKS", "AssetCheck", "CheckFn", "CheckOutcome"]


@dataclass(frozen=True)
class AssetCheck:
    """One check of one asset.

    Attributes:
        name: the check's name (Dagster's, and what ``marc check`` prints).
        run: reads the asset's files (of one partition) and judges them.
        description: what it guards, for the UI.
        blocking: a failure stops the assets downstream of this one in the same run: set where an asset
            downstream would be wrong.
        warn: a failure is a warning (Dagster's severity WARN), not an error; ``marc check`` exits 0 on it.
    """

    name: str
    run: CheckFn
    description: str
    blocking: bool = True
    warn: bool = False


def _checkpoint_checks(asset: str) -> tuple[AssetCheck, ...]:
    return (
        AssetCheck(
            "weights_are_safetensors",
            training.checkpoint_check(asset, training.weights_are_safetensors),
            "The weights are safetensors only: no file of the asset holds weights in a pickle-based format "
            "(.bin, .pt, .pth, .pkl, .ckpt; the Trainer's resume state beside them is listed, not counted).",
        ),
        AssetCheck(
            "weights_load",
            training.checkpoint_check(asset, training.weights_load),
            "Every tensor of the weights the stages downstream load reads back and is finite; their config parses.",
        ),
        AssetCheck(
            "training_loss_finite",
            training.checkpoint_check(asset, training.training_loss_finite),
            "The training log holds a loss, and every logged loss is finite.",
        ),
    )


ASSET_CHECKS: dict[str, tuple[AssetCheck, ...]] = {
    "videor1_manifest": (
        AssetCheck(
            "schema",
            data.manifest_schema,
            "manifest.parquet and quarantine.parquet hold every column of their schema, with its type.",
        ),
        AssetCheck(
            "quarantine_share",
            data.quarantine_share,
            f"At most {data.MAX_QUARANTINE_SHARE:.0%} of the annotation rows are quarantined (more suggests an "
            "incomplete data root); a warning, the run goes on.",
            blocking=False,
            warn=True,
        ),
    ),
    "train_subset": (
        AssetCheck(
            "category_proportions",
            data.train_subset_proportions,
            "The subset holds data.train_size rows and each category within one row of its manifest share.",
        ),
    ),
    "shot_segments": (
        AssetCheck(
            "spans_cover_frames",
            vmr.shot_spans_cover_frames,
            "Each video's shot spans cover its frames 0..n-1 in order, without a gap or an overlap.",
        ),
    ),
    "retriever_checkpoint": _checkpoint_checks("retriever_checkpoint"),
    "clip_embeddings": (
        AssetCheck(
            "one_row_per_clip",
            vmr.one_row_per_clip,
            "The LanceDB table holds exactly one row per shot (quarantined videos aside), with the shot's span.",
        ),
        AssetCheck(
            "unit_norm_embeddings",
            vmr.unit_norm_embeddings,
            f"Every clip embedding is finite and of unit norm (within {vmr.UNIT_NORM_TOLERANCE:g}).",
        ),
    ),
    "vmr_selection": (
        AssetCheck(
            "frame_budget",
            vmr.selection_frame_budget,
            "Each video sample's selection holds at most video.max_frames frames, one clip id per frame, and "
            "an even number of frames per clip.",
        ),
    ),
    "teacher_rewards": (
        AssetCheck(
            "one_row_per_sample",
            training.teacher_rows,
            "One row per video sample of train_subset, none repeated or foreign; every a_full in [0, 1].",
        ),
    ),
    "sft_checkpoint": _checkpoint_checks("sft_checkpoint"),
    "cgrpo_checkpoint": _checkpoint_checks("cgrpo_checkpoint"),
    "score_policy_stage1": _checkpoint_checks("score_policy_stage1"),
    "score_policy": _checkpoint_checks("score_policy"),
    "benchmark_scores": (
        AssetCheck(
            "one_record_per_item",
            evaluation.one_record_per_item,
            "Exactly one record for each item answered (the benchmark's first eval.limit rows).",
        ),
        AssetCheck(
            "visual_tokens_within_group_budget",
            evaluation.visual_tokens_within_group_budget,
            "A method merged to N temporal groups (MARC, the *-1f rows: one) showed the LLM at most N groups' "
            "worth of visual tokens per video (N × video.max_pixels / 28²).",
        ),
    ),
}
