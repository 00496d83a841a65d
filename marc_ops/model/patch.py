"""Memory-aware temporal compression patched into a loaded Qwen2.5-VL (paper 3.2.1, SPEC section 5).

``apply_compression(model, compression)`` rebinds five methods of one model instance to the
wrappers below (no transformers file is copied or edited, and other instances are untouched).
The ``CompressionConfig`` itself lives in ``model.config.marc_compression`` (a plain dict), so
``save_pretrained`` / ``from_pretrained`` carry it and ``load_qwen2_5_vl`` re-applies the patch;
the wrappers read it on every call, and a disabled config makes each of them call straight
through to the original method.

What each wrapper does (transformers 5.23):

``Qwen2_5_VLModel.get_video_features``
    Runs the original (vision tower, patch merger, split per video), then views each video's
    ``t·h·w/4`` feature rows as ``t`` temporal blocks ``(t, h·w/4, d)`` and merges them with
    ``memory_aware_merge`` under that video's clip ids. Returns a ``CompressedVideoOutput``:
    ``pooler_output`` (per video, ``N'·h·w/4`` rows), ``merged_grid_thw`` ``(N', h, w)`` and
    ``block_positions`` (each merged block's temporal index, the rounded mean of its members).
    Its signature keeps ``pixel_values_videos`` and ``video_grid_thw`` (``generate()`` inspects
    it to route inputs) and adds the keyword ``video_clip_ids``.
``Qwen2_5_VLModel.forward``
    When video pixels arrive, encodes them (and any image pixels: the original refuses
    precomputed features next to raw pixels) before calling the original with them as
    ``mm_encoder_outputs`` and the merged grid as ``video_grid_thw``. To the language model a
    compressed video is then an ordinary video of ``N'`` temporal groups: placeholder check,
    feature scatter and rope-delta caching all run unchanged. Only the temporal positions differ,
    and those are held "in flight" for ``get_rope_index`` while the original runs.
``Qwen2_5_VLForConditionalGeneration.generate``
    The same, once, before generation: ``generate()`` computes the prompt's mRoPE positions
    (``_prepare_position_ids_for_generation``) *before* it runs the vision encoder, and every
    decoding step continues from those positions, so the merge must be known first.
    Both ``forward`` and ``generate`` also accept ``mm_encoder_outputs={"video": ...}`` holding
    a ``CompressedVideoOutput`` instead of the pixels.
``Qwen2_5_VLModel.get_rope_index`` and ``get_vision_position_ids``
    ``get_rope_index`` walks the sequence and asks ``get_vision_position_ids`` for each image or
    video segment, where transformers places temporal group ``i`` at
    ``start + (i · time_interval).long()`` (``time_interval = tokens_per_second ·
    second_per_grid_ts``). With merged videos in flight, each video's grid row is handed on as
    its own tensor object and ``get_vision_position_ids`` puts merged block ``k`` at
    ``start + (block_positions[k] · time_interval).long()`` instead; images and the text after a
    video are untouched. With ``block_positions == arange(t)`` (ratio 0) that is transformers'
    own formula, so the ids, and the logits, stay bit-identical.

Clip ids reach the model as the keyword ``video_clip_ids`` of ``forward`` / ``generate`` /
``get_video_features``: one id per temporal group, videos concatenated in ``video_grid_thw``
order (``prepare_model_inputs`` returns it); without it each video is one clip.

The patch is per instance and survives ``copy.deepcopy`` (the originals are stored as bound
methods on the instance, which deepcopy rebinds to the copy). The merged positions are held
on the instance for the length of one call, so one instance runs one forward at a time.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from marc_ops.compression import CompressionConfig, memory_aware_merge

CONFIG_KEY = "marc_compression"
_UNPATCHED = "_marc_unpatched"


@dataclass
class CompressedVideoOutput(BaseModelOutputWithPooling):
    """``get_video_features`` of a compressing model.

    Attributes:
        pooler_output: per video, ``(N'_v · h_v · w_v / 4, d)`` merged features (LLM order).
        merged_grid_thw: ``(V, 3)`` long, ``(N'_v, h_v, w_v)``: the grid the language model sees.
        block_positions: per video, ``(N'_v,)`` long, the temporal index (in the video's original
            temporal groups) at which each merged block is placed for mRoPE; strictly increasing.
        groups: per video, the original temporal groups each merged block holds.
    """

    merged_grid_thw: torch.LongTensor | None = None
    block_positions: tuple[torch.LongTensor, ...] | None = None
    groups: tuple[list[list[int]], ...] | None = None


def compression_of(model: Qwen2_5_VLForConditionalGeneration | Qwen2_5_VLModel) -> CompressionConfig:
    """The compression a model's config asks for (disabled when the config has none)."""
    return CompressionConfig(**getattr(model.config, CONFIG_KEY, {}))


def is_compression_patched(model: Qwen2_5_VLForConditionalGeneration) -> bool:
    """Whether ``apply_compression`` has rebound this instance's methods."""
    return _UNPATCHED in vars(model) and _UNPATCHED in vars(model.model)


def apply_compression(model: Qwen2_5_VLForConditionalGeneration, compression: CompressionConfig) -> None:
    """Store ``compression`` in ``model.config`` and patch the instance (once; later calls only set the config).

    Args:
        model: a loaded ``Qwen2_5_VLForConditionalGeneration`` (the tiny one or the real 3B).
        compression: what to do with video features; ``CompressionConfig()`` (disabled) leaves
            every output bit-identical to the unpatched model.
    """
    if not isinstance(model, Qwen2_5_VLForConditionalGeneration):
        raise TypeError(
            f"the compression patch targets Qwen2_5_VLForConditionalGeneration, got {type(model).__name__}"
        )
    setattr(model.config, CONFIG_KEY, compression.model_dump())
    if is_compression_patched(model):
        return
    inner = model.model
    wrappers = {
        "forward": _forward,
        "get_video_features": _get_video_features,
        "get_rope_index": _get_rope_index,
        "get_vision_position_ids": _get_vision_position_ids,
    }
    setattr(inner, _UNPATCHED, {name: getattr(inner, name) for name in wrappers})
    inner._marc_videos_in_flight = None  # per-video block positions while a forward / generate runs
    inner._marc_merged_rows = {}  # id(grid row) -> block positions, inside one get_rope_index call
    for name, function in wrappers.items():
        setattr(inner, name, types.MethodType(function, inner))
    setattr(model, _UNPATCHED, {"generate": model.generate})
    model.generate = types.MethodType(_generate, model)


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


# ---------------------------------------------------------------------------------------------
# The wrappers. Each is bound to one instance with types.MethodType; ``self`` is that instance.
# ---------------------------------------------------------------------------------------------


def _get_video_features(
    self: Qwen2_5_VLModel,
    pixel_values_videos: torch.Tensor,
    video_grid_thw: torch.LongTensor | None = None,
    *,
    video_clip_ids: torch.Tensor | Sequence[int] | None = None,
    **kwargs,
):
    """``get_video_features`` followed by the memory-aware merge of each video's temporal groups."""
    unpatched = getattr(self, _UNPATCHED)["get_video_features"]
    compression = compression_of(self)
    if not compression.enabled:
        return unpatched(pixel_values_videos, video_grid_thw, **kwargs)
    return_dict = kwargs.pop("return_dict", True)
    outputs = unpatched(pixel_values_videos, video_grid_thw, return_dict=True, **kwargs)
    merged, merged_grid, positions, groups = merge_video_features(
        outputs.pooler_output,
        video_grid_thw,
        split_clip_ids(video_clip_ids, video_grid_thw),
        compression,
        spatial_merge_size=self.visual.spatial_merge_size,
    )
    compressed = CompressedVideoOutput(
        last_hidden_state=outputs.last_hidden_state,
        pooler_output=tuple(merged),
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
        merged_grid_thw=merged_grid,
        block_positions=tuple(positions),
        groups=tuple(groups),
    )
    return compressed if return_dict else compressed.to_tuple()


def _forward(
    self: Qwen2_5_VLModel,
    input_ids: torch.LongTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.LongTensor | None = None,
    past_key_values=None,
    inputs_embeds: torch.Tensor | None = None,
    use_cache: bool | None = None,
    pixel_values: torch.Tensor | None = None,
    pixel_values_videos: torch.Tensor | None = None,
    image_grid_thw: torch.LongTensor | None = None,
    video_grid_thw: torch.LongTensor | None = None,
    mm_token_type_ids: torch.IntTensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
    mm_encoder_outputs: dict | None = None,
    video_clip_ids: torch.Tensor | Sequence[int] | None = None,
    **kwargs,
):
    """``Qwen2_5_VLModel.forward`` with compressed videos encoded up front (see the module docstring)."""
    unpatched = getattr(self, _UNPATCHED)["forward"]
    if compression_of(self).enabled and pixel_values_videos is not None:
        if mm_encoder_outputs is not None:
            raise ValueError("give either pixel values or mm_encoder_outputs, not both")
        mm_encoder_outputs = {
            "video": self.get_video_features(
                pixel_values_videos, video_grid_thw, video_clip_ids=video_clip_ids, return_dict=True, **kwargs
            )
        }
        if pixel_values is not None:
            mm_encoder_outputs["image"] = self.get_image_features(
                pixel_values, image_grid_thw, return_dict=True, **kwargs
            )
        pixel_values = pixel_values_videos = None
    video = (mm_encoder_outputs or {}).get("video")
    in_flight = contextlib.nullcontext()
    if isinstance(video, CompressedVideoOutput):
        video_grid_thw = None if video_grid_thw is None else video.merged_grid_thw
        in_flight = _videos_in_flight(self, video.block_positions)
    with in_flight:
        return unpatched(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            second_per_grid_ts=second_per_grid_ts,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )


@torch.no_grad()
def _generate(self: Qwen2_5_VLForConditionalGeneration, *args, **kwargs):
    """``generate`` with compressed videos encoded (and their positions fixed) before it starts."""
    unpatched = getattr(self, _UNPATCHED)["generate"]
    video_clip_ids = kwargs.pop("video_clip_ids", None)
    if not compression_of(self).enabled:
        return unpatched(*args, **kwargs)
    if kwargs.get("pixel_values_videos") is not None:
        video = self.model.get_video_features(
            kwargs.pop("pixel_values_videos"),
            kwargs["video_grid_thw"],
            video_clip_ids=video_clip_ids,
            return_dict=True,
        )
        kwargs["mm_encoder_outputs"] = {**(kwargs.get("mm_encoder_outputs") or {}), "video": video}
    video = (kwargs.get("mm_encoder_outputs") or {}).get("video")
    if not isinstance(video, CompressedVideoOutput):
        return unpatched(*args, **kwargs)
    if kwargs.get("video_grid_thw") is not None:
        kwargs["video_grid_thw"] = video.merged_grid_thw
    with _videos_in_flight(self.model, video.block_positions):
        return unpatched(*args, **kwargs)


def _get_rope_index(
    self: Qwen2_5_VLModel,
    input_ids: torch.LongTensor,
    mm_token_type_ids: torch.IntTensor,
    image_grid_thw: torch.LongTensor | None = None,
    video_grid_thw: torch.LongTensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    **kwargs,
):
    """``get_rope_index`` that places merged video blocks at their own temporal positions."""
    unpatched = getattr(self, _UNPATCHED)["get_rope_index"]
    if not compression_of(self).enabled or video_grid_thw is None:
        return unpatched(
            input_ids,
            mm_token_type_ids,
            image_grid_thw,
            video_grid_thw,
            second_per_grid_ts,
            attention_mask,
            **kwargs,
        )
    positions = self._marc_videos_in_flight
    if positions is None:
        raise RuntimeError(
            "get_rope_index of a compressing model needs the merged video blocks: call the model's forward or "
            "generate with the video pixels (or with mm_encoder_outputs from its get_video_features)"
        )
    rows = list(video_grid_thw)  # one tensor object per video, passed on as is to get_vision_position_ids
    grid_lengths = [int(row[0]) for row in rows]
    if grid_lengths != [len(p) for p in positions]:
        raise RuntimeError(
            f"video_grid_thw has temporal lengths {grid_lengths} but the merged videos in flight have "
            f"{[len(p) for p in positions]} blocks: pass the merged grid (CompressedVideoOutput.merged_grid_thw)"
        )
    self._marc_merged_rows = {
        id(row): block_positions for row, block_positions in zip(rows, positions, strict=True)
    }
    try:
        return unpatched(
            input_ids, mm_token_type_ids, image_grid_thw, rows, second_per_grid_ts, attention_mask, **kwargs
        )
    finally:
        self._marc_merged_rows = {}


def _get_vision_position_ids(
    self: Qwen2_5_VLModel,
    start_position,
    grid_thw,
    temp_merge_size: int = 1,
    spatial_merge_size: int = 1,
    time_interval=1.0,
    device=None,
):
    """``get_vision_position_ids``; a merged video's block ``k`` sits at ``block_positions[k]``, not ``k``."""
    unpatched = getattr(self, _UNPATCHED)["get_vision_position_ids"]
    position_ids = unpatched(
        start_position, grid_thw, temp_merge_size, spatial_merge_size, time_interval, device
    )
    block_positions = self._marc_merged_rows.get(id(grid_thw))
    if block_positions is None:
        return position_ids
    # transformers: (arange(t) * time_interval).long() + start, repeated over the h·w patches of a group
    temporal = (block_positions.to(position_ids.device) * time_interval).long() + start_position
    position_ids[0] = temporal.repeat_interleave(position_ids.shape[1] // len(block_positions))
    return position_ids


@contextlib.contextmanager
def _videos_in_flight(inner: Qwen2_5_VLModel, block_positions: Sequence[torch.Tensor]) -> Iterator[None]:
    previous = inner._marc_videos_in_flight
    inner._marc_videos_in_flight = tuple(block_positions)
    try:
        yield
    finally:
        inner._marc_videos_in_flight = previous
