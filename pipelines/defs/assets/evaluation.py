"""Evaluation assets: scores per benchmark × method, the efficiency profile, and the report."""

import dagster as dg

from pipelines.defs.assets.data import videor1_source
from pipelines.defs.assets.model import base_model
from pipelines.defs.assets.score import score_policy
from pipelines.defs.assets.train import GPU_TAGS, cgrpo_checkpoint, sft_checkpoint
from pipelines.defs.assets.vmr import vmr_selection
from pipelines.defs.metadata import materialize_stage
from pipelines.defs.partitions import benchmark_method_partitions
from pipelines.defs.resources import MarcResource


@dg.asset(
    group_name="evaluation",
    deps=[base_model, videor1_source, score_policy],
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "json"},
)
def efficiency_profile(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """64 frames vs 16 frames vs MARC at the one-frame budget: tokens, vision/prefill/generate time, memory."""
    return materialize_stage("efficiency_profile", context, marc)


@dg.asset(
    group_name="evaluation",
    # A method names its own τ; the run needs that partition, so depend on all of them.
    deps=[
        base_model,
        sft_checkpoint,
        vmr_selection,
        score_policy,
        dg.AssetDep(cgrpo_checkpoint, partition_mapping=dg.AllPartitionMapping()),
    ],
    partitions_def=benchmark_method_partitions,
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "jsonl"},
)
def benchmark_scores(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """One benchmark × one method: greedy outputs, per-sample records (resumable), score and costs."""
    return materialize_stage("benchmark_scores", context, marc)


@dg.asset(group_name="evaluation", deps=[benchmark_scores, efficiency_profile], kinds={"markdown", "html"})
def report(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The paper's Tables 1-3 from our numbers (the paper's beside them), accuracy-vs-tokens and efficiency plots."""
    return materialize_stage("report", context, marc)
