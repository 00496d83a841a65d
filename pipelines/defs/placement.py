"""Where each asset's step runs: the executor a deployment selects, and the GPU an asset's step gets.

The profile's ``gpu`` section (:class:`marc_ops.config.gpu.GpuConfig`) is the one place that says
which assets compute on a GPU. Each of them joins the ``gpu`` concurrency pool (the instance's pool
limit caps how many run at once, across runs) and carries a ``dagster-k8s/config`` op tag:
``k8s_job_executor`` gives its step's pod ``nvidia.com/gpu`` and the GPU nodes' selector and
tolerations. ``MARC_EXECUTOR=k8s`` in the code location's environment selects that executor for every
job (the named ones, the UI's materializations, the retraining sensor's backfills); unset, runs use
Dagster's default (multiprocess) executor. docs/deployment.md shows the whole path.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from marc_ops.config import ConfigError
from marc_ops.config.gpu import GpuConfig
from marc_ops.registry import STAGES
from pipelines.defs.resources import active_params

GPU_POOL = "gpu"
GPU_RESOURCE = "nvidia.com/gpu"  # what the NVIDIA device plugin advertises on a GPU node
K8S_CONFIG_TAG = "dagster-k8s/config"  # the op tag k8s_job_executor reads (dagster_k8s.job)
EXECUTORS = ("default", "k8s")


def checked_gpu_config(gpu: GpuConfig) -> GpuConfig:
    """``gpu`` after checking that it names assets of the code location only."""
    unknown = sorted(set(gpu.assets) - set(STAGES))
    if unknown:
        raise ConfigError(
            f"gpu.assets names {', '.join(unknown)}: not an asset of the code location; "
            f"the assets are {', '.join(STAGES)}"
        )
    return gpu


_GPU = checked_gpu_config(active_params().gpu)


def k8s_step_config(gpu: GpuConfig, name: str) -> dict[str, Any]:
    """The ``dagster-k8s/config`` of asset ``name``'s step: its GPUs (request = limit, as Kubernetes
    requires of an extended resource), the GPU nodes' selector and tolerations; ``{}`` for a CPU asset."""
    if name not in gpu.assets:
        return {}
    count = str(gpu.assets[name])
    pod_spec: dict[str, Any] = {}
    if gpu.node_selector:
        pod_spec["node_selector"] = dict(gpu.node_selector)
    if gpu.tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in gpu.tolerations]
    return {
        "container_config": {
            "resources": {"requests": {GPU_RESOURCE: count}, "limits": {GPU_RESOURCE: count}}
        },
        **({"pod_spec_config": pod_spec} if pod_spec else {}),
    }


def gpu_pool(name: str) -> str | None:
    """``"gpu"`` for an asset the profile runs on a GPU, else None (no pool, no limit)."""
    return GPU_POOL if name in _GPU.assets else None


def gpu_tags(name: str) -> dict[str, Any]:
    """The op tags of asset ``name``: its ``dagster-k8s/config`` on a GPU, none on the CPU."""
    config = k8s_step_config(_GPU, name)
    return {K8S_CONFIG_TAG: config} if config else {}


def build_executor() -> dg.ExecutorDefinition | None:
    """The executor ``MARC_EXECUTOR`` selects: ``k8s`` (dagster-k8s's ``k8s_job_executor``, one Kubernetes
    Job per step; ``MARC_K8S_IMAGE`` and ``MARC_K8S_NAMESPACE`` override the image and namespace the
    deployment gives it) or, unset or ``default``, None: Dagster's default executor."""
    choice = os.environ.get("MARC_EXECUTOR", "default")
    if choice not in EXECUTORS:
        raise ConfigError(f"MARC_EXECUTOR={choice!r}: expected one of {', '.join(EXECUTORS)} (or unset)")
    if choice == "default":
        return None
    try:
        # Imported only when selected: dagster-k8s is the optional `k8s` extra.
        from dagster_k8s import k8s_job_executor
    except ModuleNotFoundError as err:
        raise ConfigError(
            "MARC_EXECUTOR=k8s needs dagster-k8s: install the k8s extra (pip install -e '.[k8s]')"
        ) from err
    overrides = {
        field: os.environ[var]
        for field, var in (("job_image", "MARC_K8S_IMAGE"), ("job_namespace", "MARC_K8S_NAMESPACE"))
        if os.environ.get(var)
    }
    return k8s_job_executor.configured(overrides) if overrides else k8s_job_executor
