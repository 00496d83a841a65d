"""The learning check's statistics (the run itself is the slow test tests/slow/test_learning.py)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from marc_ops.eval.learning import (
    STUDENT_CGRPO,
    STUDENT_SFT,
    TEACHER,
    paired_bootstrap,
    split_by_media,
    summarize_learning,
)


def test_paired_bootstrap_mean_and_interval() -> None:
    a = np.array([0.0, 0.0, 1.0, 1.0])
    b = np.array([1.0, 0.0, 1.0, 1.0])
    mean, low, high = paired_bootstrap(a, b, n_resamples=20_000, seed=1)
    assert mean == pytest.approx(0.25)
    # differences are 1 with probability 1/4: P(no 1 in a resample of 4) = (3/4)^4 = 0.32 > 2.5 %
    assert low == 0.0 and high == pytest.approx(0.75)
    # a constant improvement has a degenerate interval at that value
    assert paired_bootstrap(np.zeros(10), np.full(10, 2.0)) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap(np.zeros(0), np.zeros(0))


def _records(model: str, rewards: list[float], types: list[str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": [model] * len(rewards),
            "benchmark": ["synthetic"] * len(rewards),
            "problem_id": [str(i) for i in range(len(rewards))],
            "problem_type": types,
            "reward": rewards,
            "status": ["ok"] * len(rewards),
            "visual_tokens": [40] * len(rewards),
            "latency_s": [0.1] * len(rewards),
        }
    )


def test_summary_scores_eta_and_paired_difference() -> None:
    types = ["multiple choice", "numerical", "regression", "regression"]
    records = pl.concat(
        [
            _records(STUDENT_SFT, [0.0, 0.0, 0.5, 0.5], types),
            _records(STUDENT_CGRPO, [1.0, 0.0, 0.5, 1.0], types),
            _records(TEACHER, [1.0, 1.0, 1.0, 0.0], types),
        ]
    )
    s = summarize_learning(records, mean_a_full=0.4)
    # synthetic score = mean of (accuracy over MC + numerical) and (MRA over regression), in percent
    assert s["sft_only_score"] == pytest.approx((0.0 + 50.0) / 2)
    assert s["cgrpo_score"] == pytest.approx((50.0 + 75.0) / 2)
    assert s["teacher_score"] == pytest.approx((100.0 + 50.0) / 2)
    assert s["eta"] == pytest.approx(62.5 / 75.0)
    assert s["item_diff_mean"] == pytest.approx((100 + 0 + 0 + 50) / 4)
    assert s["items"] == 4 and s["teacher_mean_a_full"] == 0.4


def test_split_by_media_keeps_a_videos_questions_together() -> None:

    rows = pl.DataFrame({"media_path": ["/v/b.mp4", "/v/a.mp4", "/v/b.mp4", "/v/c.mp4", "/i/d.png"]})
    first, second = split_by_media(rows)
    assert first == ["/i/d.png", "/v/b.mp4"] and second == ["/v/a.mp4", "/v/c.mp4"]
