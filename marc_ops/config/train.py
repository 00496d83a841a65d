"""Typed configs of the training stages: teacher rewards, C-GRPO and SFT (SPEC section 7, paper App. B).

One model per stage, frozen, unknown keys rejected, checked when it is built; every error says
which field to change and to what. The class defaults are the paper's values where the paper gives
one (C-GRPO: G = 8, eps = 0.2, beta = 0.04, lr 1e-6, weight decay 0.01, 768 completion tokens, bf16,
gradient checkpointing; SFT: lr 1e-6, grad clip 5, bf16) and SPEC's decisions elsewhere (alpha = 1,
eta_cap = 1); a profile (``train:`` in ``configs/<profile>.yaml``) overrides them.

``to_grpo_config`` / ``to_sft_config`` turn a config into TRL's arguments; they are the only place
TRL's own defaults are overridden, and each override says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from marc_ops.compression import CompressionConfig, one_frame_compression

if TYPE_CHECKING:
    from trl import GRPOConfig, SFTConfig


def _require_bf16_device(bf16: bool, section: str) -> None:
    # transformers' own message ("assign use_cpu") points at the wrong knob for a profile.
    if bf16 and not torch.cuda.is_available():
        raise ValueError(
            f"{section}.bf16 is true but this machine has no CUDA GPU: set `{section}.bf16: false` for a CPU run "
            "(the tiny profile does)"
        )


class _Schedule(BaseModel):
    """Optimisation knobs shared by C-GRPO and SFT (each subclass sets its own paper defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(default=1e-6, gt=0, description="AdamW learning rate (paper: 1e-6)")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW decoupled weight decay")
    lr_scheduler_type: Literal["constant", "linear", "cosine"] = Field(
        default="constant", description="decision: the paper gives only the rate, so it stays constant"
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="gradient clipping norm")
    per_device_train_batch_size: int = Field(default=8, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1, description="optimizer steps; None: num_train_epochs")
    num_train_epochs: float = Field(default=1.0, gt=0)
    bf16: bool = Field(default=True, description="bfloat16 mixed precision; needs a GPU (false on CPU)")
    gradient_checkpointing: bool = True
    save_steps: int = Field(default=100, ge=1, description="checkpoint every this many optimizer steps")
    save_total_limit: int | None = Field(default=2, ge=1, description="checkpoints kept on disk (None: all)")
    logging_steps: int = Field(default=1, ge=1)
    seed: int = 42
    dataloader_num_workers: int = Field(
        default=0,
        ge=0,
        description=(
            "DataLoader worker processes per training process that decode the media (and, for SFT, encode the "
            "batch) ahead of the step; 0 decodes in the training loop. Decoding is deterministic, so it never "
            "changes what is trained"
        ),
    )
    compression: CompressionConfig = Field(
        default_factory=one_frame_compression,
        description="what the trained (student) model merges its video features to (the `marc` method's)",
    )

    def _trainer_kwargs(self, output_dir: Path) -> dict:
        return {
            "output_dir": str(output_dir),
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "lr_scheduler_type": self.lr_scheduler_type,
            "max_grad_norm": self.max_grad_norm,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "max_steps": -1 if self.max_steps is None else self.max_steps,
            "num_train_epochs": self.num_train_epochs,
            "bf16": self.bf16,
            "activation_checkpointing": self.gradient_checkpointing,  # transformers 5 name of gradient checkpointing
            # Non-reentrant checkpointing (stated, as transformers' own default): it works with ZeRO-3's partitioned
            # parameters and recomputes a block whatever its inputs require (transformers also makes the input
            # embeddings require a gradient when checkpointing is enabled).
            "activation_checkpointing_kwargs": {"use_reentrant": False},
            "save_strategy": "steps",
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "seed": self.seed,
            "report_to": ["tensorboard"],
            # Our rows carry the media reference and the reward inputs; the collators read them.
            "remove_unused_columns": False,
            # Workers decode the next batches while the step runs (SFT: the collator; C-GRPO: the dataset's decode).
            "dataloader_num_workers": self.dataloader_num_workers,
            # Without a GPU, say so: a multi-process launch then joins a gloo group on the CPU instead of
            # each process silently training alone.
            "use_cpu": not torch.cuda.is_available(),
        }


class TeacherConfig(BaseModel):
    """``teacher_rewards``: the frozen initial model on the uncompressed input, G samples per video sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_generations: int = Field(
        default=8, ge=1, description="completions sampled per sample to estimate a_full"
    )
    max_completion_length: int = Field(
        default=768, ge=1, description="new tokens per completion (as the student)"
    )
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature (as the student's)")
    seed: int = Field(
        default=42,
        description="each completion draws from its own generator seeded by (seed, problem_id, generation index)",
    )
    batch_size: int = Field(
        default=1,
        ge=1,
        description=(
            "samples per generate call (each with num_generations rows); it changes speed and memory, not the "
            "completions, so it is not part of the records' settings"
        ),
    )


class CGRPOTrainConfig(_Schedule):
    """C-GRPO (paper 3.2.2, eqs 6-10; App. B.1) on TRL's GRPOTrainer.

    The reward is ``make_cgrpo_reward(tau, alpha, eta_cap, num_generations)``; the loss is TRL's
    ``loss_type="grpo"`` (the clipped ratio averaged over each completion's tokens, then over the
    group, eq 10) plus ``beta`` times the k3 estimate of KL(pi_theta || pi_ref).
    """

    tau: float = Field(default=0.6, ge=0, description="eq 7's retention threshold (paper: 0.4 / 0.6 / 0.8)")
    alpha: float = Field(default=1.0, ge=0, description="eq 7's bonus scale (decision: 1.0)")
    eta_cap: float = Field(default=1.0, gt=0, description="cap on eta = a_comp / a_full (decision: 1.0)")
    num_generations: int = Field(default=8, ge=2, description="G, completions per sample (one group)")
    epsilon: float = Field(default=0.2, gt=0, lt=1, description="PPO clip range of eq 10")
    beta: float = Field(default=0.04, ge=0, description="KL anchor weight of eq 10")
    max_completion_length: int = Field(default=768, ge=1)
    temperature: float = Field(default=1.0, gt=0, description="sampling temperature of the rollouts")
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = Field(
        default="grpo", description="TRL loss aggregation; 'grpo' is eq 10's per-completion token mean"
    )
    log_completions: bool = Field(
        default=False, description="also write every generation batch to <output_dir>/completions/*.parquet"
    )

    @model_validator(mode="after")
    def _consistent(self) -> CGRPOTrainConfig:
        if self.tau >= self.eta_cap:
            raise ValueError(
                f"tau={self.tau} must be below eta_cap={self.eta_cap}: eta never exceeds eta_cap, so the bonus "
                "r_c = alpha * max(0, eta - tau) would always be 0; use e.g. tau: 0.6"
            )
        local_rows = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if local_rows % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size * gradient_accumulation_steps = {local_rows} rows per process and "
                f"generation is not a multiple of num_generations={self.num_generations}: a group would be split "
                "across processes and its a_comp could not be computed; set per_device_train_batch_size to a "
                f"multiple of {self.num_generations}"
            )
        return self

    def to_grpo_config(self, output_dir: Path | str, *, suppress_token_ids: list[int]) -> GRPOConfig:
        """TRL's arguments for this config, writing checkpoints and TensorBoard logs under ``output_dir``.

        ``suppress_token_ids``: the image and video placeholder ids, which a rollout must never
        sample (a sampled placeholder would have no visual features to stand for).
        """
        from trl import GRPOConfig  # imported here: loading a profile must not import TRL

        _require_bf16_device(self.bf16, "train.cgrpo")
        return GRPOConfig(
            **self._trainer_kwargs(Path(output_dir)),
            num_generations=self.num_generations,
            max_completion_length=self.max_completion_length,
            temperature=self.temperature,
            epsilon=self.epsilon,
            beta=self.beta,
            loss_type=self.loss_type,
            scale_rewards="group",  # eq 9: A_i = (R_i - mean) / std within the group
            num_iterations=1,  # one update per rollout batch: pi_old is the sampling policy
            # reward_funcs = [cgrpo_reward, accuracy_reward, format_reward]: only the first is optimised,
            # the other two are logged (rewards/accuracy_reward/mean, rewards/format_reward/mean).
            reward_weights=[1.0, 0.0, 0.0],
            generation_kwargs={"suppress_tokens": suppress_token_ids},
            log_completions=self.log_completions,
            disable_dropout=True,
        )


class SFTTrainConfig(_Schedule):
    """The SFT baseline (paper App. B.2): CoT targets ``process + "\\n" + solution``, lr 1e-6, clip 5, bf16.

    The model is trained with the same compression as the C-GRPO student (the baseline is
    "training-based compression using SFT"), on the same input the sample builder gives it.
    """

    max_grad_norm: float = Field(default=5.0, gt=0, description="gradient clipping (paper: 5)")
    weight_decay: float = Field(default=0.0, ge=0, description="the paper states none for SFT")
    per_device_train_batch_size: int = Field(default=1, ge=1)
    train_size: int = Field(default=10_000, ge=1, description="CoT rows sampled, stratified (paper: 10K)")
    sample_seed: int = 42
    mix_uncompressed: bool = Field(
        default=False,
        description=(
            "every other batch without compression (the paper: false). The tiny profile's warm-up is the "
            "initial policy, so it must answer both compressed (the SFT-only student) and uncompressed "
            "(the 64-frame teacher)"
        ),
    )

    grounded_clips: bool = Field(
        default=False,
        description=(
            "also train each video row that carries temporal grounding (evidence_spans, as grounded video-QA "
            "data has; Video-R1 has none, the synthetic corpus has) on its grounded clip: the row appears "
            "twice, once as the whole video and once as the clip a perfect retriever would keep, so the "
            "warm-up learns to answer from the one-clip input its students see (the paper: false)"
        ),
    )

    @model_validator(mode="after")
    def _mix_without_recomputation(self) -> SFTTrainConfig:
        if self.mix_uncompressed and self.gradient_checkpointing:
            raise ValueError(
                "train.sft.mix_uncompressed needs gradient_checkpointing: false (the recomputation in the "
                "backward pass would run at whichever budget is set by then)"
            )
        return self

    def to_sft_config(self, output_dir: Path | str) -> SFTConfig:
        """TRL's arguments; the dataset is ours (rows + a collator), so TRL's preparation is skipped."""
        from trl import SFTConfig  # imported here: loading a profile must not import TRL

        _require_bf16_device(self.bf16, "train.sft")
        return SFTConfig(
            **self._trainer_kwargs(Path(output_dir)),
            dataset_kwargs={"skip_prepare_dataset": True},
            max_length=None,  # never truncate: a cut would drop video placeholders
        )


class AlignConfig(_Schedule):
    """Vision-language alignment of the tiny base model (``model.align``): captioning the synthetic
    corpus's training shots and images, before any question is seen.

    A real base model (Qwen2.5-VL-3B) was pretrained to see; the tiny one is built with random weights,
    and a random model fine-tuned straight on the Video-R1 questions learns the answer format but never
    looks at the pixels (measured: its visual features collapse to one vector whatever the image; see
    ``docs/design.md``). Captioning is the stand-in for that pretraining. Trained through TRL's
    ``SFTTrainer`` like the SFT baseline (same collator, checkpoints, resumption), uncompressed.
    """

    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    max_grad_norm: float = 5.0
    per_device_train_batch_size: int = 16
    max_steps: int | None = Field(default=400, ge=1, description="optimizer steps; None: num_train_epochs")
    bf16: bool = False
    gradient_checkpointing: bool = False
    save_steps: int = 100
    seed: int = 0
    compression: CompressionConfig = Field(
        default_factory=CompressionConfig, description="none: the base model sees every frame"
    )

    def as_sft(self) -> SFTTrainConfig:
        """The same schedule as an SFT run (what ``build_sft_trainer`` takes)."""
        return SFTTrainConfig.model_validate(self.model_dump())


class LaunchConfig(BaseModel):
    """How a training stage runs its trainer: inside the stage's own process (the default), or as
    ``accelerate launch`` of the trainer's entry point with ``processes`` processes and the accelerate file
    ``accelerate_config`` (DeepSpeed on GPUs, a gloo group on a CPU). Either way the stage writes the same
    ``run.yaml`` and reads the same files back; see :mod:`marc_ops.train.launch`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    processes: int = Field(
        default=1,
        ge=1,
        description="training processes, one per GPU (it replaces the accelerate file's num_processes)",
    )
    accelerate_config: Path | None = Field(
        default=None,
        description=(
            "an accelerate config file, relative to the project (configs/accelerate/zero3.yaml); None: train "
            "in the stage's own process"
        ),
    )

    @model_validator(mode="after")
    def _launcher_for_processes(self) -> LaunchConfig:
        if self.processes > 1 and self.accelerate_config is None:
            raise ValueError(
                f"processes={self.processes} needs an accelerate_config that launches them: "
                "configs/accelerate/cpu_2proc.yaml on a CPU, configs/accelerate/zero2.yaml (SFT) or zero3.yaml "
                "(C-GRPO) on GPUs"
            )
        return self

    @property
    def in_process(self) -> bool:
        """Whether the trainer runs inside the stage's process (no accelerate file named)."""
        return self.accelerate_config is None


class TrainLaunch(BaseModel):
    """``train.launch``: how each trainer runs (one process by default; the paper profile: DeepSpeed on GPUs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sft: LaunchConfig = LaunchConfig()
    cgrpo: LaunchConfig = LaunchConfig()
    teacher: LaunchConfig = LaunchConfig()


class TrainParams(BaseModel):
    """The ``train:`` section of a profile (the initial model is the ``base_model`` asset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    taus: tuple[float, ...] = Field(
        default=(0.4, 0.6, 0.8), min_length=1, description="cgrpo_checkpoint partitions"
    )
    init: Literal["base", "sft"] = Field(
        default="base",
        description=(
            "the initial policy: what the teacher, C-GRPO and the `base` methods start from. 'base': the "
            "base_model asset (the paper: Qwen2.5-VL-3B); 'sft': the sft_checkpoint asset (tiny profile: a "
            "random tiny model cannot answer, so the SFT warm-up teaches it the format first)"
        ),
    )
    teacher: TeacherConfig = TeacherConfig()
    cgrpo: CGRPOTrainConfig = CGRPOTrainConfig()
    sft: SFTTrainConfig = SFTTrainConfig()
    launch: TrainLaunch = TrainLaunch()

    @model_validator(mode="after")
    def _taus_valid(self) -> TrainParams:
        for tau in self.taus:
            self.cgrpo_for(tau)
        return self

    def cgrpo_for(self, tau: float) -> CGRPOTrainConfig:
        """The C-GRPO config of one partition: ``cgrpo`` with ``tau`` replaced (and validated)."""
        return CGRPOTrainConfig.model_validate({**self.cgrpo.model_dump(), "tau": tau})
