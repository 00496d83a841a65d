"""Training assets: teacher rewards, the SFT baseline, and C-GRPO checkpoints per τ.

They carry the `gpu` concurrency pool and Kubernetes resource requests, so a deployment with
dagster-k8s runs them on GPU nodes one at a time per GPU slot; locally they run on the CPU. The two
trainers run as the profile's `train.launch` says: in the asset's process, or as `accelerate launch`
with N processes through Dagster Pipes (pipelines/defs/launch.py), their pods then asking for N GPUs.
"""

import dagster as dg

from pipelines.defs.launch import PipesLauncher
from pipelines.defs.metadata import PARAMS, code_version, declared_deps, materialize_stage
from pipelines.defs.partitions import tau_partitions
from pipelines.defs.resources import MarcResource


def gpu_tags(gpus: int) -> dict[str, object]:
    """The dagster-k8s resource request of a step that uses ``gpus`` GPUs, on a GPU node."""
    return {
        "dagster-k8s/config": {
            "container_config": {
                "resources": {
                    "limits": {"nvidia.com/gpu": str(gpus)},
                    "requests": {"nvidia.com/gpu": str(gpus)},
                }
            },
            "pod_spec_config": {"node_selector": {"accelerator": "nvidia-gpu"}},
        }
    }


GPU_TAGS = gpu_tags(1)


@dg.asset(
    group_name="train",
    deps=declared_deps("sft_checkpoint"),
    code_version=code_version("sft_checkpoint"),
    pool="gpu",
    op_tags=gpu_tags(PARAMS.train.launch.sft.processes),
    kinds={"pytorch", "safetensors"},
)
def sft_checkpoint(
    context: dg.AssetExecutionContext,
    marc: MarcResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """The SFT baseline (paper Table 2): TRL's SFT on the CoT `process` plus the solution."""
    return materialize_stage(
        "sft_checkpoint", context, marc, launcher=PipesLauncher(context, pipes_subprocess_client)
    )


@dg.asset(
    group_name="train",
    deps=declared_deps("teacher_rewards"),
    code_version=code_version("teacher_rewards"),
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
    deps=declared_deps("cgrpo_checkpoint"),
    code_version=code_version("cgrpo_checkpoint"),
    partitions_def=tau_partitions,
    pool="gpu",
    op_tags=gpu_tags(PARAMS.train.launch.cgrpo.processes),
    kinds={"pytorch", "safetensors"},
)
def cgrpo_checkpoint(
    context: dg.AssetExecutionContext,
    marc: MarcResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """C-GRPO: the compressed student on the VMR input, rewarded for keeping the teacher's accuracy (per τ)."""
    return materialize_stage(
        "cgrpo_checkpoint", context, marc, launcher=PipesLauncher(context, pipes_subprocess_client)
    )
