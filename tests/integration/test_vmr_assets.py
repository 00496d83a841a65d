"""The VMR assets on a shrunk tiny profile: exact cuts, an idempotent LanceDB table, per-sample
selections, resumable shot segmentation, and one corrupt video quarantined while the rest proceed."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import lancedb
import polars as pl
import pytest
import yaml
from tests_support import small_tiny_params, write_params

from marc_ops.cli import main
from pipelines.defs.assets import data as data_assets
from pipelines.defs.assets import vmr as vmr_assets
from pipelines.defs.resources import MarcResource

pytestmark = pytest.mark.integration
ASSETS = [
    data_assets.videor1_source,
    data_assets.videor1_manifest,
    data_assets.train_subset,
    vmr_assets.shot_segments,
    vmr_assets.retriever_checkpoint,
    vmr_assets.clip_embeddings,
    vmr_assets.vmr_selection,
]


def _materialize(project: Path, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS, selection=selection, resources={"marc": MarcResource(project_dir=str(project))}
    )


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
    return {k: v.value for k, v in events[asset].materialization.metadata.items()}


@pytest.fixture(scope="module")
def vmr_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("vmr")
    params = small_tiny_params()
    params["vmr"]["retriever_training"]["steps"] = 60
    params["vmr"]["top_k"] = 3  # the paper's k (the tiny profile keeps 1): several clips to reassemble
    write_params(project, params)
    assert _materialize(project).success
    return project


def test_shots_are_exact_on_hard_cuts(vmr_project: Path):
    corpus = vmr_project / "assets/videor1_source/corpus"
    truth = json.loads((corpus / "shots.json").read_text())
    shots = pl.read_parquet(vmr_project / "assets/shot_segments/shots.parquet")
    checked = 0
    for (video_id,), group in shots.sort("shot_index").group_by("video_id", maintain_order=True):
        key = "./" + Path(video_id).relative_to("assets/videor1_source/corpus").as_posix()
        expected = truth[key]
        detected_starts = set(group["start_frame"].to_list())
        for (first, _), kind in zip(expected["spans"][1:], expected["transitions"], strict=True):
            if kind == "cut":
                assert first in detected_starts, f"{video_id}: cut at frame {first} missed"
                checked += 1
        assert group["start_frame"][0] == 0 and group["end_frame"][-1] == expected["n_frames"] - 1
    assert checked >= 8


def test_lancedb_table_holds_one_row_per_clip_and_stays_so(vmr_project: Path):
    table_info = json.loads((vmr_project / "assets/clip_embeddings/table.json").read_text())
    shots = pl.read_parquet(vmr_project / "assets/shot_segments/shots.parquet")
    table = lancedb.connect(vmr_project / "assets/clip_embeddings/lancedb").open_table(table_info["table"])
    assert table.count_rows() == shots.height == table_info["rows"]
    again = _materialize(vmr_project, selection=["clip_embeddings"])
    meta = _metadata(again, "clip_embeddings")
    assert meta["videos_embedded_now"] == 0 and meta["rows"] == shots.height
    rows = table.to_arrow().select(["video_id", "clip_index"]).to_pylist()
    assert len({(r["video_id"], r["clip_index"]) for r in rows}) == len(rows)


def test_selection_has_topk_clips_and_even_clip_frames(vmr_project: Path):
    selection = pl.read_parquet(vmr_project / "assets/vmr_selection/selection.parquet")
    videos = selection.filter(pl.col("data_type") == "video")
    images = selection.filter(pl.col("data_type") == "image")
    assert images.height >= 1 and images["clip_indices"].null_count() == images.height
    assert set(selection["split"]) == {"train", "eval:synthetic"}
    for row in videos.iter_rows(named=True):
        assert len(row["clip_indices"]) == 3 and row["clip_indices"] == sorted(row["clip_indices"])
        assert len(row["frame_indices"]) <= 64 and len(row["frame_indices"]) % 2 == 0
        ids = row["frame_clip_ids"]
        for clip in set(ids):
            assert ids.count(clip) % 2 == 0
        assert row["frame_indices"] == sorted(row["frame_indices"])
    assert videos["evidence_covered"].mean() >= 0.75


def test_shot_segmentation_resumes_where_it_stopped(vmr_project: Path):
    cache = sorted((vmr_project / "assets/shot_segments/videos").glob("*.json"))
    for path in cache[: len(cache) // 2]:
        path.unlink()
    result = _materialize(vmr_project, selection=["shot_segments"])
    assert _metadata(result, "shot_segments")["segmented_now"] == len(cache) // 2


def test_worker_processes_give_the_same_shots(vmr_project: Path):
    before = pl.read_parquet(vmr_project / "assets/shot_segments/shots.parquet")
    for path in (vmr_project / "assets/shot_segments/videos").glob("*.json"):
        path.unlink()
    params = yaml.safe_load((vmr_project / "params.yaml").read_text())
    params["vmr"]["shot_workers"] = 2
    write_params(vmr_project, params)
    result = _materialize(vmr_project, selection=["shot_segments"])
    assert _metadata(result, "shot_segments")["segmented_now"] == before["video_id"].n_unique()
    assert pl.read_parquet(vmr_project / "assets/shot_segments/shots.parquet").equals(before)


def test_marc_vmr_cli_prints_the_top_clips(vmr_project: Path, capsys: pytest.CaptureFixture[str]):
    rows = json.loads((vmr_project / "assets/videor1_source/corpus/Video-R1-260k.json").read_text())
    row = next(r for r in rows if r["data_type"] == "video")
    video = vmr_project / "assets/videor1_source/corpus" / row["path"]
    assert main(["--project-dir", str(vmr_project), "vmr", str(video), row["problem"], "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert f"question: {row['problem']}" in out
    clip_lines = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(clip_lines) == 2


def test_a_corrupt_video_is_quarantined_and_the_rest_proceed(vmr_project: Path):
    selection = pl.read_parquet(vmr_project / "assets/vmr_selection/selection.parquet")
    victim = selection.filter((pl.col("data_type") == "video") & (pl.col("split") == "train"))["media_path"][
        0
    ]
    assert not Path(victim).is_absolute()  # stored relative to the project
    (vmr_project / victim).write_bytes(b"\x00not an mp4 at all")
    result = _materialize(vmr_project, selection=["shot_segments", "clip_embeddings", "vmr_selection"])
    assert result.success
    quarantined = pl.read_parquet(vmr_project / "assets/shot_segments/quarantine.parquet")
    assert quarantined["media_path"].to_list() == [victim]
    assert victim in quarantined["reason"][0]
    after = pl.read_parquet(vmr_project / "assets/vmr_selection/selection.parquet")
    dropped = pl.read_parquet(vmr_project / "assets/vmr_selection/quarantine.parquet")
    assert set(dropped["media_path"]) == {victim}
    assert after.height + dropped.height == selection.height
