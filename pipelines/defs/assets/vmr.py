"""Visual Memory Retriever assets: shots, the embedder, the LanceDB clip table, per-sample selection."""

import dagster as dg

from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.placement import gpu_pool, gpu_tags
from pipelines.defs.resources import MarcResource


@dg.asset(
    group_name="vmr",
    deps=declared_deps("shot_segments"),
    code_version=code_version("shot_segments"),
    pool=gpu_pool("shot_segments"),
    op_tags=gpu_tags("shot_segments"),
    kinds={"pytorch", "parquet"},
)
def shot_segments(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """TransNetV2 shot spans, times and boundary scores of every training and benchmark video (resumable)."""
    return materialize_stage("shot_segments", context, marc)


@dg.asset(
    group_name="vmr",
    deps=declared_deps("retriever_checkpoint"),
    code_version=code_version("retriever_checkpoint"),
    pool=gpu_pool("retriever_checkpoint"),
    op_tags=gpu_tags("retriever_checkpoint"),
    kinds={"pytorch", "safetensors"},
)
def retriever_checkpoint(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The open_clip embedder: trained on the synthetic corpus (tiny) or checked in the HF cache (paper)."""
    return materialize_stage("retriever_checkpoint", context, marc)


@dg.asset(
    group_name="vmr",
    deps=declared_deps("clip_embeddings"),
    code_version=code_version("clip_embeddings"),
    pool=gpu_pool("clip_embeddings"),
    op_tags=gpu_tags("clip_embeddings"),
    kinds={"lancedb"},
)
def clip_embeddings(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """One LanceDB row per clip (video, span, times, embedding, model id); idempotent and resumable."""
    return materialize_stage("clip_embeddings", context, marc)


@dg.asset(
    group_name="vmr",
    deps=declared_deps("vmr_selection"),
    code_version=code_version("vmr_selection"),
    pool=gpu_pool("vmr_selection"),
    op_tags=gpu_tags("vmr_selection"),
    kinds={"polars", "parquet"},
)
def vmr_selection(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The VMR-filtered training set and benchmark inputs: top-k clips and the frames to feed, per sample."""
    return materialize_stage("vmr_selection", context, marc)
