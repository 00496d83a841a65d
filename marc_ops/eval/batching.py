"""The order benchmark samples are answered in: by expected visual length, so a batch pads little.

A batch is left-padded to its longest prompt, and a video's prompt is almost all visual placeholders:
one 10-frame video batched with 64-frame ones costs the prefill and the decoding of a 64-frame prompt.
Sorting the pending samples by their visual token count before they are cut into batches puts videos
of similar length together. The count is estimated from the file's header (frame count, frame rate,
size; :func:`~marc_ops.video.probe_video` decodes at most one frame), never from the decoded frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from marc_ops.data.messages import MediaSpec
from marc_ops.video import DEFAULT_VIDEO_CONFIG, MediaError, VideoConfig, probe_video, sample_frame_indices
from marc_ops.video.resize import smart_resize

PATCH_PIXELS = 28 * 28  # one visual token of Qwen2.5-VL: a 2x2 merge of 14-px patches
TEMPORAL_PATCH = 2  # frames per temporal group


def expected_visual_tokens(media: MediaSpec, video: VideoConfig = DEFAULT_VIDEO_CONFIG) -> int:
    """The visual tokens the sample's input has before any compression, from its header.

    A video: ``ceil(T / 2)`` temporal groups of ``H' * W' / 784`` tokens, where T is the number of frames
    sampled at ``media.fps`` (at most ``media.max_frames``: :func:`~marc_ops.video.sample_frame_indices`) and
    ``H' x W'`` the frame size within the pixel bounds (:func:`~marc_ops.video.resize.smart_resize`). An
    image: ``H' * W' / 784`` within ``video``'s pixel bounds. A file that cannot be read counts 0 (it fails
    when it is answered, as it would in any order).
    """
    try:
        if media.kind == "image":
            with Image.open(media.path) as image:
                width, height = image.size
            groups = 1
            bounds = {"min_pixels": video.min_pixels, "max_pixels": video.max_pixels}
        else:
            info = probe_video(media.path, video.backend)
            frames = len(sample_frame_indices(info.num_frames, info.fps, media.fps, media.max_frames))
            width, height = info.width, info.height
            groups = math.ceil(frames / TEMPORAL_PATCH)
            bounds = {"min_pixels": media.min_pixels, "max_pixels": media.max_pixels}
    except (MediaError, OSError, ValueError):
        return 0
    resized_height, resized_width = smart_resize(height, width, **bounds)
    return groups * (resized_height * resized_width) // PATCH_PIXELS


def by_visual_length(rows: Sequence[Mapping[str, Any]], lengths: Sequence[int]) -> list[Mapping[str, Any]]:
    """``rows`` longest first by ``lengths`` (one per row); equal lengths keep their order.

    Longest first: the batch that needs the most memory runs first, so a run that does not fit fails at
    once rather than after hours.
    """
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    return [rows[i] for i in order]
