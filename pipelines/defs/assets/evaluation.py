"""Evaluation assets: scores per benchmark × method, the efficiency profile, and the report."""

import dagster as dg

from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.partitions import benchmark_method_partitions
from pipelines.defs.placement import gpu_pool, gpu_tags
from pipelines.defs.resources import MarcResource


@dg.asset(
    group_name="evaluation",
    deps=declared_deps("efficiency_profile"),
    code_version=code_version("efficiency_profile"),
    pool=gpu_pool("efficiency_profile"),
    op_tags=gpu_tags("efficiency_profile"),
    kinds={"pytorch", "json"},
)
def efficiency_profile(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """64 frames vs 16 frames vs MARC at the one-frame budget: tokens, vision/prefill/generate time, memory."""
    return materialize_stage("efficiency_profile", context, marc)


@dg.asset(
    group_name="evaluation",
    deps=declared_deps("benchmark_scores"),
    code_version=code_version("benchmark_scores"),
    pool=gpu_pool("benchmark_scores"),
    op_tags=gpu_tags("benchmark_scores"),
    partitions_def=benchmark_method_partitions,
    kinds={"pytorch", "jsonl"},
)
def benchmark_scores(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """One benchmark × one method: greedy outputs, per-sample records (resumable), score and costs."""
    return materialize_stage("benchmark_scores", context, marc)


@dg.asset(
    group_name="evaluation",
    deps=declared_deps("report"),
    code_version=code_version("report"),
    pool=gpu_pool("report"),
    op_tags=gpu_tags("report"),
    kinds={"markdown", "html"},
)
def report(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The paper's Tables 1-3 from our numbers (the paper's beside them), accuracy-vs-tokens and efficiency plots."""
    return materialize_stage("report", context, marc)
