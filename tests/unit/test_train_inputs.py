"""Training inputs: the whole-video sample, the compressed prompt encoding, the SFT target, quarantine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from marc_ops.compression import CompressionConfig, one_frame_compression
from marc_ops.data import load_videor1
from marc_ops.model import load_qwen2_5_vl_processor
from marc_ops.rewards import format_score
from marc_ops.train.dataset import usable_rows, write_skipped
from marc_ops.train.inputs import (
    TrainingSample,
    collate_visual,
    encode_prompt,
    model_inputs,
    prompt_messages,
    sft_target,
    whole_video_sample,
)
from marc_ops.video import VideoConfig


@pytest.fixture(scope="module")
def corpus(train_corpus: Path) -> Path:
    return train_corpus


@pytest.fixture(scope="module")
def rows(corpus: Path) -> pl.DataFrame:
    return load_videor1(corpus / "Video-R1-COT-165k.json", corpus).rows


def first(rows: pl.DataFrame, data_type: str) -> dict:
    return rows.filter(pl.col("data_type") == data_type).row(0, named=True)


def test_whole_video_sample_is_one_clip_at_one_fps(rows: pl.DataFrame) -> None:
    row = first(rows, "video")
    sample = whole_video_sample(row, VideoConfig(max_frames=6))
    assert sample.is_video and sample.problem_id == row["problem_id"]
    assert sample.frames.ndim == 4 and sample.frames.shape[0] <= 6 and sample.frames.dtype == np.uint8
    assert sample.frames.shape[1] % 28 == 0 and sample.frames.shape[2] % 28 == 0
    assert sample.clip_ids.tolist() == [0] * len(sample.frames)


def test_image_sample_has_no_clip_ids(rows: pl.DataFrame) -> None:
    sample = whole_video_sample(first(rows, "image"))
    assert not sample.is_video and sample.frames.ndim == 3


def test_prompt_messages_put_the_visual_first(rows: pl.DataFrame) -> None:
    messages = prompt_messages(first(rows, "video"))
    assert [part["type"] for part in messages[0]["content"]] == ["video", "text"]
    assert "<answer> </answer>" in messages[0]["content"][1]["text"]


def test_encoded_video_carries_clip_ids_and_the_compressed_placeholder_count(
    tiny_model: Path, rows: pl.DataFrame
) -> None:
    processor = load_qwen2_5_vl_processor(tiny_model)
    row = first(rows, "video")
    frames = whole_video_sample(row).frames
    # two clips of four frames each: the one-frame budget keeps one block across both
    eight = frames[np.arange(8) % len(frames)]
    sample = TrainingSample(row=row, frames=eight, clip_ids=np.array([0, 0, 0, 0, 3, 3, 3, 3]), fps=1.0)
    compressed = encode_prompt(processor, one_frame_compression(), sample)
    plain = encode_prompt(processor, CompressionConfig(), sample)
    t, h, w = compressed.visual["video_grid_thw"][0].tolist()
    per_group = h * w // 4
    assert t == 4 and compressed.visual["video_clip_ids"].tolist() == [0, 0, 3, 3]
    assert int((compressed.input_ids == processor.video_token_id).sum()) == per_group
    assert int((plain.input_ids == processor.video_token_id).sum()) == t * per_group
    assert compressed.visual["pixel_values_videos"].shape[0] == t * h * w


def test_model_inputs_left_pad_and_mark_placeholders(tiny_model: Path, rows: pl.DataFrame) -> None:
    processor = load_qwen2_5_vl_processor(tiny_model)
    video = encode_prompt(
        processor,
        one_frame_compression(),
        whole_video_sample(first(rows, "video"), VideoConfig(max_frames=4)),
    )
    image = encode_prompt(processor, one_frame_compression(), whole_video_sample(first(rows, "image")))
    batch = model_inputs([image, video], processor)
    longest = max(len(video.input_ids), len(image.input_ids))
    assert batch["input_ids"].shape == (2, longest)
    assert batch["attention_mask"].sum(-1).tolist() == [len(image.input_ids), len(video.input_ids)]
    assert torch.equal(batch["mm_token_type_ids"] == 1, batch["input_ids"] == processor.image_token_id)
    assert torch.equal(batch["mm_token_type_ids"] == 2, batch["input_ids"] == processor.video_token_id)
    assert set(collate_visual([image, video])) == {
        "pixel_values",
        "image_grid_thw",
        "pixel_values_videos",
        "video_grid_thw",
        "second_per_grid_ts",
        "video_clip_ids",
    }


def test_sft_target_satisfies_the_format_reward(rows: pl.DataFrame) -> None:
    row = first(rows, "video")
    target = sft_target(row)
    assert target.startswith("<think>") and target.endswith(row["solution"])
    assert format_score(target) == 1.0
    with pytest.raises(ValueError, match="no CoT 'process'"):
        sft_target({**row, "process": None})


def test_unreadable_media_is_skipped_by_id_and_logged(
    rows: pl.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    good = first(rows, "video")
    bad = {**good, "problem_id": "broken-1", "media_path": str(broken)}
    with caplog.at_level(logging.WARNING):
        kept, skipped = usable_rows([good, bad])
    assert [r["problem_id"] for r in kept] == [good["problem_id"]]
    assert [s.problem_id for s in skipped] == ["broken-1"] and "media cannot be read" in skipped[0].reason
    assert "broken-1" in caplog.text
    assert "broken-1" in write_skipped(tmp_path, skipped).read_text()
