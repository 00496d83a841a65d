"""The compression layer proper, without the model: a compressing model's video features and their positions.

``compress_video_features`` turns the patch merger's output of each video (``t·h·w/4`` rows, temporal
group major) into what the language model sees: for ``marc`` the memory-aware merge of its temporal
groups (a grid of ``N'`` blocks), for any other method ``marc_ops.compression.compress`` on its
``(t, h·w/4, d)`` tokens. Either way every output token carries its (t, row, col) in the video's
uncompressed grid, which the patched ``get_rope_index`` turns into mRoPE positions.

``video_token_count`` is the processor's side: how many placeholders one video gets, when the
configuration and the grid decide it (``None`` when the method's count depends on the features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from marc_ops.compression import (
    CompressedVideo,
    CompressionConfig,
    compress,
    memory_aware_merge,
    merged_block_count,
    output_count,
)


@dataclass
class CompressedVideoOutput(BaseModelOutputWithPooling):
    """``get_video_features`` of a compressing model.

    Attributes:
        pooler_output: per video, ``(N'_v · h_v · w_v / 4, d)`` merged features (LLM order).
        token_positions: per video, ``(N'_v, 3)`` long, the (t, row, col) of each output token in
            the video's uncompressed grid (temporal group, merged-patch row and column): where
            mRoPE places it.
        merged_grid_thw: ``(V, 3)`` long: ``marc``: ``(N'_v, h_v, w_v)``, the merged grid; other
            methods: the input grid (their tokens form no grid).
        block_positions: ``marc`` only, per video ``(N'_v,)`` long, the temporal index (in the
            video's original temporal groups) at which each merged block is placed; strictly
            increasing.
        groups: ``marc`` only, per video, the original temporal groups each merged block holds.
        compressed: other methods, per video, what :func:`~marc_ops.compression.compress` returned
            (its ``variant`` and achieved ``retention`` among it).
    """

    token_positions: tuple[torch.LongTensor, ...] | None = None
    merged_grid_thw: torch.LongTensor | None = None
    block_positions: tuple[torch.LongTensor, ...] | None = None
    groups: tuple[list[list[int]], ...] | None = None
    compressed: tuple[CompressedVideo, ...] | None = None


def merge_video_features(
    features: Sequence[torch.Tensor],
    grid_thw: torch.Tensor,
    clip_ids: Sequence[Sequence[int]],
    compression: CompressionConfig,
    *,
    spatial_merge_size: int = 2,
) -> tuple[list[torch.Tensor], torch.LongTensor, list[torch.LongTensor], list[list[list[int]]]]:
    """Merge each video's temporal groups (the compression layer proper, without the model).

    Args:
        features: per video, ``(t·h·w/m², d)`` patch-merger outputs, temporal group major.
        grid_thw: ``(V, 3)`` the videos' ``(t, h, w)`` patch grids.
        clip_ids: per video, ``t`` clip ids (one per temporal group).
        compression: ratio, window and block budget.
        spatial_merge_size: ``m``, the patch merger's size.

    Returns:
        merged features per video ``(N'·h·w/m², d)``, the merged grid ``(V, 3)``, the block
        positions per video ``(N',)`` and the merged groups per video.
    """
    merged, positions, groups, merged_grid = [], [], [], []
    for video, (t, h, w), ids in zip(features, grid_thw.tolist(), clip_ids, strict=True):
        blocks = video.view(t, h * w // spatial_merge_size**2, video.shape[-1])
        result = memory_aware_merge(
            blocks,
            ids,
            ratio=compression.ratio,
            window=compression.window,
            target_blocks=compression.target_blocks,
        )
        merged.append(result.blocks.reshape(-1, video.shape[-1]))
        positions.append(result.positions)
        groups.append(result.groups)
        merged_grid.append([len(result.groups), h, w])
    return merged, torch.tensor(merged_grid, dtype=grid_thw.dtype, device=grid_thw.device), positions, groups


def split_clip_ids(
    video_clip_ids: torch.Tensor | Sequence[int] | None, grid_thw: torch.Tensor
) -> list[list[int]]:
    """Per-video clip ids from the flat ``video_clip_ids`` (``sum_v t_v``); ``None``: one clip per video."""
    lengths = grid_thw[:, 0].tolist()
    if video_clip_ids is None:
        return [[0] * t for t in lengths]
    flat = (
        video_clip_ids.tolist()
        if isinstance(video_clip_ids, torch.Tensor)
        else [int(c) for c in video_clip_ids]
    )
    if len(flat) != sum(lengths):
        raise ValueError(
            f"video_clip_ids holds {len(flat)} ids but the videos have {sum(lengths)} temporal groups "
            f"({lengths}); give one id per temporal group, videos concatenated in video_grid_thw order "
            "(prepare_model_inputs builds it)"
        )
    splits, start = [], 0
    for t in lengths:
        splits.append(flat[start : start + t])
        start += t
    return splits


def block_token_positions(block_positions: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N'·height·width, 3)`` (t, row, col) of merged blocks placed at ``block_positions`` (N',)."""
    n_blocks = len(block_positions)
    rows = torch.arange(height, device=block_positions.device).repeat_interleave(width).repeat(n_blocks)
    cols = torch.arange(width, device=block_positions.device).repeat(n_blocks * height)
    temporal = block_positions.repeat_interleave(height * width)
    return torch.stack([temporal, rows, cols], dim=1)


def compress_video_features(
    features: Sequence[torch.Tensor],
    grid_thw: torch.Tensor,
    compression: CompressionConfig,
    *,
    clip_ids: Sequence[Sequence[int]],
    importance: Sequence[torch.Tensor] | None = None,
    spatial_merge_size: int = 2,
    base: BaseModelOutputWithPooling | None = None,
) -> CompressedVideoOutput:
    """Compress each video's merger output as ``compression`` says.

    Args:
        features: per video, ``(t·h·w/m², d)`` patch-merger outputs, temporal group major.
        grid_thw: ``(V, 3)`` the videos' ``(t, h, w)`` patch grids.
        compression: an enabled configuration.
        clip_ids: per video, ``t`` clip ids (one per temporal group).
        importance: per video, ``(t, h·w/m²)`` scores for a method that ranks by importance;
            ``None``: such a method uses the token norm.
        spatial_merge_size: ``m``, the patch merger's size.
        base: the tower's own output, whose hidden states and attentions are carried over.
    """
    if compression.method == "marc":
        merged, merged_grid, positions, groups = merge_video_features(
            features, grid_thw, clip_ids, compression, spatial_merge_size=spatial_merge_size
        )
        token_positions = tuple(
            block_token_positions(p, h // spatial_merge_size, w // spatial_merge_size)
            for p, (_, h, w) in zip(positions, grid_thw.tolist(), strict=True)
        )
        return CompressedVideoOutput(
            last_hidden_state=None if base is None else base.last_hidden_state,
            pooler_output=tuple(merged),
            hidden_states=None if base is None else base.hidden_states,
            attentions=None if base is None else base.attentions,
            token_positions=token_positions,
            merged_grid_thw=merged_grid,
            block_positions=tuple(positions),
            groups=tuple(groups),
        )
    results = []
    for index, (video, (t, h, w)) in enumerate(zip(features, grid_thw.tolist(), strict=True)):
        grid = (h // spatial_merge_size, w // spatial_merge_size)
        tokens = video.view(t, grid[0] * grid[1], video.shape[-1])
        extra = (
            {"scores": importance[index]} if compression.takes_importance and importance is not None else {}
        )
        results.append(
            compress(
                compression.method,
                tokens,
                grid,
                **compression.budget_kwargs(grid[0] * grid[1]),
                **compression.options,
                **extra,
            )
        )
    return CompressedVideoOutput(
        last_hidden_state=None if base is None else base.last_hidden_state,
        pooler_output=tuple(r.tokens for r in results),
        hidden_states=None if base is None else base.hidden_states,
        attentions=None if base is None else base.attentions,
        token_positions=tuple(r.positions for r in results),
        merged_grid_thw=grid_thw,
        compressed=tuple(results),
    )


def video_token_count(
    grid_thw: Sequence[int] | torch.Tensor,
    clip_ids: Sequence[int] | torch.Tensor,
    compression: CompressionConfig,
    *,
    spatial_merge_size: int = 2,
) -> int | None:
    """How many ``<|video_pad|>`` tokens one video gets, or ``None`` when the method's count depends on
    the features (VidCom2, FastVID, HoliTom: run the vision tower first).

    Args:
        grid_thw: the video's ``(t, h, w)`` patch grid (``video_grid_thw`` row).
        clip_ids: (t,) the clip of each temporal group.
        compression: the model's compression; disabled gives the uncompressed ``t·h·w / merge²``.
        spatial_merge_size: the vision tower's patch merger (Qwen2.5-VL: 2).
    """
    t, h, w = (int(x) for x in grid_thw)
    if len(clip_ids) != t:
        raise ValueError(
            f"a video of grid ({t}, {h}, {w}) needs {t} clip ids (one per temporal group), got {len(clip_ids)}"
        )
    grid = (h // spatial_merge_size, w // spatial_merge_size)
    tokens_per_group = grid[0] * grid[1]
    if not compression.enabled:
        return t * tokens_per_group
    if compression.method == "marc":
        blocks = merged_block_count(
            clip_ids,
            ratio=compression.ratio,
            window=compression.window,
            target_blocks=compression.target_blocks,
        )
        return blocks * tokens_per_group
    return output_count(
        compression.method, t, grid, **compression.budget_kwargs(tokens_per_group), **compression.options
    )


def concat_video_features(outputs: Sequence[CompressedVideoOutput]) -> CompressedVideoOutput:
    """One batch's compressed videos from each sample's, in order (what a collator hands the model)."""
    if any(o.merged_grid_thw is None or o.token_positions is None for o in outputs):
        raise ValueError(
            "only compressed video outputs (with merged_grid_thw and token_positions) concatenate"
        )
    marc = [o.block_positions is not None for o in outputs]
    if any(marc) and not all(marc):
        raise ValueError("a batch mixes MARC-merged and otherwise compressed videos")
    return CompressedVideoOutput(
        pooler_output=tuple(row for o in outputs for row in o.pooler_output),
        token_positions=tuple(p for o in outputs for p in o.token_positions),
        merged_grid_thw=torch.cat([o.merged_grid_thw for o in outputs]),
        block_positions=tuple(p for o in outputs for p in o.block_positions) if all(marc) else None,
        groups=tuple(g for o in outputs for g in o.groups) if all(marc) else None,
        compressed=None if any(marc) else tuple(c for o in outputs for c in o.compressed),
    )
