"""The stage-1 writer and reader: :func:`write_pseudo_videos` materializes SCORE's pseudo-videos into a folder a
stage can depend on (the layout is in the package docstring), each sample's distinct images in a
fixed-timestamp ``.npz`` so the same config and inputs write the same bytes, resuming an interrupted run and
skipping a folder whose stamp is current; :func:`load_pseudo_videos` reads the samples back in order."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from marc_ops.config.score import STAGE1_FIELDS, ScoreDataConfig
from marc_ops.data.score.pseudo_videos import (
    ImagePool,
    PseudoVideo,
    PseudoVideoSample,
    draw,
    frame_image_of,
    pseudo_id,
    pseudo_video_sample,
    sample_rng,
    stage1_pool,
)
from marc_ops.data.synthetic import CorpusFiles
from marc_ops.data.videor1 import DataFileError
from marc_ops.io import atomic_dir, atomic_file, write_json, write_parquet

PSEUDO_INDEX_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "file": pl.String(),
    "n_frames": pl.Int64(),
    "n_images": pl.Int64(),
    "repeats": pl.List(pl.Int64()),
    "drawn": pl.List(pl.Int64()),
    "caption": pl.String(),
    "sources": pl.List(pl.String()),
}

# Bumped when what write_pseudo_videos writes changes, so a folder written by older code is rewritten.
PSEUDO_FORMAT = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PseudoVideoFiles:
    """Where a materialized stage 1 is."""

    root: Path
    index: Path
    quarantine: Path
    record: Path

    @classmethod
    def under(cls, root: Path | str) -> PseudoVideoFiles:
        root = Path(root)
        return cls(
            root=root,
            index=root / "index.parquet",
            quarantine=root / "quarantine.parquet",
            record=root / "score_data.json",
        )


def write_pseudo_videos(
    config: ScoreDataConfig, data_root: Path | str, out_dir: Path | str
) -> PseudoVideoFiles:
    """Materialize stage 1 into ``out_dir`` (layout in the package docstring); returns its files.

    A folder already written from the same config and inputs is left as it is. Otherwise samples go one by one
    into a hidden sibling folder named after the stamp, so an interrupted run resumes where it stopped, and the
    whole replaces ``out_dir`` only once every sample is written.
    """
    out_dir = Path(out_dir)
    stamp = _stage1_stamp(config, Path(data_root))
    files = PseudoVideoFiles.under(out_dir)
    if files.record.is_file() and json.loads(files.record.read_text())["stamp"] == stamp:
        return files
    partial = _partial_dir(out_dir, stamp)
    pool, quarantine = stage1_pool(config, data_root)
    index = _write_samples(pool, config, partial / "samples")
    with atomic_dir(out_dir) as tmp:
        (partial / "samples").rename(tmp / "samples")
        written = PseudoVideoFiles.under(tmp)
        write_parquet(written.index, index)
        write_parquet(written.quarantine, quarantine)
        write_json(
            written.record,
            {
                "stamp": stamp,
                "format": PSEUDO_FORMAT,
                "config": config.model_dump(mode="json", include=set(STAGE1_FIELDS)),
                "samples": index.height,
                "pool": len(pool.captions),
                "quarantined": quarantine.height,
            },
        )
    shutil.rmtree(partial)
    return files


def load_pseudo_videos(out_dir: Path | str) -> Iterator[PseudoVideoSample]:
    """The samples of a folder written by :func:`write_pseudo_videos`, in order, as they were built."""
    files = PseudoVideoFiles.under(out_dir)
    prompt = json.loads(files.record.read_text())["config"]["prompt"]
    for row in pl.read_parquet(files.index).iter_rows(named=True):
        with np.load(files.root / row["file"]) as arrays:
            images, frame_image = arrays["images"], arrays["frame_image"]
        yield PseudoVideoSample(
            sample_id=row["sample_id"],
            video=PseudoVideo(
                images=images,
                frame_image=frame_image,
                caption=row["caption"],
                drawn=tuple(row["drawn"]),
                repeats=tuple(row["repeats"]),
            ),
            sources=tuple(row["sources"]),
            prompt=prompt,
        )


def _write_samples(pool: ImagePool, config: ScoreDataConfig, samples_dir: Path) -> pl.DataFrame:
    """Write every sample missing from ``samples_dir``; returns the index (PSEUDO_INDEX_SCHEMA)."""
    samples_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in tqdm(range(config.stage1_size), desc="SCORE pseudo-videos", unit="sample"):
        sample_id = pseudo_id(index)
        path = samples_dir / f"{sample_id}.npz"
        drawn, repeats = draw(len(pool.captions), sample_rng(config, index), config)
        if not path.is_file():
            video = pseudo_video_sample(pool, index, config).video
            _write_npz(path, {"images": video.images, "frame_image": video.frame_image})
        rows.append(
            {
                "sample_id": sample_id,
                "file": f"samples/{path.name}",
                "n_frames": len(frame_image_of(repeats)),
                "n_images": len(drawn),
                "repeats": list(repeats),
                "drawn": list(drawn),
                "caption": " ".join(pool.captions[i] for i in drawn),
                "sources": [pool.sources[i] for i in drawn],
            }
        )
    return pl.DataFrame(rows, schema=PSEUDO_INDEX_SCHEMA)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with a fixed member timestamp (numpy stamps the current time), written atomically."""
    with atomic_file(path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as sink:
                np.lib.format.write_array(sink, np.ascontiguousarray(array), allow_pickle=False)


def _stage1_stamp(config: ScoreDataConfig, data_root: Path) -> str:
    """What stage 1's output depends on: the format, the stage-1 fields of the config and the caption files'
    bytes (media files are named by those, not hashed)."""
    if config.source == "synthetic":
        corpus = CorpusFiles.under(data_root)
        inputs = [corpus.captions_json, corpus.config_json]
    else:
        inputs = [config.stage1_files(data_root)[0]]
    content = {
        "format": PSEUDO_FORMAT,
        "config": config.model_dump(mode="json", include=set(STAGE1_FIELDS)),
        "inputs": [_sha256(path) for path in inputs],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise DataFileError(path, f"cannot be read ({err.strerror or err})") from err
    return digest.hexdigest()


def _partial_dir(out_dir: Path, stamp: str) -> Path:
    """The folder this stamp's samples accumulate in; another stamp's are removed."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        if stale.name != f".{out_dir.name}.partial-{stamp}":
            shutil.rmtree(stale)
    return out_dir.parent / f".{out_dir.name}.partial-{stamp}"
