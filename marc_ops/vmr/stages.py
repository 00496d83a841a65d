"""The VMR stages: ``shot_segments`` → ``retriever_checkpoint`` → ``clip_embeddings`` → ``vmr_selection``.

Every video of the training subset and of the benchmark files is segmented once; its clips are
embedded into a LanceDB table; every sample then keeps its top-k clips and the exact frames the
model will see. Per-video work is resumable: a re-run skips what a killed run already finished.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from marc_ops.config import Params, ProjectPaths
from marc_ops.data.videor1 import load_many
from marc_ops.io import (
    absolute_media,
    atomic_dir,
    project_relative,
    relative_media,
    write_json,
    write_parquet,
)
from marc_ops.stage import StageResult
from marc_ops.video import VideoDecodeError
from marc_ops.vmr.embedding import ClipEmbedder, EmbedderConfig, EmptyQueryError, VideoClips
from marc_ops.vmr.index import ClipIndex, VideoToIndex, fill_index
from marc_ops.vmr.retrieval import RetrievedClip, plan_frames, retrieve_clips
from marc_ops.vmr.retriever_training import ground_truth_recall, train_retriever
from marc_ops.vmr.shots import ShotConfig, segment_video

SAMPLE_COLUMNS = ["problem_id", "problem", "options", "data_type", "media_path", "evidence_spans"]


def video_id_of(media_path: str | Path, project_dir: Path) -> str:
    """A video's key in every VMR table: its path relative to the project when inside it, else absolute.

    Relative keys keep the tables identical across clones of the project.
    """
    path = Path(media_path).resolve()
    return path.relative_to(project_dir).as_posix() if path.is_relative_to(project_dir) else path.as_posix()


def vmr_samples(paths: ProjectPaths, params: Params) -> pl.DataFrame:
    """The samples VMR serves: the training subset (split ``train``) and every benchmark file (``eval:<name>``).

    Benchmark media resolve against the benchmark folder (``data.eval_dir``), as Video-R1 lays them out.
    """
    train = absolute_media(
        pl.read_parquet(paths.asset("train_subset") / "train_subset.parquet"), paths.project_dir
    )
    frames = [train.select(SAMPLE_COLUMNS).with_columns(split=pl.lit("train"))]
    eval_dir = params.data.evals(paths.project_dir)
    for eval_file in sorted(eval_dir.glob("eval_*.json")) if eval_dir.is_dir() else []:
        loaded = load_many([eval_file], eval_dir, check_media=False)
        name = eval_file.stem.removeprefix("eval_")
        frames.append(loaded.rows.select(SAMPLE_COLUMNS).with_columns(split=pl.lit(f"eval:{name}")))
    samples = pl.concat(frames)
    return samples.with_columns(
        video_id=pl.col("media_path").map_elements(lambda p: video_id_of(p, paths.project_dir), pl.String)
    )


def _videos(samples: pl.DataFrame) -> pl.DataFrame:
    return (
        samples.filter(pl.col("data_type") == "video")
        .select("video_id", "media_path")
        .unique("video_id")
        .sort("video_id")
    )


# ---------------------------------------------------------------------------------------------
# shot_segments


def _segment_file(cache_dir: Path, video_id: str, media_path: str, params: Params) -> Path:
    """The cache file of one video's segmentation: keyed by the video (its project-relative id), its file's
    size and the shot config, so a replaced video or a new threshold is segmented again. Not its mtime: a
    fresh clone, ``dvc checkout`` or a pulled cache rewrites mtimes, and the segments stay valid."""
    size = Path(media_path).stat().st_size if Path(media_path).exists() else "missing"
    key = f"{video_id}|{size}|{params.vmr.shots.model_dump_json()}"
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _one_thread() -> None:
    torch.set_num_threads(1)


def _segment_one(video_id: str, media_path: str, cached: Path, config: ShotConfig) -> None:
    """Segment one video and write its record (or its decode error) to ``cached`` atomically."""
    try:
        seg = segment_video(media_path, config)
        record = {
            "video_id": video_id,
            "fps": seg.fps,
            "num_frames": seg.num_frames,
            "spans": [list(span) for span in seg.spans],
            "scores": [round(float(s), 5) for s in seg.scores],
        }
    except VideoDecodeError as error:
        record = {"video_id": video_id, "error": str(error)}
    write_json(cached, record)


def shot_segments_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """TransNetV2 shots of every video: spans, start/end times and boundary scores.

    Videos fan out over ``vmr.shot_workers`` processes. Each finished video is written to
    ``videos/<key>.json`` at once, so a killed run resumes with the videos not yet done; the
    tables ``shots.parquet`` (one row per shot), ``videos.parquet`` (one row per video) and
    ``quarantine.parquet`` (undecodable videos, with the reason) are rebuilt at the end.
    """
    out_dir = paths.asset("shot_segments")
    cache_dir = out_dir / "videos"
    cache_dir.mkdir(parents=True, exist_ok=True)
    videos = _videos(vmr_samples(paths, params))
    started = time.perf_counter()
    shot_rows: list[dict[str, Any]] = []
    video_rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    jobs = [
        (video_id, media_path, _segment_file(cache_dir, video_id, media_path, params))
        for video_id, media_path in videos.iter_rows()
    ]
    pending = [job for job in jobs if not job[2].is_file()]
    segmented_now = len(pending)
    if params.vmr.shot_workers > 1 and len(pending) > 1:
        # Fan out over processes (one TransNetV2 each, one torch thread each); results land per video.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            params.vmr.shot_workers, mp_context=context, initializer=_one_thread
        ) as pool:
            work = [
                pool.submit(_segment_one, video_id, media_path, cached, params.vmr.shots)
                for video_id, media_path, cached in pending
            ]
            for future in tqdm(as_completed(work), total=len(work), desc="shot segments", unit="video"):
                future.result()
    else:
        for video_id, media_path, cached in tqdm(pending, desc="shot segments", unit="video"):
            _segment_one(video_id, media_path, cached, params.vmr.shots)
    for video_id, media_path, cached in jobs:
        record = json.loads(cached.read_text())
        if "error" in record:
            failed.append({"video_id": video_id, "media_path": media_path, "reason": record["error"]})
            continue
        scores = np.asarray(record["scores"], dtype=np.float32)
        for index, (first, last) in enumerate(record["spans"]):
            shot_rows.append(
                {
                    "video_id": video_id,
                    "shot_index": index,
                    "start_frame": first,
                    "end_frame": last,
                    "start_time": first / record["fps"],
                    "end_time": (last + 1) / record["fps"],
                    "boundary_score": float(scores[last]),
                }
            )
        video_rows.append(
            {
                "video_id": video_id,
                "media_path": media_path,
                "fps": record["fps"],
                "num_frames": record["num_frames"],
                "shots": len(record["spans"]),
                "max_score": float(scores.max()),
            }
        )
    shots = pl.DataFrame(
        shot_rows,
        schema={
            "video_id": pl.String,
            "shot_index": pl.Int64,
            "start_frame": pl.Int64,
            "end_frame": pl.Int64,
            "start_time": pl.Float64,
            "end_time": pl.Float64,
            "boundary_score": pl.Float64,
        },
    )
    video_table = pl.DataFrame(
        video_rows,
        schema={
            "video_id": pl.String,
            "media_path": pl.String,
            "fps": pl.Float64,
            "num_frames": pl.Int64,
            "shots": pl.Int64,
            "max_score": pl.Float64,
        },
    )
    quarantine = pl.DataFrame(
        failed, schema={"video_id": pl.String, "media_path": pl.String, "reason": pl.String}
    )
    write_parquet(out_dir / "shots.parquet", shots)
    write_parquet(out_dir / "videos.parquet", relative_media(video_table, paths.project_dir))
    write_parquet(out_dir / "quarantine.parquet", relative_media(quarantine, paths.project_dir))
    seconds = time.perf_counter() - started
    return StageResult(
        outputs={"shots": out_dir / "shots.parquet", "videos": out_dir / "videos.parquet"},
        metadata={
            "videos": video_table.height,
            "shots": shots.height,
            "quarantined": quarantine.height,
            "segmented_now": segmented_now,
            "mean_shots_per_video": round(shots.height / max(video_table.height, 1), 2),
            "seconds": round(seconds, 1),
        },
        tables={"videos_preview": video_table.drop("media_path"), "quarantine": quarantine},
    )


# ---------------------------------------------------------------------------------------------
# retriever_checkpoint


def retriever_checkpoint_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """The clip/question embedder: trained on the corpus (tiny profile) or checked in the HF cache (paper).

    Writes ``retriever.json`` (the resolved embedder config and its ``model_id``) that
    ``clip_embeddings`` and ``vmr_selection`` read. Missing weights raise an error naming the path.
    """
    out_dir = paths.asset("retriever_checkpoint")
    embedder_config = params.vmr.resolved_embedder(paths.project_dir)
    metadata: dict[str, Any] = {}
    training = params.vmr.retriever_training
    if training is not None:
        checkpoint = Path(embedder_config.pretrained)
        stamp = hashlib.sha256(training.model_dump_json().encode()).hexdigest()[:16]
        stamp_file = out_dir / "training_stamp.txt"
        if not (checkpoint.is_dir() and stamp_file.is_file() and stamp_file.read_text() == stamp):
            started = time.perf_counter()
            train_retriever(params.data.root(paths.project_dir), checkpoint, training)
            stamp_file.write_text(stamp)
            metadata["training_seconds"] = round(time.perf_counter() - started, 1)
    embedder = ClipEmbedder(embedder_config)
    if params.data.source == "synthetic":
        recall = ground_truth_recall(
            embedder, params.data.root(paths.project_dir), split="eval", k=params.vmr.top_k
        )
        metadata[f"eval_recall_at_{params.vmr.top_k}"] = round(recall.recall_at_k, 4)
        metadata["eval_recall_at_1"] = round(recall.recall_at_1, 4)
    write_json(
        out_dir / "retriever.json",
        {
            # a local checkpoint relative to the project, as every record stores paths (a hub tag as it is)
            "embedder": {
                **embedder_config.model_dump(),
                "pretrained": _stored_weights(embedder_config.pretrained, paths.project_dir),
            },
            "model_id": embedder.model_id,
            "embed_dim": embedder.embed_dim,
        },
    )
    return StageResult(
        outputs={"retriever": out_dir / "retriever.json"},
        metadata={"model_id": embedder.model_id, "embed_dim": embedder.embed_dim, **metadata},
    )


def _stored_weights(pretrained: str, project_dir: Path) -> str:
    path = Path(pretrained).expanduser()
    return project_relative(path, project_dir) if path.is_absolute() and path.exists() else pretrained


def recorded_embedder(paths: ProjectPaths) -> EmbedderConfig | None:
    """The embedder ``retriever_checkpoint`` recorded (its local weights resolved against the project), or
    None before the stage has run."""
    record_file = paths.asset("retriever_checkpoint") / "retriever.json"
    if not record_file.is_file():
        return None
    config = dict(json.loads(record_file.read_text())["embedder"])
    local = paths.project_dir / config["pretrained"]
    if not Path(config["pretrained"]).is_absolute() and local.exists():
        config["pretrained"] = str(local)
    return EmbedderConfig(**config)


def _load_embedder(paths: ProjectPaths) -> tuple[ClipEmbedder, dict[str, Any]]:
    config = recorded_embedder(paths)
    if config is None:
        raise FileNotFoundError(
            f"{paths.asset('retriever_checkpoint') / 'retriever.json'} is missing: materialize retriever_checkpoint first"
        )
    record = json.loads((paths.asset("retriever_checkpoint") / "retriever.json").read_text())
    return ClipEmbedder(config), record


def _open_index(paths: ProjectPaths, params: Params, embedder: ClipEmbedder) -> ClipIndex:
    return ClipIndex(
        paths.asset("clip_embeddings") / "lancedb", embedder.model_id, embedder.embed_dim, params.vmr.index
    )


# ---------------------------------------------------------------------------------------------
# clip_embeddings


def clip_embeddings_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """Embed every clip (shot) of every segmented video into the LanceDB table of the embedding model.

    Written in place (not through a temporary copy): each video lands in one commit, so a killed
    run resumes after its last commit and a re-run neither duplicates nor loses rows.
    """
    embedder, record = _load_embedder(paths)
    index = _open_index(paths, params, embedder)
    shots = pl.read_parquet(paths.asset("shot_segments") / "shots.parquet")
    videos = absolute_media(
        pl.read_parquet(paths.asset("shot_segments") / "videos.parquet"), paths.project_dir
    )
    spans_by_video = {
        video_id: list(zip(group["start_frame"].to_list(), group["end_frame"].to_list(), strict=True))
        for (video_id,), group in shots.sort("video_id", "shot_index").group_by(
            "video_id", maintain_order=True
        )
    }
    to_index = [
        VideoToIndex(video_id=video_id, path=Path(media_path), spans=spans_by_video[video_id])
        for video_id, media_path in videos.select("video_id", "media_path").iter_rows()
    ]
    # Mirror shot_segments: drop videos that are gone (quarantined, removed) or were re-cut since.
    indexed = index.indexed_spans()
    stale = [v for v, spans in indexed.items() if [tuple(s) for s in spans_by_video.get(v, [])] != spans]
    index.remove(stale)
    started = time.perf_counter()
    report = fill_index(index, to_index, embedder.embed_clips)
    built = index.build_indexes()
    quarantine = pl.DataFrame(
        [{"video_id": k, "reason": v} for k, v in report.failed.items()],
        schema={"video_id": pl.String, "reason": pl.String},
    )
    out_dir = paths.asset("clip_embeddings")
    write_parquet(out_dir / "quarantine.parquet", quarantine)
    write_json(
        out_dir / "table.json",
        {
            "model_id": embedder.model_id,
            "table": index.name,
            "rows": index.count_rows(),
            "indexes": built,
            # the table's content, hashed row by row: what a reproduction compares (the LanceDB files vary)
            "content_sha256": index.content_digest(),
        },
    )
    return StageResult(
        outputs={"lancedb": out_dir / "lancedb", "table": out_dir / "table.json"},
        metadata={
            "model_id": record["model_id"],
            "table": index.name,
            "rows": index.count_rows(),
            "videos_embedded_now": len(report.embedded),
            "videos_resumed": len(report.skipped),
            "videos_dropped_as_stale": len(stale),
            "quarantined": len(report.failed),
            "vector_indexes": ", ".join(built) if built else "none (flat scan below the row threshold)",
            "seconds": round(time.perf_counter() - started, 1),
        },
    )


# ---------------------------------------------------------------------------------------------
# vmr_selection


def _covers(selected: list[RetrievedClip], spans: list[list[int]]) -> bool:
    """Whether every evidence span's middle frame lies inside a selected clip."""
    middles = [(first + last) // 2 for first, last in spans]
    return all(any(c.start_frame <= m <= c.end_frame for c in selected) for m in middles)


SELECTION_SCHEMA = {
    "problem_id": pl.String,
    "split": pl.String,
    "data_type": pl.String,
    "video_id": pl.String,
    "media_path": pl.String,
    "clip_indices": pl.List(pl.Int64),
    "clip_scores": pl.List(pl.Float64),
    "clip_spans": pl.List(pl.List(pl.Int64)),
    "frame_indices": pl.List(pl.Int64),
    "frame_clip_ids": pl.List(pl.Int64),
    "timestamps": pl.List(pl.Float64),
    "evidence_covered": pl.Boolean,
}


def vmr_selection_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """Per sample: the top-k clips for its question (within its own video), in temporal order, and the
    exact frames to feed (1 fps, at most ``video.max_frames``, each tagged with its clip id).

    This is the VMR-filtered training set (split ``train``) and the VMR input of every benchmark
    sample (``eval:<name>``). Images pass through with no selection. A sample whose video was
    quarantined upstream, or whose question is empty, is quarantined here with the reason.
    """
    embedder, _ = _load_embedder(paths)
    index = _open_index(paths, params, embedder)
    samples = vmr_samples(paths, params)
    videos = pl.read_parquet(paths.asset("shot_segments") / "videos.parquet")
    fps_of = dict(videos.select("video_id", "fps").iter_rows())
    clips_cache: dict[str, VideoClips] = {}
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for sample in tqdm(
        samples.iter_rows(named=True), total=samples.height, desc="vmr selection", unit="sample"
    ):
        base = {k: sample[k] for k in ("problem_id", "split", "data_type", "video_id", "media_path")}
        if sample["data_type"] == "image":
            rows.append({**base, "video_id": None})
            continue
        if sample["video_id"] not in fps_of:
            failed.append(
                {**base, "reason": f"video {sample['media_path']} was quarantined by shot_segments"}
            )
            continue
        try:
            query = embedder.embed_query(sample["problem"], sample["options"], sample_id=sample["problem_id"])
        except EmptyQueryError as error:
            failed.append({**base, "reason": str(error)})
            continue
        if sample["video_id"] not in clips_cache:
            clips_cache[sample["video_id"]] = index.clips_of_video(sample["video_id"])
        selected = retrieve_clips(query, clips_cache[sample["video_id"]], k=params.vmr.top_k)
        frame_indices, clip_ids = plan_frames(
            selected, fps_of[sample["video_id"]], params.video, video=sample["media_path"]
        )
        rows.append(
            {
                **base,
                "clip_indices": [c.clip_index for c in selected],
                "clip_scores": [c.score for c in selected],
                "clip_spans": [[c.start_frame, c.end_frame] for c in selected],
                "frame_indices": frame_indices.tolist(),
                "frame_clip_ids": clip_ids.tolist(),
                "timestamps": (frame_indices / fps_of[sample["video_id"]]).tolist(),
                "evidence_covered": _covers(selected, sample["evidence_spans"])
                if sample["evidence_spans"]
                else None,
            }
        )
    selection = pl.DataFrame(rows, schema=SELECTION_SCHEMA)
    quarantine = pl.DataFrame(
        failed,
        schema={
            "problem_id": pl.String,
            "split": pl.String,
            "data_type": pl.String,
            "video_id": pl.String,
            "media_path": pl.String,
            "reason": pl.String,
        },
    )
    out_dir = paths.asset("vmr_selection")
    with atomic_dir(out_dir) as tmp:
        write_parquet(tmp / "selection.parquet", relative_media(selection, paths.project_dir))
        write_parquet(tmp / "quarantine.parquet", relative_media(quarantine, paths.project_dir))
    video_rows = selection.filter(pl.col("data_type") == "video")
    metadata: dict[str, Any] = {
        "samples": selection.height,
        "video_samples": video_rows.height,
        "quarantined": quarantine.height,
        "mean_frames": round(float(video_rows["frame_indices"].list.len().mean() or 0.0), 2),
    }
    covered = video_rows.filter(pl.col("evidence_covered").is_not_null())
    if covered.height:
        metadata[f"evidence_recall_at_{params.vmr.top_k}"] = round(
            float(covered["evidence_covered"].mean()), 4
        )
    per_split = (
        selection.group_by("split")
        .agg(
            pl.len().alias("samples"),
            pl.col("evidence_covered").mean().round(4).alias("evidence_recall"),
            pl.col("frame_indices").list.len().mean().round(2).alias("mean_frames"),
        )
        .sort("split")
    )
    return StageResult(
        outputs={"selection": out_dir / "selection.parquet"},
        metadata=metadata,
        tables={
            "splits": per_split,
            "preview": video_rows.select("problem_id", "split", "clip_indices", "clip_scores").head(20),
            "quarantine": quarantine.select("problem_id", "reason"),
        },
    )
