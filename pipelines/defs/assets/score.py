"""SCORE's lineage: its stage-1 pseudo-videos, the frozen model's CE on full inputs, the policy in two stages.

The policy trains against the base model, frozen; the training assets carry the `gpu` pool and the
Kubernetes resource tags like the other training assets.
"""

import dagster as dg

from pipelines.defs.assets.train import GPU_TAGS
from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.resources import MarcResource


@dg.asset(
    group_name="score",
    deps=declared_deps("score_pseudo_videos"),
    code_version=code_version("score_pseudo_videos"),
    kinds={"numpy", "parquet"},
)
def score_pseudo_videos(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """Stage 1's data: 2-4 captioned images, each repeated 3-6 frames, captioned in order (SCORE.md section 8)."""
    return materialize_stage("score_pseudo_videos", context, marc)


@dg.asset(
    group_name="score",
    deps=declared_deps("score_ce_base"),
    code_version=code_version("score_ce_base"),
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "parquet"},
)
def score_ce_base(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The frozen base model's caption CE on every SCORE sample's full input (computed once, resumable)."""
    return materialize_stage("score_ce_base", context, marc)


@dg.asset(
    group_name="score",
    deps=declared_deps("score_policy_stage1"),
    code_version=code_version("score_policy_stage1"),
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "safetensors"},
)
def score_policy_stage1(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The keep policy after stage 1 (pseudo-videos, τ = 1.01)."""
    return materialize_stage("score_policy_stage1", context, marc)


@dg.asset(
    group_name="score",
    deps=declared_deps("score_policy"),
    code_version=code_version("score_policy"),
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "safetensors"},
)
def score_policy(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """SCORE's keep policy: stage 1's, trained on real videos (τ = 1.02); what the `score@ρ` methods rank with."""
    return materialize_stage("score_policy", context, marc)
