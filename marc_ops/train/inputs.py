"""What one training sample feeds the model: its frames (or image), their clip ids, and its prompt tokens.

The seam for the Visual Memory Retriever. Every trainer here asks a ``SampleBuilder`` (a function
``row -> TrainingSample``) for a sample's pixels and never decodes media itself. Until the VMR
selection is used, :func:`vmr_builder` returns the top-k clips' frames with their per-frame clip ids
(what ``vmr_selection`` recorded); :func:`whole_video_builder` gives the evidence-free input: the
whole video at ``video.fps`` (1 fps), thinned to ``video.max_frames`` (64), one clip.

Encoding (:func:`encode_prompt`) renders the Video-R1 prompt with the chat template, then runs the
processor through ``prepare_model_inputs`` so a compressing model gets exactly its merged number
of video placeholders and the clip id of every temporal group (``video_clip_ids``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from marc_ops.compression import CompressionConfig
from marc_ops.config.prompts import build_prompt
from marc_ops.model import prepare_model_inputs
from marc_ops.model.processing import fit_video_placeholders
from marc_ops.model.video_compression import CompressedVideoOutput, concat_video_features
from marc_ops.video import (
    DEFAULT_VIDEO_CONFIG,
    VideoConfig,
    load_image,
    open_video,
    probe_video,
    sample_frames,
)
from marc_ops.vmr.retrieval import ClipSpan, decode_frames, plan_frames

# The processor outputs that belong to one visual input, per kind, in the packing Qwen2.5-VL uses
# (rows of all images, then all videos, each in order of appearance).
IMAGE_KEYS = ("pixel_values", "image_grid_thw")
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "video_clip_ids")


@dataclass(frozen=True)
class TrainingSample:
    """The visual input of one row.

    frames: video: (T, H, W, 3) uint8 RGB, H and W multiples of 28; image: (H, W, 3) uint8.
    clip_ids: video: (T,) int64, the clip of each frame (every temporal group of 2 frames inside
        one clip); image: ``None``.
    fps: the rate the frames were sampled at (mRoPE time: ``second_per_grid_ts = 2 / fps``).
    """

    row: Mapping[str, Any]
    frames: np.ndarray
    clip_ids: np.ndarray | None
    fps: float = 1.0

    @property
    def is_video(self) -> bool:
        return self.clip_ids is not None

    @property
    def problem_id(self) -> str:
        return str(self.row["problem_id"])


SampleBuilder = Callable[[Mapping[str, Any]], TrainingSample]


def whole_video_sample(row: Mapping[str, Any], video: VideoConfig = DEFAULT_VIDEO_CONFIG) -> TrainingSample:
    """The evidence-free input of a manifest row: the whole video at ``video.fps``, at most ``video.max_frames``.

    All frames form one clip (id 0). An image row gives its image, resized by the same pixel bounds.
    Raises a ``MediaError`` naming the file when it cannot be read.
    """
    if row["data_type"] == "image":
        return TrainingSample(
            row=row, frames=load_image(row["media_path"], video), clip_ids=None, fps=video.fps
        )
    sampled = sample_frames(row["media_path"], video)
    return TrainingSample(
        row=row, frames=sampled.frames, clip_ids=np.zeros(len(sampled.frames), dtype=np.int64), fps=video.fps
    )


def whole_video_builder(video: VideoConfig = DEFAULT_VIDEO_CONFIG) -> SampleBuilder:
    """:func:`whole_video_sample` with ``video`` bound: the default ``SampleBuilder``."""
    return functools.partial(whole_video_sample, video=video)


GROUNDED_VIEW = "grounded"  # a dataset row's ``view``: its grounded clip instead of the whole video


def is_grounded(row: Mapping[str, Any]) -> bool:
    """Whether a row carries temporal grounding: a video row with at least one ``evidence_spans`` span."""
    return row["data_type"] == "video" and bool(row.get("evidence_spans"))


def grounded_clip_sample(row: Mapping[str, Any], video: VideoConfig = DEFAULT_VIDEO_CONFIG) -> TrainingSample:
    """The frames of a video row's temporal grounding: its ``evidence_spans`` (inclusive source-frame
    spans, as grounded video-QA data annotates them), each span one clip, laid out like a VMR input
    (:func:`~marc_ops.vmr.retrieval.plan_frames`: ``video.fps``, at most ``video.max_frames``, clip ids
    0, 1, ... in temporal order). It is what a perfect retriever would select.

    Raises ``ValueError`` naming the row when it is not a video or has no spans.
    """
    if not is_grounded(row):
        raise ValueError(f"row {row['problem_id']!r}: a grounded clip needs a video row with evidence_spans")
    reader = open_video(row["media_path"], video.backend)
    clips = [
        ClipSpan(i, int(first), int(last)) for i, (first, last) in enumerate(sorted(row["evidence_spans"]))
    ]
    frame_indices, clip_ids = plan_frames(clips, reader.fps, video, video=str(row["media_path"]))
    return TrainingSample(
        row=row, frames=decode_frames(reader, frame_indices, video), clip_ids=clip_ids, fps=video.fps
    )


def view_sample(row: Mapping[str, Any], video: VideoConfig = DEFAULT_VIDEO_CONFIG) -> TrainingSample:
    """The row by its ``view``: :data:`GROUNDED_VIEW` → :func:`grounded_clip_sample`, anything else (or no
    ``view``) → :func:`whole_video_sample`."""
    if row.get("view") == GROUNDED_VIEW:
        return grounded_clip_sample(row, video)
    return whole_video_sample(row, video)


def view_builder(video: VideoConfig = DEFAULT_VIDEO_CONFIG) -> SampleBuilder:
    """:func:`view_sample` with ``video`` bound: the SFT dataset's builder (``grounded_clips``). Like every
    builder here it pickles, so DataLoader workers can run it under any start method."""
    return functools.partial(view_sample, video=video)


def vmr_builder(
    selection_path: Path, video: VideoConfig = DEFAULT_VIDEO_CONFIG, *, split: str = "train"
) -> SampleBuilder:
    """The VMR input (SPEC 4.5): each video row's top-k clips, at the exact frames ``vmr_selection``
    recorded, with their per-frame clip ids. Image rows (and video rows without a selection, which
    ``vmr_selection`` quarantined) fall back to :func:`whole_video_sample` / the image itself.

    selection_path: ``assets/vmr_selection/selection.parquet``; ``split``: which of its splits
    (``train``, ``eval:<benchmark>``) the rows come from.
    """
    table = pl.read_parquet(selection_path).filter(
        (pl.col("split") == split) & (pl.col("data_type") == "video") & pl.col("frame_indices").is_not_null()
    )
    plans = {
        pid: (np.asarray(frames, dtype=np.int64), np.asarray(clips, dtype=np.int64))
        for pid, frames, clips in table.select("problem_id", "frame_indices", "frame_clip_ids").iter_rows()
    }
    return functools.partial(_planned_sample, plans=plans, video=video)


def _planned_sample(
    row: Mapping[str, Any], plans: Mapping[str, tuple[np.ndarray, np.ndarray]], video: VideoConfig
) -> TrainingSample:
    """The row's recorded frames and clip ids (``plans`` by problem id), or the whole video / image."""
    plan = plans.get(str(row["problem_id"]))
    if row["data_type"] == "image" or plan is None:
        return whole_video_sample(row, video)
    frame_indices, clip_ids = plan
    reader = open_video(row["media_path"], video.backend)
    return TrainingSample(
        row=row, frames=decode_frames(reader, frame_indices, video), clip_ids=clip_ids, fps=video.fps
    )


def check_media(row: Mapping[str, Any]) -> None:
    """Raise a ``MediaError`` when the row's media file cannot be opened (cheap: at most one frame decoded).

    Used to quarantine rows when a dataset is built; the VMR input reads the same file.
    """
    if row["data_type"] == "image":
        load_image(row["media_path"])
    else:
        probe_video(row["media_path"])


def prompt_messages(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One user turn: the visual placeholder, then the Video-R1 prompt (``build_prompt``)."""
    return [
        {"role": "user", "content": [{"type": row["data_type"]}, {"type": "text", "text": build_prompt(row)}]}
    ]


def sft_target(row: Mapping[str, Any]) -> str:
    """The SFT assistant text: ``process + "\\n" + solution``, i.e. ``<think>...</think>\\n<answer>X</answer>``.

    That is what the format reward accepts (``<think>.*?</think>\\s*<answer>.*?</answer>``).
    """
    process = row.get("process")
    if not process:
        raise ValueError(f"row {row['problem_id']!r} has no CoT 'process': SFT rows come from the CoT file")
    return process.strip() + "\n" + row["solution"].strip()


@dataclass(frozen=True)
class EncodedSample:
    """One sample as the model takes it, before any completion.

    input_ids: (P,) int64, the chat-templated prompt with the visual placeholders expanded
        (a compressed video: ``N' * h * w / 4`` of them).
    visual: this sample's processor outputs: for an image ``pixel_values`` (n, d) and
        ``image_grid_thw`` (1, 3); for a video ``pixel_values_videos`` (n, d), ``video_grid_thw``
        (1, 3), ``second_per_grid_ts`` (1,) and ``video_clip_ids`` (t,) (one id per temporal group).
    """

    problem_id: str
    input_ids: torch.Tensor
    visual: dict[str, torch.Tensor]
    video_features: CompressedVideoOutput | None = None


def encode_prompt(
    processor: Qwen2_5_VLProcessor,
    compression: CompressionConfig,
    sample: TrainingSample,
    messages: list[dict[str, Any]] | None = None,
    *,
    encoder: Qwen2_5_VLForConditionalGeneration | None = None,
) -> EncodedSample:
    """Render ``messages`` (default: :func:`prompt_messages` of the row) and process the sample's pixels.

    ``compression`` must be the model's own (``compression_of(model)``): it decides the number of
    video placeholders. Where the method's count depends on the features (VidCom2, FastVID,
    HoliTom), ``encoder`` (the model) compresses the video here: the prompt gets exactly as many
    placeholders as it returned, and the sample carries those features (``video_features``)
    instead of the pixels, so the vision tower runs once.
    """
    messages = prompt_messages(sample.row) if messages is None else messages
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if sample.is_video and compression.counts_from_features:
        return _encode_compressed_first(processor, compression, sample, text, encoder)
    if sample.is_video:
        inputs = prepare_model_inputs(
            processor,
            compression,
            text=[text],
            videos=[sample.frames],
            video_clip_ids=[sample.clip_ids.tolist()],
            video_metadata=[{"fps": sample.fps, "total_num_frames": len(sample.frames)}],
            return_tensors="pt",
        )
        keys = VIDEO_KEYS
    else:
        inputs = prepare_model_inputs(
            processor, compression, text=[text], images=[sample.frames], return_tensors="pt"
        )
        keys = IMAGE_KEYS
    return EncodedSample(
        problem_id=sample.problem_id,
        input_ids=inputs["input_ids"][0],
        visual={key: inputs[key] for key in keys},
    )


def _encode_compressed_first(
    processor: Qwen2_5_VLProcessor,
    compression: CompressionConfig,
    sample: TrainingSample,
    text: str,
    encoder: Qwen2_5_VLForConditionalGeneration | None,
) -> EncodedSample:
    """Process the video uncompressed, compress it with ``encoder``, and cut its placeholder run to N'."""
    if encoder is None:
        raise ValueError(
            f"compression method {compression.method!r} keeps a number of tokens that depends on the features: "
            "pass the model as encoder= so the video is compressed before the prompt is built"
        )
    inputs = prepare_model_inputs(
        processor,
        CompressionConfig(),
        text=[text],
        videos=[sample.frames],
        video_clip_ids=[sample.clip_ids.tolist()],
        video_metadata=[{"fps": sample.fps, "total_num_frames": len(sample.frames)}],
        return_tensors="pt",
    )
    with torch.no_grad():
        features = encoder.model.get_video_features(
            inputs["pixel_values_videos"].to(encoder.device, encoder.dtype),
            inputs["video_grid_thw"].to(encoder.device),
            video_clip_ids=inputs["video_clip_ids"],
            return_dict=True,
        )
    input_ids, _ = fit_video_placeholders(
        inputs["input_ids"],
        inputs["attention_mask"],
        processor.video_token_id,
        [len(rows) for rows in features.pooler_output],
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    return EncodedSample(
        problem_id=sample.problem_id,
        input_ids=input_ids[0],
        visual={key: inputs[key] for key in VIDEO_KEYS if key != "pixel_values_videos"},
        video_features=features,
    )


def collate_visual(samples: Sequence[EncodedSample]) -> dict[str, Any]:
    """The visual tensors of a batch: each key concatenated over the samples that have it, in row order.

    Qwen2.5-VL consumes images and videos in order of appearance, one per row here, so row
    order is the packing it expects. Videos compressed up front (``video_features``) travel as
    ``mm_encoder_outputs={"video": ...}``, every video of the batch alike.
    """
    keys = [key for key in (*IMAGE_KEYS, *VIDEO_KEYS) if any(key in s.visual for s in samples)]
    collated: dict[str, Any] = {
        key: torch.cat([s.visual[key] for s in samples if key in s.visual]) for key in keys
    }
    precomputed = [s.video_features for s in samples if s.video_features is not None]
    if precomputed:
        if "pixel_values_videos" in collated:
            raise ValueError(
                "a batch mixes videos compressed up front with raw video pixels; encode them alike"
            )
        collated["mm_encoder_outputs"] = {"video": concat_video_features(precomputed)}
    return collated


def mm_token_type_ids(input_ids: torch.Tensor, processor: Qwen2_5_VLProcessor) -> torch.Tensor:
    """(B, L) int64: 1 on image placeholders, 2 on video placeholders, 0 elsewhere (Qwen2.5-VL's convention)."""
    return (input_ids == processor.image_token_id).long() + 2 * (input_ids == processor.video_token_id).long()


def model_inputs(
    samples: Sequence[EncodedSample], processor: Qwen2_5_VLProcessor, *, padding_side: str = "left"
) -> dict[str, torch.Tensor]:
    """A padded batch for ``model(**inputs)`` / ``model.generate(**inputs)``: ids, mask, token types, pixels."""
    pad_id = processor.tokenizer.pad_token_id
    length = max(len(s.input_ids) for s in samples)
    input_ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
    for i, sample in enumerate(samples):
        span = (
            slice(length - len(sample.input_ids), length)
            if padding_side == "left"
            else slice(0, len(sample.input_ids))
        )
        input_ids[i, span] = sample.input_ids
        attention_mask[i, span] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": mm_token_type_ids(input_ids, processor),
        **collate_visual(samples),
    }
