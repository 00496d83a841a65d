"""The VMR assets on a shrunk tiny profile: exact cuts, an idempotent LanceDB table, per-sample
selections, resumable shot segmentation, and one corrupt video quarantined while the rest proceed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import lancedb
import polars as pl
import pytest
import yaml
from tests_support import SMALL_TRAIN_SIZE, declared_check, small_tiny_params, write_params

from marc_ops.checks import ASSET_CHECKS
from marc_ops.cli import main
from marc_ops.config import ProjectPaths
from marc_ops.data.schema import QUARANTINE_SCHEMA
from pipelines.defs.assets import data as data_assets
from pipelines.defs.assets import vmr as vmr_assets
from pipelines.defs.checks import ASSET_CHECK_DEFS
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


CHECKED = [asset.key.to_user_string() for asset in ASSETS if asset.key.to_user_string() in ASSET_CHECKS]


def test_asset_checks_pass_on_the_materialized_assets(vmr_project: Path):
    """Every check of the data and VMR assets, run by Dagster on the files the assets wrote."""
    checks = [
        c for c in ASSET_CHECK_DEFS if {k.asset_key.to_user_string() for k in c.check_keys} <= set(CHECKED)
    ]
    result = dg.materialize(
        [*ASSETS, *checks],
        selection=dg.AssetSelection.checks(*checks),
        resources={"marc": MarcResource(project_dir=str(vmr_project))},
    )
    assert result.success
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
    }
    assert set(evaluations) == {(asset, check.name) for asset in CHECKED for check in ASSET_CHECKS[asset]}
    assert [key for key, e in evaluations.items() if not e.passed] == []

    def facts(asset: str, check: str) -> dict:
        return {k: v.value for k, v in evaluations[(asset, check)].metadata.items()}

    shots = pl.read_parquet(vmr_project / "assets/shot_segments/shots.parquet")
    selection = pl.read_parquet(vmr_project / "assets/vmr_selection/selection.parquet")
    assert facts("shot_segments", "spans_cover_frames")["shots"] == shots.height
    rows = facts("clip_embeddings", "one_row_per_clip")
    assert (rows["rows"], rows["duplicated_clips"], rows["clips_without_a_row"]) == (shots.height, 0, 0)
    assert facts("clip_embeddings", "unit_norm_embeddings")["not_unit"] == 0
    budget = facts("vmr_selection", "frame_budget")
    assert budget["video_samples"] == selection.filter(pl.col("data_type") == "video").height
    assert budget["max_frames_selected"] <= budget["frame_budget"] == 64
    assert facts("train_subset", "category_proportions")["rows"] == SMALL_TRAIN_SIZE
    assert "| category |" in facts("train_subset", "category_proportions")["evidence"]
    quarantine = evaluations[("videor1_manifest", "quarantine_share")]
    assert (
        quarantine.severity == dg.AssetCheckSeverity.WARN
        and facts("videor1_manifest", "quarantine_share")["quarantined"] == 0
    )
    assert facts("retriever_checkpoint", "training_loss_finite")["steps_logged"] > 0


@pytest.fixture()
def copied(vmr_project: Path, tmp_path: Path) -> ProjectPaths:
    """A copy of the materialized project, to break."""
    shutil.copytree(vmr_project, tmp_path, dirs_exist_ok=True)
    return ProjectPaths(tmp_path)


def _run(paths: ProjectPaths, asset: str, check: str):
    return declared_check(asset, check).run(paths, paths.params(), None)


def test_manifest_checks_fail_on_a_retyped_column_and_a_large_quarantine(copied: ProjectPaths):
    manifest_file = copied.asset("videor1_manifest") / "manifest.parquet"
    manifest = pl.read_parquet(manifest_file)
    manifest.drop("category").with_columns(pl.col("source_row").cast(pl.String)).write_parquet(manifest_file)
    schema = _run(copied, "videor1_manifest", "schema")
    assert not schema.passed and schema.facts["schema_problems"] == 2
    assert schema.evidence.select("column", "found").rows() == [
        ("category", "missing"),
        ("source_row", "String"),
    ]

    quarantined = pl.DataFrame(
        [
            {
                "source_file": "Video-R1-260k.json",
                "source_row": i,
                "problem_id": f"q{i}",
                "reason_code": "missing_media",
            }
            for i in range(manifest.height // 10)
        ],
        schema=QUARANTINE_SCHEMA,
    ).with_columns(reason=pl.lit("media file not found"))
    quarantined.write_parquet(copied.asset("videor1_manifest") / "quarantine.parquet")
    share = _run(copied, "videor1_manifest", "quarantine_share")
    assert not share.passed and share.facts["quarantined"] == manifest.height // 10
    assert share.facts["share"] > share.facts["threshold"] == 0.05
    assert share.evidence.rows() == [("missing_media", manifest.height // 10)]


def test_subset_check_fails_when_a_category_holds_two_rows_too_many(copied: ProjectPaths):
    manifest = pl.read_parquet(copied.asset("videor1_manifest") / "manifest.parquet")
    subset_file = copied.asset("train_subset") / "train_subset.parquet"
    subset = pl.read_parquet(subset_file)
    largest, other = subset["category"].value_counts(sort=True)["category"][:2]
    extra = manifest.filter(
        (pl.col("category") == other) & ~pl.col("problem_id").is_in(subset["problem_id"].implode())
    )
    dropped = subset.filter(pl.col("category") == largest).head(2)["problem_id"]
    pl.concat(
        [subset.filter(~pl.col("problem_id").is_in(dropped.implode())), extra.head(2).select(subset.columns)]
    ).write_parquet(subset_file)
    outcome = _run(copied, "train_subset", "category_proportions")
    assert not outcome.passed and outcome.facts["max_deviation_rows"] >= 1
    assert f"{other} has" in outcome.summary and f"{largest} has" in outcome.summary


def test_shot_check_finds_a_gap_and_an_overlap(copied: ProjectPaths):
    shots_file = copied.asset("shot_segments") / "shots.parquet"
    shots = pl.read_parquet(shots_file)
    per_video = shots.group_by("video_id").len().sort("len", descending=True)["video_id"]
    gap_video, overlap_video = per_video[0], per_video[1]
    gap = shots.filter(pl.col("video_id") == gap_video).sort("shot_index")[1].to_dicts()[0]
    overlap = shots.filter((pl.col("video_id") == overlap_video) & (pl.col("shot_index") == 1)).to_dicts()[0]
    shots = shots.filter(~((pl.col("video_id") == gap_video) & (pl.col("shot_index") == gap["shot_index"])))
    shots = shots.with_columns(
        start_frame=pl.when((pl.col("video_id") == overlap_video) & (pl.col("shot_index") == 1))
        .then(pl.col("start_frame") - 2)
        .otherwise(pl.col("start_frame"))
    )
    shots.write_parquet(shots_file)
    outcome = _run(copied, "shot_segments", "spans_cover_frames")
    assert not outcome.passed and outcome.facts["videos_with_problems"] == 2
    assert set(outcome.evidence.select("video_id", "problem").rows()) == {
        (gap_video, f"gap: frames {gap['start_frame']}-{gap['end_frame']} in no shot"),
        (
            overlap_video,
            f"overlap: frames {overlap['start_frame'] - 2}-{overlap['start_frame'] - 1} in two shots",
        ),
    }


def test_clip_checks_find_a_repeated_row_and_a_vector_off_unit_norm(copied: ProjectPaths):
    name = json.loads((copied.asset("clip_embeddings") / "table.json").read_text())["table"]
    table = lancedb.connect(copied.asset("clip_embeddings") / "lancedb").open_table(name)
    first, second = table.to_arrow().slice(0, 2).to_pylist()
    table.add([first])
    table.delete(f"video_id = '{second['video_id']}' AND clip_index = {second['clip_index']}")
    table.add([{**second, "embedding": [2 * x for x in second["embedding"]]}])

    rows = _run(copied, "clip_embeddings", "one_row_per_clip")
    assert not rows.passed and rows.facts["duplicated_clips"] == 1 and rows.facts["clips_without_a_row"] == 0
    assert rows.evidence.rows() == [(first["video_id"], first["clip_index"], "2 rows")]
    norms = _run(copied, "clip_embeddings", "unit_norm_embeddings")
    assert (
        not norms.passed
        and norms.facts["not_unit"] == 1
        and norms.facts["max_norm"] == pytest.approx(2, abs=1e-3)
    )
    assert norms.evidence.select("video_id", "clip_index").rows() == [
        (second["video_id"], second["clip_index"])
    ]


def test_selection_check_finds_an_odd_clip_and_too_many_frames(copied: ProjectPaths):
    selection_file = copied.asset("vmr_selection") / "selection.parquet"
    selection = pl.read_parquet(selection_file)
    odd, long = selection.filter(pl.col("data_type") == "video")["problem_id"][:2]

    def broken(row: dict) -> dict:
        if row["problem_id"] == odd:
            return {**row, "frame_indices": row["frame_indices"] + [row["frame_indices"][-1]],
                    "frame_clip_ids": row["frame_clip_ids"] + [row["frame_clip_ids"][-1]]}  # fmt: skip
        if row["problem_id"] == long:
            return {**row, "frame_indices": list(range(66)), "frame_clip_ids": [0] * 66}
        return row

    pl.DataFrame(
        [broken(row) for row in selection.iter_rows(named=True)], schema=selection.schema
    ).write_parquet(selection_file)
    outcome = _run(copied, "vmr_selection", "frame_budget")
    assert not outcome.passed and outcome.facts["samples_with_problems"] == 2
    assert outcome.facts["max_frames_selected"] == 66
    problems = dict(outcome.evidence.select("problem_id", "problem").rows())
    assert problems[long] == "66 frames, over the budget of 64" and problems[odd].startswith(
        "odd frame count"
    )


def test_marc_check_prints_each_verdict_and_fails_on_an_error(
    copied: ProjectPaths, capsys: pytest.CaptureFixture[str]
):
    project = ["--project-dir", str(copied.project_dir)]
    assert main([*project, "check", "videor1_manifest", "shot_segments"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == [
        "pass  videor1_manifest schema",
        "pass  videor1_manifest quarantine_share",
        "pass  shot_segments spans_cover_frames",
    ]
    shots_file = copied.asset("shot_segments") / "shots.parquet"
    pl.read_parquet(shots_file).filter(pl.col("shot_index") != 0).write_parquet(shots_file)
    assert main([*project, "check", "shot_segments"]) == 1
    printed = capsys.readouterr().out
    assert printed.startswith("FAIL  shot_segments spans_cover_frames: ") and "| video_id |" in printed


def test_retriever_checks_fail_on_pickled_weights_a_nan_loss_and_a_cut_file(copied: ProjectPaths):
    checkpoint = copied.asset("retriever_checkpoint") / "checkpoint"
    (checkpoint / "pytorch_model.bin").write_bytes(b"a pickle")
    pickled = _run(copied, "retriever_checkpoint", "weights_are_safetensors")
    assert not pickled.passed and pickled.facts["pickled_weight_files"] == 1
    assert pickled.evidence.rows() == [("checkpoint/pytorch_model.bin", "pickled weights")]

    training = json.loads((checkpoint / "training.json").read_text())
    training["loss_curve"][-1] = float("nan")
    (checkpoint / "training.json").write_text(json.dumps(training))
    loss = _run(copied, "retriever_checkpoint", "training_loss_finite")
    assert not loss.passed and loss.facts["non_finite"] == 1

    weights = checkpoint / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    load = _run(copied, "retriever_checkpoint", "weights_load")
    assert not load.passed and load.evidence["problem"][0].startswith("cannot be read")


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
