"""The training steps of the GPU check: a few SFT or C-GRPO steps, built by the trainers' own builders.

``run_train_steps(run)`` trains ``run.steps`` optimizer steps of ``run.trainer`` on the synthetic corpus and
saves the final model (``train_and_save``), without any checkpoint on the way: a ZeRO-3 checkpoint of the
3B model with its optimizer state is about 50 GB, and the check compares the final weights only. It is also
the entry point ``accelerate launch -m`` starts (``python -m marc_ops.eval.gpu_check.train_steps --config
run.yaml``), so on a GPU the steps run under the same accelerate + DeepSpeed ZeRO-3 files as the paper
profile's training (``configs/accelerate/zero3.yaml``).

C-GRPO gets one reward next to its own: ``completion_spread_reward``, the completion's length in characters.
With random weights no completion earns accuracy or format, every reward of a group is equal, every
advantage is 0 and no weight would move; the spread makes the step's gradient non-zero, so the check sees
the whole update path (loss, backward through the compressed video features, optimizer) act on the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field
from transformers import TrainerCallback

from marc_ops.config.train import CGRPOTrainConfig, SFTTrainConfig
from marc_ops.data import load_videor1
from marc_ops.rewards import completion_text
from marc_ops.train.cgrpo import build_cgrpo_trainer, cgrpo_dataset
from marc_ops.train.dataset import RunFile, train_and_save
from marc_ops.train.inputs import whole_video_builder
from marc_ops.train.launch import trainer_main
from marc_ops.train.sft import build_sft_trainer, sft_dataset
from marc_ops.video import VideoConfig

# a_full of every training video: any value in (0, 1] gives C-GRPO's reward its usual form.
CHECK_A_FULL = 0.5


def completion_spread_reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """Each completion's length in characters / 100: differs inside a group even when nothing else does."""
    return [len(completion_text(c)) / 100 for c in completions]


class TrainStepsRun(RunFile):
    """A few training steps of the GPU check, as a file (what ``--config`` reads)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trainer: Literal["sft", "cgrpo"]
    model_path: str = Field(description="the initial model: a directory")
    corpus: Path = Field(description="a synthetic corpus folder (Video-R1-260k.json, Video-R1-COT-165k.json)")
    output_dir: Path
    video: VideoConfig
    sft: SFTTrainConfig | None = None
    cgrpo: CGRPOTrainConfig | None = None


def run_train_steps(run: TrainStepsRun, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train ``run``'s steps; returns the final model's directory (``output_dir/model``)."""
    run = run.resolved()
    builder = whole_video_builder(run.video)
    if run.trainer == "sft":
        assert run.sft is not None
        rows = load_videor1(run.corpus / "Video-R1-COT-165k.json", run.corpus).rows
        dataset, skipped = sft_dataset(rows.filter(rows["data_type"] == "video"))
        trainer = build_sft_trainer(
            run.sft, dataset, run.model_path, run.output_dir, sample_builder=builder, callbacks=callbacks
        )
    else:
        assert run.cgrpo is not None
        trainer, skipped = _cgrpo_trainer(run, builder, callbacks)
    trainer.args.save_strategy = "no"  # the final model only (see the module docstring)
    return train_and_save(trainer, run.output_dir, skipped, label=f"GPU check {run.trainer}")


def _cgrpo_trainer(run: TrainStepsRun, builder, callbacks: Sequence[TrainerCallback]):
    """``build_cgrpo_trainer``'s trainer with ``completion_spread_reward`` added to the optimised rewards."""
    config = run.cgrpo
    assert config is not None
    rows = load_videor1(run.corpus / "Video-R1-260k.json", run.corpus).rows
    rows = rows.filter(rows["data_type"] == "video")
    dataset, skipped = cgrpo_dataset(rows, {str(pid): CHECK_A_FULL for pid in rows["problem_id"]})
    trainer = build_cgrpo_trainer(
        config,
        dataset,
        run.model_path,
        run.output_dir,
        sample_builder=builder,
        callbacks=callbacks,
        extra_rewards=[completion_spread_reward],
    )
    return trainer, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point ``accelerate launch -m`` starts (:func:`~marc_ops.train.launch.trainer_main`)."""
    return trainer_main(
        argv,
        None,
        prog="python -m marc_ops.eval.gpu_check.train_steps",
        run_type=TrainStepsRun,
        run_in_process=run_train_steps,
        description="Train the GPU check's steps.",
    )


if __name__ == "__main__":
    raise SystemExit(main())
