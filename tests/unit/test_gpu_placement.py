"""A GPU asset reaches a GPU node: on the paper profile, the pod dagster-k8s builds for each GPU asset's step
requests the profile's GPUs on the profile's GPU nodes; CPU steps get none; every job runs on
k8s_job_executor when the deployment selects it; the instance config limits the `gpu` pool.

The paper profile's code location is loaded in a subprocess (its assets take their tags when the module
is imported); the pod specs are rendered with dagster-k8s's own functions, as ``K8sStepHandler.launch_step``
renders them, with no cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_k8s_job_name,
    get_user_defined_k8s_config,
)
from kubernetes.client import V1Job

from marc_ops.config import ConfigError, load_params, profile_path
from marc_ops.config.gpu import GpuConfig
from pipelines.defs import placement
from pipelines.defs.resources import REPO_ROOT

# The assets whose stage computes on `cuda` in the paper profile (model.device, vmr.shots.device,
# vmr.embedder.device), and those that never touch a GPU. A new asset must be put in one of the two.
PAPER_GPU_ASSETS = {
    "shot_segments",
    "retriever_checkpoint",
    "clip_embeddings",
    "vmr_selection",
    "base_model",
    "sft_checkpoint",
    "teacher_rewards",
    "cgrpo_checkpoint",
    "score_ce_base",
    "score_policy_stage1",
    "score_policy",
    "efficiency_profile",
    "benchmark_scores",
}
CPU_ASSETS = {"videor1_source", "videor1_manifest", "train_subset", "score_pseudo_videos", "report"}

# What a Helm user deployment with `includeConfigInLaunchedRuns` hands every run and step pod
# (docs/deployment.md): the project volume, its environment, the run launcher's CPU and memory.
LOCATION = K8sContainerContext(
    env=[{"name": "MARC_PROJECT_DIR", "value": "/project"}, {"name": "MARC_EXECUTOR", "value": "k8s"}],
    volumes=[{"name": "marc-project", "persistentVolumeClaim": {"claimName": "marc-project"}}],
    volume_mounts=[{"name": "marc-project", "mountPath": "/project"}],
    resources={"requests": {"cpu": "4", "memory": "32Gi"}},
    namespace="marc",
)

_DUMP_LOCATION = """
import json
from pipelines.definitions import defs

implicit = defs.resolve_implicit_global_asset_job_def()
jobs = [defs.resolve_job_def(job.name) for job in defs.jobs] + [implicit]
print(json.dumps({
    "assets": {a.key.to_user_string(): {"pool": a.op.pool, "tags": dict(a.op.tags)} for a in defs.assets},
    "executors": {job.name: job.executor_def.name for job in jobs},
    "executor_config": implicit.executor_def.config_schema.resolve_config({}).value["config"],
}))
"""


@pytest.fixture(scope="module")
def paper_location() -> dict:
    """The paper profile's code location as a deployment with MARC_EXECUTOR=k8s loads it."""
    env = {
        **os.environ,
        "MARC_PROJECT_DIR": str(REPO_ROOT),
        "MARC_PARAMS": "configs/paper.yaml",
        "MARC_EXECUTOR": "k8s",
        "MARC_K8S_NAMESPACE": "marc",
    }
    env.pop("MARC_K8S_IMAGE", None)
    done = subprocess.run(
        [sys.executable, "-c", _DUMP_LOCATION], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def paper_gpu() -> GpuConfig:
    return load_params(profile_path("paper", REPO_ROOT)).gpu


def step_job(step_key: str, op_tags: dict[str, str]) -> V1Job:
    """The Kubernetes Job k8s_job_executor creates for a step with these op tags: the deployment's container
    context merged with the step's ``dagster-k8s/config``, then ``construct_dagster_k8s_job``."""
    context = LOCATION.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags)))
    job_name = f"dagster-step-{get_k8s_job_name('0f1e2d3c-run', step_key)}"
    return construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image="registry.example.com/marc:test",
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map="dagster-instance",
            postgres_password_secret="dagster-postgresql-secret",
        ),
        args=["dagster", "api", "execute_step"],
        job_name=job_name,
        pod_name=job_name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/op": step_key},
    )


def test_every_asset_is_classified(paper_location):
    assert PAPER_GPU_ASSETS.isdisjoint(CPU_ASSETS)
    assert set(paper_location["assets"]) == PAPER_GPU_ASSETS | CPU_ASSETS


def test_the_paper_profiles_gpu_assets_have_the_pool_and_the_tags(paper_location, paper_gpu):
    """Exactly the assets the profile names are in the `gpu` pool and carry k8s config; they are the
    assets that compute on CUDA in that profile."""
    assets = paper_location["assets"]
    assert set(paper_gpu.assets) == PAPER_GPU_ASSETS
    assert {name for name, op in assets.items() if op["pool"] == placement.GPU_POOL} == PAPER_GPU_ASSETS
    assert {name for name, op in assets.items() if placement.K8S_CONFIG_TAG in op["tags"]} == PAPER_GPU_ASSETS
    assert {op["pool"] for name, op in assets.items() if name in CPU_ASSETS} == {None}


def test_each_gpu_step_pod_requests_its_gpus_on_a_gpu_node(paper_location, paper_gpu):
    for name in sorted(PAPER_GPU_ASSETS):
        pod = step_job(name, paper_location["assets"][name]["tags"]).spec.template.spec
        (container,) = pod.containers
        gpus = str(paper_gpu.assets[name])
        assert container.resources.limits == {placement.GPU_RESOURCE: gpus}, name
        # The deployment's CPU and memory requests stay beside the GPU (dagster-k8s deep-merges them).
        assert container.resources.requests == {"cpu": "4", "memory": "32Gi", placement.GPU_RESOURCE: gpus}, (
            name
        )
        assert pod.node_selector == paper_gpu.node_selector == {"nvidia.com/gpu.present": "true"}, name
        assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [
            ("nvidia.com/gpu", "Exists", "NoSchedule")
        ], name
        # It writes its outputs to the shared project volume, as every step does.
        assert [(m.name, m.mount_path) for m in container.volume_mounts] == [("marc-project", "/project")]
        assert pod.volumes[0].persistent_volume_claim.claim_name == "marc-project"


def test_cpu_step_pods_request_no_gpu(paper_location):
    for name in sorted(CPU_ASSETS):
        pod = step_job(name, paper_location["assets"][name]["tags"]).spec.template.spec
        (container,) = pod.containers
        assert container.resources.requests == {"cpu": "4", "memory": "32Gi"}, name
        assert container.resources.limits is None, name
        assert pod.node_selector is None and pod.tolerations is None, name


def test_a_selected_k8s_executor_runs_every_job(paper_location):
    """The named jobs and the implicit asset job (the UI's materializations, the retraining backfills) run
    each step as a Kubernetes Job, in the namespace MARC_K8S_NAMESPACE names."""
    assert set(paper_location["executors"]) >= {"cgrpo_job", "benchmark_job", "__ASSET_JOB"}
    assert set(paper_location["executors"].values()) == {"k8s"}
    assert paper_location["executor_config"]["job_namespace"] == "marc"
    assert "job_image" not in paper_location["executor_config"]  # the user deployment's image


def test_the_default_location_runs_on_the_default_executor_with_no_gpu():
    """Unset MARC_EXECUTOR and the tiny profile (what `make demo` and the tests load): Dagster's default
    executor, no pool, no Kubernetes tags."""
    from pipelines.definitions import defs

    assert "MARC_EXECUTOR" not in os.environ
    assert defs.resolve_job_def("cgrpo_job").executor_def.name == "multi_or_in_process_executor"
    assert {(a.op.pool, tuple(a.op.tags)) for a in defs.assets} == {(None, ())}


def test_an_unknown_executor_or_gpu_asset_says_what_to_write(monkeypatch):
    monkeypatch.setenv("MARC_EXECUTOR", "kubernetes")
    with pytest.raises(ConfigError, match=r"MARC_EXECUTOR='kubernetes': expected one of default, k8s"):
        placement.build_executor()
    with pytest.raises(
        ConfigError,
        match=r"gpu.assets names base_modle: not an asset of the code location; the assets are .*base_model",
    ):
        placement.checked_gpu_config(GpuConfig(assets={"base_model": 1, "base_modle": 1}))


def test_the_instance_config_limits_the_gpu_pool(tmp_path: Path):
    """configs/dagster.yaml, loaded by Dagster: one `gpu` step at a time across runs. Every executor claims a
    pool slot through InstanceConcurrencyContext before it starts a step."""
    shutil.copyfile(REPO_ROOT / "configs" / "dagster.yaml", tmp_path / "dagster.yaml")
    first, second = (dg.DagsterRun(job_name="cgrpo_job", run_id=f"run-{i}") for i in range(2))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        with InstanceConcurrencyContext(instance, first) as one:
            assert one.claim(placement.GPU_POOL, "cgrpo_checkpoint")
            with InstanceConcurrencyContext(instance, second) as two:
                assert not two.claim(placement.GPU_POOL, "cgrpo_checkpoint")  # waits for the slot
            assert instance.event_log_storage.get_concurrency_info(placement.GPU_POOL).slot_count == 1
            one.free_step("cgrpo_checkpoint")
        with InstanceConcurrencyContext(instance, second) as two:
            assert two.claim(placement.GPU_POOL, "cgrpo_checkpoint")
