"""The dtype and attention a trainer loads its models with, decided from the trainer's arguments.

Three cases (``TrainingArguments.bf16`` and whether DeepSpeed runs the model):

- **bf16 under DeepSpeed**: the policy loads in bfloat16. DeepSpeed's bf16 path keeps the float32 master
  copy itself (ZeRO's fp32 partition of each parameter, which the optimizer steps), so an fp32 load would
  only hold a second, transient fp32 copy of the weights on every process.
- **bf16 without DeepSpeed**: the policy loads in float32 and the Trainer's autocast (accelerate's bf16
  amp) does the math in bfloat16. The optimizer then steps float32 weights: AdamW stepping bfloat16
  weights directly loses the update, since at lr 1e-6 a step (about lr x weight) falls below half a
  bfloat16 ulp (2^-8 of the weight) and rounds away.
- **bf16 false**: float32 (the tiny profile's CPU runs).

The frozen reference model of C-GRPO's KL term and the teacher are never stepped, so they load in
bfloat16 whenever bf16 is on. FlashAttention-2 has no float32 kernel: asked for together with a float32
load it is refused (:func:`~marc_ops.model.refuse_float32_flash_attention`), and the default attention
picks it only for 16-bit weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import TrainingArguments

from marc_ops.model import default_attn_implementation, refuse_float32_flash_attention


@dataclass(frozen=True)
class TrainingPrecision:
    """How a trainer's models load: ``policy`` (the trained model), ``reference`` (the frozen KL anchor) and the
    attention implementation both use."""

    policy: torch.dtype
    reference: torch.dtype
    attn_implementation: str

    def reference_init_kwargs(self) -> dict[str, str]:
        """TRL's ``model_init_kwargs`` for the reference model, which ``GRPOTrainer`` loads again from the
        policy's path (its default would copy the policy's dtype: float32 under autocast)."""
        return {
            "dtype": str(self.reference).removeprefix("torch."),
            "attn_implementation": self.attn_implementation,
        }


def policy_load_dtype(*, bf16: bool, deepspeed: bool) -> torch.dtype:
    """bfloat16 under DeepSpeed with bf16 (it keeps the fp32 master partition), else float32 (the Trainer's
    autocast does bf16 math on fp32 weights; see the module docstring)."""
    return torch.bfloat16 if bf16 and deepspeed else torch.float32


def runs_under_deepspeed(args: TrainingArguments) -> bool:
    """Whether the Trainer hands the model to DeepSpeed (``accelerate launch`` with a DeepSpeed config, or
    ``args.deepspeed``)."""
    return args.deepspeed_plugin is not None


def training_precision(args: TrainingArguments, attn_implementation: str | None) -> TrainingPrecision:
    """The load dtypes and attention for a trainer with ``args``.

    Args:
        args: the trainer's arguments (``bf16``, DeepSpeed, device).
        attn_implementation: the profile's ``model.attn_implementation``; ``None`` picks FlashAttention-2 on a
            CUDA device when flash-attn is installed and the policy loads in 16 bits, else SDPA.

    Raises:
        ValueError: FlashAttention-2 asked for a policy that loads in float32.
    """
    policy = policy_load_dtype(bf16=args.bf16, deepspeed=runs_under_deepspeed(args))
    attention = attn_implementation or default_attn_implementation(args.device, policy)
    refuse_float32_flash_attention(attention, policy)
    return TrainingPrecision(
        policy=policy,
        reference=torch.bfloat16 if args.bf16 else torch.float32,
        attn_implementation=attention,
    )
