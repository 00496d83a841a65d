"""C-GRPO (paper 3.2.2, eqs 6-10; SPEC section 7) on TRL 1.16's ``GRPOTrainer``, with video inputs.

The student is the patched Qwen2.5-VL at the one-frame budget (``config.compression``): it samples G
completions per sample from the compressed input, each group is scored by ``make_cgrpo_reward``
(accuracy + format + the correctness-gated retention bonus r_c, with a_full from
``teacher_rewards``), advantages are normalised within the group (eq 9), and TRL optimises the
clipped ratio with a KL anchor to the frozen initial model (eq 10, ``loss_type="grpo"``).

What TRL does not do for us, and the overrides in :class:`CGRPOTrainer` that add it. TRL 1.16 wires
only ``image``/``images`` dataset columns into generation and into the log-prob forward passes, so:

- ``__init__``: the training rows are decoded by the DataLoader (:class:`DecodeAhead`), so with
  ``dataloader_num_workers`` > 0 worker processes decode the next generation batches while the model
  generates and steps. (TRL calls ``_generate_and_score_completions`` from the training loop itself, so a
  decode started there could overlap nothing; the DataLoader's prefetching is the one place TRL leaves
  running ahead of the step.)
- ``_generate_and_score_completions``: encode the batch's samples first (the decoded frames, the
  compressed number of ``<|video_pad|>`` tokens, ``video_clip_ids``) and hold them
  *in flight* while TRL generates, scores and computes the old / reference log-probs; then attach
  them to the batch as the per-row list ``visual_inputs``, which TRL's shuffle and split keep
  aligned with the rows.
- ``_tokenize_prompts``: hand those prompt ids and visual tensors to ``generate`` (TRL's version
  re-renders the chat template and extracts images only).
- ``_get_per_token_logps_and_entropies``: TRL's slices image tensors per chunk; ours slices the
  in-flight rows' video/image tensors and rebuilds ``mm_token_type_ids`` (prompt only).
- ``_compute_loss``: hold the batch's ``visual_inputs`` in flight for the policy's forward pass.
- ``__init__``: TRL reloads the reference model from ``config._name_or_path`` with plain
  transformers (in the dtype and attention ``build_cgrpo_trainer`` gives it through
  ``model_init_kwargs``); it gets the policy's compression patch, so it sees the same compressed input.
- ``_generate_single_turn``: TRL's rollouts run ``generate`` outside the Trainer's autocast; ours run
  under it, so a float32 policy trained with bf16 (no DeepSpeed) samples in bf16 as it trains. Under
  DeepSpeed the autocast is off and the module itself is bf16.

Precision (:mod:`marc_ops.train.precision`): bf16 under DeepSpeed loads the policy in bf16 (DeepSpeed keeps
the fp32 master partition); bf16 without DeepSpeed keeps fp32 weights under autocast; the reference model
is bf16 whenever bf16 is on.

A checkpoint (weights as safetensors, plus the optimizer, scheduler and RNG state needed to resume)
is written every ``save_steps``; a rerun with a checkpoint in ``out_dir`` resumes from the last one. TensorBoard events go to
``out_dir/runs/``: ``reward``, ``rewards/accuracy_reward/mean``, ``rewards/format_reward/mean``,
``cgrpo/eta``, ``cgrpo/r_c``, ``cgrpo/a_comp``, ``kl``, ``completions/mean_length``,
``cgrpo/visual_tokens``.

Run it under accelerate (the same code, one process per device)::

    accelerate launch --config_file configs/accelerate/zero3.yaml -m marc_ops.train.cgrpo --config run.yaml
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch
from datasets import Dataset
from pydantic import ConfigDict, Field
from transformers import Qwen2_5_VLForConditionalGeneration, TrainerCallback
from trl import GRPOTrainer

from marc_ops.config.train import CGRPOTrainConfig
from marc_ops.model import (
    apply_compression,
    compression_of,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
)
from marc_ops.rewards import accuracy_reward, format_reward, make_cgrpo_reward
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
    EncodedSample,
    SampleBuilder,
    TrainingSample,
    collate_visual,
    encode_prompt,
    mm_token_type_ids,
    prompt_messages,
    vmr_builder,
    whole_video_builder,
)
from marc_ops.train.launch import trainer_main
from marc_ops.train.precision import training_precision
from marc_ops.train.progress import TrainingProgress
from marc_ops.train.teacher import read_a_full
from marc_ops.video import MediaError, VideoConfig

logger = logging.getLogger(__name__)


class CGRPOTrainer(CheckpointWeightsMixin, GRPOTrainer):
    """``GRPOTrainer`` whose rows carry video (or image) inputs for a compressing Qwen2.5-VL.

    Each dataset row is a manifest row plus ``prompt`` (chat messages) and ``a_full``; the
    ``sample_builder`` turns a row into its frames when the row is generated for. See the module
    docstring for what each override adds.
    """

    def __init__(
        self, *args: Any, train_dataset: Dataset, sample_builder: SampleBuilder, **kwargs: Any
    ) -> None:
        super().__init__(
            *args, train_dataset=train_dataset.with_transform(DecodeAhead(sample_builder)), **kwargs
        )
        self.sample_builder = sample_builder
        self.compression = compression_of(self.model)
        self._visual_rows: list[EncodedSample] | None = None
        if self.ref_model is not None:
            apply_compression(self.accelerator.unwrap_model(self.ref_model), self.compression)

    # -- phases TRL calls --------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        rows = self._encode_rows(inputs)
        plain = [{key: value for key, value in row.items() if key != DECODED_KEY} for row in inputs]
        with self._visual_rows_in_flight(rows):
            output = super()._generate_and_score_completions(plain)
        mode = "train" if self.model.training else "eval"
        visual_tokens = [
            int(mm_token_type_ids(r.input_ids, self.processing_class).bool().sum()) for r in rows
        ]
        self._metrics[mode]["cgrpo/visual_tokens"].append(sum(visual_tokens) / len(visual_tokens))
        output["visual_inputs"] = rows
        return output

    def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
        with self.accelerator.autocast():
            return super()._generate_single_turn(*args, **kwargs)

    def _tokenize_prompts(self, prompts: list) -> tuple[list[list[int]], None, dict[str, Any]]:
        rows = self._rows_in_flight(len(prompts))
        fields: dict[str, Any] = collate_visual(rows)
        # a list of per-prompt lists: TRL left-pads it like the prompt ids
        fields["mm_token_type_ids"] = [
            mm_token_type_ids(r.input_ids, self.processing_class).tolist() for r in rows
        ]
        return [r.input_ids.tolist() for r in rows], None, fields

    def _get_per_token_logps_and_entropies(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **image_inputs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Per-token log-probs (B, C) of the completions, chunked by ``batch_size``, with the rows' pixels."""
        unexpected = sorted(key for key, value in image_inputs.items() if value is not None)
        if unexpected:
            raise RuntimeError(
                f"TRL passed its own multimodal inputs {unexpected}; CGRPOTrainer builds them itself"
            )
        rows = self._rows_in_flight(input_ids.size(0))
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask = input_ids[start:end], attention_mask[start:end]
            token_types = mm_token_type_ids(ids, self.processing_class)
            token_types[:, -logits_to_keep:] = 0  # completions are text, whatever they sampled
            visual = {key: value.to(ids.device) for key, value in collate_visual(rows[start:end]).items()}
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100  # only the completion tokens are scored
            extra = {"output_router_logits": True} if compute_aux_loss else {}
            with self.accelerator.autocast():
                outputs = model(
                    input_ids=ids,
                    attention_mask=mask,
                    mm_token_type_ids=token_types,
                    **visual,
                    **extra,
                    labels=labels,
                    fused_lm_head=True,
                )
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        entropies = torch.cat(all_entropies) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return torch.cat(all_logps), entropies, aux_loss

    def _compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        with self._visual_rows_in_flight(inputs["visual_inputs"]):
            return super()._compute_loss(model, inputs)

    # -- helpers -------------------------------------------------------------------------------

    def _encode_rows(self, inputs: Sequence[Mapping[str, Any]]) -> list[EncodedSample]:
        """One encoded sample per row; the G consecutive copies of a sample share one encoding. A row's frames
        are the ones the DataLoader decoded (:class:`DecodeAhead`); a row it could not decode, or one that did
        not come through it, is decoded here (:func:`~marc_ops.train.dataset.load_sample` names the sample)."""
        encoded: dict[str, EncodedSample] = {}
        rows = []
        for row in inputs:
            problem_id = str(row["problem_id"])
            if problem_id not in encoded:
                sample = row.get(DECODED_KEY) or load_sample(self.sample_builder, row)
                encoded[problem_id] = encode_prompt(
                    self.processing_class, self.compression, sample, row["prompt"]
                )
            rows.append(encoded[problem_id])
        return rows

    def _rows_in_flight(self, expected: int) -> list[EncodedSample]:
        if self._visual_rows is None or len(self._visual_rows) != expected:
            held = None if self._visual_rows is None else len(self._visual_rows)
            raise RuntimeError(
                f"{expected} sequences reached the model but {held} encoded rows are in flight: the visual "
                "inputs must be bound by _generate_and_score_completions or _compute_loss"
            )
        return self._visual_rows

    @contextlib.contextmanager
    def _visual_rows_in_flight(self, rows: Sequence[EncodedSample]) -> Iterator[None]:
        previous = self._visual_rows
        self._visual_rows = list(rows)
        try:
            yield
        finally:
            self._visual_rows = previous


DECODED_KEY = "marc_decoded_sample"  # a training row's frames, decoded by the DataLoader (DecodeAhead)


class DecodeAhead:
    """The transform of the trainer's dataset: each row comes out of the DataLoader with its decoded sample
    (:class:`~marc_ops.train.inputs.TrainingSample`) under :data:`DECODED_KEY`, built in the DataLoader's worker
    processes when ``dataloader_num_workers`` > 0.

    TRL's sampler repeats each index G times in a row within one generation batch (the config keeps a group in
    one batch), and the batch is fetched in one call: the copies of a sample are decoded once and share one
    sample object, so it crosses to the training process once. A row whose media cannot be read is passed on
    without a sample, and decoded again where its error names it (``_encode_rows``).
    """

    def __init__(self, sample_builder: SampleBuilder) -> None:
        self.sample_builder = sample_builder

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]
        decoded: dict[str, TrainingSample | None] = {}
        for row in rows:
            problem_id = str(row["problem_id"])
            if problem_id not in decoded:
                try:
                    decoded[problem_id] = self.sample_builder(row)
                except MediaError:
                    decoded[problem_id] = None
        return {**batch, DECODED_KEY: [decoded[str(row["problem_id"])] for row in rows]}


def cgrpo_dataset(
    rows: pl.DataFrame | Iterable[Mapping[str, Any]], a_full_by_id: Mapping[str, float]
) -> tuple[Dataset, list[SkippedSample]]:
    """The trainer's rows: usable manifest rows plus ``prompt`` (chat messages) and ``a_full``.

    A video row without an a_full (its teacher sample failed or was not run) or whose media
    cannot be opened is skipped and logged; images need no a_full (no compression, r_c = 0).
    """

    def missing_input(row: Mapping[str, Any]) -> str | None:
        if row["data_type"] == "video" and str(row["problem_id"]) not in a_full_by_id:
            return "no teacher reward (a_full): teacher_rewards failed on it or did not cover it"
        return None

    kept, skipped = usable_rows(rows, missing_input=missing_input)
    if not kept:
        raise ValueError(f"no usable training rows: all {len(skipped)} were skipped (see the warnings above)")
    records = [
        {
            **row,
            "problem_id": str(row["problem_id"]),
            "prompt": prompt_messages(row),
            "a_full": a_full_by_id.get(str(row["problem_id"])) if row["data_type"] == "video" else None,
        }
        for row in kept
    ]
    return Dataset.from_list(records), skipped


def build_cgrpo_trainer(
    config: CGRPOTrainConfig,
    dataset: Dataset,
    model_path: str | Path,
    out_dir: Path,
    *,
    sample_builder: SampleBuilder,
    callbacks: Sequence[TrainerCallback] = (),
    attn_implementation: str | None = None,
    extra_rewards: Sequence[Callable[..., list[float]]] = (),
) -> CGRPOTrainer:
    """The trainer, ready to ``train()``: arguments first (so ZeRO-3 can partition the load), then the models.

    ``attn_implementation``: the profile's ``model.attn_implementation`` (None: the default for the device and
    dtype), for the policy and the reference model. ``extra_rewards``: more reward functions, each weighted 1
    (the GPU check's); the three of C-GRPO come first.
    """
    processor = load_qwen2_5_vl_processor(model_path)
    args = config.to_grpo_config(
        out_dir, suppress_token_ids=[processor.image_token_id, processor.video_token_id]
    )
    args.reward_weights = [*args.reward_weights, *(1.0 for _ in extra_rewards)]
    precision = training_precision(args, attn_implementation)
    # TRL loads the reference model from the policy's path (config._name_or_path) with these; it warns that
    # model_init_kwargs are ignored, which holds for the policy (passed loaded) only.
    args.model_init_kwargs = precision.reference_init_kwargs()
    logger.info(
        "C-GRPO: policy in %s, reference model in %s, attention %s",
        precision.policy,
        precision.reference,
        precision.attn_implementation,
    )
    model: Qwen2_5_VLForConditionalGeneration = load_qwen2_5_vl(
        model_path,
        compression=config.compression,
        dtype=precision.policy,
        device=None,  # the Trainer (or DeepSpeed) places it
        attn_implementation=precision.attn_implementation,
    )
    return CGRPOTrainer(
        model=model,
        reward_funcs=[
            make_cgrpo_reward(config.tau, config.alpha, config.eta_cap, config.num_generations),
            accuracy_reward,
            format_reward,
            *extra_rewards,
        ],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        sample_builder=sample_builder,
        callbacks=list(callbacks),
    )


def train_cgrpo(
    config: CGRPOTrainConfig,
    train_rows: pl.DataFrame | Iterable[Mapping[str, Any]],
    a_full_by_id: Mapping[str, float],
    model_path: str | Path,
    out_dir: Path | str,
    *,
    sample_builder: SampleBuilder | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    attn_implementation: str | None = None,
) -> Path:
    """Train the C-GRPO student; returns the directory of the final model (``out_dir/model``).

    Args:
        config: the run's ``CGRPOTrainConfig`` (tau, G, eps, beta, schedule, compression).
        train_rows: manifest-schema rows (video and image samples).
        a_full_by_id: the teacher's mean accuracy per video ``problem_id`` (``read_a_full``).
        model_path: the initial policy (hub id or directory); also the reference model.
        out_dir: checkpoints (``checkpoint-N/``), TensorBoard (``runs/``), ``skipped_samples.json``,
            ``trainer_state.json`` and the final model. A checkpoint already there is resumed.
        sample_builder: the frames each row shows (default: the whole video at 1 fps, <= 64 frames).
        callbacks: Trainer callbacks that watch the run (:class:`~marc_ops.train.progress.TrainingProgress`).
        attn_implementation: the policy's and the reference model's (None: the default for the device and dtype).
    """
    out_dir = Path(out_dir)
    dataset, skipped = cgrpo_dataset(train_rows, a_full_by_id)
    trainer = build_cgrpo_trainer(
        config,
        dataset,
        model_path,
        out_dir,
        sample_builder=sample_builder or whole_video_builder(),
        callbacks=callbacks,
        attn_implementation=attn_implementation,
    )
    fingerprint = run_fingerprint(config, model_path, dataset["problem_id"])
    return train_and_save(trainer, out_dir, skipped, label="C-GRPO", fingerprint=fingerprint)


class CGRPORun(RunFile):
    """Everything one C-GRPO run needs, as a file: what ``python -m marc_ops.train.cgrpo --config`` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str = Field(description="initial policy: a hub id or a directory")
    train_rows: Path = Field(description="parquet of manifest-schema rows (train_subset)")
    teacher_rewards: Path = Field(description="teacher_rewards.parquet (a_full per video sample)")
    output_dir: Path
    video: VideoConfig = VideoConfig()
    vmr_selection: Path | None = Field(
        default=None, description="vmr_selection.parquet: train on the VMR input (None: the whole video)"
    )
    attn_implementation: str | None = Field(
        default=None,
        description="the profile's model.attn_implementation, for the policy and the reference model (None: "
        "FlashAttention-2 on CUDA for 16-bit weights when installed, else sdpa)",
    )
    cgrpo: CGRPOTrainConfig


def run_cgrpo(run: CGRPORun, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """``train_cgrpo`` on the files a ``CGRPORun`` names."""
    run = run.resolved()
    return train_cgrpo(
        run.cgrpo,
        run.rows(run.train_rows),
        read_a_full(run.teacher_rewards),
        run.model_path,
        run.output_dir,
        sample_builder=(
            vmr_builder(run.vmr_selection, run.video) if run.vmr_selection else whole_video_builder(run.video)
        ),
        callbacks=callbacks,
        attn_implementation=run.attn_implementation,
    )


def main(argv: Sequence[str] | None = None, progress: TrainingProgress | None = None) -> int:
    """The entry point ``accelerate launch -m`` starts (:func:`~marc_ops.train.launch.trainer_main`)."""
    return trainer_main(
        argv,
        progress,
        prog="python -m marc_ops.train.cgrpo",
        run_type=CGRPORun,
        run_in_process=run_cgrpo,
        description="Train a C-GRPO student.",
    )


if __name__ == "__main__":
    raise SystemExit(main())
