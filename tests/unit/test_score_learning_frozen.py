"""SCORE's learning check, its frozen model's caption rows: the training videos exactly as stage 2 shows them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.config.synthetic import SyntheticConfig
from marc_ops.config.train import AlignConfig
from marc_ops.data.synthetic import generate_corpus
from marc_ops.eval.score_learning import (
    ScoreLearningConfig,
    frozen_caption_builder,
    frozen_model,
    video_caption_rows,
)
from marc_ops.train.align import caption_rows
from marc_ops.train.score_clips import video_clips

CONFIG = ScoreLearningConfig(
    synthetic=SyntheticConfig(n_train_videos=3, n_eval_videos=1, n_train_images=2, n_eval_images=0)
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("score_learning") / "corpus"
    generate_corpus(CONFIG.synthetic, root)
    return root


def test_video_rows_show_each_training_video_as_stage_two_does(corpus: Path):
    rows = video_caption_rows(CONFIG, corpus)
    clips = list(video_clips(CONFIG.data, corpus, CONFIG.video))
    assert len(rows) == len(clips) == 3
    build = frozen_caption_builder(CONFIG.video)
    for row, clip in zip(rows, clips, strict=True):
        sample = build(row)
        assert "/eval/" not in row["media_path"]
        assert row["target"] == clip.caption
        assert row["prompt"][0]["content"][1]["text"] == clip.prompt == "Describe this video in detail."
        assert len(row["frame_indices"]) == CONFIG.data.stage2_max_frames
        assert sample.fps == pytest.approx(clip.fps)
        np.testing.assert_array_equal(sample.frames, clip.frames)
        assert sample.clip_ids.tolist() == [0] * len(clip.frames)


def test_shot_rows_keep_caption_pretrainings_pixels(corpus: Path):
    build = frozen_caption_builder(CONFIG.video)
    for row in caption_rows(corpus, CONFIG.video)[:3]:
        sample = build({**row, "fps": None})
        assert sample.fps == CONFIG.video.fps
        if row["data_type"] == "video":
            assert len(sample.frames) == len(row["frame_indices"])


def test_a_work_folder_reused_with_another_model_builds_and_trains_that_model(tmp_path: Path):
    small = CONFIG.model_copy(update={"align": AlignConfig(per_device_train_batch_size=2, max_steps=1)})
    deeper = small.model_copy(update={"model": TinyQwen2_5_VLConfig(text_layers=3)})
    for config in (small, deeper):
        saved = json.loads((frozen_model(config, tmp_path) / "config.json").read_text())
        assert saved.get("text_config", saved)["num_hidden_layers"] == config.model.text_layers
    assert len(list(tmp_path.glob("base-*"))) == 2
