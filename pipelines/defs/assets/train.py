"""Training assets: teacher rewards, the SFT baseline, and C-GRPO checkpoints per τ.

They carry the `gpu` concurrency pool and Kubernetes resource requests, so a deployment with
dagster-k8s runs them on GPU nodes one at a time per GPU slot; locally they run on the CPU.
"""

import dagster as dg

from pipelines.defs.assets.data import train_subset, videor1_source
from pipelines.defs.assets.model import base_model
from pipelines.defs.assets.vmr import vmr_selection
from pipelines.defs.metadata import materialize_stage
from pipelines.defs.partitions import tau_partitions
from pipelines.defs.resources import MarcResource

GPU_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
        },
        "pod_spec_config": {"node_selector": {"accelerator": "nvidia-gpu"}},
    }
}


@dg.asset(
    group_name="train",
    deps=[base_model, videor1_source],
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "safetensors"},
)
def sft_checkpoint(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The SFT baseline (paper Table 2): TRL's SFT on the CoT `process` plus the solution."""
    return materialize_stage("sft_checkpoint", context, marc)


@dg.asset(
    group_name="train",
    deps=[base_model, sft_checkpoint, vmr_selection, train_subset],
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "parquet"},
)
def teacher_rewards(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """The frozen initial model on the uncompressed 64-frame VMR input: G rewards and a_full per sample.

    The initial model is `train.init`: the base model (paper) or the SFT warm-up (tiny profile), hence
    the dependency on `sft_checkpoint` (which the paper profile trains anyway, as its SFT baseline).
    """
    return materialize_stage("teacher_rewards", context, marc)


@dg.asset(
    group_name="train",
    deps=[teacher_rewards, vmr_selection],
    partitions_def=tau_partitions,
    pool="gpu",
    op_tags=GPU_TAGS,
    kinds={"pytorch", "safetensors"},
)
def cgrpo_checkpoint(context: dg.AssetExecutionContext, marc: MarcResource) -> dg.MaterializeResult:
    """C-GRPO: the compressed student on the VMR input, rewarded for keeping the teacher's accuracy (per τ)."""
    return materialize_stage("cgrpo_checkpoint", context, marc)
