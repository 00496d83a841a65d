"""Training: teacher rewards, C-GRPO (TRL's GRPOTrainer with video inputs) and the SFT baseline.

- ``config``: ``TeacherConfig``, ``CGRPOTrainConfig``, ``SFTTrainConfig`` and the profile's ``TrainParams``.
- ``inputs``: ``TrainingSample`` / ``SampleBuilder`` (the seam for the VMR frames), prompt encoding.
- ``dataset``: training rows with quarantine (unreadable media, missing inputs) by id.
- ``teacher``: ``compute_teacher_rewards`` (a_full per video sample, resumable) and its stage.
- ``cgrpo``: ``CGRPOTrainer``, ``train_cgrpo``, its stage and ``python -m marc_ops.train.cgrpo``.
- ``sft``: ``SFTCollator``, ``train_sft``, its stage and ``python -m marc_ops.train.sft``.

Only the configs are imported with the package (``marc_ops.config`` may hold a ``TrainParams``
without importing TRL or the stages, which import ``marc_ops.config``); everything else is
imported on first use, which also keeps ``python -m marc_ops.train.cgrpo`` from finding its own
module already imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from marc_ops.train.config import CGRPOTrainConfig, SFTTrainConfig, TeacherConfig, TrainParams

_LAZY = {
    "SkippedSample": "dataset",
    "usable_rows": "dataset",
    "EncodedSample": "inputs",
    "SampleBuilder": "inputs",
    "TrainingSample": "inputs",
    "encode_prompt": "inputs",
    "model_inputs": "inputs",
    "prompt_messages": "inputs",
    "sft_target": "inputs",
    "whole_video_builder": "inputs",
    "view_builder": "inputs",
    "grounded_clip_sample": "inputs",
    "GROUNDED_VIEW": "inputs",
    "is_grounded": "inputs",
    "whole_video_sample": "inputs",
    "TeacherSummary": "teacher",
    "compute_teacher_rewards": "teacher",
    "read_a_full": "teacher",
    "teacher_rewards_stage": "teacher",
    "CGRPORun": "cgrpo",
    "CGRPOTrainer": "cgrpo",
    "build_cgrpo_trainer": "cgrpo",
    "cgrpo_checkpoint_stage": "cgrpo",
    "cgrpo_dataset": "cgrpo",
    "run_cgrpo": "cgrpo",
    "train_cgrpo": "cgrpo",
    "SFTCollator": "sft",
    "SFTRun": "sft",
    "build_sft_trainer": "sft",
    "run_sft": "sft",
    "sft_checkpoint_stage": "sft",
    "sft_dataset": "sft",
    "train_sft": "sft",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"marc_ops.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'marc_ops.train' has no attribute {name!r}")


__all__ = ["CGRPOTrainConfig", "SFTTrainConfig", "TeacherConfig", "TrainParams", *_LAZY]
