"""Checks of the Visual Memory Retriever's assets: shot spans, the LanceDB clip table, the selections."""

from __future__ import annotations

import json
from typing import Any

import lancedb
import numpy as np
import polars as pl
import pyarrow as pa

from marc_ops.checks.outcome import CheckOutcome, plural
from marc_ops.config import Params, ProjectPaths
from marc_ops.vmr.index import KEY_COLUMNS

# A float32 embedding normalised to length 1 is within this of it.
UNIT_NORM_TOLERANCE = 1e-3


def _span_problems(spans: list[tuple[int, int]], num_frames: int) -> list[str]:
    """What is wrong with one video's ``[start, end]`` spans (in shot order) as a cover of its frames."""
    if not spans:
        return ["no shots"]
    problems = []
    if spans[0][0] != 0:
        problems.append(
            f"frames 0-{spans[0][0] - 1} in no shot" if spans[0][0] > 0 else "starts before frame 0"
        )
    for (_, last), (next_first, _) in zip(spans, spans[1:], strict=False):
        if next_first > last + 1:
            problems.append(f"gap: frames {last + 1}-{next_first - 1} in no shot")
        elif next_first <= last:
            problems.append(f"overlap: frames {next_first}-{last} in two shots")
    problems += [f"empty span [{first}, {last}]" for first, last in spans if last < first]
    end = spans[-1][1]
    if end != num_frames - 1:
        problems.append(
            f"ends at frame {end} of {num_frames}"
            if end < num_frames - 1
            else f"runs to frame {end}, past the last ({num_frames - 1})"
        )
    return problems


def shot_spans_cover_frames(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """Every segmented video's shots, in order, cover its frames ``0 .. num_frames - 1`` without a gap or an
    overlap (each frame in exactly one shot, so each frame has one clip id)."""
    folder = paths.asset("shot_segments")
    videos = pl.read_parquet(folder / "videos.parquet")
    shots = pl.read_parquet(folder / "shots.parquet").sort("video_id", "shot_index")
    spans = {
        video_id: list(zip(group["start_frame"].to_list(), group["end_frame"].to_list(), strict=True))
        for (video_id,), group in shots.group_by("video_id", maintain_order=True)
    }
    problems = [
        {"video_id": video_id, "num_frames": num_frames, "problem": problem}
        for video_id, num_frames in videos.select("video_id", "num_frames").iter_rows()
        for problem in _span_problems(spans.get(video_id, []), num_frames)
    ]
    orphans = sorted(set(spans) - set(videos["video_id"]))
    problems += [
        {"video_id": v, "num_frames": None, "problem": "shots of a video not in videos.parquet"}
        for v in orphans
    ]
    bad_videos = len({p["video_id"] for p in problems})
    facts = {"videos": videos.height, "shots": shots.height, "videos_with_problems": bad_videos}
    if not problems:
        return CheckOutcome(
            True,
            f"the {plural(shots.height, 'shot')} of {plural(videos.height, 'video')} cover every frame once",
            facts,
        )
    return CheckOutcome(
        False,
        f"{plural(bad_videos, 'video')} of {videos.height} not covered exactly: {problems[0]['video_id']}: "
        f"{problems[0]['problem']}",
        facts,
        pl.DataFrame(problems, schema={"video_id": pl.String, "num_frames": pl.Int64, "problem": pl.String}),
    )


def _clip_table(paths: ProjectPaths) -> pa.Table:
    """The clip table ``clip_embeddings`` wrote (named in its ``table.json``), read only."""
    folder = paths.asset("clip_embeddings")
    name = json.loads((folder / "table.json").read_text())["table"]
    return lancedb.connect(str(folder / "lancedb")).open_table(name).to_arrow()


def one_row_per_clip(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """The LanceDB table holds exactly one row per shot of ``shot_segments`` (videos ``clip_embeddings``
    quarantined aside), with the shot's span."""
    table = pl.from_arrow(_clip_table(paths).select([*KEY_COLUMNS, "start_frame", "end_frame"]))
    assert isinstance(table, pl.DataFrame)
    table = table.with_columns(pl.col("clip_index").cast(pl.Int64))
    quarantined = pl.read_parquet(paths.asset("clip_embeddings") / "quarantine.parquet")["video_id"]
    shots = (
        pl.read_parquet(paths.asset("shot_segments") / "shots.parquet")
        .filter(~pl.col("video_id").is_in(quarantined.implode()))
        .select("video_id", pl.col("shot_index").alias("clip_index"), "start_frame", "end_frame")
    )
    counts = table.group_by(KEY_COLUMNS).len("rows")
    joined = shots.join(counts, on=KEY_COLUMNS, how="full", coalesce=True).join(
        table.unique(KEY_COLUMNS, keep="first"), on=KEY_COLUMNS, how="left", suffix="_indexed"
    )
    problem = (
        pl.when(pl.col("rows").is_null())
        .then(pl.lit("shot without a row"))
        .when(pl.col("start_frame").is_null())
        .then(pl.lit("row of no shot"))
        .when(pl.col("rows") > 1)
        .then(pl.format("{} rows", pl.col("rows")))
        .when(
            (pl.col("start_frame") != pl.col("start_frame_indexed"))
            | (pl.col("end_frame") != pl.col("end_frame_indexed"))
        )
        .then(pl.lit("span differs from the shot's"))
    )
    bad = joined.with_columns(problem=problem).filter(pl.col("problem").is_not_null())
    facts = {
        "rows": table.height,
        "clips": shots.height,
        "videos_quarantined": quarantined.len(),
        "clips_without_a_row": bad.filter(pl.col("problem") == "shot without a row").height,
        "duplicated_clips": bad.filter(pl.col("problem").str.ends_with(" rows")).height,
        "rows_of_no_clip": bad.filter(pl.col("problem") == "row of no shot").height,
    }
    if bad.is_empty():
        return CheckOutcome(True, f"{plural(table.height, 'row')}, one per clip", facts)
    return CheckOutcome(
        False,
        f"{plural(bad.height, 'clip')} without exactly one matching row (first: {bad['video_id'][0]} "
        f"clip {bad['clip_index'][0]}: {bad['problem'][0]})",
        facts,
        bad.select(*KEY_COLUMNS, "problem").sort(KEY_COLUMNS),
    )


def unit_norm_embeddings(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """Every clip embedding is finite and of length 1 (within :data:`UNIT_NORM_TOLERANCE`): retrieval
    ranks by dot product, which is the cosine only for unit vectors."""
    table = _clip_table(paths)
    column = table.column("embedding").combine_chunks()
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(table), column.type.list_size)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    off = ~(np.abs(norms - 1.0) <= UNIT_NORM_TOLERANCE)  # a NaN is off too
    facts: dict[str, Any] = {
        "rows": len(table),
        "dimension": column.type.list_size,
        "min_norm": round(float(norms.min()), 6) if len(norms) else None,
        "max_norm": round(float(norms.max()), 6) if len(norms) else None,
        "not_unit": int(off.sum()),
        "tolerance": UNIT_NORM_TOLERANCE,
    }
    if not off.any():
        return CheckOutcome(True, f"all {plural(len(table), 'embedding')} have unit norm", facts)
    keys = table.select(KEY_COLUMNS).to_pylist()
    evidence = pl.DataFrame(
        [{**keys[i], "norm": float(norms[i])} for i in np.flatnonzero(off)],
        schema={"video_id": pl.String, "clip_index": pl.Int64, "norm": pl.Float64},
    )
    return CheckOutcome(
        False,
        f"{plural(int(off.sum()), 'embedding')} of {len(table)} not of unit norm (first: {evidence['video_id'][0]} "
        f"clip {evidence['clip_index'][0]}: {evidence['norm'][0]:.4g})",
        facts,
        evidence,
    )


def selection_frame_budget(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """Each video sample's selection holds at most ``video.max_frames`` frames, one clip id per frame, and an
    even number of frames per clip (each clip padded so no temporal group of two frames straddles two clips)."""
    selection = pl.read_parquet(paths.asset("vmr_selection") / "selection.parquet").filter(
        pl.col("data_type") == "video"
    )
    budget = params.video.max_frames
    problems = []
    for row in selection.iter_rows(named=True):
        frames, clip_ids = row["frame_indices"], row["frame_clip_ids"]
        found = []
        if len(frames) > budget:
            found.append(f"{len(frames)} frames, over the budget of {budget}")
        if len(clip_ids) != len(frames):
            found.append(f"{len(clip_ids)} clip ids for {len(frames)} frames")
        odd = sorted(clip for clip in set(clip_ids) if clip_ids.count(clip) % 2)
        if odd:
            found.append(f"odd frame count in clip(s) {', '.join(map(str, odd))}")
        if not frames:
            found.append("no frames")
        problems += [{"problem_id": row["problem_id"], "split": row["split"], "problem": p} for p in found]
    lengths = selection["frame_indices"].list.len()
    facts = {
        "video_samples": selection.height,
        "frame_budget": budget,
        "max_frames_selected": int(lengths.max() or 0),
        "mean_frames_selected": round(float(lengths.mean() or 0.0), 2),
        "samples_with_problems": len({p["problem_id"] for p in problems}),
    }
    if not problems:
        return CheckOutcome(
            True,
            f"{plural(selection.height, 'video sample')} within {budget} frames, every clip an even frame count",
            facts,
        )
    return CheckOutcome(
        False,
        f"{plural(facts['samples_with_problems'], 'sample')} break the frame plan (first: {problems[0]['problem_id']}: "
        f"{problems[0]['problem']})",
        facts,
        pl.DataFrame(problems),
    )
