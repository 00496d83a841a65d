"""The efficiency profile (paper section 4.2, Fig. 5 and App. A.3; SPEC section 8): what each method costs.

``profile_efficiency(model, processor, samples, methods=..., device=...)`` feeds one batch of samples
(:class:`ProfileSample`: a video's frames and its question) to each method (64 frames, 16 frames, MARC at
the one-frame budget) and times the phases of one answer:

============  =========================================================================================
phase         what is timed
============  =========================================================================================
(processor)   chat template, frame patches, placeholder expansion (``prepare_model_inputs``); for a
              method whose token count depends on the features, also cutting the placeholders to it
vision_s      the vision tower (``model.model.visual``), once over all the sample's frames
merge_s       the rest of ``get_video_features``: the method's compressor (MARC's merge, a compared
              method's pruning or merging, FastVID's and HoliTom's importance scores); 0 without one
generate_s    ``model.generate`` from the precomputed visual features, forced to exactly
              ``answer_tokens`` new tokens (``min_new_tokens = max_new_tokens``, greedy)
prefill_s     the first forward of that ``generate``: the prompt with its visual features, one token out
end_to_end_s  processor + vision + merge + generate, back to back: the same work, in the same order,
              as one ``model.generate(**inputs_with_pixels)``; the phases are only called one by one
============  =========================================================================================

Times are seconds per sample: the wall time of the batch divided by its samples (the paper runs batches
of 15 MMVU samples, App. A.3); visual tokens and frames are per sample too (the batch's mean). The batch
is the samples given: distinct videos, or one sample given ``batch_size`` times. With ``repeats > 1`` every phase of the run
whose end-to-end time is the median is reported, so the parts always add up within one run. One
unrecorded warm-up run (the first method on the first temporal group, two answer tokens) goes before
them, and the methods take turns (repeat 1 of each, then repeat 2 of each, ...), so that a busy spell
of a shared machine does not fall on one method only.

Peak memory (:mod:`marc_ops.eval.efficiency.memory`) is reset before each method's pass and read after
it: on CUDA ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``, on the CPU
the process's resident-set high-water mark. It is the whole batch's, not divided by its samples, and
includes the resident weights, as the paper's 41.63 GB → 11.48 GB at batch 15 does; GB here is 2**30 bytes.

The prompt is answer-only (App. A.3: the model outputs only the final answer): the question, its
options and Video-R1's multiple-choice suffix, without the think-then-answer template. The Visual
Memory Retriever is not timed: every method gets the same frames (its clips are an input here).
What is compared is what the methods change: frames in, visual tokens out, and the LLM work on them.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from marc_ops.compression import CompressionConfig
from marc_ops.config.methods import MethodSpec, resolve_method
from marc_ops.config.prompts import VIDEO_R1_EVAL, question_text
from marc_ops.eval.efficiency.memory import peak_memory_bytes, reset_peak_memory
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.model import apply_compression, compression_of, prepare_model_inputs
from marc_ops.model.processing import fit_video_placeholders
from marc_ops.video import sample_frame_indices

logger = logging.getLogger(__name__)

# The paper's Fig. 5 compares these: Qwen2.5-VL-3B at 64 and 16 frames, and MARC at one frame's worth.
DEFAULT_METHODS: tuple[str, ...] = ("baseline-64f", "baseline-16f", "marc")

# A fixed multiple-choice question in MMVU's style for inputs that bring none (synthetic frames).
DEFAULT_QUESTION = question_text(
    "Which shape is visible in the last scene of the video?\n",
    "multiple choice",
    ["A. circle", "B. square", "C. triangle", "D. none of them"],
)


def answer_only_prompt(question: str) -> str:
    """App. A.3's fixed answer-only prompt: the question, then Video-R1's MC suffix, no thinking template."""
    return question + VIDEO_R1_EVAL.type_suffix["multiple choice"].lstrip()


@dataclass(frozen=True)
class ProfileSample:
    """One sample of the profiled batch.

    Attributes:
        frames: (F, H, W, 3) uint8 frames sampled at ``fps`` (``sample_frames(...).frames``), the input of
            the method with the most frames; a method with ``max_frames < F`` gets ``max_frames`` of them,
            spread as ``sample_frame_indices`` spreads them.
        question: the question text with its options; the prompt is ``answer_only_prompt(question)``.
        fps: the rate ``frames`` were sampled at (sets the video's mRoPE time steps).
        frame_clip_ids: (F,) the VMR clip of each frame; ``None`` makes the video one clip.
    """

    frames: np.ndarray | torch.Tensor
    question: str = DEFAULT_QUESTION
    fps: float = 1.0
    frame_clip_ids: Sequence[int] | None = None


@dataclass(frozen=True)
class _Sample:
    """A sample as the processor takes it: (F, 3, H, W) uint8 frames, its prompt, rate and clips."""

    frames: torch.Tensor
    prompt: str
    fps: float
    clip_ids: list[int] | None

    def first(self, count: int) -> _Sample:
        clips = None if self.clip_ids is None else self.clip_ids[:count]
        return replace(self, frames=self.frames[:count], clip_ids=clips)

    def for_method(self, spec: MethodSpec) -> _Sample:
        picked = _frames_for(spec, len(self.frames))
        clips = None if self.clip_ids is None else [self.clip_ids[i] for i in picked]
        return replace(self, frames=self.frames[picked], clip_ids=clips)


# --- the profile --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """One timed pass of one method over the batch: seconds for the whole batch, bytes at the peak, and
    frames and visual tokens per sample (the batch's mean)."""

    frames: float
    visual_tokens: float
    processor_s: float
    vision_s: float
    merge_s: float
    prefill_s: float
    generate_s: float
    peak_bytes: int

    @property
    def end_to_end_s(self) -> float:
        return self.processor_s + self.vision_s + self.merge_s + self.generate_s


def profile_efficiency(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    samples: Sequence[ProfileSample],
    *,
    source: str,
    methods: Sequence[MethodSpec | str] = DEFAULT_METHODS,
    answer_tokens: int = 16,
    device: str | torch.device = "cpu",
    repeats: int = 1,
    model_name: str | None = None,
    input_name: str = "one video",
    warmup: bool = True,
) -> dict[str, Any]:
    """Time each method's phases on the same batch; returns a dict valid as ``EfficiencyProfile``.

    Args:
        model: a Qwen2.5-VL on ``device`` (patched or not; it is patched here and its compression is
            restored at the end).
        processor: its processor.
        samples: the batch, one :class:`ProfileSample` per sample (the same one several times to
            measure a batch of copies); the batch size is their number.
        source: where the samples came from, recorded as the profile's ``source`` (the profile's
            ``efficiency.source``: ``longest`` or a benchmark name).
        methods: method names or specs; only ``max_frames`` and ``compression`` matter here.
        answer_tokens: new tokens every method generates, exactly.
        repeats: timed runs per method; the median run (by end-to-end time) is reported.
        model_name, input_name: recorded as the profile's ``model`` and (the start of) its ``input``.
        warmup: run the first method once on the first temporal group before timing anything.
    """
    if not samples or answer_tokens < 1 or repeats < 1:
        raise ValueError(
            f"{len(samples)} samples, answer_tokens={answer_tokens} and repeats={repeats}: give at least one "
            "sample, and at least 1 of each"
        )
    batch = _prepared(samples)
    device = torch.device(device)
    specs = [resolve_method(m) if isinstance(m, str) else m for m in methods]
    setting = _Setting(model, processor, answer_tokens, device)
    original = compression_of(model)
    try:
        if warmup:
            _warm_up(setting, specs[0], batch)
        runs = _timed_runs(setting, specs, batch, repeats)
    finally:
        apply_compression(model, original)
    profile = {
        "device": _device_name(device),
        "model": model_name or model.config.name_or_path or type(model).__name__,
        "dtype": str(model.dtype).removeprefix("torch."),
        "batch_size": len(batch),
        "repeats": repeats,
        "source": source,
        "input": f"{input_name}: {_frames_description(batch)}, {answer_tokens} answer tokens forced",
        "methods": [
            _row(spec, _median_run(method_runs), len(batch), device)
            for spec, method_runs in zip(specs, runs, strict=True)
        ],
    }
    return EfficiencyProfile.model_validate(profile).model_dump()


@dataclass(frozen=True)
class _Setting:
    model: Qwen2_5_VLForConditionalGeneration
    processor: Qwen2_5_VLProcessor
    answer_tokens: int
    device: torch.device

    def clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def _prepared(samples: Sequence[ProfileSample]) -> list[_Sample]:
    """The samples checked and in the processor's layout; either every sample has clip ids or none has."""
    with_clips = {sample.frame_clip_ids is not None for sample in samples}
    if len(with_clips) > 1:
        raise ValueError("give frame_clip_ids for every sample of the batch or for none")
    batch = []
    for sample in samples:
        frames = _frames_tensor(sample.frames)
        clips = sample.frame_clip_ids
        if clips is not None and len(clips) != len(frames):
            raise ValueError(
                f"frame_clip_ids has {len(clips)} ids for {len(frames)} frames; give one per frame"
            )
        prompt = answer_only_prompt(sample.question)
        batch.append(_Sample(frames, prompt, sample.fps, None if clips is None else list(clips)))
    return batch


def _frames_description(batch: Sequence[_Sample]) -> str:
    """``64 frames of 56x56 px at 1 fps`` per sample, with ranges where the samples differ."""

    def span(values: Sequence[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:g}" if low == high else f"{low:g}-{high:g}"

    sizes = sorted({(s.frames.shape[-1], s.frames.shape[-2]) for s in batch})
    size = ", ".join(f"{w}x{h}" for w, h in sizes) if len(sizes) <= 3 else f"{len(sizes)} sizes of"
    return f"{span([len(s.frames) for s in batch])} frames of {size} px at {span([s.fps for s in batch])} fps"


def _frames_tensor(video_frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(F, H, W, 3) uint8 → (F, 3, H, W) uint8, the layout the video processor reads unambiguously."""
    frames = torch.as_tensor(video_frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"video_frames must be (F, H, W, 3) uint8 RGB (as sample_frames returns); got {tuple(frames.shape)} "
            f"{frames.dtype}"
        )
    return frames.permute(0, 3, 1, 2).contiguous()


def _frames_for(spec: MethodSpec, available: int) -> list[int]:
    """Which of the ``available`` frames a method sees: all of them, or ``max_frames`` spread uniformly."""
    return sample_frame_indices(available, 1.0, 1.0, spec.max_frames).tolist()


def _warm_up(setting: _Setting, spec: MethodSpec, batch: Sequence[_Sample]) -> None:
    """One untimed pass over the first temporal group with two answer tokens (lazy init, thread pools)."""
    _run_once(
        replace(setting, answer_tokens=min(2, setting.answer_tokens)), spec, [s.first(2) for s in batch]
    )


def _timed_runs(
    setting: _Setting, specs: Sequence[MethodSpec], batch: Sequence[_Sample], repeats: int
) -> list[list[_Run]]:
    """``repeats`` runs of each method, taking turns, so a busy spell of a shared machine hits all alike."""
    inputs = [[sample.for_method(spec) for sample in batch] for spec in specs]
    runs: list[list[_Run]] = [[] for _ in specs]
    for _ in range(repeats):
        for spec, method_batch, method_runs in zip(specs, inputs, runs, strict=True):
            run = _run_once(setting, spec, method_batch)
            logger.info(
                "%s: %g visual tokens, vision %.2f s, prefill %.2f s, generate %.2f s, end to end %.2f s",
                spec.name,
                run.visual_tokens,
                run.vision_s,
                run.prefill_s,
                run.generate_s,
                run.end_to_end_s,
            )
            method_runs.append(run)
    return runs


def _run_once(setting: _Setting, spec: MethodSpec, batch: Sequence[_Sample]) -> _Run:
    """Processor, vision tower, merge, generate, in order, each timed; the peak memory of the whole pass."""
    model, clock = setting.model, setting.clock
    apply_compression(model, spec.compression)
    reset_peak_memory(setting.device)
    with torch.inference_mode():
        started = clock()
        inputs = _model_inputs(setting, spec, batch)
        encoded = clock()
        with _call_spans(model.model.visual, clock) as vision_calls:
            video = model.model.get_video_features(
                inputs.pop("pixel_values_videos"),
                inputs["video_grid_thw"],
                video_clip_ids=inputs.pop("video_clip_ids"),
                return_dict=True,
            )
        features = clock()
        if spec.compression.counts_from_features:
            # The count is known only now: cut the prompt's placeholders to it (processor work).
            inputs["input_ids"], inputs["attention_mask"] = fit_video_placeholders(
                inputs["input_ids"],
                inputs["attention_mask"],
                model.config.video_token_id,
                [len(rows) for rows in video.pooler_output],
                pad_token_id=setting.processor.tokenizer.pad_token_id,
            )
            inputs["mm_token_type_ids"] = 2 * (inputs["input_ids"] == model.config.video_token_id).long()
            fitted = clock()
            encoded += fitted - features
            features = fitted
        with _call_spans(model, clock) as forward_calls:
            output = model.generate(
                **inputs,
                mm_encoder_outputs={"video": video},
                do_sample=False,
                min_new_tokens=setting.answer_tokens,
                max_new_tokens=setting.answer_tokens,
            )
        generated = clock()
    _check_generation(output, inputs["input_ids"], forward_calls, setting.answer_tokens)
    if len(vision_calls) != 1:
        raise RuntimeError(f"the vision tower ran {len(vision_calls)} times for one batch; expected once")
    vision_s = vision_calls[0][1] - vision_calls[0][0]
    video_token_id = model.config.video_token_id
    return _Run(
        frames=sum(len(sample.frames) for sample in batch) / len(batch),
        visual_tokens=int((inputs["input_ids"] == video_token_id).sum()) / len(batch),
        processor_s=encoded - started,
        vision_s=vision_s,
        # get_video_features outside the vision tower: the merge itself (plus a split, microseconds)
        merge_s=(features - encoded - vision_s) if spec.compression.enabled else 0.0,
        prefill_s=forward_calls[0][1] - forward_calls[0][0],
        generate_s=generated - features,
        peak_bytes=peak_memory_bytes(setting.device),
    )


def _model_inputs(setting: _Setting, spec: MethodSpec, batch: Sequence[_Sample]):
    texts = [
        setting.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": sample.prompt}]}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for sample in batch
    ]
    # A method whose count depends on the features gets uncompressed placeholders here, cut after the tower.
    compression = CompressionConfig() if spec.compression.counts_from_features else spec.compression
    inputs = prepare_model_inputs(
        setting.processor,
        compression,
        text=texts,
        videos=[sample.frames for sample in batch],
        video_clip_ids=None if batch[0].clip_ids is None else [sample.clip_ids for sample in batch],
        video_metadata=[{"fps": sample.fps, "total_num_frames": len(sample.frames)} for sample in batch],
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )
    return inputs.to(setting.device)


@contextlib.contextmanager
def _call_spans(module: nn.Module, clock: Callable[[], float]) -> Iterator[list[tuple[float, float]]]:
    """(start, end) of every call of ``module`` inside the block, from forward hooks."""
    spans: list[tuple[float, float]] = []
    starts: list[float] = []
    pre = module.register_forward_pre_hook(lambda *_: starts.append(clock()))
    post = module.register_forward_hook(lambda *_: spans.append((starts.pop(), clock())))
    try:
        yield spans
    finally:
        pre.remove()
        post.remove()


def _check_generation(
    output: torch.Tensor,
    input_ids: torch.Tensor,
    forward_calls: list[tuple[float, float]],
    answer_tokens: int,
) -> None:
    new_tokens = output.shape[1] - input_ids.shape[1]
    if new_tokens != answer_tokens or len(forward_calls) != answer_tokens:
        raise RuntimeError(
            f"generate made {new_tokens} new tokens in {len(forward_calls)} forward calls; the profile forces "
            f"exactly {answer_tokens} (one prefill, then one decoding step per further token)"
        )


def _median_run(runs: list[_Run]) -> _Run:
    """The run whose end-to-end time is the median (the lower one of an even count): its parts add up."""
    ordered = sorted(runs, key=lambda run: run.end_to_end_s)
    return ordered[(len(ordered) - 1) // 2]


def _row(spec: MethodSpec, run: _Run, batch_size: int, device: torch.device) -> dict[str, Any]:
    per_sample = 1.0 / batch_size
    return {
        "method": spec.name,
        "frames": round(run.frames),
        "visual_tokens": float(run.visual_tokens),
        "vision_s": run.vision_s * per_sample,
        "prefill_s": run.prefill_s * per_sample,
        "generate_s": run.generate_s * per_sample,
        "end_to_end_s": run.end_to_end_s * per_sample,
        "merge_s": run.merge_s * per_sample,
        "peak_memory_gb": run.peak_bytes / 2**30,
        "memory_kind": "cuda" if device.type == "cuda" else "rss",
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
