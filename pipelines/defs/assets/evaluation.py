"""Evaluation assets: the efficiency profile (visual tokens, memory, latency per method)."""

import dagster as dg

from pipelines.defs.assets.data import videor1_source
from pipelines.defs.assets.model import base_model
from pipelines.defs.assets.train import GPU_TAGS
from pipelines.defs.metadata import materialize_stage
from pipelines.defs.resources import MarcResource


@dg.asset(group_name="evaluation", deps=[base_model, videor1_source], pool="gpu", op_tags=GPU_TAGS, kinds={"pytorch", "json"})
def efficiency_profile(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """64 frames vs 16 frames vs MARC at the one-frame budget: tokens, vision/prefill/generate time, memory."""
    return materialize_stage("efficiency_profile", context, marc)
