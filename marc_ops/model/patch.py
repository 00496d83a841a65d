"""Video-token compression patched into a loaded Qwen2.5-VL: MARC's merge or any compared method.

``apply_compression(model, compression)`` rebinds five methods of one model instance to the
wrappers below (no transformers file is copied or edited, and other instances are untouched).
The ``CompressionConfig`` itself lives in ``model.config.marc_compression`` (a plain dict), so
``save_pretrained`` / ``from_pretrained`` carry it and ``load_qwen2_5_vl`` re-applies the patch;
the wrappers read it on every call, and a disabled config makes each of them call straight
through to the original method.

What each wrapper does (transformers 5.23):

``Qwen2_5_VLModel.get_video_features``
    Runs the original (vision tower, patch merger, split per video), then compresses each video's
    ``t·h·w/4`` feature rows (:func:`~marc_ops.model.video_compression.compress_video_features`):
    ``marc`` merges its ``t`` temporal blocks with ``memory_aware_merge`` under the video's clip
    ids, any other method runs ``marc_ops.compression.compress`` on its ``(t, h·w/4, d)`` tokens
    (for FastVID and HoliTom with the pseudo-CLS importance of the tower's last block,
    :mod:`marc_ops.model.importance`, unless ``importance`` is ``norm``). Returns a
    ``CompressedVideoOutput``: ``pooler_output`` (per video, its ``N'`` rows) and
    ``token_positions`` (per video, the (t, row, col) of each row in the uncompressed grid).
    Its signature keeps ``pixel_values_videos`` and ``video_grid_thw`` (``generate()`` inspects
    it to route inputs) and adds the keyword ``video_clip_ids``.
``Qwen2_5_VLModel.forward``
    When video pixels arrive, encodes them (and any image pixels: the original refuses
    precomputed features next to raw pixels) before calling the original with them as
    ``mm_encoder_outputs``. The language model's placeholder check and feature scatter run
    unchanged (the prompt holds exactly ``N'`` placeholders per video, ``marc_ops.model.processing``);
    only the positions differ, and those are held "in flight" for ``get_rope_index`` while the
    original runs. With ``inner_llm`` on, the method's stage inside the LLM is installed for the
    call (:mod:`marc_ops.model.inner_llm`), at ``generate``'s prefill and at each decoding step.
``Qwen2_5_VLForConditionalGeneration.generate``
    The same, once, before generation: ``generate()`` computes the prompt's mRoPE positions
    (``_prepare_position_ids_for_generation``) *before* it runs the vision encoder, and every
    decoding step continues from those positions, so the compression must be known first.
    Both ``forward`` and ``generate`` also accept ``mm_encoder_outputs={"video": ...}`` holding
    a ``CompressedVideoOutput`` instead of the pixels.
``Qwen2_5_VLModel.get_rope_index`` and ``get_vision_position_ids``
    ``get_rope_index`` walks the sequence and asks ``get_vision_position_ids`` for each image or
    video segment, where transformers places the token at (t, row, col) of a video's grid at
    ``(start + (t · time_interval).long(), start + row, start + col)`` (``time_interval =
    tokens_per_second · second_per_grid_ts``). With compressed videos in flight, each video's grid
    row is handed on as its own tensor object and ``get_vision_position_ids`` gives each output
    token the ids of its own (t, row, col): the position rule of every Qwen port of the compared
    methods (compute on the uncompressed grid, keep the survivors' columns). A merged MARC block
    sits at its members' rounded mean group. Images and the text after a video are untouched,
    and with nothing removed the ids, and the logits, are bit-identical to the unpatched model's.

Clip ids reach the model as the keyword ``video_clip_ids`` of ``forward`` / ``generate`` /
``get_video_features``: one id per temporal group, videos concatenated in ``video_grid_thw``
order (``prepare_model_inputs`` returns it); without it each video is one clip.

The patch is per instance and survives ``copy.deepcopy`` (the originals are stored as bound
methods on the instance, which deepcopy rebinds to the copy). The positions are held on the
instance for the length of one call, so one instance runs one forward at a time.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator, Sequence

import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

from marc_ops.compression import CompressionConfig
from marc_ops.model.importance import capture_last_block, pseudo_cls_importance
from marc_ops.model.inner_llm import inner_llm_stage
from marc_ops.model.video_compression import CompressedVideoOutput, compress_video_features, split_clip_ids

CONFIG_KEY = "marc_compression"
_UNPATCHED = "_marc_unpatched"


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
    inner._marc_videos_in_flight = None  # per-video token positions while a forward / generate runs
    inner._marc_merged_rows = {}  # id(grid row) -> token positions, inside one get_rope_index call
    for name, function in wrappers.items():
        setattr(inner, name, types.MethodType(function, inner))
    setattr(model, _UNPATCHED, {"generate": model.generate})
    model.generate = types.MethodType(_generate, model)


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
    """``get_video_features`` followed by the configured compression of each video's tokens."""
    unpatched = getattr(self, _UNPATCHED)["get_video_features"]
    compression = compression_of(self)
    if not compression.enabled:
        return unpatched(pixel_values_videos, video_grid_thw, **kwargs)
    return_dict = kwargs.pop("return_dict", True)
    importance = None
    if compression.takes_importance and compression.importance == "attention":
        with capture_last_block(self.visual) as captured:
            outputs = unpatched(pixel_values_videos, video_grid_thw, return_dict=True, **kwargs)
        importance = pseudo_cls_importance(self.visual, captured, video_grid_thw)
    else:
        outputs = unpatched(pixel_values_videos, video_grid_thw, return_dict=True, **kwargs)
    compressed = compress_video_features(
        outputs.pooler_output,
        video_grid_thw,
        compression,
        clip_ids=split_clip_ids(video_clip_ids, video_grid_thw),
        importance=importance,
        spatial_merge_size=self.visual.spatial_merge_size,
        base=outputs,
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
    if compression_of(self).enabled:
        if pixel_values_videos is not None:
            if (mm_encoder_outputs or {}).get("video") is not None:
                raise ValueError("give either video pixels or mm_encoder_outputs['video'], not both")
            mm_encoder_outputs = {
                **(mm_encoder_outputs or {}),
                "video": self.get_video_features(
                    pixel_values_videos,
                    video_grid_thw,
                    video_clip_ids=video_clip_ids,
                    return_dict=True,
                    **kwargs,
                ),
            }
            pixel_values_videos = None
        if mm_encoder_outputs is not None and pixel_values is not None:
            # the original refuses pixels next to precomputed features: encode the images too
            mm_encoder_outputs = {
                **mm_encoder_outputs,
                "image": self.get_image_features(pixel_values, image_grid_thw, return_dict=True, **kwargs),
            }
            pixel_values = None
    video = (mm_encoder_outputs or {}).get("video")
    in_flight = contextlib.nullcontext()
    if isinstance(video, CompressedVideoOutput):
        video_grid_thw = None if video_grid_thw is None else video.merged_grid_thw
        in_flight = _videos_in_flight(self, video.token_positions)
    with in_flight, inner_llm_stage(self, compression_of(self), input_ids):
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
    with _videos_in_flight(self.model, video.token_positions):
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
    """``get_rope_index`` that places each compressed video's tokens at their own positions.

    Compressed videos passed in as ``mm_encoder_outputs`` are placed by their token positions even
    when the model's own compression is off (a caller that compresses the features itself, as
    SCORE's training does for every sampled mask).
    """
    unpatched = getattr(self, _UNPATCHED)["get_rope_index"]
    in_flight = self._marc_videos_in_flight is not None
    if video_grid_thw is None or not (compression_of(self).enabled or in_flight):
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
            "get_rope_index of a compressing model needs the compressed videos in flight (the merged video blocks, "
            "or another method's token positions): call the model's forward or generate with the video pixels "
            "(or with mm_encoder_outputs from its get_video_features)"
        )
    rows = list(video_grid_thw)  # one tensor object per video, passed on as is to get_vision_position_ids
    if len(rows) != len(positions):
        raise RuntimeError(
            f"video_grid_thw has {len(rows)} videos but {len(positions)} compressed videos are in flight"
        )
    self._marc_merged_rows = {
        id(row): token_positions for row, token_positions in zip(rows, positions, strict=True)
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
    """``get_vision_position_ids``; a compressed video's token at (t, row, col) of its uncompressed grid gets
    the ids the uncompressed video gives that (t, row, col)."""
    unpatched = getattr(self, _UNPATCHED)["get_vision_position_ids"]
    token_positions = self._marc_merged_rows.get(id(grid_thw))
    if token_positions is None:
        return unpatched(start_position, grid_thw, temp_merge_size, spatial_merge_size, time_interval, device)
    # transformers: (t * time_interval).long() + start for time, row + start and col + start in space
    positions = token_positions.to(device)
    temporal = (positions[:, 0] * time_interval).long() + start_position
    return torch.stack([temporal, positions[:, 1] + start_position, positions[:, 2] + start_position])


@contextlib.contextmanager
def _videos_in_flight(inner: Qwen2_5_VLModel, token_positions: Sequence[torch.Tensor]) -> Iterator[None]:
    previous = inner._marc_videos_in_flight
    inner._marc_videos_in_flight = tuple(token_positions)
    try:
        yield
    finally:
        inner._marc_videos_in_flight = previous
