"""The SFT baseline (paper App. B.2, Table 2): TRL's ``SFTTrainer`` on Video-R1-COT rows with video inputs.

Each row's assistant target is ``process + "\\n" + solution`` (``<think>...</think>\\n<answer>X</answer>``,
what the format reward accepts) followed by the end-of-turn token, after the same Video-R1 prompt
and the same visual input as C-GRPO (the sample builder's frames, compressed to the model's budget).

TRL's SFT collators handle images only, so :class:`SFTCollator` builds the batches itself: it loads
each row's frames, encodes the prompt through ``prepare_model_inputs`` (compressed placeholder count,
``video_clip_ids``), appends the target tokens, and masks the prompt and padding out of the loss
(labels ``-100``). ``SFTTrainer`` is used as is, with its dataset preparation skipped. With
``dataloader_num_workers`` > 0 the collator (decoding included) runs in the DataLoader's worker
processes, which build the next batches while the model steps.

Run it under accelerate (paper: ZeRO-2)::

    accelerate launch --config_file configs/accelerate/zero2.yaml -m marc_ops.train.sft --config run.yaml
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from datasets import Dataset
from pydantic import ConfigDict, Field
from transformers import (
    Qwen2_5_VLProcessor,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from trl import SFTTrainer

from marc_ops.compression import CompressionConfig
from marc_ops.config.train import SFTTrainConfig
from marc_ops.model import (
    apply_compression,
    compression_of,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
)
from marc_ops.train.dataset import (
    CheckpointWeightsMixin,
    RunFile,
    SkippedSample,
    load_sample,
    run_fingerprint,
    train_and_save,
    usable_rows,
)
from marc_ops.train.inputs import (
    GROUNDED_VIEW,
    SampleBuilder,
    collate_visual,
    encode_prompt,
    is_grounded,
    mm_token_type_ids,
    prompt_messages,
    sft_target,
    view_builder,
)
from marc_ops.train.launch import trainer_main
from marc_ops.train.precision import training_precision
from marc_ops.train.progress import TrainingProgress
from marc_ops.video import VideoConfig

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
UNCOMPRESSED_KEY = "marc_uncompressed"  # a collated batch's flag: run this batch without compression


class SFTCollator:
    """Batches of SFT rows: ``input_ids``/``labels`` (B, L), right-padded, plus the visual tensors.

    ``labels`` is ``-100`` on the prompt (system, user turn, visual placeholders, the assistant
    header) and on padding, so only the target and its end-of-turn token are learnt.
    """

    def __init__(
        self,
        processor: Qwen2_5_VLProcessor,
        compression: CompressionConfig,
        sample_builder: SampleBuilder,
        *,
        mix_uncompressed: bool = False,
    ) -> None:
        self.processor = processor
        self.compression = compression
        self.sample_builder = sample_builder
        self.mix_uncompressed = mix_uncompressed
        self._first_batch = 0  # the run's number of the first batch of the current pass over the loader
        self._built = 0  # batches this copy of the collator built since then

    def resume_at(self, batches: int) -> None:
        """Number the next batch ``batches`` (the batches the run trained so far): a resumed run skips the
        batches its checkpoint trained on without collating them, and the next one must be compressed (or not)
        as in an uninterrupted run. Set before every pass over the loader (:class:`ResumeSFTCounters`): with
        ``dataloader_num_workers`` > 0 each worker collates a copy of this collator, forked when the pass
        starts, and the one in the training process never counts a batch."""
        self._first_batch = batches
        self._built = 0

    def _batch_number(self) -> int:
        """The run's number of the batch being built. A DataLoader deals the batches of a map-style dataset to
        its workers in turn (batch n to worker n % workers), so worker w's k-th batch is number
        ``first + k * workers + w``; without workers it is ``first + k``."""
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (1, 0) if worker is None else (worker.num_workers, worker.id)
        number = self._first_batch + self._built * workers + worker_id
        self._built += 1
        return number

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        tokenizer = self.processor.tokenizer
        # With mix_uncompressed every other batch is encoded (and, by SFTBudgetTrainer, run) uncompressed.
        uncompressed = self.mix_uncompressed and self._batch_number() % 2 == 1
        compression = CompressionConfig() if uncompressed else self.compression
        encoded, sequences, labels = [], [], []
        for row in examples:
            sample = load_sample(self.sample_builder, row)
            prompt = encode_prompt(self.processor, compression, sample, row["prompt"])
            target = tokenizer(
                row["target"] + tokenizer.eos_token, add_special_tokens=False, return_tensors="pt"
            )
            target_ids = target["input_ids"][0]
            encoded.append(prompt)
            sequences.append(torch.cat([prompt.input_ids, target_ids]))
            labels.append(torch.cat([torch.full_like(prompt.input_ids, IGNORE_INDEX), target_ids]))
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), length), tokenizer.pad_token_id, dtype=torch.long)
        label_ids = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for i, (sequence, label) in enumerate(zip(sequences, labels, strict=True)):
            input_ids[i, : len(sequence)] = sequence
            label_ids[i, : len(label)] = label
            attention_mask[i, : len(sequence)] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": label_ids,
            "mm_token_type_ids": mm_token_type_ids(input_ids, self.processor),
            **collate_visual(encoded),
        }
        if self.mix_uncompressed:
            batch[UNCOMPRESSED_KEY] = torch.tensor(uncompressed)
        return batch


class ResumeSFTCounters(TrainerCallback):
    """Put what the SFT trainer counts in memory where the run is.

    - The collator's batch number, at the start of every pass over the data (before the Trainer starts
      iterating the loader, which forks its workers then): the Trainer resumes a checkpoint by skipping the
      batches it trained on (they are never collated), and DataLoader workers collate copies of the collator,
      so with ``mix_uncompressed`` a resumed run, or a later epoch, would otherwise compress the batches an
      uninterrupted run without workers runs uncompressed, and end with other weights.
    - At the start of training, TRL's running token count (logged as ``num_tokens``), which would restart at
      0; it is the last logged one (exact when the checkpoint's step was logged, as ``logging_steps``
      dividing ``save_steps`` makes it).
    """

    def __init__(self, trainer: SFTBudgetTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step == 0:
            return
        logged = [entry["num_tokens"] for entry in state.log_history if "num_tokens" in entry]
        self.trainer._total_train_tokens = int(logged[-1]) if logged else 0

    def on_epoch_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        self.trainer.data_collator.resume_at(
            trained_batches(state.global_step, len(train_dataloader), args.gradient_accumulation_steps)
        )


def trained_batches(global_step: int, batches_per_epoch: int, accumulation: int) -> int:
    """The batches ``global_step`` optimizer steps consumed, epochs included (the Trainer's own arithmetic: an
    epoch is ``ceil(batches_per_epoch / accumulation)`` steps, its last step takes the remaining batches)."""
    steps_per_epoch = max(batches_per_epoch // accumulation + int(batches_per_epoch % accumulation > 0), 1)
    epochs, steps = divmod(global_step, steps_per_epoch)
    return epochs * batches_per_epoch + steps * accumulation


class SFTBudgetTrainer(CheckpointWeightsMixin, SFTTrainer):
    """``SFTTrainer`` that runs a batch the collator marked uncompressed (``mix_uncompressed``) without
    compression, then puts the student's compression back (so checkpoints record the student's). A resumed
    run counts on where its checkpoint stopped (:class:`ResumeSFTCounters`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback(ResumeSFTCounters(self))

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        uncompressed = inputs.pop(UNCOMPRESSED_KEY, None)
        if uncompressed is None or not bool(uncompressed):
            return super().compute_loss(model, inputs, *args, **kwargs)
        target = self.accelerator.unwrap_model(model)
        student = compression_of(target)
        apply_compression(target, CompressionConfig())
        try:
            return super().compute_loss(model, inputs, *args, **kwargs)
        finally:
            apply_compression(target, student)


def sft_dataset(
    rows: pl.DataFrame | Iterable[Mapping[str, Any]], *, grounded_clips: bool = False
) -> tuple[Dataset, list[SkippedSample]]:
    """Usable CoT rows plus ``prompt`` (chat messages), ``target`` and ``view``; rows without CoT or
    readable media are skipped.

    ``view`` is ``"whole"`` (the whole video, or the image). With ``grounded_clips`` every video row
    with ``evidence_spans`` is added a second time with ``view`` :data:`GROUNDED_VIEW` (its grounded
    clip, :func:`~marc_ops.train.inputs.view_builder`), right after its whole-video copy.
    """
    kept, skipped = usable_rows(
        rows, missing_input=lambda row: None if row.get("process") else "no CoT 'process' to learn from"
    )
    if not kept:
        raise ValueError(f"no usable SFT rows: all {len(skipped)} were skipped (see the warnings above)")
    records = []
    for row in kept:
        record = {
            **row,
            "problem_id": str(row["problem_id"]),
            "prompt": prompt_messages(row),
            "target": sft_target(row),
            "view": "whole",
        }
        records.append(record)
        if grounded_clips and is_grounded(row):
            records.append({**record, "view": GROUNDED_VIEW})
    return Dataset.from_list(records), skipped


def build_sft_trainer(
    config: SFTTrainConfig,
    dataset: Dataset,
    model_path: str | Path,
    out_dir: Path,
    *,
    sample_builder: SampleBuilder,
    callbacks: Sequence[TrainerCallback] = (),
    attn_implementation: str | None = None,
) -> SFTTrainer:
    """The trainer, ready to ``train()``: arguments first (so DeepSpeed sees them), then the model, in the dtype
    :func:`~marc_ops.train.precision.training_precision` decides (bf16 under DeepSpeed, else fp32) with
    ``attn_implementation`` (the profile's; None: the default for the device and dtype)."""
    args = config.to_sft_config(out_dir)
    processor = load_qwen2_5_vl_processor(model_path)
    precision = training_precision(args, attn_implementation)
    logger.info("SFT: model in %s, attention %s", precision.policy, precision.attn_implementation)
    model = load_qwen2_5_vl(
        model_path,
        compression=config.compression,
        dtype=precision.policy,
        device=None,  # the Trainer (or DeepSpeed) places it
        attn_implementation=precision.attn_implementation,
    )
    return SFTBudgetTrainer(
        model=model,
        args=args,
        data_collator=SFTCollator(
            processor, compression_of(model), sample_builder, mix_uncompressed=config.mix_uncompressed
        ),
        train_dataset=dataset,
        processing_class=processor,
        callbacks=list(callbacks),
    )


def train_sft(
    config: SFTTrainConfig,
    cot_rows: pl.DataFrame | Iterable[Mapping[str, Any]],
    model_path: str | Path,
    out_dir: Path | str,
    *,
    sample_builder: SampleBuilder | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    attn_implementation: str | None = None,
) -> Path:
    """Fine-tune on CoT rows; returns the final model's directory (``out_dir/model``). Resumes a checkpoint in
    ``out_dir``. ``callbacks`` watch the Trainer (:class:`~marc_ops.train.progress.TrainingProgress`);
    ``attn_implementation`` as for :func:`build_sft_trainer`."""
    out_dir = Path(out_dir)
    dataset, skipped = sft_dataset(cot_rows, grounded_clips=config.grounded_clips)
    trainer = build_sft_trainer(
        config,
        dataset,
        model_path,
        out_dir,
        sample_builder=sample_builder or view_builder(),
        callbacks=callbacks,
        attn_implementation=attn_implementation,
    )
    fingerprint = run_fingerprint(config, model_path, dataset["problem_id"])
    return train_and_save(trainer, out_dir, skipped, label="SFT", fingerprint=fingerprint)


class SFTRun(RunFile):
    """Everything one SFT run needs, as a file: what ``python -m marc_ops.train.sft --config`` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str = Field(description="initial model: a hub id or a directory")
    cot_rows: Path = Field(description="parquet of manifest-schema CoT rows (with 'process')")
    output_dir: Path
    video: VideoConfig = VideoConfig()
    attn_implementation: str | None = Field(
        default=None,
        description="the profile's model.attn_implementation (None: FlashAttention-2 on CUDA for 16-bit weights "
        "when installed, else sdpa)",
    )
    sft: SFTTrainConfig


def run_sft(run: SFTRun, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    run = run.resolved()
    return train_sft(
        run.sft,
        run.rows(run.cot_rows),
        run.model_path,
        run.output_dir,
        sample_builder=view_builder(run.video),
        callbacks=callbacks,
        attn_implementation=run.attn_implementation,
    )


def main(argv: Sequence[str] | None = None, progress: TrainingProgress | None = None) -> int:
    """The entry point ``accelerate launch -m`` starts (:func:`~marc_ops.train.launch.trainer_main`)."""
    return trainer_main(
        argv,
        progress,
        prog="python -m marc_ops.train.sft",
        run_type=SFTRun,
        run_in_process=run_sft,
        description="Train the SFT baseline.",
    )


if __name__ == "__main__":
    raise SystemExit(main())
