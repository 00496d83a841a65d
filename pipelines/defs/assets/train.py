"""Training assets: teacher rewards, the SFT baseline, and C-GRPO checkpoints per τ.

Like every asset, each takes its `gpu` pool and Kubernetes GPU request from the profile's `gpu` section
(`pipelines/defs/placement.py`): on the paper profile they run on GPU nodes, on the tiny one on the CPU.
The two trainers run as the profile's `train.launch` says: in the asset's process, or as `accelerate
launch` with N processes through Dagster Pipes (pipelines/defs/launch.py); the profile then gives their
pods N GPUs (the `gpu` section's count of a launched trainer equals its processes).
"""

import dagster as dg

from pipelines.defs.launch import PipesLauncher
from pipelines.defs.metadata import code_version, declared_deps, materialize_stage
from pipelines.defs.partitions import tau_partitions
from pipelines.defs.placement import gpu_pool, gpu_tags
from pipelines.defs.resources import MarcResource


@dg.asset(
    group_name="train",
    deps=declared_deps("sft_checkpoint"),
    code_version=code_version("sft_checkpoint"),
    pool=gpu_pool("sft_checkpoint"),
    op_tags=gpu_tags("sft_checkpoint"),
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
    pool=gpu_pool("teacher_rewards"),
    op_tags=gpu_tags("teacher_rewards"),
    kinds={"pytorch", "parquet"},
)
def teacher_rewards(
    context: dg.AssetExecutionContext,
    marc: MarcResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    """The frozen initial model on the uncompressed 64-frame VMR input: G rewards and a_full per sample.

    The initial model is `train.init`: the base model (paper) or the SFT warm-up (tiny profile), hence
    the dependency on `sft_checkpoint` (which the paper profile trains anyway, as its SFT baseline).
    With `train.launch.teacher` naming several processes, each scores its share of the samples.
    """
    return materialize_stage(
        "teacher_rewards", context, marc, launcher=PipesLauncher(context, pipes_subprocess_client)
    )


@dg.asset(
    group_name="train",
    deps=declared_deps("cgrpo_checkpoint"),
    code_version=code_version("cgrpo_checkpoint"),
    pool=gpu_pool("cgrpo_checkpoint"),
    op_tags=gpu_tags("cgrpo_checkpoint"),
    partitions_def=tau_partitions,
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
