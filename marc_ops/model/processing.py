"""The processor side of the compression layer: a compressed video gets exactly N' placeholder tokens.

Qwen2.5-VL's processor expands each ``<|video_pad|>`` of the prompt into one token per merged
patch, ``t·h·w/4`` for a video of grid ``(t, h, w)``. Once the model compresses the video to ``N'``
tokens (``marc_ops.model.patch``) the prompt must hold exactly ``N'`` of them, or the features and
the text disagree. For ``marc`` (``N'·h·w/4`` with ``N'`` from ``merged_block_count``), MovieChat,
ByteVideoLLM and DyCoke the clip layout and the configuration decide ``N'``, so the processor counts
before the vision tower runs. VidCom2, FastVID and HoliTom keep a number that depends on the
features: their caller runs the model's ``get_video_features`` first and passes the counts of what
it returned (``video_token_counts``), then hands those features to the model
(``mm_encoder_outputs``) instead of the pixels.

Clip ids. The Visual Memory Retriever tags each *frame* with its clip (SPEC 4.5) and pads every
clip to an even number of frames, so each temporal group (2 frames) lies inside one clip.
``prepare_model_inputs`` turns the frame ids into one id per temporal group and returns them as
``video_clip_ids``: a flat long tensor of ``sum_v t_v`` ids, videos in the order of
``video_grid_thw`` (the packing ``pixel_values_videos`` uses), which the patched model's
``forward`` and ``generate`` take as a keyword. Without clip ids every video is one clip.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from transformers import BatchFeature, Qwen2_5_VLProcessor

from marc_ops.compression import CompressionConfig
from marc_ops.model.video_compression import video_token_count


def temporal_group_clip_ids(
    frame_clip_ids: Sequence[int], n_groups: int, temporal_patch_size: int = 2
) -> list[int]:
    """One clip id per temporal group from one per frame.

    Group ``g`` holds frames ``g·tps .. g·tps + tps - 1``; the processor pads a video whose frame
    count is not a multiple of ``tps`` by repeating its last frame, so the last group may hold
    fewer real frames.

    Args:
        frame_clip_ids: (F,) the clip of each frame the processor was given.
        n_groups: the video's ``grid_t`` (``ceil(F / tps)``).
        temporal_patch_size: frames per temporal group (Qwen2.5-VL: 2).

    Raises:
        ValueError: when the counts disagree or a group straddles two clips.
    """
    frames = [int(c) for c in frame_clip_ids]
    if -(-len(frames) // temporal_patch_size) != n_groups:
        raise ValueError(
            f"{len(frames)} frame clip ids do not fit a video of {n_groups} temporal groups "
            f"({temporal_patch_size} frames each): give one clip id per frame passed to the processor "
            "(and let the processor sample no frames itself)"
        )
    groups = []
    for g in range(n_groups):
        members = frames[g * temporal_patch_size : (g + 1) * temporal_patch_size]
        if len(set(members)) != 1:
            raise ValueError(
                f"temporal group {g} (frames {g * temporal_patch_size}..{g * temporal_patch_size + len(members) - 1}) "
                f"mixes clips {members}: pad each clip to a multiple of {temporal_patch_size} frames by "
                "repeating its last frame (SPEC 4.5) so that every group lies inside one clip"
            )
        groups.append(members[0])
    return groups


def compressed_video_token_count(
    grid_thw: Sequence[int] | torch.Tensor,
    clip_ids: Sequence[int] | torch.Tensor,
    compression: CompressionConfig,
    *,
    spatial_merge_size: int = 2,
) -> int:
    """How many ``<|video_pad|>`` tokens the model expects for one video, when the configuration decides it.

    Args:
        grid_thw: the video's ``(t, h, w)`` patch grid (``video_grid_thw`` row).
        clip_ids: (t,) the clip of each temporal group.
        compression: the model's compression; disabled gives the uncompressed ``t·h·w / merge²``.
        spatial_merge_size: the vision tower's patch merger (Qwen2.5-VL: 2).

    Raises:
        ValueError: the method's count depends on the features (pass ``video_token_counts``).
    """
    count = video_token_count(grid_thw, clip_ids, compression, spatial_merge_size=spatial_merge_size)
    if count is None:
        raise ValueError(
            f"compression method {compression.method!r} keeps a number of tokens that depends on the features: "
            "run the model's get_video_features first and pass the counts of what it returned as "
            "video_token_counts (marc_ops.train.inputs.encode_prompt does, given the model)"
        )
    return count


def prepare_model_inputs(
    processor: Qwen2_5_VLProcessor,
    compression: CompressionConfig,
    *,
    text: str | list[str],
    images=None,
    videos=None,
    video_clip_ids: Sequence[Sequence[int]] | None = None,
    video_token_counts: Sequence[int] | None = None,
    **processor_kwargs,
) -> BatchFeature:
    """Run ``processor`` with video placeholders counted for the compressed model.

    Images and text are processed exactly as ``processor(...)`` does; each video's
    ``<|video_pad|>`` expands to ``compressed_video_token_count`` tokens. The result is what
    the patched model's ``forward`` / ``generate`` take (``model(**inputs)``), including
    ``video_clip_ids`` (flat, one id per temporal group) whenever videos are given.

    Args:
        processor: a ``Qwen2_5_VLProcessor``; it is not modified.
        compression: the model's ``CompressionConfig`` (``compression_of(model)``).
        text: prompts already rendered by the chat template (one ``<|video_pad|>`` per video).
        images, videos: as for the processor. Frames sampled at 1 fps need
            ``video_metadata=[{"fps": 1.0, "total_num_frames": F}, ...]`` so that
            ``second_per_grid_ts`` is 2 s (without it transformers assumes 24 fps).
        video_clip_ids: per video, the clip id of each frame; ``None`` makes each video one clip.
        video_token_counts: per video, the number of placeholders, when the caller already knows it
            (the compressed features it will pass); ``None``: counted from the configuration.
        **processor_kwargs: passed on (``return_tensors``, ``padding``, ``padding_side``, ...).
    """
    if videos is None:
        if video_clip_ids is not None:
            raise ValueError("video_clip_ids was given without videos")
        return processor(text=text, images=images, **processor_kwargs)
    merge_size = processor.video_processor.merge_size
    temporal_patch_size = processor.video_processor.temporal_patch_size
    group_ids: list[list[int]] = []

    def replace_video_token(video_inputs: dict, video_idx: int, **kwargs) -> str:
        grid = video_inputs["video_grid_thw"][video_idx]
        n_groups = int(grid[0])
        ids = (
            [0] * n_groups
            if video_clip_ids is None
            else temporal_group_clip_ids(video_clip_ids[video_idx], n_groups, temporal_patch_size)
        )
        group_ids.append(ids)
        if video_token_counts is None:
            count = compressed_video_token_count(grid, ids, compression, spatial_merge_size=merge_size)
        else:
            count = int(video_token_counts[video_idx])
        return processor.video_token * count

    # replace_video_token is the processor's documented hook for placeholder expansion; override
    # it on a per-call shallow copy so the caller's processor stays untouched.
    counting = copy.copy(processor)
    counting.replace_video_token = replace_video_token
    inputs = counting(text=text, images=images, videos=videos, **processor_kwargs)
    if video_clip_ids is not None and len(video_clip_ids) != len(group_ids):
        raise ValueError(
            f"video_clip_ids lists {len(video_clip_ids)} videos but {len(group_ids)} were processed"
        )
    flat = [clip for ids in group_ids for clip in ids]
    inputs.update(BatchFeature({"video_clip_ids": flat}, tensor_type=processor_kwargs.get("return_tensors")))
    return inputs


def fit_video_placeholders(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    video_token_id: int,
    counts: Sequence[int],
    *,
    pad_token_id: int,
    padding_side: str = "left",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut each video's run of placeholders to its compressed count, re-padding the batch.

    For a method whose count depends on the features: the prompt is processed uncompressed, the
    model compresses the videos, and each video's ``t·h·w/4`` placeholders become its ``N'``.

    Args:
        input_ids, attention_mask: (B, L) a processed batch (uncompressed placeholders).
        video_token_id: the ``<|video_pad|>`` id.
        counts: the compressed count of every video, in order of appearance over the batch.
        pad_token_id: what fills the padding.
        padding_side: where the padding goes ("left" for generation).
    """
    counts = [int(c) for c in counts]
    rows, video = [], 0
    for ids, mask in zip(input_ids, attention_mask, strict=True):
        kept = ids[mask.bool()]
        is_video = kept == video_token_id
        starts = (is_video & ~torch.cat([is_video.new_zeros(1), is_video[:-1]])).nonzero().flatten().tolist()
        pieces, cursor = [], 0
        for start in starts:
            end = start
            while end < len(kept) and kept[end] == video_token_id:
                end += 1
            if counts[video] > end - start:
                raise ValueError(
                    f"video {video} keeps {counts[video]} tokens but has {end - start} placeholders"
                )
            pieces += [kept[cursor:start], kept[start : start + counts[video]]]
            cursor, video = end, video + 1
        pieces.append(kept[cursor:])
        rows.append(torch.cat(pieces))
    if video != len(counts):
        raise ValueError(f"{len(counts)} counts were given for {video} videos")
    length = max(len(row) for row in rows)
    fitted = torch.full((len(rows), length), pad_token_id, dtype=input_ids.dtype, device=input_ids.device)
    fitted_mask = torch.zeros((len(rows), length), dtype=attention_mask.dtype, device=attention_mask.device)
    for i, row in enumerate(rows):
        span = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        fitted[i, span], fitted_mask[i, span] = row, 1
    return fitted, fitted_mask
