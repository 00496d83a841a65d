"""The Qwen2.5-VL adapter on the tiny model: mixed batches, greedy determinism, token budgets, media errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from marc_ops.config import FINAL_MODEL_DIR, ProjectPaths
from marc_ops.config.methods import resolve_method
from marc_ops.config.tasks import resolve_task
from marc_ops.data import load_task_rows
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.eval import EvalInput, prepare_input, run_benchmark
from marc_ops.eval.qwen_adapter import (
    CheckpointNotFoundError,
    QwenAdapter,
    SelectionNotFoundError,
    resolve_checkpoint,
)
from marc_ops.eval.scoring import latency_path
from marc_ops.io import write_json
from marc_ops.video import VideoConfig, VideoDecodeError, smart_resize

CORPUS = SyntheticConfig(n_train_videos=2, n_eval_videos=2, n_train_images=1, n_eval_images=1)
VIDEO = VideoConfig()
SPLIT = "eval:synthetic"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/unit/conftest.py


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("adapter") / "corpus"
    generate_corpus(CORPUS, path)
    return path


@pytest.fixture(scope="module")
def rows(corpus: Path) -> pl.DataFrame:
    rows = load_task_rows(resolve_task("synthetic"), corpus / "eval").rows
    assert set(rows["data_type"]) == {"video", "image"}
    return rows


def write_selection(path: Path, rows: pl.DataFrame, split: str = SPLIT) -> Path:
    """What ``vmr_selection`` records for the video rows: two clips, two groups then one, at 1 fps of 8-fps video."""
    videos = rows.filter(pl.col("data_type") == "video")
    pl.DataFrame(
        {
            "problem_id": videos["problem_id"],
            "split": [split] * videos.height,
            "data_type": ["video"] * videos.height,
            "frame_indices": [[0, 8, 16, 24, 32, 40]] * videos.height,
            "frame_clip_ids": [[0, 0, 0, 0, 2, 2]] * videos.height,
        }
    ).write_parquet(path)
    return path


def inputs_for(rows: pl.DataFrame, method: str) -> list[EvalInput]:
    return [prepare_input(row, resolve_method(method), VIDEO) for row in rows.iter_rows(named=True)]


def group_tokens(corpus_config: SyntheticConfig = CORPUS) -> int:
    """Visual tokens of one temporal group of a synthetic frame: (H/28)·(W/28) after resizing."""
    height, width = smart_resize(
        corpus_config.height, corpus_config.width, min_pixels=VIDEO.min_pixels, max_pixels=VIDEO.max_pixels
    )
    return height * width // (28 * 28)


def test_generates_for_a_batch_of_videos_and_images_greedily(tiny_model: Path, rows: pl.DataFrame) -> None:
    adapter = QwenAdapter(tiny_model, resolve_method("baseline-16f"), video=VIDEO, max_new_tokens=6)
    batch = inputs_for(rows, "baseline-16f")
    first = adapter.generate(batch)
    second = adapter.generate(batch)
    assert len(first) == len(batch) == rows.height
    assert [o.text for o in first] == [o.text for o in second]  # greedy: the same answers twice
    assert all(isinstance(o.text, str) for o in first)
    for item, output in zip(batch, first, strict=True):
        assert output.visual_tokens > 0
        if item.media.kind == "image":
            assert output.visual_tokens == group_tokens()  # one image, one merged grid
        else:
            assert output.visual_tokens % group_tokens() == 0
    assert len({o.latency_s for o in first}) == 1 and first[0].latency_s > 0  # the batch's share


def test_marc_sees_at_most_one_groups_worth_and_fewer_than_64_frames(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    selection = write_selection(tmp_path / "selection.parquet", rows)
    marc = QwenAdapter(
        tiny_model,
        resolve_method("marc"),
        video=VIDEO,
        selection_path=selection,
        split=SPLIT,
        max_new_tokens=1,
    )
    baseline = QwenAdapter(tiny_model, resolve_method("baseline-64f"), video=VIDEO, max_new_tokens=1)
    compressed = marc.generate(inputs_for(rows, "marc"))
    full = baseline.generate(inputs_for(rows, "baseline-64f"))
    for row, small, large in zip(rows.iter_rows(named=True), compressed, full, strict=True):
        if row["data_type"] == "video":
            assert small.visual_tokens <= group_tokens() < large.visual_tokens
        else:
            assert small.visual_tokens == large.visual_tokens  # images are never compressed


@pytest.mark.parametrize(
    "method", ["moviechat-1f", "vidcom2@0.25", "fastvid@0.25", "dycoke@0.4", "holitom@0.25"]
)
def test_compared_compressors_answer_a_mixed_batch_with_fewer_visual_tokens(
    tiny_model: Path, rows: pl.DataFrame, method: str
) -> None:
    """A compared method runs as an evaluation method: a batch of videos and images, each video with
    fewer visual tokens than the 64-frame base model sees (images untouched)."""
    compressed = QwenAdapter(tiny_model, resolve_method(method), video=VIDEO, max_new_tokens=2)
    baseline = QwenAdapter(tiny_model, resolve_method("baseline-64f"), video=VIDEO, max_new_tokens=1)
    small = compressed.generate(inputs_for(rows, method))
    large = baseline.generate(inputs_for(rows, "baseline-64f"))
    for row, a, b in zip(rows.iter_rows(named=True), small, large, strict=True):
        if row["data_type"] == "video":
            assert 0 < a.visual_tokens < b.visual_tokens
        else:
            assert a.visual_tokens == b.visual_tokens
        assert isinstance(a.text, str)


def test_vmr_methods_need_a_selection_that_covers_the_benchmark(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    marc = resolve_method("marc@0.4")
    with pytest.raises(ValueError, match="selection_path"):
        QwenAdapter(tiny_model, marc)
    with pytest.raises(SelectionNotFoundError, match="materialize the vmr_selection asset"):
        QwenAdapter(tiny_model, marc, selection_path=tmp_path / "absent.parquet", split=SPLIT)
    other = write_selection(tmp_path / "selection.parquet", rows, split="train")
    with pytest.raises(SelectionNotFoundError, match="no samples of split 'eval:synthetic'"):
        QwenAdapter(tiny_model, marc, selection_path=other, split=SPLIT)
    with pytest.raises(ValueError, match="does not use the VMR"):
        QwenAdapter(tiny_model, resolve_method("baseline-16f"), selection_path=other, split=SPLIT)


def test_unreadable_video_raises_a_media_error_naming_it(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    row = rows.filter(pl.col("data_type") == "video").row(0, named=True)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    item = prepare_input({**row, "media_path": str(broken)}, resolve_method("baseline-16f"), VIDEO)
    adapter = QwenAdapter(tiny_model, resolve_method("baseline-16f"), max_new_tokens=1)
    with pytest.raises(VideoDecodeError) as caught:
        adapter.generate([item])
    assert caught.value.path.resolve() == broken.resolve()  # how the runner finds the sample to fail


def test_checkpoints_resolve_or_name_the_asset_to_materialize(tmp_path: Path, tiny_model: Path) -> None:
    paths = ProjectPaths(tmp_path)
    with pytest.raises(FileNotFoundError, match="materialize the base_model asset"):
        resolve_checkpoint(paths, resolve_method("baseline-64f"))
    with pytest.raises(CheckpointNotFoundError, match="materialize the sft_checkpoint asset"):
        resolve_checkpoint(paths, resolve_method("sft-1f"))
    with pytest.raises(CheckpointNotFoundError, match="cgrpo_checkpoint partition 0.8") as caught:
        resolve_checkpoint(paths, resolve_method("marc@0.8"))
    assert "tau_0.8/model" in str(caught.value)

    write_json(paths.asset("base_model") / "model.json", {"path": str(tiny_model)})
    cgrpo = paths.asset("cgrpo_checkpoint") / "tau_0.6" / FINAL_MODEL_DIR
    shutil.copytree(tiny_model, cgrpo)
    assert resolve_checkpoint(paths, resolve_method("baseline-16f")) == tiny_model
    assert resolve_checkpoint(paths, resolve_method("marc")) == cgrpo


def test_base_methods_answer_with_the_sft_warm_up_when_it_is_the_initial_policy(
    tmp_path: Path, tiny_model: Path
) -> None:
    paths = ProjectPaths(tmp_path)
    write_json(paths.asset("base_model") / "model.json", {"path": str(tiny_model)})
    with pytest.raises(CheckpointNotFoundError, match="materialize the sft_checkpoint asset"):
        resolve_checkpoint(paths, resolve_method("baseline-64f"), init="sft")
    sft = paths.asset("sft_checkpoint") / FINAL_MODEL_DIR
    shutil.copytree(tiny_model, sft)
    assert resolve_checkpoint(paths, resolve_method("baseline-64f"), init="sft") == sft
    assert resolve_checkpoint(paths, resolve_method("vmr-64f"), init="sft") == sft
    assert resolve_checkpoint(paths, resolve_method("baseline-64f")) == tiny_model  # init="base"


def test_prefetched_length_sorted_runs_record_what_the_serial_run_records(
    tiny_model: Path, rows: pl.DataFrame, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    one_video = rows.filter(pl.col("data_type") == "video").head(1)
    # images first in the file: the videos' inputs are longer, so the sorted run answers them first
    benchmark = pl.concat(
        [
            one_video.with_columns(
                pl.lit("broken-1").alias("problem_id"), pl.lit(str(broken)).alias("media_path")
            ),
            rows.sort("data_type"),
        ]
    )
    task, method = resolve_task("synthetic"), resolve_method("baseline-16f")

    def run(out: Path, *, decode_workers: int, sort_by_length: bool) -> list[dict]:
        adapter = QwenAdapter(
            tiny_model, method, video=VIDEO, max_new_tokens=6, decode_workers=decode_workers
        )
        run_benchmark(
            task,
            method,
            benchmark,
            adapter,
            out,
            batch_size=2,
            answer_rule="strict",
            progress=False,
            video=VIDEO,
            sort_by_length=sort_by_length,
        )
        return [json.loads(line) for line in out.read_text().splitlines()]

    serial = run(tmp_path / "serial.jsonl", decode_workers=0, sort_by_length=False)
    ahead = run(tmp_path / "ahead.jsonl", decode_workers=2, sort_by_length=True)
    assert [r["problem_id"] for r in serial] == benchmark["problem_id"].to_list()
    assert [r["problem_id"] for r in ahead] != [r["problem_id"] for r in serial]  # longest first
    assert {r["problem_id"]: r for r in ahead} == {r["problem_id"]: r for r in serial}
    failed = {r["problem_id"]: r for r in serial if r["status"] == "failed"}
    assert list(failed) == ["broken-1"] and str(broken) in failed["broken-1"]["error"]
    latencies = [
        json.loads(line)["problem_id"]
        for line in latency_path(tmp_path / "ahead.jsonl").read_text().splitlines()
    ]
    assert latencies == [r["problem_id"] for r in ahead]  # every record's seconds, beside it
