"""SCORE's training (SCORE.md sections 4-8): the frozen LLM's caption CE under sampled keep-masks.

One step takes ``videos_per_step`` samples (a video or a pseudo-video, and its caption). For each:

1. ``X`` (T, N, D): the frozen vision tower's merger output (:func:`video_tokens`);
2. ``p = σ(f_θ([X; ΔX]))`` (the policy) and K Bernoulli keep-masks drawn from it;
3. ``CE^(k)``: the frozen LLM's mean cross-entropy of the caption (response tokens through the closing
   ``<|im_end|>``, at most ``max_target_tokens``) with only the kept visual tokens, each at its
   original position (:func:`masked_ce`: removal, not zeroing);
4. ``ΔCE^(k) = τ·CE_base − CE^(k)`` against the full-input CE (cached per sample by ``score_ce_base``),
   ``S^(k)`` the fraction dropped, the split advantage, and the REINFORCE loss (eq 8);

then one optimiser step on the mean loss. Nothing but the policy trains. The run checkpoints the policy
and the optimiser's state as safetensors, with the step, so a killed run resumes where it stopped; its
log (reward, feasible fraction, mean keep probability, CE ratio) goes to TensorBoard and a parquet.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file
from torch.utils.tensorboard import SummaryWriter
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from marc_ops.compression import CompressionConfig
from marc_ops.compression.base import grid_positions
from marc_ops.compression.score import (
    ScorePolicy,
    load_policy,
    performance_reward,
    policy_loss,
    sample_masks,
    save_policy,
    sparsity,
    split_advantage,
    surprise_state,
)
from marc_ops.config.score import ScoreTrainConfig
from marc_ops.io import append_jsonl, atomic_dir, check_safetensors, write_json, write_parquet
from marc_ops.model import compression_of, prepare_model_inputs
from marc_ops.model.processing import fit_video_placeholders
from marc_ops.model.video_compression import CompressedVideoOutput

POLICY_FILE = "policy.safetensors"
LOG_FILE = "training_log.parquet"


@dataclass(frozen=True)
class CaptionClip:
    """One training sample: frames (F, H, W, 3) uint8 (F even), the rate they stand for, the caption."""

    sample_id: str
    frames: np.ndarray
    fps: float
    caption: str
    prompt: str


@dataclass(frozen=True)
class EncodedCaption:
    """A sample as the frozen model takes it: the prompt with every video placeholder, then the caption.

    input_ids: (L,) int64; response: (L,) bool, the caption's tokens and the closing ``<|im_end|>``;
    visual: ``pixel_values_videos``, ``video_grid_thw`` (1, 3) and ``second_per_grid_ts`` (1,).
    """

    sample_id: str
    input_ids: torch.Tensor
    response: torch.Tensor
    visual: dict[str, torch.Tensor]

    @property
    def grid(self) -> tuple[int, int]:
        """(H', W'): the merged-patch grid of one temporal group."""
        _, h, w = self.visual["video_grid_thw"][0].tolist()
        return h // 2, w // 2


def encode_caption(
    processor: Qwen2_5_VLProcessor, clip: CaptionClip, *, max_target_tokens: int
) -> EncodedCaption:
    """The chat-templated prompt (video, then ``clip.prompt``) with all placeholders, and the caption after it."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": clip.prompt}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = prepare_model_inputs(
        processor,
        CompressionConfig(),
        text=[text],
        videos=[clip.frames],
        video_metadata=[{"fps": clip.fps, "total_num_frames": len(clip.frames)}],
        return_tensors="pt",
    )
    tokenizer = processor.tokenizer
    target = tokenizer(clip.caption, add_special_tokens=False)["input_ids"][:max_target_tokens]
    target = torch.tensor([*target, tokenizer.convert_tokens_to_ids("<|im_end|>")], dtype=torch.long)
    prompt_ids = inputs["input_ids"][0]
    return EncodedCaption(
        sample_id=clip.sample_id,
        input_ids=torch.cat([prompt_ids, target]),
        response=torch.cat(
            [torch.zeros(len(prompt_ids), dtype=torch.bool), torch.ones(len(target), dtype=torch.bool)]
        ),
        visual={key: inputs[key] for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")},
    )


@torch.no_grad()
def video_tokens(model: Qwen2_5_VLForConditionalGeneration, encoded: EncodedCaption) -> torch.Tensor:
    """X: (T, N, D) float32, the frozen tower's merger output of the sample's video."""
    if compression_of(model).enabled:
        raise ValueError("SCORE's frozen model must not compress: load it with CompressionConfig()")
    grid = encoded.visual["video_grid_thw"].to(model.device)
    output = model.model.get_video_features(
        encoded.visual["pixel_values_videos"].to(model.device, model.dtype), grid, return_dict=True
    )
    t, h, w = grid[0].tolist()
    return output.pooler_output[0].float().reshape(t, h * w // 4, -1)


@torch.no_grad()
def masked_ce(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    encoded: EncodedCaption,
    tokens: torch.Tensor,
    masks: torch.Tensor,
) -> torch.Tensor:
    """(K,) the caption's mean token cross-entropy (nats) with the tokens each mask keeps.

    tokens: (T, N, D) the video's merger output; masks: (K, T, N) bool. The kept tokens enter the
    LLM at their original (t, row, col) positions; dropped ones are removed. All-True is CE_base.
    """
    grid, flat = encoded.grid, tokens.reshape(-1, tokens.shape[-1])
    kept = [mask.flatten().nonzero().flatten() for mask in masks.cpu()]
    rows, responses = [], []
    for indices in kept:
        ids, _ = fit_video_placeholders(
            encoded.input_ids[None],
            torch.ones(1, len(encoded.input_ids), dtype=torch.long),
            processor.video_token_id,
            [len(indices)],
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        rows.append(ids[0])
        # the caption closes the sequence: the same count of response tokens, at the end
        n_response = int(encoded.response.sum())
        responses.append(torch.arange(len(ids[0])) >= len(ids[0]) - n_response)
    length = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), length), processor.tokenizer.pad_token_id, dtype=torch.long)
    attention, response = torch.zeros_like(input_ids), torch.zeros_like(input_ids, dtype=torch.bool)
    for i, (row, resp) in enumerate(zip(rows, responses, strict=True)):
        input_ids[i, : len(row)], attention[i, : len(row)], response[i, : len(row)] = row, 1, resp
    # A mask that keeps nothing leaves its row without a video: it gets no grid row and no features.
    present = [indices for indices in kept if len(indices)]
    video = CompressedVideoOutput(
        pooler_output=tuple(flat[indices].to(model.dtype) for indices in present),
        token_positions=tuple(grid_positions(indices, grid).to(model.device) for indices in present),
        merged_grid_thw=encoded.visual["video_grid_thw"].repeat(len(present), 1).to(model.device),
    )
    logits = model(
        input_ids=input_ids.to(model.device),
        attention_mask=attention.to(model.device),
        mm_token_type_ids=(2 * (input_ids == processor.video_token_id).long()).to(model.device),
        video_grid_thw=video.merged_grid_thw if present else None,
        second_per_grid_ts=encoded.visual["second_per_grid_ts"].repeat(len(present)).to(model.device)
        if present
        else None,
        mm_encoder_outputs={"video": video} if present else None,
    ).logits.float()
    # token i+1 is predicted at position i
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), input_ids[:, 1:].to(model.device), reduction="none"
    )
    targets = response[:, 1:].to(model.device)
    return (losses * targets).sum(dim=1) / targets.sum(dim=1)


# --- CE_base: the frozen model on every sample's full input, once -------------------------------------------


def reset_if_changed(out_dir: Path, context: dict[str, Any]) -> None:
    """Empty ``out_dir`` when what it was computed with (``context``: the frozen model's weights, the
    configuration, the inputs) is not ``context``; then record it. Resuming is only right for the same run."""
    record = out_dir / "run_context.json"
    if record.is_file() and json.loads(record.read_text()) == json.loads(json.dumps(context)):
        return
    if out_dir.exists():
        shutil.rmtree(out_dir)
    write_json(record, context)


def ce_base_table(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    clips: Callable[[], Iterator[CaptionClip]],
    records: Path,
    *,
    stage: str,
    max_target_tokens: int,
    progress: Callable[[int], None] = lambda done: None,
) -> dict[str, float]:
    """CE_base of every clip, by sample id: read from ``records`` (JSON lines) where recorded, else computed
    and appended (one line per sample, flushed), so a killed run resumes where it stopped."""
    done = _read_ce_base(records, stage)
    records.parent.mkdir(parents=True, exist_ok=True)
    with open(records, "a", encoding="utf-8") as sink:
        for clip in clips():
            if clip.sample_id in done:
                continue
            encoded = encode_caption(processor, clip, max_target_tokens=max_target_tokens)
            tokens = video_tokens(model, encoded)
            full = torch.ones((1, *tokens.shape[:2]), dtype=torch.bool)
            value = float(masked_ce(model, processor, encoded, tokens, full)[0])
            if not math.isfinite(value):
                raise RuntimeError(f"CE_base of {clip.sample_id} is {value}: the frozen model diverged on it")
            append_jsonl(sink, [{"sample_id": clip.sample_id, "stage": stage, "ce_base": value}])
            done[clip.sample_id] = value
            progress(len(done))
    return done


def _read_ce_base(records: Path, stage: str) -> dict[str, float]:
    if not records.is_file():
        return {}
    values = {}
    for line in records.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a kill tore: its sample is computed again
        if row["stage"] == stage:
            values[row["sample_id"]] = float(row["ce_base"])
    return values


# --- the policy update -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepLog:
    step: int
    loss: float
    reward: float  # mean ΔCE over the batch's rollouts
    feasible_fraction: float  # share of rollouts with ΔCE > 0
    keep_probability: float  # mean p over the batch's tokens
    ce_ratio: float  # mean CE / CE_base


def train_policy(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    clips: Sequence[CaptionClip],
    ce_base: dict[str, float],
    policy: ScorePolicy,
    config: ScoreTrainConfig,
    *,
    tau: float,
    steps: int,
    out_dir: Path,
    log: Callable[[str], None] = print,
) -> Path:
    """Train ``policy`` (in place) for ``steps`` steps on ``clips``; returns ``out_dir/policy.safetensors``.

    Resumes from ``out_dir/checkpoint`` when it holds a step of this run; a finished run returns at once.
    """
    out_dir = Path(out_dir)
    final = out_dir / POLICY_FILE
    if final.is_file() and _finished_step(out_dir) == steps:
        return final
    optimizer = _optimizer(policy, config)
    start, history = _resume(out_dir, policy, optimizer)
    token_cache: dict[str, tuple[EncodedCaption, torch.Tensor]] = {}
    writer = SummaryWriter(str(out_dir / "runs"))
    try:
        for step in range(start, steps):
            batch = [clips[i] for i in _batch_indices(len(clips), step, config)]
            entry = _step(model, processor, batch, ce_base, policy, optimizer, config, tau, step, token_cache)
            history.append(entry)
            for key, value in vars(entry).items():
                if key != "step":
                    writer.add_scalar(f"score/{key}", value, step + 1)
            if (step + 1) % config.save_steps == 0 or step + 1 == steps:
                _checkpoint(out_dir, policy, optimizer, step + 1, history)
                log(
                    f"step {step + 1}/{steps}: reward {entry.reward:+.4f}, feasible {entry.feasible_fraction:.2f}, "
                    f"keep p {entry.keep_probability:.3f}, CE ratio {entry.ce_ratio:.4f}"
                )
    finally:
        writer.close()
    save_policy(policy, policy.config, final)
    return final


def _step(model, processor, batch, ce_base, policy, optimizer, config, tau, step, token_cache) -> StepLog:
    losses, rewards, feasible, keep, ratios = [], [], [], [], []
    for index, clip in enumerate(batch):
        if clip.sample_id not in ce_base:
            raise KeyError(f"no CE_base for {clip.sample_id}: materialize score_ce_base first")
        encoded, tokens = _tokens(model, processor, clip, config, token_cache)
        logits = policy.logits(
            surprise_state(tokens, state=policy.config.state).to(next(policy.parameters()).device)
        )
        seed = int(np.random.SeedSequence([config.seed, step, index]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        masks = sample_masks(torch.sigmoid(logits.detach()).cpu(), config.rollouts, generator)
        ce = masked_ce(model, processor, encoded, tokens, masks).cpu()
        delta = performance_reward(ce, ce_base[clip.sample_id], tau=tau)
        advantages = split_advantage(delta, sparsity(masks))
        losses.append(policy_loss(logits, masks.to(logits.device), advantages.to(logits.device)))
        rewards.append(float(delta.mean()))
        feasible.append(float((delta > 0).float().mean()))
        keep.append(float(torch.sigmoid(logits.detach()).mean()))
        ratios.append(float(ce.mean()) / ce_base[clip.sample_id])
    loss = torch.stack(losses).mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
    optimizer.step()
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return StepLog(step + 1, float(loss.detach()), mean(rewards), mean(feasible), mean(keep), mean(ratios))


def _tokens(model, processor, clip, config, cache) -> tuple[EncodedCaption, torch.Tensor]:
    if clip.sample_id in cache:
        return cache[clip.sample_id]
    encoded = encode_caption(processor, clip, max_target_tokens=config.max_target_tokens)
    value = (encoded, video_tokens(model, encoded))
    if config.cache_video_tokens:
        cache[clip.sample_id] = value
    return value


def _batch_indices(n_clips: int, step: int, config: ScoreTrainConfig) -> list[int]:
    """The clips of one step: consecutive slices of a permutation drawn per pass (seeded by pass)."""
    per_pass = max(1, n_clips // config.videos_per_step)
    order = np.random.default_rng((config.seed, step // per_pass)).permutation(n_clips)
    start = (step % per_pass) * config.videos_per_step
    return [int(i) for i in order[start : start + config.videos_per_step]] or [int(order[0])]


def steps_for(n_clips: int, config: ScoreTrainConfig, override: int | None) -> int:
    """Steps of one stage: ``override``, else one pass over the clips (ceil(n / videos_per_step))."""
    return override if override is not None else max(1, math.ceil(n_clips / config.videos_per_step))


def _optimizer(policy: ScorePolicy, config: ScoreTrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(policy.parameters(), lr=config.learning_rate, momentum=config.momentum)
    return torch.optim.Adam(policy.parameters(), lr=config.learning_rate)


# --- checkpoints: safetensors only, no pickle --------------------------------------------------------------


def _checkpoint(out_dir: Path, policy: ScorePolicy, optimizer, step: int, history: list[StepLog]) -> None:
    with atomic_dir(out_dir / "checkpoint") as tmp:
        save_file(
            {k: v.contiguous() for k, v in policy.state_dict().items()}, str(tmp / "policy.safetensors")
        )
        state = {
            f"{index}.{name}": value.detach().clone().contiguous()
            for index, values in optimizer.state_dict()["state"].items()
            for name, value in values.items()
            if isinstance(value, torch.Tensor)
        }
        save_file(state, str(tmp / "optimizer.safetensors"))
        write_json(tmp / "trainer_state.json", {"step": step})
    write_parquet(out_dir / LOG_FILE, pl.DataFrame([vars(entry) for entry in history]))


def _finished_step(out_dir: Path) -> int | None:
    state = out_dir / "checkpoint" / "trainer_state.json"
    return json.loads(state.read_text())["step"] if state.is_file() else None


def _resume(out_dir: Path, policy: ScorePolicy, optimizer) -> tuple[int, list[StepLog]]:
    step = _finished_step(out_dir)
    if step is None:
        return 0, []
    checkpoint = out_dir / "checkpoint"
    policy.load_state_dict(load_file(str(check_safetensors(checkpoint / "policy.safetensors"))))
    saved = load_file(str(check_safetensors(checkpoint / "optimizer.safetensors")))
    state: dict[int, dict[str, Any]] = {}
    for key, value in saved.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    log_file = out_dir / LOG_FILE
    history = (
        [StepLog(**row) for row in pl.read_parquet(log_file).iter_rows(named=True)]
        if log_file.is_file()
        else []
    )
    return step, history[:step]


def initial_policy(d_model: int, config, init_from: Path | None) -> ScorePolicy:
    """A fresh policy (``config``'s seeded initialisation), or the one saved at ``init_from`` (stage 2 from stage 1)."""
    if init_from is None:
        return ScorePolicy(d_model, config)
    policy = load_policy(init_from)
    if policy.config != config:
        raise ValueError(f"{init_from} was trained with {policy.config}, but the profile asks for {config}")
    return policy
