"""teacher_rewards: G samples of the uncompressed teacher per video, stored per sample and resumable."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import polars as pl
import pytest
import torch

from marc_ops.config.train import TeacherConfig
from marc_ops.data import load_videor1
from marc_ops.train.teacher import (
    RECORDS_FILE,
    TABLE_SCHEMA,
    RowSampler,
    Shard,
    compute_teacher_rewards,
    generation_seed,
    merge_records,
    read_a_full,
    settings_hash,
)

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


def completions_by_id(records_path: Path) -> dict[str, list[str]]:
    return {r["problem_id"]: r["completions"] for r in map(json.loads, records_path.read_text().splitlines())}


def test_a_samples_completions_do_not_depend_on_its_batch(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    videos = rows.filter(pl.col("data_type") == "video").head(3)
    alone = {}
    for row in videos.iter_slices(1):
        out = tmp_path / f"alone-{row['problem_id'][0]}"
        compute_teacher_rewards(row, tiny_model, TEACHER, out, progress=False)
        alone |= completions_by_id(out / RECORDS_FILE)
    batched = TeacherConfig(**{**TEACHER.model_dump(), "batch_size": 3})
    compute_teacher_rewards(videos, tiny_model, batched, tmp_path / "batched", progress=False)
    assert completions_by_id(tmp_path / "batched" / RECORDS_FILE) == alone


def test_every_completion_draws_its_own_stream() -> None:
    seeds = [generation_seed(42, pid, index) for pid in ("a", "b") for index in range(3)]
    assert len(set(seeds)) == 6
    scores = torch.zeros(6, 1000)
    scores[:, 7] = float("-inf")  # a suppressed token
    sampler, again = RowSampler(seeds, temperature=1.0), RowSampler(seeds, temperature=1.0)
    draws = torch.stack([sampler(torch.zeros(6, 1), scores).argmax(-1) for _ in range(20)], dim=1)
    assert torch.equal(
        draws, torch.stack([again(torch.zeros(6, 1), scores).argmax(-1) for _ in range(20)], dim=1)
    )
    assert len({tuple(row) for row in draws.tolist()}) == 6  # six distinct streams
    assert not (draws == 7).any()
    # a row alone draws what it draws among others
    alone = RowSampler(seeds[4:5], temperature=1.0)
    assert [alone(torch.zeros(1, 1), scores[:1]).argmax().item() for _ in range(20)] == draws[4].tolist()


def test_a_one_hot_row_always_draws_its_token() -> None:
    scores = torch.full((2, 5), -30.0)
    scores[0, 3] = scores[1, 1] = 30.0
    out = RowSampler([1, 2], temperature=0.5)(torch.zeros(2, 1), scores)
    assert out.argmax(-1).tolist() == [3, 1]
    assert torch.isinf(out).sum().item() == 8


def run_two_processes(rows: pl.DataFrame, tiny_model: Path, config: TeacherConfig, out: Path) -> list:
    """Two ranks in two threads of this process, meeting at a real barrier: the sharded run without launching.
    One thread runs at a time (a lock released only while waiting at the barrier): torch's process-wide state
    (default dtype while a model loads, thread pools) is not meant to be shared by two models at once."""
    barrier = threading.Barrier(2, timeout=300)
    turn = threading.Lock()
    summaries: list = [None, None]
    errors: list[BaseException] = []

    def wait() -> None:
        turn.release()
        try:
            barrier.wait()
        finally:
            turn.acquire()

    def rank(r: int) -> None:
        with turn:
            try:
                summaries[r] = compute_teacher_rewards(
                    rows, tiny_model, config, out, progress=False, shard=Shard(r, 2, wait)
                )
            except BaseException as err:
                errors.append(err)
                barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return summaries


def test_two_shards_merge_into_the_single_process_records(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    videos = rows.filter(pl.col("data_type") == "video").head(5)
    single = compute_teacher_rewards(videos, tiny_model, TEACHER, tmp_path / "single", progress=False)
    batched = TeacherConfig(**{**TEACHER.model_dump(), "batch_size": 2})
    # a resumed run: one record already there (from a run with another batch size)
    compute_teacher_rewards(videos.head(1), tiny_model, batched, tmp_path / "sharded", progress=False)
    summaries = run_two_processes(videos, tiny_model, batched, tmp_path / "sharded")

    assert [s.n_generated for s in summaries] == [2, 2]  # pending[0::2] and pending[1::2]
    assert summaries[0].n_resumed == 1
    merged = tmp_path / "sharded" / RECORDS_FILE
    assert sorted(p.name for p in merged.parent.iterdir()) == [RECORDS_FILE, "teacher_rewards.parquet"]
    by_id = {r["problem_id"]: r for r in without_timing(merged.read_text())}
    assert by_id == {r["problem_id"]: r for r in without_timing(single.records_path.read_text())}
    assert pl.read_parquet(summaries[0].table_path).equals(pl.read_parquet(single.table_path))


def test_a_resume_merges_shards_of_any_process_count(tmp_path: Path) -> None:
    def line(pid: str, settings: str = "s") -> str:
        return json.dumps({"problem_id": pid, "settings": settings, "status": "ok"}) + "\n"

    (tmp_path / RECORDS_FILE).write_text(line("a") + line("b", "old"))
    (tmp_path / "teacher_rewards.rank0.jsonl").write_text(line("c") + line("a"))  # a: a duplicate
    (tmp_path / "teacher_rewards.rank1.jsonl").write_text(line("d") + line("e")[:9])  # torn by a kill
    (tmp_path / "teacher_rewards.rank2.jsonl").write_text(line("f"))
    records = merge_records(tmp_path, "s")
    assert list(records) == ["a", "c", "d", "f"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORDS_FILE]
    assert [json.loads(x)["problem_id"] for x in (tmp_path / RECORDS_FILE).read_text().splitlines()] == list(
        records
    )
    assert merge_records(tmp_path, "s") == records  # nothing left to merge


def test_batch_size_is_not_a_setting() -> None:
    assert settings_hash(TEACHER, "m", "auto") == settings_hash(
        TeacherConfig(**{**TEACHER.model_dump(), "batch_size": 8}), "m", "auto"
    )
    assert settings_hash(TEACHER, "m", "auto") != settings_hash(
        TeacherConfig(**{**TEACHER.model_dump(), "seed": 1}), "m", "auto"
    )
