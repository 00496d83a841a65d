"""teacher_rewards: G samples of the uncompressed teacher per video, stored per sample and resumable."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl
import pytest

from marc_ops.config.train import TeacherConfig
from marc_ops.data import load_videor1
from marc_ops.train.teacher import RECORDS_FILE, TABLE_SCHEMA, compute_teacher_rewards, read_a_full

TEACHER = TeacherConfig(num_generations=3, max_completion_length=8)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rows(train_corpus: Path) -> pl.DataFrame:
    return load_videor1(train_corpus / "Video-R1-260k.json", train_corpus).rows


def with_broken_video(rows: pl.DataFrame, tmp_path: Path) -> pl.DataFrame:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"")
    bad = rows.filter(pl.col("data_type") == "video").head(1)
    bad = bad.with_columns(pl.lit("broken-1").alias("problem_id"), pl.lit(str(broken)).alias("media_path"))
    return pl.concat([rows.head(3), bad, rows.filter(pl.col("data_type") == "image").head(1)])


def without_timing(text: str) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in text.splitlines()]


def test_teacher_scores_videos_and_records_failures(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    batch = with_broken_video(rows, tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = compute_teacher_rewards(batch, tiny_model, TEACHER, tmp_path / "out", progress=False)
    assert (summary.n_video_samples, summary.n_generated, summary.n_failed) == (4, 4, 1)
    assert "broken-1" in caplog.text
    table = pl.read_parquet(summary.table_path)
    assert table.schema == pl.Schema(TABLE_SCHEMA)
    ok = table.filter(pl.col("status") == "ok")
    assert ok.height == 3 and all(len(r) == TEACHER.num_generations for r in ok["rewards"])
    assert ok["a_full"].to_list() == [sum(r) / len(r) for r in ok["rewards"]]
    assert set(read_a_full(summary.table_path)) == set(ok["problem_id"])  # images and failures are absent
    record = json.loads(summary.records_path.read_text().splitlines()[0])
    assert len(record["completions"]) == TEACHER.num_generations


def test_teacher_resumes_after_a_kill_mid_write(tiny_model: Path, rows: pl.DataFrame, tmp_path: Path) -> None:
    batch = rows.filter(pl.col("data_type") == "video").head(3)
    out = tmp_path / "out"
    compute_teacher_rewards(batch, tiny_model, TEACHER, out, progress=False)
    records_path = out / RECORDS_FILE
    complete = records_path.read_text()
    lines = complete.splitlines(keepends=True)
    # a kill while the third record was being written leaves half a line
    records_path.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])

    summary = compute_teacher_rewards(batch, tiny_model, TEACHER, out, progress=False)

    assert (summary.n_resumed, summary.n_generated) == (2, 1)
    # each sample draws from its own seeded generator: the regenerated record is the lost one
    assert without_timing(records_path.read_text()) == without_timing(complete)
    again = compute_teacher_rewards(batch, tiny_model, TEACHER, out, progress=False)
    assert (again.n_resumed, again.n_generated) == (3, 0)


def test_teacher_regenerates_records_made_with_other_settings(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    batch = rows.filter(pl.col("data_type") == "video").head(1)
    compute_teacher_rewards(batch, tiny_model, TEACHER, tmp_path, progress=False)
    changed = TeacherConfig(**{**TEACHER.model_dump(), "temperature": 0.7})
    summary = compute_teacher_rewards(batch, tiny_model, changed, tmp_path, progress=False)
    assert (summary.n_resumed, summary.n_generated) == (0, 1)
    assert len((tmp_path / RECORDS_FILE).read_text().splitlines()) == 1
