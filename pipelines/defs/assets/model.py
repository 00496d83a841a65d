"""Model assets: the base Qwen2.5-VL every training and evaluation stage starts from."""

import dagster as dg

from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.placement import gpu_pool, gpu_tags
from pipelines.defs.resources import MarcResource


# videor1_source: the tiny profile's base model is caption-trained on the synthetic corpus (model.align).
@dg.asset(
    group_name="model",
    deps=declared_deps("base_model"),
    code_version=code_version("base_model"),
    pool=gpu_pool("base_model"),
    op_tags=gpu_tags("base_model"),
    kinds={"pytorch", "safetensors"},
)
def base_model(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The initial policy: the tiny Qwen2.5-VL built from config (and caption-trained on the synthetic
    corpus, ``model.align``), or Qwen2.5-VL-3B from the HF cache."""
    return materialize_stage("base_model", context, marc)
