"""Data assets: the Video-R1 source files, the validated manifest, the stratified subset."""

import dagster as dg

from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.placement import gpu_pool, gpu_tags
from pipelines.defs.resources import MarcResource


@dg.asset(
    deps=declared_deps("videor1_source"),
    code_version=code_version("videor1_source"),
    pool=gpu_pool("videor1_source"),
    op_tags=gpu_tags("videor1_source"),
    group_name="data",
    kinds={"python", "json"},
)
def videor1_source(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The raw Video-R1 files: the synthetic corpus (tiny profile) or a checked real data root."""
    return materialize_stage("videor1_source", context, marc)


@dg.asset(
    group_name="data",
    deps=declared_deps("videor1_manifest"),
    code_version=code_version("videor1_manifest"),
    pool=gpu_pool("videor1_manifest"),
    op_tags=gpu_tags("videor1_manifest"),
    kinds={"polars", "parquet"},
)
def videor1_manifest(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """Every annotation row validated; unusable rows quarantined with their reason."""
    return materialize_stage("videor1_manifest", context, marc)


@dg.asset(
    group_name="data",
    deps=declared_deps("train_subset"),
    code_version=code_version("train_subset"),
    pool=gpu_pool("train_subset"),
    op_tags=gpu_tags("train_subset"),
    kinds={"polars", "parquet"},
)
def train_subset(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The category-stratified training subset (paper: 5K samples), seeded."""
    return materialize_stage("train_subset", context, marc)
