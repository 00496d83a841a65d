"""The efficiency profile (paper section 4.2, Fig. 5 and App. A.3; SPEC section 8): what each method costs.

``profile_efficiency(model, processor, frames, methods=..., device=...)`` feeds one video to each
method (64 frames, 16 frames, MARC at the one-frame budget) and times the phases of one answer:

============  =========================================================================================
phase         what is timed
============  =========================================================================================
(processor)   chat template, frame patches, placeholder expansion (``prepare_model_inputs``)
vision_s      the vision tower (``model.model.visual``), once over all the sample's frames
merge_s       the rest of ``get_video_features``: the memory-aware merge (0 for a method without one)
generate_s    ``model.generate`` from the precomputed visual features, forced to exactly
              ``answer_tokens`` new tokens (``min_new_tokens = max_new_tokens``, greedy)
prefill_s     the first forward of that ``generate``: the prompt with its visual features, one token out
end_to_end_s  processor + vision + merge + generate, back to back: the same work, in the same order,
              as one ``model.generate(**inputs_with_pixels)``; the phases are only called one by one
============  =========================================================================================

Times are seconds per sample: the wall time of a batch of ``batch_size`` copies of the sample divided
by ``batch_size`` (the paper runs batches of 15, App. A.3). With ``repeats > 1`` every phase of the run
whose end-to-end time is the median is reported, so the parts always add up within one run. One
unrecorded warm-up run (the first method on the first temporal group, two answer tokens) goes before
them, and the methods take turns (repeat 1 of each, then repeat 2 of each, ...), so that a busy spell
of a shared machine does not fall on one method only.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``; on the CPU,
the process's resident-set high-water mark (``VmHWM``), reset before each method by writing ``5`` to
``/proc/self/clear_refs`` after ``malloc_trim`` has handed freed heap back to the kernel, so one method's
peak never leaks into the next one's, in one process (Linux only). Both include the resident weights,
as the paper's 41.63 GB → 11.48 GB does; GB here is 2**30 bytes.

The prompt is answer-only (App. A.3: the model outputs only the final answer): the question, its
options and Video-R1's multiple-choice suffix, without the think-then-answer template. The Visual
Memory Retriever is not timed: every method gets the same frames (its clips are an input here).
What is compared is what the methods change: frames in, visual tokens out, and the LLM work on them.

``build_qwen2_5_vl_3b_random`` builds the real Qwen2.5-VL-3B architecture with random weights, so the
CPU numbers are those of the real shapes; ``build_qwen2_5_vl_3b_processor`` is a processor for it
whose tokenizer has Qwen's token ids (see its docstring).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
)
from transformers.initialization import no_init_weights

from marc_ops.config.methods import MethodSpec, resolve_method
from marc_ops.config.prompts import VIDEO_R1_EVAL, question_text
from marc_ops.config.synthetic import BACKGROUNDS
from marc_ops.data.synthetic.render import add_noise, draw_scene
from marc_ops.data.synthetic.scenes import Scene, place_shapes, random_specs
from marc_ops.eval.report import EfficiencyProfile
from marc_ops.model import (
    TinyQwen2_5_VLConfig,
    apply_compression,
    build_tiny_processor,
    build_tiny_tokenizer,
    compression_of,
    prepare_model_inputs,
)
from marc_ops.tables import markdown_table
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


# --- the profile --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """One timed pass of one method: seconds for the whole batch, bytes at the peak."""

    frames: int
    visual_tokens: int
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
    video_frames: np.ndarray | torch.Tensor,
    *,
    methods: Sequence[MethodSpec | str] = DEFAULT_METHODS,
    batch_size: int = 1,
    answer_tokens: int = 16,
    device: str | torch.device = "cpu",
    repeats: int = 1,
    question: str = DEFAULT_QUESTION,
    fps: float = 1.0,
    frame_clip_ids: Sequence[int] | None = None,
    model_name: str | None = None,
    input_name: str = "one video",
    warmup: bool = True,
) -> dict[str, Any]:
    """Time each method's phases on the same video; returns a dict valid as ``EfficiencyProfile``.

    Args:
        model: a Qwen2.5-VL on ``device`` (patched or not; it is patched here and its compression is
            restored at the end).
        processor: its processor.
        video_frames: (F, H, W, 3) uint8 frames sampled at ``fps`` (``sample_frames(...).frames``), the
            input of the method with the most frames; a method with ``max_frames < F`` gets
            ``max_frames`` of them, spread as ``sample_frame_indices`` spreads them.
        methods: method names or specs; only ``max_frames`` and ``compression`` matter here.
        batch_size: copies of the sample in one batch (the paper: 15 on one A6000).
        answer_tokens: new tokens every method generates, exactly.
        repeats: timed runs per method; the median run (by end-to-end time) is reported.
        question: the question text (with its options); the prompt is ``answer_only_prompt(question)``.
        fps: the rate ``video_frames`` were sampled at (sets the video's mRoPE time steps).
        frame_clip_ids: (F,) the VMR clip of each frame; ``None`` makes the video one clip.
        model_name, input_name: recorded as the profile's ``model`` and (the start of) its ``input``.
        warmup: run the first method once on the first temporal group before timing anything.
    """
    frames = _frames_tensor(video_frames)
    if batch_size < 1 or answer_tokens < 1 or repeats < 1:
        raise ValueError(
            f"batch_size={batch_size}, answer_tokens={answer_tokens} and repeats={repeats} must all be >= 1"
        )
    if frame_clip_ids is not None and len(frame_clip_ids) != len(frames):
        raise ValueError(
            f"frame_clip_ids has {len(frame_clip_ids)} ids for {len(frames)} frames; give one per frame"
        )
    device = torch.device(device)
    specs = [resolve_method(m) if isinstance(m, str) else m for m in methods]
    setting = _Setting(model, processor, answer_only_prompt(question), batch_size, answer_tokens, fps, device)
    original = compression_of(model)
    try:
        if warmup:
            _warm_up(setting, specs[0], frames, frame_clip_ids)
        runs = _timed_runs(setting, specs, frames, frame_clip_ids, repeats)
    finally:
        apply_compression(model, original)
    height, width = frames.shape[-2:]
    profile = {
        "device": _device_name(device),
        "model": model_name or model.config.name_or_path or type(model).__name__,
        "dtype": str(model.dtype).removeprefix("torch."),
        "batch_size": batch_size,
        "input": (
            f"{input_name}: {len(frames)} frames of {width}x{height} px at {fps:g} fps, answer-only MC prompt, "
            f"{answer_tokens} answer tokens forced; {repeats} timed run(s) per method"
        ),
        "methods": [
            _row(spec, _median_run(method_runs), batch_size, device)
            for spec, method_runs in zip(specs, runs, strict=True)
        ],
    }
    return EfficiencyProfile.model_validate(profile).model_dump()


@dataclass(frozen=True)
class _Setting:
    model: Qwen2_5_VLForConditionalGeneration
    processor: Qwen2_5_VLProcessor
    prompt: str
    batch_size: int
    answer_tokens: int
    fps: float
    device: torch.device

    def clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


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


def _warm_up(
    setting: _Setting, spec: MethodSpec, frames: torch.Tensor, frame_clip_ids: Sequence[int] | None
) -> None:
    """One untimed pass over the first temporal group with two answer tokens (lazy init, thread pools)."""
    clips = None if frame_clip_ids is None else frame_clip_ids[:2]
    _run_once(replace(setting, answer_tokens=min(2, setting.answer_tokens)), spec, frames[:2], clips)


def _timed_runs(
    setting: _Setting,
    specs: Sequence[MethodSpec],
    frames: torch.Tensor,
    frame_clip_ids: Sequence[int] | None,
    repeats: int,
) -> list[list[_Run]]:
    """``repeats`` runs of each method, taking turns, so a busy spell of a shared machine hits all alike."""
    inputs = []
    for spec in specs:
        picked = _frames_for(spec, len(frames))
        clips = None if frame_clip_ids is None else [frame_clip_ids[i] for i in picked]
        inputs.append((frames[picked], clips))
    runs: list[list[_Run]] = [[] for _ in specs]
    for _ in range(repeats):
        for spec, (method_frames, clips), method_runs in zip(specs, inputs, runs, strict=True):
            run = _run_once(setting, spec, method_frames, clips)
            logger.info(
                "%s: %d visual tokens, vision %.2f s, prefill %.2f s, generate %.2f s, end to end %.2f s",
                spec.name, run.visual_tokens, run.vision_s, run.prefill_s, run.generate_s, run.end_to_end_s,
            )  # fmt: skip
            method_runs.append(run)
    return runs


def _run_once(
    setting: _Setting, spec: MethodSpec, frames: torch.Tensor, clip_ids: Sequence[int] | None
) -> _Run:
    """Processor, vision tower, merge, generate, in order, each timed; the peak memory of the whole pass."""
    model, clock = setting.model, setting.clock
    apply_compression(model, spec.compression)
    _reset_peak_memory(setting.device)
    with torch.inference_mode():
        started = clock()
        inputs = _model_inputs(setting, spec, frames, clip_ids)
        encoded = clock()
        with _call_spans(model.model.visual, clock) as vision_calls:
            video = model.model.get_video_features(
                inputs.pop("pixel_values_videos"),
                inputs["video_grid_thw"],
                video_clip_ids=inputs.pop("video_clip_ids"),
                return_dict=True,
            )
        features = clock()
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
        frames=len(frames),
        visual_tokens=int((inputs["input_ids"][0] == video_token_id).sum()),
        processor_s=encoded - started,
        vision_s=vision_s,
        # get_video_features outside the vision tower: the merge itself (plus a split, microseconds)
        merge_s=(features - encoded - vision_s) if spec.compression.enabled else 0.0,
        prefill_s=forward_calls[0][1] - forward_calls[0][0],
        generate_s=generated - features,
        peak_bytes=_peak_memory_bytes(setting.device),
    )


def _model_inputs(setting: _Setting, spec: MethodSpec, frames: torch.Tensor, clip_ids: Sequence[int] | None):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": setting.prompt}]}]
    text = setting.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    n = setting.batch_size
    inputs = prepare_model_inputs(
        setting.processor,
        spec.compression,
        text=[text] * n,
        videos=[frames] * n,
        video_clip_ids=None if clip_ids is None else [list(clip_ids)] * n,
        video_metadata=[{"fps": setting.fps, "total_num_frames": len(frames)}] * n,
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
        "frames": run.frames,
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


# --- peak memory ------------------------------------------------------------------------------------------

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _reset_peak_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    if not _CLEAR_REFS.exists():
        raise RuntimeError(
            "the CPU peak-memory measurement resets the process's RSS high-water mark through "
            "/proc/self/clear_refs, which only Linux has; profile on Linux (or on a CUDA device)"
        )
    # Freed heap stays resident until trimmed; without this the previous method's garbage counts here.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS to the current RSS (proc(5))


def _peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"{_STATUS} has no VmHWM line")


# --- the table ----------------------------------------------------------------------------------------------


def reference_row(profile: Mapping[str, Any]) -> Mapping[str, Any]:
    """The row every ratio is taken against: ``baseline-64f`` if profiled, else the one with the most visual tokens."""
    rows = profile["methods"]
    named = [row for row in rows if row["method"] == "baseline-64f"]
    return named[0] if named else max(rows, key=lambda row: row["visual_tokens"])


def format_table(profile: Mapping[str, Any]) -> str:
    """The profile as Markdown: costs per sample, ratios to the 64-frame row, and the vision tower's share."""
    checked = EfficiencyProfile.model_validate(profile)
    ref = reference_row(profile)
    memory = "peak CUDA memory allocated" if checked.memory_kind == "cuda" else "peak process RSS"
    head = (
        f"`{checked.model}` on {checked.device}, {checked.dtype}, batch {checked.batch_size}; {checked.input}. "
        f"Seconds per sample; memory is the {memory} in GB (2^30 bytes), weights included."
    )
    costs = pl.DataFrame(
        [
            {
                "method": row["method"],
                "frames": row["frames"],
                "visual tokens": _fmt(row["visual_tokens"], 0),
                "vision (s)": _fmt(row["vision_s"]),
                "merge (s)": _fmt(row["merge_s"], 4),
                "prefill (s)": _fmt(row["prefill_s"]),
                "generate (s)": _fmt(row["generate_s"]),
                "end-to-end (s)": _fmt(row["end_to_end_s"]),
                "peak memory (GB)": _fmt(row["peak_memory_gb"]),
                "vision share": f"{row['vision_s'] / row['end_to_end_s']:.1%}",
            }
            for row in profile["methods"]
        ]
    )
    ratios = pl.DataFrame(
        [
            {
                "method": row["method"],
                "visual tokens": _ratio(row["visual_tokens"], ref["visual_tokens"]),
                "prefill": _ratio(row["prefill_s"], ref["prefill_s"]),
                "generate": _ratio(row["generate_s"], ref["generate_s"]),
                "end-to-end": _ratio(row["end_to_end_s"], ref["end_to_end_s"]),
                "peak memory": _ratio(row["peak_memory_gb"], ref["peak_memory_gb"]),
                f"merge / {ref['method']} prefill": f"{row['merge_s'] / ref['prefill_s']:.3%}",
            }
            for row in profile["methods"]
        ]
    )
    share = ref["vision_s"] / ref["end_to_end_s"]
    bound = (
        f"The vision tower takes {share:.1%} of `{ref['method']}`'s end-to-end time. Compression after the "
        f"encoder (MARC merges the vision tower's output) leaves that part untouched, so with the same frames "
        f"in it can save at most {1 - share:.1%} of end-to-end time here."
    )
    return "\n\n".join(
        [
            head,
            markdown_table(costs),
            f"Ratios to `{ref['method']}` (1.00x = the same cost):",
            markdown_table(ratios),
            bound,
        ]
    )


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _ratio(value: float, reference: float) -> str:
    return "—" if reference == 0 else f"{value / reference:.3f}x"


# --- the real Qwen2.5-VL-3B architecture, random weights --------------------------------------------------

# Qwen/Qwen2.5-VL-3B-Instruct's config.json and generation_config.json, written out here because
# nothing can be downloaded on this machine.
QWEN2_5_VL_3B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "attention_dropout": 0.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "tie_word_embeddings": True,
}
QWEN2_5_VL_3B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "out_hidden_size": 2048,
    "hidden_act": "silu",
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "initializer_range": 0.02,
}
QWEN2_5_VL_3B_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
QWEN_FIRST_ADDED_TOKEN_ID = 151643  # <|endoftext|>; the BPE vocabulary fills the ids below it
QWEN2_5_VL_3B_NAME = "Qwen2.5-VL-3B architecture, random weights"

# The deterministic fill: a pool of N(0, initializer_range) values, tiled over each weight from an offset
# that depends on the parameter's index. A prime pool length keeps rows of different widths out of step.
_POOL_SIZE = 1_000_003
_POOL_STRIDE = 7_919


def qwen2_5_vl_3b_config() -> Qwen2_5_VLConfig:
    """The transformers config of Qwen/Qwen2.5-VL-3B-Instruct (3.75 B parameters), from its published values."""
    return Qwen2_5_VLConfig(
        text_config=dict(QWEN2_5_VL_3B_TEXT),
        vision_config=dict(QWEN2_5_VL_3B_VISION),
        tie_word_embeddings=True,
        **QWEN2_5_VL_3B_TOKEN_IDS,
    )


def build_qwen2_5_vl_3b_random(
    dtype: torch.dtype = torch.bfloat16, *, device: str | torch.device = "cpu", seed: int = 0
) -> Qwen2_5_VLForConditionalGeneration:
    """The real Qwen2.5-VL-3B architecture with cheap deterministic random weights, built directly in ``dtype``.

    The modules are created under transformers' ``no_init_weights`` (parameters are allocated in
    ``dtype`` and left uninitialised: no fp32 copy, no per-module random init), then filled once:
    linear, convolution and embedding weights tile a seeded pool of N(0, 0.02) values, norms get 1,
    biases 0. 7.0 GiB of bf16 weights; on this 2-core VM about 40 s, nearly all of it the first touch of
    those pages (the naive build, fp32 init then bf16: 88 s and a 16.7 GB peak). Timing does not depend
    on the values; the fill only keeps activations finite and out of the subnormal range.

    Args:
        dtype: the parameters' dtype (bf16 as the released checkpoint).
        device: where to allocate; ``"meta"`` allocates nothing (shapes and config only, for tests).
        seed: seeds the value pool.
    """
    config = qwen2_5_vl_3b_config()
    with torch.device(device), no_init_weights():
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model.tie_weights()  # no_init_weights skips init_weights, which is also where the tying happens
    if torch.device(device).type != "meta":
        _fill_deterministic(model, std=config.text_config.initializer_range, seed=seed)
    model.generation_config = GenerationConfig(
        bos_token_id=QWEN_FIRST_ADDED_TOKEN_ID,
        eos_token_id=[QWEN2_5_VL_3B_TEXT["eos_token_id"], QWEN_FIRST_ADDED_TOKEN_ID],
        pad_token_id=QWEN_FIRST_ADDED_TOKEN_ID,
    )
    model.config.name_or_path = QWEN2_5_VL_3B_NAME
    return model.eval()


@torch.no_grad()
def _fill_deterministic(model: nn.Module, *, std: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    pool = (torch.randn(2 * _POOL_SIZE, generator=generator) * std).to(model.dtype)
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # the tied lm_head / embedding
                continue
            seen.add(id(param))
            flat = param.view(-1)
            if name == "bias":
                flat.zero_()
            elif "RMSNorm" in type(module).__name__:
                flat.fill_(1.0)
            elif isinstance(module, nn.Linear | nn.Conv3d | nn.Embedding):
                offset = (len(seen) * _POOL_STRIDE) % _POOL_SIZE
                _tile_(flat, pool[offset : offset + _POOL_SIZE].to(flat.device))
            else:
                raise TypeError(
                    f"no fill rule for parameter {name!r} of a {type(module).__name__}; add one to _fill_deterministic"
                )


def _tile_(flat: torch.Tensor, source: torch.Tensor) -> None:
    """Copy ``source`` over ``flat`` again and again (an expand, so no repeated copy is materialised)."""
    size = source.numel()
    whole = flat.numel() // size
    if whole:
        flat[: whole * size].view(whole, size).copy_(source.expand(whole, size))
    rest = flat.numel() - whole * size
    if rest:
        flat[whole * size :].copy_(source[:rest])


def qwen_vocabulary_tokenizer() -> Qwen2Tokenizer:
    """The embedded default's tokenizer with its added tokens moved to Qwen2.5-VL's ids (151643 onwards).

    The real Qwen tokenizer cannot be downloaded here, and the tiny one (1050 ids) puts
    ``<|video_pad|>`` at 1037, not at 151656 where the 3B config expects it. So: the tiny BPE
    (ids 0..1023, unchanged), then unused filler entries up to 151642 (no merge produces them),
    then the same added tokens in the same order, now at Qwen's ids: ``<|endoftext|>`` 151643,
    ``<|im_end|>`` 151645, ``<|vision_start|>`` 151652, ``<|video_pad|>`` 151656, ... The chat
    template, eos / pad and special-token handling are the tiny tokenizer's (which match Qwen's).
    Ordinary text encodes to the tiny BPE's tokens, so a prompt is a few dozen tokens longer or
    shorter than with Qwen's own BPE, next to thousands of visual tokens; timing does not depend on
    which ids the tokens have, only on how many there are and on the vocabulary size.
    """
    tiny = build_tiny_tokenizer()
    spec = json.loads(tiny.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    for token_id in range(len(vocab), QWEN_FIRST_ADDED_TOKEN_ID):
        vocab[f"<|marc_unused_{token_id}|>"] = token_id
    shift = QWEN_FIRST_ADDED_TOKEN_ID - min(token["id"] for token in spec["added_tokens"])
    for token in spec["added_tokens"]:
        token["id"] += shift
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        unk_token=None,
        bos_token=None,
        eos_token=tiny.eos_token,
        pad_token=tiny.pad_token,
        errors="replace",
        model_max_length=tiny.model_max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.extra_special_tokens = list(tiny.extra_special_tokens)
    tokenizer.chat_template = tiny.chat_template
    return tokenizer


def build_qwen2_5_vl_3b_processor(
    *, min_pixels: int = 4 * 28 * 28, max_pixels: int = 128 * 28 * 28
) -> Qwen2_5_VLProcessor:
    """A processor for ``build_qwen2_5_vl_3b_random``: Qwen2.5-VL's image and video processing
    (patch 14, temporal patch 2, merge 2, CLIP mean / std) with the pipeline's per-frame pixel bounds
    (SPEC section 3), and ``qwen_vocabulary_tokenizer()``."""
    bounds = TinyQwen2_5_VLConfig(min_pixels=min_pixels, max_pixels=max_pixels)
    return build_tiny_processor(qwen_vocabulary_tokenizer(), bounds)


# --- synthetic input ------------------------------------------------------------------------------------------


def synthetic_video_frames(
    n_frames: int = 64, *, height: int = 224, width: int = 448, shots: int = 4, seed: int = 0
) -> np.ndarray:
    """A synthetic video sampled at 1 fps, (n_frames, height, width, 3) uint8.

    ``shots`` scenes of the embedded corpus's kind (a background, moving shapes), back to back with
    hard cuts, with its mild per-frame noise. 448x224 is 128 merged 28x28 patches per frame: one
    temporal group is the paper's ~120 tokens, 64 frames are 32 groups = 4096 tokens.
    """
    if n_frames < 1 or shots < 1:
        raise ValueError(f"n_frames={n_frames} and shots={shots} must be >= 1")
    rng = np.random.default_rng(seed)
    backgrounds = rng.choice(list(BACKGROUNDS), size=shots, replace=shots > len(BACKGROUNDS))
    scenes = [
        Scene(background=str(bg), shapes=place_shapes(rng, random_specs(rng, str(bg), 3), width, height))
        for bg in backgrounds
    ]
    shot_of_frame = np.minimum(np.arange(n_frames) * shots // n_frames, shots - 1)
    first_frame = {shot: int(np.argmax(shot_of_frame == shot)) for shot in range(shots)}
    return np.stack(
        [
            add_noise(draw_scene(scenes[shot], float(i - first_frame[shot]), width, height), rng, 3)
            for i, shot in enumerate(shot_of_frame.tolist())
        ]
    )




