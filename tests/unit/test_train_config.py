"""Training configs: validation messages, the TRL arguments they make, the profiles' train sections, launch files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from pydantic import ValidationError

from marc_ops.compression import one_frame_compression
from marc_ops.config.train import (
    CGRPOTrainConfig,
    SFTTrainConfig,
    TeacherConfig,
    TrainParams,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CPU = {"bf16": False, "gradient_checkpointing": False}


def test_cgrpo_defaults_are_the_papers() -> None:
    config = CGRPOTrainConfig()
    assert (config.num_generations, config.epsilon, config.beta) == (8, 0.2, 0.04)
    assert (config.learning_rate, config.weight_decay, config.max_completion_length) == (1e-6, 0.01, 768)
    assert config.bf16 and config.gradient_checkpointing
    assert (config.tau, config.alpha, config.eta_cap) == (0.6, 1.0, 1.0)
    assert config.compression == one_frame_compression() and config.compression.target_blocks == 1


def test_sft_defaults_are_the_papers() -> None:
    config = SFTTrainConfig()
    assert (config.learning_rate, config.max_grad_norm, config.bf16, config.train_size) == (
        1e-6,
        5.0,
        True,
        10_000,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tau": 1.0}, "must be below eta_cap"),
        ({"num_generations": 8, "per_device_train_batch_size": 4}, "multiple of 8"),
        ({"num_generations": 1}, "greater than or equal to 2"),
        ({"epsilon": 0.0}, "greater than 0"),
        ({"learning_rate": 0}, "greater than 0"),
        ({"max_steps": 0}, "greater than or equal to 1"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_cgrpo_config_rejects_with_a_message_saying_what_to_change(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CGRPOTrainConfig(**fields)


def test_group_check_counts_gradient_accumulation() -> None:
    config = CGRPOTrainConfig(num_generations=4, per_device_train_batch_size=2, gradient_accumulation_steps=2)
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 4


def test_to_grpo_config_sets_the_objective_of_eq_10(tmp_path: Path) -> None:
    config = CGRPOTrainConfig(
        num_generations=4, per_device_train_batch_size=4, max_completion_length=48, max_steps=3, **CPU
    )
    args = config.to_grpo_config(tmp_path, suppress_token_ids=[7, 8])
    assert (args.num_generations, args.epsilon, args.beta, args.loss_type) == (4, 0.2, 0.04, "grpo")
    assert (args.scale_rewards, args.num_iterations, args.max_steps) == ("group", 1, 3)
    assert args.reward_weights == [1.0, 0.0, 0.0]
    assert args.generation_kwargs == {"suppress_tokens": [7, 8]}
    assert args.report_to == ["tensorboard"] and not args.remove_unused_columns
    assert args.use_cpu  # this machine has no GPU: a multi-process run must join a CPU group


def test_bf16_on_a_cpu_machine_names_the_profile_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train\.cgrpo\.bf16: false"):
        CGRPOTrainConfig(num_generations=4, per_device_train_batch_size=4).to_grpo_config(
            tmp_path, suppress_token_ids=[]
        )
    with pytest.raises(ValueError, match=r"train\.sft\.bf16: false"):
        SFTTrainConfig().to_sft_config(tmp_path)


def test_to_sft_config_skips_trls_dataset_preparation(tmp_path: Path) -> None:
    args = SFTTrainConfig(learning_rate=1e-3, **CPU).to_sft_config(tmp_path)
    assert args.dataset_kwargs == {"skip_prepare_dataset": True}
    assert (args.max_grad_norm, args.max_length, args.remove_unused_columns) == (5.0, None, False)


def test_train_params_validate_every_tau_partition() -> None:
    params = TrainParams(taus=(0.4, 0.6, 0.8))
    assert params.cgrpo_for(0.4).tau == 0.4 and params.cgrpo.tau == 0.6
    with pytest.raises(ValidationError, match="must be below eta_cap"):
        TrainParams(taus=(0.6, 1.2))


def test_teacher_config_defaults() -> None:
    config = TeacherConfig()
    assert (config.num_generations, config.max_completion_length, config.temperature) == (8, 768, 1.0)


@pytest.mark.parametrize("profile", ["tiny", "paper"])
def test_profile_train_section_validates(profile: str) -> None:
    raw = yaml.safe_load((REPO_ROOT / "configs" / f"{profile}.yaml").read_text())
    if "train" not in raw:
        pytest.skip(f"configs/{profile}.yaml has no train: section yet")
    params = TrainParams.model_validate(raw["train"])
    for tau in params.taus:
        params.cgrpo_for(tau)


@pytest.mark.parametrize(("name", "stage"), [("zero3", 3), ("zero2", 2)])
def test_deepspeed_launch_configs_point_at_their_zero_stage(name: str, stage: int) -> None:
    accelerate_config = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert accelerate_config.distributed_type == "DEEPSPEED"
    ds_file = REPO_ROOT / accelerate_config.deepspeed_config["deepspeed_config_file"]
    ds = json.loads(ds_file.read_text())
    assert ds["zero_optimization"]["stage"] == stage
    # the run's config decides precision, batch and clipping; the file must not contradict it
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ds[key] == "auto"
    assert ds["bf16"]["enabled"] == "auto"


def test_the_paper_profile_trains_cgrpo_in_bf16_with_checkpointing_under_zero3() -> None:
    raw = yaml.safe_load((REPO_ROOT / "configs" / "paper.yaml").read_text())
    cgrpo = TrainParams.model_validate(raw["train"]).cgrpo
    assert cgrpo.bf16 and cgrpo.gradient_checkpointing  # bf16 "auto" in the DeepSpeed file resolves to true
    ds = json.loads((REPO_ROOT / "configs" / "deepspeed" / "zero3.json").read_text())["zero_optimization"]
    assert ds["overlap_comm"] and ds["stage3_gather_16bit_weights_on_model_save"]
    for key in ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"):
        assert ds[key] == "auto"  # transformers fills them from the model's hidden size


def test_cpu_launch_config_runs_two_processes_on_the_cpu() -> None:
    config = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"))
    assert config.num_processes == 2 and config.use_cpu and config.mixed_precision == "no"


def test_multi_gpu_launch_config_is_plain_accelerate_on_gpus() -> None:
    config = load_config_from_file(str(REPO_ROOT / "configs" / "accelerate" / "multi_gpu.yaml"))
    assert config.distributed_type == "MULTI_GPU" and not config.use_cpu and config.mixed_precision == "no"
    assert config.deepspeed_config == {}  # the teacher generates: no DeepSpeed


def test_teacher_batch_size_is_validated_and_defaults_to_one_sample() -> None:
    assert TeacherConfig().batch_size == 1
    with pytest.raises(ValidationError, match="batch_size"):
        TeacherConfig(batch_size=0)
