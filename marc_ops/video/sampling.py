"""Which frames a video-LLM sees: sample at a fixed rate, cap the count uniformly, resize (SPEC section 3)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from marc_ops.config.video import DEFAULT_VIDEO_CONFIG, VideoConfig
from marc_ops.video.decode import VideoReader, open_video
from marc_ops.video.resize import resize_frames, smart_resize

# Frames decoded and resized together, at most: 16, or fewer where 16 frames would hold more source
# pixels than 16 frames of 1080p, i.e. than one 8K frame (which goes alone). Resizing works on a
# float32 copy of its chunk: one chunk this size peaks at ~0.7 GB (measured on an 8K frame).
_CHUNK_FRAMES = 16
_CHUNK_PIXELS = 16 * 1920 * 1080


@dataclass(frozen=True)
class SampledFrames:
    """Frames sampled from one video.

    frames: (T, H, W, 3) uint8 RGB, H and W multiples of 28;
    timestamps: (T,) float64 seconds, `indices / source_fps`;
    indices: (T,) int64 source frame numbers, strictly increasing.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    source_fps: float
    path: Path


def sample_frame_indices(num_frames: int, source_fps: float, fps: float, max_frames: int) -> np.ndarray:
    """Source frame numbers to feed the model, `(T,)` int64, strictly increasing, `1 <= T <= max_frames`.

    1. Sample times t_k = k / fps for k = 0, 1, ... while t_k < duration = num_frames / source_fps
       (so n = ceil(num_frames * fps / source_fps) times, at least one).
    2. Map each time to the nearest source frame, floor(t_k * source_fps + 0.5) (a tie goes to
       the later frame), clipped to the last frame; drop repeats (fps above the source rate).
    3. If more than `max_frames` remain, keep the ones at positions
       floor(linspace(0, n - 1, max_frames) + 0.5): the first and last are always kept and the
       rest are spread uniformly; these positions are distinct, so exactly `max_frames` remain.

    Example: 95 frames at 10 fps, fps=1 -> [0, 10, ..., 90]; with max_frames=4 -> [0, 30, 60, 90].

    Only the kept frames are computed, so time and memory are O(max_frames) whatever the header
    claims: 8 frames whose time stamps say 10,000 hours are 36 million sample times at 1 fps, and
    a header's frame count can be as large as it likes.
    """
    if num_frames < 1 or not source_fps > 0 or not fps > 0 or max_frames < 1:
        raise ValueError(
            f"need num_frames >= 1, source_fps > 0, fps > 0, max_frames >= 1; got "
            f"{num_frames}, {source_fps}, {fps}, {max_frames}"
        )
    if fps >= source_fps:
        # At least one sample time per source frame: steps 1-2 keep every frame, once.
        return _spread(num_frames, max_frames)
    # round() first: 9.000000000001 sample slots are 9, not 10.
    num_samples = max(1, math.ceil(round(num_frames * fps / source_fps, 6)))
    # Sample times are more than a frame apart, so their frames are distinct, except that the clip to
    # the last frame can make the final one repeat the one before it.
    last_two = _nearest_frames(np.arange(max(0, num_samples - 2), num_samples), num_frames, source_fps, fps)
    distinct = num_samples - 1 if len(last_two) == 2 and last_two[0] == last_two[1] else num_samples
    return _nearest_frames(_spread(distinct, max_frames), num_frames, source_fps, fps)


def _spread(count: int, max_frames: int) -> np.ndarray:
    """Positions 0..count-1, or `max_frames` of them spread as step 3 of `sample_frame_indices` spreads them."""
    if count <= max_frames:
        return np.arange(count, dtype=np.int64)
    return np.floor(np.linspace(0, count - 1, max_frames) + 0.5).astype(np.int64)


def _nearest_frames(samples: np.ndarray, num_frames: int, source_fps: float, fps: float) -> np.ndarray:
    """The source frame of each sample number k (time k / fps), as step 2 of `sample_frame_indices` maps it."""
    times = samples / fps
    return np.clip(np.floor(times * source_fps + 0.5), 0, num_frames - 1).astype(np.int64)


def sample_frames(
    path: str | Path, config: VideoConfig = DEFAULT_VIDEO_CONFIG, *, max_frames: int | None = None
) -> SampledFrames:
    """Decode the frames of `path` chosen by `sample_frame_indices`, resized by `smart_resize`.

    `config.fps` sets the sampling rate, `max_frames` (when given) overrides `config.max_frames`
    (e.g. 16 for the 16-frame rows), `config.backend` the decoder. Every frame is resized to
    `smart_resize(H, W, min_pixels=config.min_pixels, max_pixels=config.max_pixels)` with
    antialiased bicubic interpolation (`resize_frames`), so both sides are multiples of 28 and
    H*W <= config.max_pixels. Frames are decoded and resized a few at a time (`read_resized`).

    Returns frames (T, H, W, 3) uint8, timestamps (T,) float64 s, indices (T,) int64.
    Raises VideoDecodeError naming the file if it is missing, empty or unreadable.
    """
    if max_frames is not None:
        config = VideoConfig.model_validate({**config.model_dump(), "max_frames": max_frames})
    reader = open_video(path, config.backend)
    indices = sample_frame_indices(reader.num_frames, reader.fps, config.fps, config.max_frames)
    return SampledFrames(
        frames=read_resized(reader, indices, config),
        timestamps=indices / reader.fps,
        indices=indices,
        source_fps=reader.fps,
        path=reader.path,
    )


def read_resized(reader: VideoReader, indices: np.ndarray, config: VideoConfig) -> np.ndarray:
    """The frames at sorted, distinct `indices: (T,)`, resized by `smart_resize` with `config`'s pixel
    bounds: `(T, H, W, 3)` uint8.

    Decoded and resized a chunk at a time: 16 frames, or as many as hold the source pixels of 16
    frames of 1080p (at least one), so memory holds the output plus one chunk at source resolution
    and its float32 copy, however large the source frames are.
    """
    height, width = reader.frame_size()
    chunk_size = max(1, min(_CHUNK_FRAMES, _CHUNK_PIXELS // (height * width)))
    resized = []
    for chunk in reader.read(indices, chunk_size):
        target = smart_resize(
            chunk.shape[1], chunk.shape[2], min_pixels=config.min_pixels, max_pixels=config.max_pixels
        )
        resized.append(resize_frames(chunk, *target))
    return np.concatenate(resized)
