"""SFT on CoT rows with video inputs: the collator's labels and a loss that falls on a repeated batch."""

from __future__ import annotations

import functools
import json
import math
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from tests_support import assert_killed_runs_resume_to

from marc_ops.compression import one_frame_compression
from marc_ops.config.train import SFTTrainConfig
from marc_ops.data import load_videor1
from marc_ops.model import load_qwen2_5_vl_processor
from marc_ops.train.inputs import (
    GROUNDED_VIEW,
    grounded_clip_sample,
    view_builder,
    whole_video_builder,
    whole_video_sample,
)
from marc_ops.train.progress import TrainingProgress
from marc_ops.train.sft import (
    IGNORE_INDEX,
    UNCOMPRESSED_KEY,
    SFTCollator,
    sft_dataset,
    train_sft,
    trained_batches,
)
from marc_ops.video import VideoConfig, VideoDecodeError, open_video
from marc_ops.vmr.retrieval import decode_frames

VIDEO = VideoConfig(max_frames=8)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cot_rows(train_corpus: Path) -> pl.DataFrame:
    return load_videor1(train_corpus / "Video-R1-COT-165k.json", train_corpus).rows


def test_collator_learns_only_the_target_and_its_end_of_turn(
    tiny_model: Path, cot_rows: pl.DataFrame
) -> None:
    processor = load_qwen2_5_vl_processor(tiny_model)
    dataset, skipped = sft_dataset(
        pl.concat([cot_rows.filter(pl.col("data_type") == t).head(1) for t in ("video", "image")])
    )
    assert not skipped
    batch = SFTCollator(processor, one_frame_compression(), whole_video_builder(VIDEO))(list(dataset))
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert {"pixel_values", "pixel_values_videos", "video_clip_ids", "mm_token_type_ids"} <= set(batch)
    for i, row in enumerate(dataset):
        learnt = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert processor.tokenizer.decode(learnt) == row["target"] + processor.tokenizer.eos_token
        # the prompt (visual placeholders included) and the padding are masked
        visual = batch["mm_token_type_ids"][i] > 0
        assert visual.any() and (batch["labels"][i][visual] == IGNORE_INDEX).all()
        assert (batch["labels"][i][batch["attention_mask"][i] == 0] == IGNORE_INDEX).all()
    assert (batch["input_ids"][0] == processor.video_token_id).sum() > 0  # the video row comes first


def test_sft_loss_falls_on_a_repeated_batch(tiny_model: Path, cot_rows: pl.DataFrame, tmp_path: Path) -> None:
    config = SFTTrainConfig(
        learning_rate=1e-2,
        per_device_train_batch_size=1,
        max_steps=6,
        num_train_epochs=100,
        logging_steps=1,
        save_steps=100,
        bf16=False,
        gradient_checkpointing=False,
    )
    one_row = cot_rows.filter(pl.col("data_type") == "video").head(1)
    final = train_sft(config, one_row, tiny_model, tmp_path, sample_builder=whole_video_builder(VIDEO))
    assert (final / "model.safetensors").is_file()
    assert json.loads((final / "config.json").read_text())["marc_compression"]["target_blocks"] == 1
    losses = [
        e["loss"]
        for e in json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
        if "loss" in e
    ]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]


def test_mixed_budget_warm_up_alternates_compressed_and_uncompressed_batches(
    tiny_model: Path, cot_rows: pl.DataFrame, tmp_path: Path
) -> None:
    processor = load_qwen2_5_vl_processor(tiny_model)
    dataset, _ = sft_dataset(cot_rows.filter(pl.col("data_type") == "video").head(1))
    collate = SFTCollator(
        processor, one_frame_compression(), whole_video_builder(VIDEO), mix_uncompressed=True
    )
    batches = [collate(list(dataset)) for _ in range(3)]
    placeholders = [int((b["input_ids"] == processor.video_token_id).sum()) for b in batches]
    assert [bool(b[UNCOMPRESSED_KEY]) for b in batches] == [False, True, False]
    # 8 frames = 4 temporal groups: one block compressed, four uncompressed
    assert placeholders[1] == 4 * placeholders[0] and placeholders[2] == placeholders[0]

    config = SFTTrainConfig(
        learning_rate=1e-3,
        per_device_train_batch_size=1,
        max_steps=2,
        num_train_epochs=100,
        logging_steps=1,
        save_steps=100,
        bf16=False,
        gradient_checkpointing=False,
        mix_uncompressed=True,
        compression=one_frame_compression(),
    )
    final = train_sft(
        config,
        cot_rows.filter(pl.col("data_type") == "video").head(1),
        tiny_model,
        tmp_path,
        sample_builder=whole_video_builder(VIDEO),
    )
    # the uncompressed step ran (a mismatched placeholder count would raise) and the student's budget is saved
    assert json.loads((final / "config.json").read_text())["marc_compression"]["target_blocks"] == 1
    with pytest.raises(ValueError, match="gradient_checkpointing: false"):
        SFTTrainConfig(mix_uncompressed=True, gradient_checkpointing=True, bf16=False)


def test_grounded_clips_add_each_grounded_video_row_once_more_right_after_it(cot_rows: pl.DataFrame) -> None:
    rows = pl.concat([cot_rows.filter(pl.col("data_type") == t).head(3) for t in ("video", "image")])
    grounded = rows.filter((pl.col("data_type") == "video") & (pl.col("evidence_spans").list.len() > 0))
    assert grounded.height >= 1
    plain, _ = sft_dataset(rows)
    assert plain["view"] == ["whole"] * rows.height
    dataset, _ = sft_dataset(rows, grounded_clips=True)
    assert len(dataset) == rows.height + grounded.height
    for i, record in enumerate(dataset):
        if record["view"] == GROUNDED_VIEW:
            before = dataset[i - 1]
            assert before["view"] == "whole" and before["problem_id"] == record["problem_id"]
            assert before["target"] == record["target"] and before["prompt"] == record["prompt"]
    assert sorted(
        p for p, v in zip(dataset["problem_id"], dataset["view"], strict=True) if v == GROUNDED_VIEW
    ) == sorted(str(p) for p in grounded["problem_id"])


def test_grounded_clip_is_the_evidence_span_at_one_frame_a_second(cot_rows: pl.DataFrame) -> None:
    row = cot_rows.filter((pl.col("data_type") == "video") & (pl.col("evidence_spans").list.len() > 0)).row(
        0, named=True
    )
    reader = open_video(row["media_path"])
    first, last = sorted(row["evidence_spans"])[0]
    # by hand: ceil(seconds) one-second slots over the span, each its centre frame; an odd count is
    # padded with the last frame (Qwen2.5-VL's 2-frame temporal groups)
    length = last - first + 1
    slots = max(1, math.ceil(round(length / reader.fps, 6)))
    expected = [first + int((i + 0.5) * length / slots) for i in range(slots)]
    expected += expected[-1:] * (len(expected) % 2)
    video = VideoConfig(max_frames=64)  # no thinning: the span is a few seconds
    sample = grounded_clip_sample({**row, "evidence_spans": [[first, last]]}, video)
    assert sample.is_video and sample.clip_ids.tolist() == [0] * len(expected)
    assert np.array_equal(
        sample.frames, decode_frames(open_video(row["media_path"]), np.asarray(expected), video)
    )
    whole = whole_video_sample(row, video)
    assert sample.frames.shape[1:] == whole.frames.shape[1:]
    # the builder dispatches on the row's view
    build = view_builder(video)
    assert np.array_equal(
        build({**row, "view": GROUNDED_VIEW, "evidence_spans": [[first, last]]}).frames, sample.frames
    )
    assert np.array_equal(build({**row, "view": "whole"}).frames, whole.frames)
    with pytest.raises(ValueError, match=str(row["problem_id"])):
        grounded_clip_sample({**row, "evidence_spans": []}, video)


@pytest.mark.parametrize(
    ("global_step", "batches_per_epoch", "accumulation", "batches"),
    [
        (0, 7, 1, 0),
        (3, 7, 1, 3),
        (7, 7, 1, 7),  # the epoch's end
        (9, 7, 1, 9),
        (2, 7, 2, 4),
        (4, 7, 2, 7),  # an epoch is 4 steps: the last one takes the 7th batch alone
        (5, 7, 2, 9),
    ],
)
def test_a_resumed_collator_counts_the_batches_already_trained(
    global_step: int, batches_per_epoch: int, accumulation: int, batches: int
) -> None:
    assert trained_batches(global_step, batches_per_epoch, accumulation) == batches


def test_a_run_killed_at_any_point_resumes_to_the_bytes_of_an_uninterrupted_one(
    tiny_model: Path, cot_rows: pl.DataFrame, tmp_path: Path
) -> None:
    config = SFTTrainConfig(
        learning_rate=1e-3,
        per_device_train_batch_size=1,
        max_steps=3,
        num_train_epochs=100,
        logging_steps=1,
        save_steps=1,
        save_total_limit=None,
        bf16=False,
        gradient_checkpointing=False,
        mix_uncompressed=True,  # which batch runs uncompressed depends on the batches already trained
        compression=one_frame_compression(),
    )
    # 2 batches an epoch: step 3 starts the second epoch
    rows = cot_rows.filter(pl.col("data_type") == "video").head(2)

    def train(out_dir: Path) -> None:
        progress = TrainingProgress()
        train_sft(
            config, rows, tiny_model, out_dir, sample_builder=whole_video_builder(VIDEO), callbacks=[progress]
        )
        # every run reports its end, the one finished from its last checkpoint too, and no step it did not train
        assert progress.final_metrics is not None and "train_loss" in progress.final_metrics, out_dir
        if out_dir.name.startswith("after_its_last_checkpoint"):
            assert progress.logged_steps == 0  # nothing left to train

    train(tmp_path / "uninterrupted")
    assert_killed_runs_resume_to(tmp_path / "uninterrupted", train, last_step=3)


def test_dataloader_workers_train_the_bytes_of_the_training_process_alone(
    tiny_model: Path, cot_rows: pl.DataFrame, tmp_path: Path
) -> None:
    # 3 batches an epoch over 2 workers: worker 0 builds batches 0 and 2, worker 1 batch 1; the second epoch is
    # a new pass (new workers), and the run resumed at step 2 skips two batches first. mix_uncompressed makes
    # each batch's encoding depend on its number in the run.
    config = SFTTrainConfig(
        learning_rate=1e-3,
        per_device_train_batch_size=1,
        max_steps=4,
        num_train_epochs=100,
        logging_steps=1,
        save_steps=2,
        bf16=False,
        gradient_checkpointing=False,
        mix_uncompressed=True,
        compression=one_frame_compression(),
    )
    rows = cot_rows.filter(pl.col("data_type") == "video").head(3)
    with_workers = config.model_copy(update={"dataloader_num_workers": 2})

    def train(run: SFTTrainConfig, out_dir: Path) -> bytes:
        final = train_sft(run, rows, tiny_model, out_dir, sample_builder=whole_video_builder(VIDEO))
        return (final / "model.safetensors").read_bytes()

    alone = train(config, tmp_path / "alone")
    assert train(with_workers, tmp_path / "workers") == alone
    train(with_workers.model_copy(update={"max_steps": 2}), tmp_path / "resumed")
    assert train(with_workers, tmp_path / "resumed") == alone


def test_media_unreadable_during_training_names_the_sample_from_a_worker(
    tiny_model: Path, cot_rows: pl.DataFrame, tmp_path: Path
) -> None:
    rows = cot_rows.filter(pl.col("data_type") == "video").head(1)
    config = SFTTrainConfig(
        per_device_train_batch_size=1, max_steps=1, bf16=False, gradient_checkpointing=False
    )
    gone = functools.partial(unreadable_sample, video=VIDEO)
    for workers in (0, 2):
        run = config.model_copy(update={"dataloader_num_workers": workers})
        with pytest.raises(RuntimeError, match=f"sample {rows['problem_id'][0]} passed the media check"):
            train_sft(run, rows, tiny_model, tmp_path / str(workers), sample_builder=gone)


def unreadable_sample(row: dict, video: VideoConfig) -> None:
    """A sample builder for media that broke after the dataset was built."""
    raise VideoDecodeError(row["media_path"], "truncated after the media check")


def test_the_collator_pickles_for_workers_started_by_spawn(tiny_model: Path, cot_rows: pl.DataFrame) -> None:
    processor = load_qwen2_5_vl_processor(tiny_model)
    dataset, _ = sft_dataset(cot_rows.filter(pl.col("data_type") == "video").head(1), grounded_clips=True)
    collate = SFTCollator(processor, one_frame_compression(), view_builder(VIDEO), mix_uncompressed=True)
    copy = pickle.loads(pickle.dumps(collate))
    assert torch.equal(copy(list(dataset))["input_ids"], collate(list(dataset))["input_ids"])
