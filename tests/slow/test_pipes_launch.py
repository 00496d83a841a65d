"""Multi-process training is a materialization: with ``train.launch`` naming two processes and
``configs/accelerate/cpu_2proc.yaml``, Dagster materializes ``sft_checkpoint`` and ``cgrpo_checkpoint[0.6]``
in a fresh clone (the fast lineage) by running ``accelerate launch`` through Dagster Pipes (gloo on the
CPU). The trainer's log lines, world size, final metrics and checkpoint hash come back into each
materialization, beside the keys the stage gives when it trains in its own process. ``teacher_rewards`` is
launched the same way: each process scores half of the samples, and the merged table is the one its own
process finds complete afterwards. 82 s from a fresh clone on 2 idle cores (up to 7 min when they are busy).
"""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from tests_support import clone_project, fast_lineage_params, write_params

from marc_ops.io import content_hash
from marc_ops.model import load_qwen2_5_vl
from pipelines.defs import assets as asset_modules
from pipelines.defs.resources import MarcResource

pytestmark = pytest.mark.slow

ASSETS = dg.load_assets_from_package_module(asset_modules)
# Every asset C-GRPO reads, unpartitioned (train.init: sft, so the SFT warm-up is among them).
UPSTREAM = [
    "videor1_source",
    "videor1_manifest",
    "train_subset",
    "shot_segments",
    "retriever_checkpoint",
    "clip_embeddings",
    "vmr_selection",
    "base_model",
    "sft_checkpoint",
    "teacher_rewards",
]
TWO_CPU_PROCESSES = {"processes": 2, "accelerate_config": "configs/accelerate/cpu_2proc.yaml"}
IN_PROCESS = {"processes": 1, "accelerate_config": None}


def _materialize(
    project: Path, instance: dg.DagsterInstance, selection: list[str], partition: str | None = None
) -> dg.ExecuteInProcessResult:
    resources = {
        "marc": MarcResource(project_dir=str(project)),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }
    result = dg.materialize(
        ASSETS, selection=selection, partition_key=partition, resources=resources, instance=instance
    )
    assert result.success
    return result


def _assert_launched(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, asset: str, max_steps: int, weights: Path
) -> dict[str, dg.MetadataValue]:
    """The materialization carries what the two-process trainer reported, and the run's log its lines."""
    metadata = result.asset_materializations_for_node(asset)[0].metadata
    # Reported by the trainer's main process: both ranks joined its process group.
    assert metadata["world_size"].value == 2
    assert metadata["processes"].value == 2
    assert metadata["global_step"].value == max_steps
    assert metadata["logged_steps"].value == max_steps  # logging_steps: 1
    final_metrics = metadata["final_metrics"].value
    assert math.isfinite(final_metrics["train_loss"]) and final_metrics["train_runtime"] > 0
    assert metadata["checkpoint_sha256"].value == {"model.safetensors": content_hash(weights)}
    assert metadata["dvc_stage"].value.startswith(asset)

    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any(f"to {max_steps} in 2 process(es) on cpu" in m for m in messages), messages
    for step in range(1, max_steps + 1):
        assert any(m.startswith(f"step {step}/{max_steps}: ") for m in messages), messages
    assert any("final model:" in m for m in messages), messages
    return metadata


def _assert_trained_checkpoint(weights: Path, initial: Path) -> None:
    """Safetensors with every tensor of the initial model, some changed, that the model loader loads."""
    before, after = load_file(initial), load_file(weights)
    assert after.keys() == before.keys()
    assert any(not torch.equal(after[name], before[name]) for name in after)
    model = load_qwen2_5_vl(weights.parent, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for t in after.values())


def test_training_assets_train_in_two_processes_through_pipes(tmp_path: Path):
    params = fast_lineage_params()
    params["train"]["launch"] = {
        "sft": TWO_CPU_PROCESSES,
        "cgrpo": TWO_CPU_PROCESSES,
        "teacher": TWO_CPU_PROCESSES,
    }
    project = clone_project(tmp_path / "clone", params)
    instance = dg.DagsterInstance.ephemeral()

    lineage = _materialize(project, instance, UPSTREAM)
    cgrpo = _materialize(project, instance, ["cgrpo_checkpoint"], partition="0.6")

    sft_weights = project / "assets/sft_checkpoint/model/model.safetensors"
    sft = _assert_launched(
        lineage, instance, "sft_checkpoint", params["train"]["sft"]["max_steps"], sft_weights
    )
    _assert_trained_checkpoint(sft_weights, project / "assets/base_model/checkpoint/model.safetensors")
    cgrpo_weights = project / "assets/cgrpo_checkpoint/tau_0.6/model/model.safetensors"
    student = _assert_launched(
        cgrpo, instance, "cgrpo_checkpoint", params["train"]["cgrpo"]["max_steps"], cgrpo_weights
    )
    _assert_trained_checkpoint(cgrpo_weights, sft_weights)

    # The teacher scored half of the samples in each process; process 0 merged them and reported its line.
    teacher = lineage.asset_materializations_for_node("teacher_rewards")[0].metadata
    assert teacher["processes"].value == 2
    messages = [entry.user_message for entry in instance.all_logs(lineage.run_id)]
    assert any(m.startswith("teacher_rewards: process 0 of 2 scored ") for m in messages), messages
    launched_table = pl.read_parquet(project / "assets/teacher_rewards/teacher_rewards.parquet")
    assert launched_table.height == teacher["video_samples"].value > 1
    assert launched_table["status"].to_list() == ["ok"] * launched_table.height
    assert not list((project / "assets/teacher_rewards").glob("teacher_rewards.rank*.jsonl"))

    # The same assets trained in their own process (nothing is left to train) show the same keys.
    params["train"]["launch"] = {"sft": IN_PROCESS, "cgrpo": IN_PROCESS, "teacher": IN_PROCESS}
    write_params(project, params)
    for launched, selection, partition in (
        (sft, "sft_checkpoint", None),
        (student, "cgrpo_checkpoint", "0.6"),
    ):
        again = _materialize(project, instance, [selection], partition)
        in_process = again.asset_materializations_for_node(selection)[0].metadata
        assert set(in_process) == set(launched)
        assert in_process["processes"].value == 1 and in_process["world_size"].value is None
        assert in_process["checkpoint_sha256"].value == launched["checkpoint_sha256"].value
    # In its own process the teacher finds every sample scored: it generates nothing and writes the same table.
    again = _materialize(project, instance, ["teacher_rewards"])
    metadata = again.asset_materializations_for_node("teacher_rewards")[0].metadata
    assert metadata["generated_now"].value == 0 and metadata["resumed"].value == launched_table.height
    assert pl.read_parquet(project / "assets/teacher_rewards/teacher_rewards.parquet").equals(launched_table)
