"""Retrieve a question's clips within its video and reassemble them into frames (SPEC 4.4-4.5).

Retrieval ranks the clips of the sample's own video by cosine similarity to the query and keeps
the top k, in temporal order. Reassembly samples the kept clips at the video config's rate, caps
the total at its ``max_frames`` and tags every frame with its clip, so the compression layer can
respect clip boundaries. Decision (SPEC 4.5): every clip contributes an even number of frames (its
last frame repeated when needed), so each 2-frame temporal group of Qwen2.5-VL lies inside one
clip and carries that clip's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from marc_ops.video import DEFAULT_VIDEO_CONFIG, VideoConfig, open_video, read_resized
from marc_ops.video.decode import VideoReader
from marc_ops.vmr.embedding import VideoClips, clip_frame_indices

# Qwen2.5-VL's temporal patch: 2 consecutive frames form one temporal group.
FRAMES_PER_GROUP = 2


class ClipSpan(NamedTuple):
    """A clip's index in its video and its inclusive source-frame span: all :func:`plan_frames` reads
    (a :class:`RetrievedClip` has them too)."""

    clip_index: int
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class RetrievedClip:
    """One selected clip: its index in the video's clip list, its span, its times and its query score.

    Frames are inclusive ``[start_frame, end_frame]``; times are ``[start_time, end_time)`` seconds;
    ``score`` is the cosine similarity to the query, in [-1, 1].
    """

    clip_index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    score: float


@dataclass(frozen=True)
class VMRInput:
    """The frames the video LLM sees for one sample.

    frames: (T, H, W, 3) uint8 RGB, H and W multiples of 28; timestamps: (T,) float64 seconds;
    frame_indices: (T,) int64 source frame numbers, non-decreasing (a padding frame repeats the one
    before it); clip_ids: (T,) int64, the ``clip_index`` each frame came from. T is even and every
    clip's frames are contiguous and even in number.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    frame_indices: np.ndarray
    clip_ids: np.ndarray

    @property
    def group_clip_ids(self) -> np.ndarray:
        """(T / 2,) int64: the clip of each Qwen2.5-VL temporal group (both its frames share it)."""
        return self.clip_ids[::FRAMES_PER_GROUP]


def retrieve_clips(query_embedding: np.ndarray, clips: VideoClips, *, k: int) -> list[RetrievedClip]:
    """The ``k`` clips most similar to the query (all clips if fewer), returned in temporal order.

    query_embedding: (D,); clips.embeddings: (N, D). Cosine similarity, computed exactly from the
    stored vectors (a video holds tens to hundreds of clips: an exact scan is cheap, and an ANN
    index would only add quantisation error). Equal scores keep the earlier clip.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1 (clips kept per question), got {k}")
    if len(clips) == 0:
        raise ValueError("the video has no clips to retrieve from")
    query = np.asarray(query_embedding, dtype=np.float64)
    vectors = clips.embeddings.astype(np.float64)
    scores = vectors @ query / np.maximum(np.linalg.norm(vectors, axis=1) * np.linalg.norm(query), 1e-12)
    best = np.argsort(-scores, kind="stable")[:k]
    return [
        RetrievedClip(
            clip_index=int(i),
            start_frame=int(clips.spans[i, 0]),
            end_frame=int(clips.spans[i, 1]),
            start_time=float(clips.times[i, 0]),
            end_time=float(clips.times[i, 1]),
            score=float(scores[i]),
        )
        for i in sorted(best.tolist())
    ]


def assemble_frames(
    video_path: str | Path,
    selected_clips: Sequence[RetrievedClip],
    video_config: VideoConfig = DEFAULT_VIDEO_CONFIG,
) -> VMRInput:
    """Reassemble the selected clips, in temporal order, into the frames the model sees (SPEC 4.5).

    1. Each clip is sampled at ``video_config.fps`` (:func:`clip_frame_indices`: centred slots, at
       least one frame).
    2. If the clips need more than ``video_config.max_frames`` frames once padded to even counts,
       the budget of ``max_frames // 2`` temporal groups is shared out in proportion to the clips'
       frame counts (:func:`allocate_groups`: at least one group per clip, so no selected clip
       vanishes), and each clip is thinned uniformly to its share.
    3. A clip with an odd count repeats its last frame.
    Frames are resized as ``sample_frames`` resizes them (``smart_resize`` with the config's bounds).
    Raises VideoDecodeError naming the file if it cannot be read.
    """
    if not selected_clips:
        raise ValueError(f"{video_path}: no clips selected, nothing to assemble")
    reader = open_video(video_path, video_config.backend)
    frame_indices, clip_ids = plan_frames(selected_clips, reader.fps, video_config, video=str(video_path))
    return VMRInput(
        frames=decode_frames(reader, frame_indices, video_config),
        timestamps=frame_indices / reader.fps,
        frame_indices=frame_indices,
        clip_ids=clip_ids,
    )


def decode_frames(reader: VideoReader, frame_indices: np.ndarray, video_config: VideoConfig) -> np.ndarray:
    """The frames at ``frame_indices`` (repeats allowed), resized as ``sample_frames`` resizes them.

    frame_indices: (T,) int64 → (T, H, W, 3) uint8, H and W multiples of 28 within the config's
    pixel bounds. Each distinct frame is decoded once, a bounded chunk at a time (``read_resized``).
    """
    wanted, where = np.unique(frame_indices, return_inverse=True)
    return read_resized(reader, wanted, video_config)[where]


def plan_frames(
    selected_clips: Sequence[RetrievedClip | ClipSpan],
    source_fps: float,
    video_config: VideoConfig,
    *,
    video: str = "video",
) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices and per-frame clip ids for ``selected_clips`` (steps 1-3 of :func:`assemble_frames`).

    Needs only the clips and the source frame rate, so the ``vmr_selection`` stage can record the
    exact frames of every sample without decoding them.
    """
    if not selected_clips:
        raise ValueError(f"{video}: no clips selected, nothing to assemble")
    clips = sorted(selected_clips, key=lambda clip: clip.start_frame)
    per_clip = [
        clip_frame_indices(clip.start_frame, clip.end_frame, source_fps, video_config.fps) for clip in clips
    ]
    groups = allocate_groups(
        [len(indices) for indices in per_clip], video_config.max_frames // FRAMES_PER_GROUP
    )
    chosen = [
        _thin_and_pad(indices, FRAMES_PER_GROUP * n) for indices, n in zip(per_clip, groups, strict=True)
    ]
    clip_ids = np.repeat([clip.clip_index for clip in clips], [len(indices) for indices in chosen])
    return np.concatenate(chosen), clip_ids.astype(np.int64)


def allocate_groups(frame_counts: Sequence[int], budget: int) -> list[int]:
    """Temporal groups per clip: ``ceil(n / 2)`` each if they fit in ``budget``, else a proportional share.

    The share is apportioned one group at a time to the clip with the most frames per group so far
    (D'Hondt's rule; ties go to the earlier clip), starting from one group each, and never beyond
    what a clip can fill. ``allocate_groups([10, 3], 4)`` → ``[3, 1]``; ``allocate_groups([5, 5, 4], 32)``
    → ``[3, 3, 2]``.
    """
    needed = [-(-count // FRAMES_PER_GROUP) for count in frame_counts]
    if sum(needed) <= budget:
        return needed
    if len(frame_counts) > budget:
        raise ValueError(
            f"{len(frame_counts)} clips need at least one {FRAMES_PER_GROUP}-frame group each, but max_frames allows "
            f"{budget} groups; raise max_frames to at least {FRAMES_PER_GROUP * len(frame_counts)} or keep fewer clips"
        )
    groups = [1] * len(frame_counts)
    for _ in range(budget - len(groups)):
        open_clips = [i for i, n in enumerate(groups) if n < needed[i]]
        best = max(open_clips, key=lambda i: (frame_counts[i] / groups[i], -i))
        groups[best] += 1
    return groups


def _thin_and_pad(indices: np.ndarray, target: int) -> np.ndarray:
    """Keep ``target`` of ``indices`` spread uniformly (first and last kept), or pad the last one up to it.

    indices: (n,) → (target,); ``target`` is even and at most ``n + 1``.
    """
    if len(indices) >= target:
        return indices[np.floor(np.linspace(0, len(indices) - 1, target) + 0.5).astype(np.int64)]
    return np.concatenate([indices, np.repeat(indices[-1:], target - len(indices))])
