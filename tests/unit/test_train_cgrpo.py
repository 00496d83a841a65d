"""C-GRPO on the tiny Qwen2.5-VL: the video student's step, what reaches the model, logging, quarantine, resume."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests_support import assert_killed_runs_resume_to

from marc_ops.compression import merged_block_count
from marc_ops.config.train import CGRPOTrainConfig
from marc_ops.data import load_videor1
from marc_ops.model import load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.rewards import completion_text, make_cgrpo_reward
from marc_ops.train.cgrpo import DECODED_KEY, CGRPOTrainer, DecodeAhead, cgrpo_dataset, train_cgrpo
from marc_ops.train.inputs import TrainingSample, whole_video_builder, whole_video_sample
from marc_ops.video import VideoConfig, VideoDecodeError

VIDEO = VideoConfig(max_frames=8)
TINY = CGRPOTrainConfig(
    num_generations=4,
    per_device_train_batch_size=4,
    max_completion_length=12,
    max_steps=1,
    save_steps=1,
    learning_rate=1e-2,
    weight_decay=0.0,  # so that a parameter moves only when a gradient reaches it
    bf16=False,
    gradient_checkpointing=False,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rows(train_corpus: Path) -> pl.DataFrame:
    return load_videor1(train_corpus / "Video-R1-260k.json", train_corpus).rows


def videos(rows: pl.DataFrame, n: int) -> pl.DataFrame:
    return rows.filter(pl.col("data_type") == "video").head(n)


def a_full_of(rows: pl.DataFrame, value: float = 0.5) -> dict[str, float]:
    return {pid: value for pid in rows["problem_id"]}


def completion_chars(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """A test-only reward with spread inside every group: a random tiny model never earns accuracy or format."""
    return [len(completion_text(c)) / 100 for c in completions]


def test_a_step_moves_the_language_model_and_the_vision_tower(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    train = videos(rows, 2)
    dataset, _ = cgrpo_dataset(train, a_full_of(train))
    processor = load_qwen2_5_vl_processor(tiny_model)
    args = TINY.to_grpo_config(
        tmp_path, suppress_token_ids=[processor.image_token_id, processor.video_token_id]
    )
    args.reward_weights = [1.0, 1.0]
    args.report_to = []
    model = load_qwen2_5_vl(tiny_model, compression=TINY.compression, dtype=torch.float32, device=None)
    seen: list[dict[str, Any]] = []
    model.model.register_forward_pre_hook(lambda module, a, kw: seen.append(dict(kw)), with_kwargs=True)
    trainer = CGRPOTrainer(
        model=model,
        reward_funcs=[
            make_cgrpo_reward(TINY.tau, TINY.alpha, TINY.eta_cap, TINY.num_generations),
            completion_chars,
        ],
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        sample_builder=whole_video_builder(VIDEO),
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    trainer.train()

    assert trainer.state.log_history[0]["grad_norm"] > 0
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any(name.startswith("model.language_model.") for name in changed)
    assert any(name.startswith("model.visual.") for name in changed)  # the loss reaches the pixels
    assert trainer.ref_model is not None and trainer.ref_model.config.marc_compression["target_blocks"] == 1

    # What reached the model in the log-prob passes: pixels, clip ids, one block's worth of placeholders
    scored = [kw for kw in seen if kw.get("pixel_values_videos") is not None]
    assert scored
    for kw in scored:
        grid, clip_ids = kw["video_grid_thw"], kw["video_clip_ids"]
        assert clip_ids is not None and len(clip_ids) == int(grid[:, 0].sum())
        t, h, w = grid[0].tolist()
        blocks = merged_block_count(
            clip_ids[:t].tolist(),
            ratio=TINY.compression.ratio,
            window=TINY.compression.window,
            target_blocks=1,
        )
        assert blocks == 1
        per_row = (kw["input_ids"] == processor.video_token_id).sum(-1)
        assert per_row.tolist() == [blocks * h * w // 4] * kw["input_ids"].shape[0]
        assert torch.equal(kw["mm_token_type_ids"] == 2, kw["input_ids"] == processor.video_token_id)


def scalars(out_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(next((out_dir / "runs").iterdir())))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_train_cgrpo_logs_skips_broken_videos_and_resumes(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    train = pl.concat(
        [
            videos(rows, 2),
            videos(rows, 1).with_columns(
                pl.lit("broken-1").alias("problem_id"), pl.lit(str(broken)).alias("media_path")
            ),
            rows.filter(pl.col("data_type") == "image").head(1),
        ]
    )
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        final = train_cgrpo(
            TINY, train, a_full_of(train), tiny_model, out, sample_builder=whole_video_builder(VIDEO)
        )

    assert (final / "model.safetensors").is_file() and (out / "checkpoint-1" / "model.safetensors").is_file()
    assert json.loads((final / "config.json").read_text())["marc_compression"]["target_blocks"] == 1
    skipped = json.loads((out / "skipped_samples.json").read_text())
    assert [s["problem_id"] for s in skipped] == ["broken-1"] and "broken-1" in caplog.text
    logged = json.loads((out / "trainer_state.json").read_text())["log_history"][0]
    tensorboard = scalars(out)
    for key in (
        "reward",
        "rewards/accuracy_reward/mean",
        "cgrpo/eta",
        "cgrpo/r_c",
        "kl",
        "completions/mean_length",
    ):
        assert key in logged, key
        assert f"train/{key}" in tensorboard, key

    # A second call (as after a kill) resumes from checkpoint-1 and continues the step count
    longer = CGRPOTrainConfig(**{**TINY.model_dump(), "max_steps": 2})
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train_cgrpo(
            longer, train, a_full_of(train), tiny_model, out, sample_builder=whole_video_builder(VIDEO)
        )
    assert "resuming C-GRPO from" in caplog.text and "checkpoint-1" in caplog.text
    assert (
        "resumed the weights of" in caplog.text
    )  # CheckpointWeightsMixin: the step-1 weights, not the initial ones
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert [entry["step"] for entry in state["log_history"] if "reward" in entry] == [1, 2]
    assert (out / "checkpoint-2").is_dir()


def test_a_run_killed_at_any_point_resumes_to_the_bytes_of_an_uninterrupted_one(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    config = CGRPOTrainConfig(**{**TINY.model_dump(), "max_steps": 2, "save_total_limit": None})
    train_rows = videos(rows, 2)

    def train(out_dir: Path) -> None:
        train_cgrpo(
            config,
            train_rows,
            a_full_of(train_rows),
            tiny_model,
            out_dir,
            sample_builder=whole_video_builder(VIDEO),
        )

    train(tmp_path / "uninterrupted")
    assert_killed_runs_resume_to(tmp_path / "uninterrupted", train, last_step=2)


def test_a_video_without_teacher_reward_is_skipped(
    rows: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    train = pl.concat([videos(rows, 2), rows.filter(pl.col("data_type") == "image").head(1)])
    known = a_full_of(videos(rows, 1))
    with caplog.at_level(logging.WARNING):
        dataset, skipped = cgrpo_dataset(train, known)
    assert dataset.num_rows == 2 and [s.problem_id for s in skipped] == [train["problem_id"][1]]
    assert "no teacher reward" in skipped[0].reason
    image = dataset.filter(lambda row: row["data_type"] == "image")[0]
    assert image["a_full"] is None and image["prompt"][0]["content"][0]["type"] == "image"


def test_dataloader_workers_decode_ahead_and_train_the_same_bytes(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    config = CGRPOTrainConfig(**{**TINY.model_dump(), "max_steps": 2})
    train_rows = videos(rows, 2)

    def train(run: CGRPOTrainConfig, out_dir: Path) -> bytes:
        final = train_cgrpo(
            run,
            train_rows,
            a_full_of(train_rows),
            tiny_model,
            out_dir,
            sample_builder=whole_video_builder(VIDEO),
        )
        return (final / "model.safetensors").read_bytes()

    with_workers = config.model_copy(update={"dataloader_num_workers": 2})
    assert train(with_workers, tmp_path / "workers") == train(config, tmp_path / "alone")


def test_decode_ahead_decodes_each_group_once_and_passes_unreadable_rows_on(rows: pl.DataFrame) -> None:
    train = videos(rows, 2)
    good, bad = train["problem_id"].to_list()
    calls: list[str] = []

    def builder(row: dict) -> TrainingSample:
        calls.append(row["problem_id"])
        if row["problem_id"] == bad:
            raise VideoDecodeError(row["media_path"], "truncated")
        return whole_video_sample(row, VIDEO)

    batch = {
        "problem_id": [good] * 4 + [bad] * 4,
        "media_path": [train["media_path"][0]] * 4 + [train["media_path"][1]] * 4,
        "data_type": ["video"] * 8,
    }
    decoded = DecodeAhead(builder)(batch)[DECODED_KEY]
    assert calls == [good, bad]  # one decode a group
    assert all(sample is decoded[0] for sample in decoded[:4]) and decoded[0].frames.shape[0] == 8
    assert decoded[4:] == [None] * 4
    assert pickle.loads(pickle.dumps(DecodeAhead(whole_video_builder(VIDEO)))).sample_builder.keywords == {
        "video": VIDEO
    }  # workers started by spawn get it too


def test_media_unreadable_during_training_names_the_sample_with_workers(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    train_rows = videos(rows, 1)
    run = TINY.model_copy(update={"dataloader_num_workers": 2})
    with pytest.raises(RuntimeError, match=f"sample {train_rows['problem_id'][0]} passed the media check"):
        train_cgrpo(
            run, train_rows, a_full_of(train_rows), tiny_model, tmp_path, sample_builder=unreadable_sample
        )


def unreadable_sample(row: dict) -> TrainingSample:
    """A sample builder for media that broke after the dataset was built."""
    raise VideoDecodeError(row["media_path"], "truncated after the media check")
