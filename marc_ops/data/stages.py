"""The data stages: ``videor1_source`` → ``videor1_manifest`` → ``train_subset``.

Each takes the project's paths and the active params, writes under ``assets/<asset_name>/``
atomically and returns a :class:`~marc_ops.stage.StageResult` for the driver (Dagster or
DVC) to show.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import polars as pl

from marc_ops.config import Params, ProjectPaths
from marc_ops.data.sampling import category_table, stratified_sample
from marc_ops.data.score import write_pseudo_videos
from marc_ops.data.synthetic import CORPUS_FORMAT, generate_corpus
from marc_ops.data.videor1 import load_many
from marc_ops.errors import MarcError
from marc_ops.io import project_relative, relative_media, write_json, write_parquet
from marc_ops.stage import StageResult


class DataRootMissingError(MarcError, FileNotFoundError):
    """The profile points at Video-R1 files that are not on this machine."""


def _fingerprint(path: Path) -> dict[str, object]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _corpus_stamp(params: Params) -> str:
    content = f"format {CORPUS_FORMAT}: {params.synthetic.model_dump_json()}"
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def videor1_source_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """Make the raw Video-R1 files available: generate the synthetic corpus, or check the real root.

    For ``source: videor1`` nothing is copied (the data is hundreds of GB); the stage records
    a fingerprint (size + sha256) of every annotation file so ``dvc repro`` notices a change.
    """
    out_dir = paths.asset("videor1_source")
    root = params.data.root(paths.project_dir)
    started = time.perf_counter()
    generated = False
    if params.data.source == "synthetic":
        stamp_file = root / ".corpus_stamp"
        if not (stamp_file.is_file() and stamp_file.read_text() == _corpus_stamp(params)):
            generate_corpus(params.synthetic, root)
            stamp_file.write_text(_corpus_stamp(params))
            generated = True
    else:
        _require_videor1_root(root, params)
    annotation_files = [root / name for name in params.data.annotation_files]
    eval_dir = params.data.evals(paths.project_dir)
    eval_files = sorted(eval_dir.glob("eval_*.json")) if eval_dir.is_dir() else []
    record = {
        "profile": params.profile,
        "source": params.data.source,
        "data_root": project_relative(root, paths.project_dir),
        "annotation_files": [_fingerprint(p) for p in annotation_files],
        "eval_dir": project_relative(eval_dir, paths.project_dir),
        "eval_files": [_fingerprint(p) for p in eval_files],
    }
    write_json(out_dir / "source.json", record)
    return StageResult(
        outputs={"source": out_dir / "source.json", "data_root": root},
        metadata={
            "source": params.data.source,
            "data_root": str(root),
            "generated_now": generated,
            "annotation_files": len(annotation_files),
            "eval_files": len(eval_files),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )


def _require_videor1_root(root: Path, params: Params) -> None:
    hint = (
        "Put the Video-R1 release there (Video-R1-260k.json, Video-R1-COT-165k.json and the media folders "
        "CLEVRER/, LLaVA-Video-178K/, NeXT-QA/, PerceptionTest/, STAR/, Chart/, General/, Knowledge/, Math/, OCR/, "
        "Spatial/), or point data.data_root at it (set MARC_VIDEOR1_ROOT or edit the profile)."
    )
    if not root.is_dir():
        raise DataRootMissingError(f"Video-R1 data root {root} does not exist. {hint}")
    missing = [name for name in params.data.annotation_files if not (root / name).is_file()]
    if missing:
        raise DataRootMissingError(f"Video-R1 data root {root} lacks {', '.join(missing)}. {hint}")


def videor1_manifest_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """Validate every annotation row; usable rows to ``manifest.parquet``, the rest to ``quarantine.parquet``."""
    root = params.data.root(paths.project_dir)
    source = json.loads((paths.asset("videor1_source") / "source.json").read_text())
    files = [root / entry["name"] for entry in source["annotation_files"]]
    loaded = load_many(files, root, check_media=params.data.check_media)
    out_dir = paths.asset("videor1_manifest")
    write_parquet(out_dir / "manifest.parquet", relative_media(loaded.rows, paths.project_dir))
    write_parquet(out_dir / "quarantine.parquet", relative_media(loaded.quarantine, paths.project_dir))
    reasons = loaded.quarantine.group_by("reason_code").len("rows").sort("rows", descending=True)
    return StageResult(
        outputs={"manifest": out_dir / "manifest.parquet", "quarantine": out_dir / "quarantine.parquet"},
        metadata={"rows": loaded.rows.height, "quarantined": loaded.quarantine.height},
        tables={
            "categories": category_table(loaded.rows),
            "quarantine_reasons": reasons,
            "quarantine_preview": loaded.quarantine.select("reason"),
            "preview": loaded.rows.select("problem_id", "category", "problem_type", "problem", "answer"),
        },
    )


def train_subset_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """The category-stratified training subset (paper: 5K of Video-R1-260K), seeded."""
    manifest = pl.read_parquet(paths.asset("videor1_manifest") / "manifest.parquet")
    subset = stratified_sample(manifest, params.data.train_size, seed=params.data.sample_seed)
    out_dir = paths.asset("train_subset")
    write_parquet(out_dir / "train_subset.parquet", subset)
    shares = category_table(subset).join(
        category_table(manifest).select("category", pl.col("share").alias("manifest_share")), on="category"
    )
    return StageResult(
        outputs={"train_subset": out_dir / "train_subset.parquet"},
        metadata={"rows": subset.height, "videos": subset.filter(pl.col("data_type") == "video").height},
        tables={
            "categories": shares,
            "preview": subset.select("problem_id", "category", "problem_type", "problem", "answer"),
        },
    )


def score_pseudo_videos_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """SCORE's stage-1 data: pseudo-videos from image-caption pairs (the synthetic corpus's training shots
    and images on the tiny profile, ``score.data.stage1_captions`` on the paper profile)."""
    started = time.perf_counter()
    files = write_pseudo_videos(
        params.score.data, params.data.root(paths.project_dir), paths.asset("score_pseudo_videos")
    )
    index, quarantine = pl.read_parquet(files.index), pl.read_parquet(files.quarantine)
    return StageResult(
        outputs={"index": files.index, "quarantine": files.quarantine},
        metadata={
            "pseudo_videos": index.height,
            "frames_mean": round(float(index["n_frames"].mean()), 2) if index.height else 0.0,
            "quarantined_captions": quarantine.height,
            "seconds": round(time.perf_counter() - started, 2),
        },
        tables={"preview": index.head(8).select("sample_id", "n_frames", "n_images", "caption")},
    )
