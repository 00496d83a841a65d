"""SCORE's lineage: its stage-1 pseudo-videos, the frozen model's CE on full inputs, the policy in two stages.

The policy trains against the base model, frozen; the profile's `gpu` section says which of these
steps get a GPU (`pipelines/defs/placement.py`).
"""

import dagster as dg

from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.placement import gpu_pool, gpu_tags
from pipelines.defs.resources import MarcResource


@dg.asset(
    group_name="score",
    deps=declared_deps("score_pseudo_videos"),
    code_version=code_version("score_pseudo_videos"),
    pool=gpu_pool("score_pseudo_videos"),
    op_tags=gpu_tags("score_pseudo_videos"),
    kinds={"numpy", "parquet"},
)
def score_pseudo_videos(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """Stage 1's data: 2-4 captioned images, each repeated 3-6 frames, captioned in order (SCORE.md section 8)."""
    return materialize_stage("score_pseudo_videos", context, marc)


@dg.asset(
    group_name="score",
    deps=declared_deps("score_ce_base"),
    code_version=code_version("score_ce_base"),
    pool=gpu_pool("score_ce_base"),
    op_tags=gpu_tags("score_ce_base"),
    kinds={"pytorch", "parquet"},
)
def score_ce_base(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The frozen base model's caption CE on every SCORE sample's full input (computed once, resumable)."""
    return materialize_stage("score_ce_base", context, marc)


@dg.asset(
    group_name="score",
    deps=declared_deps("score_policy_stage1"),
    code_version=code_version("score_policy_stage1"),
    pool=gpu_pool("score_policy_stage1"),
    op_tags=gpu_tags("score_policy_stage1"),
    kinds={"pytorch", "safetensors"},
)
def score_policy_stage1(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The keep policy after stage 1 (pseudo-videos, τ = 1.01)."""
    return materialize_stage("score_policy_stage1", context, marc)


@dg.asset(
    group_name="score",
    deps=declared_deps("score_policy"),
    code_version=code_version("score_policy"),
    pool=gpu_pool("score_policy"),
    op_tags=gpu_tags("score_policy"),
    kinds={"pytorch", "safetensors"},
)
def score_policy(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """SCORE's keep policy: stage 1's, trained on real videos (τ = 1.02); what the `score@ρ` methods rank with."""
    return materialize_stage("score_policy", context, marc)
