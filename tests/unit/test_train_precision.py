"""The dtypes and attention the trainers load their models with: the decision, the refusal of FlashAttention-2 in
float32, and what a built C-GRPO trainer's policy and reference model get."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
import torch
import yaml
from trl import GRPOTrainer

import marc_ops.config.train as train_config
from marc_ops.config.train import CGRPOTrainConfig, SFTTrainConfig
from marc_ops.data import load_videor1
from marc_ops.model import default_attn_implementation, load_qwen2_5_vl
from marc_ops.model import loading as model_loading
from marc_ops.rewards import completion_text
from marc_ops.train.cgrpo import CGRPORun, build_cgrpo_trainer, cgrpo_dataset
from marc_ops.train.inputs import whole_video_builder
from marc_ops.train.precision import TrainingPrecision, policy_load_dtype, training_precision
from marc_ops.train.sft import SFTRun
from marc_ops.video import VideoConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = {"bf16": False, "gradient_checkpointing": False}
TINY = CGRPOTrainConfig(
    num_generations=4, per_device_train_batch_size=4, max_completion_length=4, max_steps=1, **CPU
)


def trainer_args(*, bf16: bool, deepspeed: bool, device: str = "cpu") -> Any:
    """The three fields ``training_precision`` reads from ``TrainingArguments``."""
    return SimpleNamespace(
        bf16=bf16, deepspeed_plugin=object() if deepspeed else None, device=torch.device(device)
    )


@pytest.mark.parametrize(
    ("bf16", "deepspeed", "policy"),
    [
        (True, True, torch.bfloat16),  # DeepSpeed keeps the fp32 master partition
        (True, False, torch.float32),  # autocast over fp32 weights: the optimizer steps fp32
        (False, True, torch.float32),
        (False, False, torch.float32),
    ],
)
def test_policy_load_dtype(bf16: bool, deepspeed: bool, policy: torch.dtype) -> None:
    assert policy_load_dtype(bf16=bf16, deepspeed=deepspeed) == policy


@pytest.mark.parametrize(
    ("bf16", "deepspeed", "expected"),
    [
        (True, True, TrainingPrecision(torch.bfloat16, torch.bfloat16, "sdpa")),
        (True, False, TrainingPrecision(torch.float32, torch.bfloat16, "sdpa")),
        (False, False, TrainingPrecision(torch.float32, torch.float32, "sdpa")),
    ],
)
def test_training_precision_from_the_trainer_arguments(
    bf16: bool, deepspeed: bool, expected: TrainingPrecision
) -> None:
    assert training_precision(trainer_args(bf16=bf16, deepspeed=deepspeed), None) == expected


def test_flash_attention_is_refused_for_a_float32_policy_and_kept_for_bf16() -> None:
    for bf16, deepspeed in ((True, False), (False, False), (False, True)):
        with pytest.raises(ValueError, match="'flash_attention_2' needs bfloat16 or float16.*'sdpa'"):
            training_precision(trainer_args(bf16=bf16, deepspeed=deepspeed), "flash_attention_2")
    chosen = training_precision(trainer_args(bf16=True, deepspeed=True), "flash_attention_2")
    assert chosen == TrainingPrecision(torch.bfloat16, torch.bfloat16, "flash_attention_2")
    assert chosen.reference_init_kwargs() == {"dtype": "bfloat16", "attn_implementation": "flash_attention_2"}


def test_the_default_attention_on_cuda_is_flash_attention_for_16_bit_weights_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_loading, "is_flash_attn_2_available", lambda: True)
    assert default_attn_implementation("cuda", torch.bfloat16) == "flash_attention_2"
    assert default_attn_implementation("cuda", "auto") == "flash_attention_2"
    assert default_attn_implementation("cuda", torch.float32) == "sdpa"
    assert default_attn_implementation("cpu", torch.bfloat16) == "sdpa"
    # bf16 without DeepSpeed on a GPU: fp32 weights, so SDPA rather than a refusal
    assert training_precision(
        trainer_args(bf16=True, deepspeed=False, device="cuda"), None
    ).attn_implementation == ("sdpa")
    assert (
        training_precision(trainer_args(bf16=True, deepspeed=True, device="cuda"), None).attn_implementation
        == "flash_attention_2"
    )


def test_the_loader_refuses_flash_attention_in_float32_before_loading(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="flash_attention_2.*float32"):
        load_qwen2_5_vl(tiny_model, dtype=torch.float32, attn_implementation="flash_attention_2")
    with pytest.raises(ValueError, match="flash_attention_2.*float32"):
        load_qwen2_5_vl(tiny_model, dtype="float32", attn_implementation="flash_attention_2")


def test_the_run_files_carry_the_attention_and_bf16(tmp_path: Path) -> None:
    cgrpo = CGRPORun(
        model_path="m",
        train_rows=Path("rows.parquet"),
        teacher_rewards=Path("t.parquet"),
        output_dir=Path("out"),
        attn_implementation="flash_attention_2",
        cgrpo=CGRPOTrainConfig(),
    )
    sft = SFTRun(
        model_path="m",
        cot_rows=Path("rows.parquet"),
        output_dir=Path("out"),
        attn_implementation="sdpa",
        sft=SFTTrainConfig(),
    )
    for run, path in ((cgrpo, tmp_path / "cgrpo.yaml"), (sft, tmp_path / "sft.yaml")):
        run.write(path)
        written = yaml.safe_load(path.read_text())
        reread = type(run).model_validate(written)
        assert reread.attn_implementation == run.attn_implementation
        assert written["cgrpo" if run is cgrpo else "sft"]["bf16"] is True
    assert CGRPORun.model_fields["attn_implementation"].default is None  # None: the device's default


@pytest.fixture(scope="module")
def video_rows(train_corpus: Path) -> pl.DataFrame:
    rows = load_videor1(train_corpus / "Video-R1-260k.json", train_corpus).rows
    return rows.filter(pl.col("data_type") == "video").head(1)


def _trainer(config: CGRPOTrainConfig, rows: pl.DataFrame, model: Path, out: Path) -> GRPOTrainer:
    dataset, _ = cgrpo_dataset(rows, {pid: 0.5 for pid in rows["problem_id"]})
    return build_cgrpo_trainer(
        config,
        dataset,
        model,
        out,
        sample_builder=whole_video_builder(VideoConfig(max_frames=4)),
        attn_implementation="sdpa",
        # spread inside every group: a random tiny model earns no accuracy or format, so no advantage otherwise
        extra_rewards=[
            lambda prompts, completions, **kw: [len(completion_text(c)) / 100 for c in completions]
        ],
    )


def test_the_reference_model_loads_in_the_decided_dtype_and_attention(
    tiny_model: Path, video_rows: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32 = _trainer(TINY, video_rows, tiny_model, tmp_path / "fp32")
    assert fp32.ref_model is not None
    assert fp32.model.dtype == torch.float32 and fp32.ref_model.dtype == torch.float32
    assert fp32.ref_model.config._attn_implementation == "sdpa"

    # bf16 without DeepSpeed (on the CPU here, where the profile check would refuse bf16): fp32 policy under
    # autocast, bf16 reference
    monkeypatch.setattr(train_config, "_require_bf16_device", lambda bf16, section: None)
    mixed = _trainer(TINY.model_copy(update={"bf16": True}), video_rows, tiny_model, tmp_path / "bf16")
    assert mixed.ref_model is not None
    assert mixed.model.dtype == torch.float32 and mixed.ref_model.dtype == torch.bfloat16
    assert mixed.ref_model.config._attn_implementation == "sdpa"

    # its rollouts run under the bf16 autocast the training forward passes run under
    seen: list[tuple[bool, torch.dtype]] = []

    def record(self: GRPOTrainer, *args: Any, **kwargs: Any) -> None:
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", record)
    mixed._generate_single_turn([], None, {}, 4)
    fp32._generate_single_turn([], None, {}, 4)
    assert seen == [(True, torch.bfloat16), (False, torch.get_autocast_dtype("cpu"))]


def test_a_step_with_activation_checkpointing_checkpoints_every_block_without_reentrance(
    tiny_model: Path, video_rows: pl.DataFrame, tmp_path: Path
) -> None:
    config = TINY.model_copy(
        update={"gradient_checkpointing": True, "learning_rate": 1e-2, "weight_decay": 0.0}
    )
    trainer = _trainer(config, video_rows, tiny_model, tmp_path)
    trainer.args.report_to = []
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    model = trainer.model
    blocks = [*model.model.language_model.layers, *model.model.visual.blocks]
    assert all(block.gradient_checkpointing for block in blocks)
    assert {block._gradient_checkpointing_func.keywords["use_reentrant"] for block in blocks} == {False}
    moved = {name.split(".")[1] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert {"language_model", "visual"} <= moved  # gradients reach through the recomputed blocks
