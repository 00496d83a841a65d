"""The data of SCORE's two-stage curriculum (SCORE.md section 8): caption files, pseudo-videos, video captions.

Stage 1 trains on pseudo-videos: :func:`make_pseudo_video` draws 2-4 images of a pool, centre-crops each to a
square of one size, repeats image j for r_j in 3..6 raw frames and pads an odd frame count with the last
frame; the target is the images' captions in order, joined by one space. Stage 2 trains on real videos with
dense captions, frames sampled uniformly to an even count (:func:`uniform_even_frame_indices`).

Both stages read either caption files (:func:`load_caption_file`: JSON lines ``{"image"|"video": path,
"caption": text}``; a bad row is quarantined with its file, row and reason, never dropped silently) or the
synthetic corpus's training split: stage 1 pools the middle frame of every training shot and every training
image with their scripted captions, stage 2 takes every training video with its shots' captions in order.
The held-out split is never read.

:func:`write_pseudo_videos` materializes stage 1 into a folder a stage can depend on::

    index.parquet         one row per sample: sample_id, file, n_frames, n_images, repeats, drawn (pool
                          indices), caption, sources (the drawn images' media)
    samples/<id>.npz      images (n, S, S, 3) uint8, the drawn images once each, and frame_image (F,) int64,
                          the image each frame shows: frames = images[frame_image]
    quarantine.parquet    the stage-1 caption rows that were set aside
    score_data.json       the config and the stamp of the inputs that produced the folder

A sample stores its distinct images once, losslessly, instead of its frames: every frame is one of 2-4 images,
so this is 3-6 times smaller than the frames and ``deflate`` (32 KB window) cannot find a repeated 448-px frame
by itself; a video codec would make the repeated frames differ, and SCORE's state reads exactly those
differences (ΔX = 0 inside an image's run). The zip members carry a fixed timestamp, so the same config writes
the same bytes; samples are written one by one into a folder kept across interruptions and the whole is
renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import polars as pl
from PIL import Image
from tqdm import tqdm

from marc_ops.config.score import STAGE1_FIELDS, ScoreDataConfig
from marc_ops.data.schema import Rejection
from marc_ops.data.synthetic import CorpusFiles
from marc_ops.data.videor1 import DataFileError
from marc_ops.io import atomic_dir, atomic_file, write_json, write_parquet

# One usable caption row: the media path as written, resolved, and the caption (outer whitespace removed).
CAPTION_SCHEMA: dict[str, pl.DataType] = {
    "media": pl.String(),
    "media_path": pl.String(),
    "caption": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
}

CAPTION_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "media": pl.String(),
    "reason_code": pl.String(),
    "reason": pl.String(),
}

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

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class LoadedCaptions:
    rows: pl.DataFrame  # CAPTION_SCHEMA
    quarantine: pl.DataFrame  # CAPTION_QUARANTINE_SCHEMA


def load_caption_file(
    path: Path | str, media_root: Path | str, kind: MediaKind = "image", *, check_media: bool = True
) -> LoadedCaptions:
    """Load a JSON-lines caption file, ``{kind: path, "caption": text}`` per line, paths under ``media_root``.

    Rows are 0-based line numbers. Quarantined (the rest load): a line that is not UTF-8 or not JSON, not an
    object, a missing or empty media path or caption field, a field that is not a string, a caption of only
    whitespace, a missing media file (``check_media``), a media path captioned before (the first is kept).
    Raises :class:`DataFileError` naming the file when it cannot be read at all.
    """
    path, media_root = Path(path), Path(media_root)
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for row_no, raw in _read_json_lines(path):
        result = raw if isinstance(raw, Rejection) else _caption_row(raw, kind, media_root, check_media)
        if not isinstance(result, Rejection):
            if result["media_path"] in first_seen:
                result = Rejection(
                    "duplicate_media",
                    f"{kind} {result['media']!r} is already captioned at row {first_seen[result['media_path']]}",
                )
            else:
                first_seen[result["media_path"]] = row_no
        if isinstance(result, Rejection):
            media = raw.get(kind) if isinstance(raw, dict) else None
            bad.append(
                {
                    "source_file": str(path),
                    "source_row": row_no,
                    "media": media if isinstance(media, str) else None,
                    "reason_code": result.code,
                    "reason": f"{path.name} row {row_no}: {result.message}",
                }
            )
        else:
            good.append({**result, "source_file": str(path), "source_row": row_no})
    return LoadedCaptions(
        rows=pl.DataFrame(good, schema=CAPTION_SCHEMA),
        quarantine=pl.DataFrame(bad, schema=CAPTION_QUARANTINE_SCHEMA),
    )


def _read_json_lines(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value or the ``Rejection`` of a line that is not UTF-8 JSON) per non-blank line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DataFileError(path, "caption file not found") from err
    except OSError as err:
        raise DataFileError(path, f"caption file cannot be read ({err.strerror or err})") from err
    if not data.strip():
        raise DataFileError(path, "caption file is empty")
    if data.lstrip().startswith(b"["):
        raise DataFileError(path, "is one JSON array; expected JSON lines, one {...} object per line")
    records: list[tuple[int, Any]] = []
    # Split on b"\n" only: str.splitlines would also break a caption at a literal U+2028.
    for line_no, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            records.append(
                (line_no, Rejection("not_utf8", f"line is not UTF-8 (byte {err.start}: {err.reason})"))
            )
            continue
        try:
            records.append((line_no, json.loads(text)))
        except json.JSONDecodeError as err:
            records.append((line_no, Rejection("malformed_json", f"line is not valid JSON ({err.msg})")))
    return records


def _caption_row(
    raw: Any, kind: MediaKind, media_root: Path, check_media: bool
) -> dict[str, Any] | Rejection:
    if not isinstance(raw, dict):
        return Rejection("not_an_object", f"expected a JSON object, got {type(raw).__name__}")
    missing = [name for name in (kind, "caption") if raw.get(name) in (None, "")]
    if missing:
        other = "video" if kind == "image" else "image"
        hint = f" (the row has {other!r}: a file of the other stage?)" if other in raw else ""
        return Rejection("missing_field", f"missing required field(s): {', '.join(missing)}{hint}")
    for name in (kind, "caption"):
        if not isinstance(raw[name], str):
            return Rejection("bad_type", f"field {name!r} must be a string, got {type(raw[name]).__name__}")
    if not raw["caption"].strip():
        return Rejection("empty_caption", "the caption is only whitespace")
    media_path = (media_root / raw[kind]).resolve()
    if check_media and not media_path.is_file():
        return Rejection("missing_media", f"media file not found: {media_path}")
    return {"media": raw[kind], "media_path": str(media_path), "caption": raw["caption"].strip()}


# ---------------------------------------------------------------------------------------------- stage 1


@dataclass(frozen=True)
class PseudoVideo:
    """A pseudo-video: n drawn images, each shown for a run of raw frames.

    ``images``: (n, S, S, 3) uint8, square, in order. ``frame_image``: (F,) int64, the image (0..n-1) each raw
    frame shows; F = sum(repeats), plus one repeat of the last frame when that is odd. ``drawn``: the pool
    indices of the images. ``caption``: their captions in order, joined by one space.
    """

    images: np.ndarray
    frame_image: np.ndarray
    caption: str
    drawn: tuple[int, ...]
    repeats: tuple[int, ...]

    @property
    def frames(self) -> np.ndarray:
        """(F, S, S, 3) uint8."""
        return self.images[self.frame_image]


def square_frame(image: np.ndarray, size: int) -> np.ndarray:
    """The centred square of an (H, W, 3) uint8 image, resized (bicubic) to (size, size, 3)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side])
    if side == size:
        return square
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))


def make_pseudo_video(
    images: Sequence[np.ndarray], captions: Sequence[str], rng: np.random.Generator, config: ScoreDataConfig
) -> PseudoVideo:
    """Draw n in ``config.images_per_video`` distinct images of the pool ``images`` (captions alike) and
    repeat image j for r_j in ``config.repeats_per_image`` raw frames (uniform integers, independent).

    Only the drawn images are read, so ``images`` may be a lazy sequence over files.
    """
    drawn, repeats = _draw(len(images), rng, config)
    return PseudoVideo(
        images=np.stack([square_frame(images[i], config.frame_size) for i in drawn]),
        frame_image=_frame_image(repeats),
        caption=" ".join(captions[i] for i in drawn),
        drawn=drawn,
        repeats=repeats,
    )


def _draw(
    pool_size: int, rng: np.random.Generator, config: ScoreDataConfig
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    low, high = config.images_per_video
    if pool_size < high:
        raise ValueError(
            f"a pseudo-video draws up to {high} distinct images and the pool has {pool_size}; add images or "
            "lower images_per_video"
        )
    n_images = int(rng.integers(low, high + 1))
    drawn = rng.choice(pool_size, size=n_images, replace=False)
    repeats = rng.integers(config.repeats_per_image[0], config.repeats_per_image[1] + 1, size=n_images)
    return tuple(int(i) for i in drawn), tuple(int(r) for r in repeats)


def _frame_image(repeats: tuple[int, ...]) -> np.ndarray:
    frame_image = np.repeat(np.arange(len(repeats), dtype=np.int64), repeats)
    # An odd count is padded with the last frame, as the Qwen2.5-VL processor pads a video.
    return np.append(frame_image, frame_image[-1:]) if len(frame_image) % 2 else frame_image


@dataclass(frozen=True)
class ImagePool:
    """What stage 1 draws from: images (eager arrays or a lazy sequence over files), captions, and where each
    comes from (its media path as written, ``#frame=k`` for a video frame)."""

    images: Sequence[np.ndarray]
    captions: tuple[str, ...]
    sources: tuple[str, ...]


@dataclass(frozen=True)
class PseudoVideoSample:
    sample_id: str
    video: PseudoVideo
    sources: tuple[str, ...]  # the drawn images' sources, in order
    prompt: str


def stage1_pool(config: ScoreDataConfig, data_root: Path | str) -> tuple[ImagePool, pl.DataFrame]:
    """The stage-1 image pool and the quarantined caption rows (CAPTION_QUARANTINE_SCHEMA).

    ``data_root``: the synthetic corpus (source synthetic) or the root the caption paths resolve against.
    """
    if config.source == "synthetic":
        return _synthetic_pool(CorpusFiles.under(data_root)), pl.DataFrame(schema=CAPTION_QUARANTINE_SCHEMA)
    caption_file, media_root = config.stage1_files(Path(data_root))
    loaded = load_caption_file(caption_file, media_root, "image", check_media=config.check_media)
    pool = ImagePool(
        images=_ImageFiles(tuple(Path(p) for p in loaded.rows["media_path"])),
        captions=tuple(loaded.rows["caption"]),
        sources=tuple(loaded.rows["media"]),
    )
    return pool, loaded.quarantine


def pseudo_video_samples(config: ScoreDataConfig, data_root: Path | str) -> Iterator[PseudoVideoSample]:
    """``config.stage1_size`` pseudo-videos; sample i draws from the stream (seed, i), so it does not depend on
    the others. The quarantined rows are :func:`stage1_pool`'s."""
    pool, _ = stage1_pool(config, data_root)
    for index in range(config.stage1_size):
        yield _pseudo_sample(pool, index, config)


def _pseudo_sample(pool: ImagePool, index: int, config: ScoreDataConfig) -> PseudoVideoSample:
    video = make_pseudo_video(pool.images, pool.captions, _sample_rng(config, index), config)
    return PseudoVideoSample(
        sample_id=_pseudo_id(index),
        video=video,
        sources=tuple(pool.sources[i] for i in video.drawn),
        prompt=config.prompt,
    )


def _sample_rng(config: ScoreDataConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, index])


def _pseudo_id(index: int) -> str:
    return f"pseudo-{index:06d}"


class _ImageFiles(Sequence[np.ndarray]):
    """Image files read on access as (H, W, 3) uint8 RGB."""

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self._paths = paths

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return _read_image(self._paths[index])


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as err:
        raise DataFileError(path, f"cannot be read as an image ({err})") from err


def _synthetic_pool(corpus: CorpusFiles) -> ImagePool:
    """The middle frame of every training shot and every training image, with their scripted captions."""
    entries = [entry for entry in _synthetic_captions(corpus) if entry["split"] == "train"]
    wanted: dict[str, set[int]] = {}
    for entry in entries:
        if entry["span"] is not None:
            wanted.setdefault(entry["path"], set()).add(_middle(entry["span"]))
    decoded = {path: _decode_frames(corpus.root / path, frames) for path, frames in wanted.items()}
    images, captions, sources = [], [], []
    for entry in entries:
        if entry["span"] is None:
            images.append(_read_image(corpus.root / entry["path"]))
            sources.append(entry["path"])
        else:
            frame = _middle(entry["span"])
            images.append(decoded[entry["path"]][frame])
            sources.append(f"{entry['path']}#frame={frame}")
        captions.append(entry["caption"])
    return ImagePool(images=images, captions=tuple(captions), sources=tuple(sources))


def _synthetic_captions(corpus: CorpusFiles) -> list[dict[str, Any]]:
    if not corpus.captions_json.is_file():
        raise DataFileError(
            corpus.captions_json,
            "not found: generate the synthetic corpus (videor1_source) into the data root",
        )
    return json.loads(corpus.captions_json.read_text(encoding="utf-8"))


def _middle(span: list[int]) -> int:
    first, last = span
    return (first + last) // 2


def _decode_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    """Frames ``indices`` of a video as (H, W, 3) uint8 RGB, decoded in order from the start."""
    frames: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in indices:
                    frames[index] = frame.to_ndarray(format="rgb24")
                if len(frames) == len(indices):
                    break
    except av.FFmpegError as err:
        raise DataFileError(path, f"cannot be decoded ({err})") from err
    if len(frames) < len(indices):
        raise DataFileError(path, f"frames {sorted(indices - frames.keys())} could not be decoded")
    return frames


# ---------------------------------------------------------------------------------------------- stage 2


@dataclass(frozen=True)
class VideoCaptionSample:
    sample_id: str
    video: Path
    caption: str
    prompt: str
    max_frames: int
    source: str  # the video's path as written in the caption file

    def frame_indices(self, num_frames: int) -> np.ndarray:
        """The frames to decode of a video of ``num_frames``: (F,) int64, F even, F <= max_frames."""
        return uniform_even_frame_indices(num_frames, self.max_frames)


def uniform_even_frame_indices(num_frames: int, max_frames: int) -> np.ndarray:
    """min(num_frames, max_frames) frames spread uniformly over the video (first and last included), the last
    repeated when that count is odd: (F,) int64, F even."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    count = min(num_frames, max_frames)
    indices = np.linspace(0, num_frames - 1, count).round().astype(np.int64)
    return np.append(indices, indices[-1:]) if count % 2 else indices


def stage2_videos(config: ScoreDataConfig, data_root: Path | str) -> LoadedCaptions:
    """The stage-2 videos and their captions (at most ``config.stage2_max_videos``, in file order), with the
    quarantined rows. ``data_root`` as for :func:`stage1_pool`."""
    if config.source == "synthetic":
        loaded = LoadedCaptions(
            rows=_synthetic_video_captions(CorpusFiles.under(data_root)),
            quarantine=pl.DataFrame(schema=CAPTION_QUARANTINE_SCHEMA),
        )
    else:
        caption_file, media_root = config.stage2_files(Path(data_root))
        loaded = load_caption_file(caption_file, media_root, "video", check_media=config.check_media)
    return LoadedCaptions(rows=loaded.rows.head(config.stage2_max_videos), quarantine=loaded.quarantine)


def video_caption_samples(config: ScoreDataConfig, data_root: Path | str) -> Iterator[VideoCaptionSample]:
    """One sample per stage-2 video; the caller decodes ``sample.frame_indices(num_frames)``."""
    for index, row in enumerate(stage2_videos(config, data_root).rows.iter_rows(named=True)):
        yield VideoCaptionSample(
            sample_id=f"video-{index:06d}",
            video=Path(row["media_path"]),
            caption=row["caption"],
            prompt=config.prompt,
            max_frames=config.stage2_max_frames,
            source=row["media"],
        )


def _synthetic_video_captions(corpus: CorpusFiles) -> pl.DataFrame:
    """Every training video, captioned with its shots' scripted captions in order, joined by one space."""
    shots: dict[str, list[tuple[int, int, str]]] = {}
    for row_no, entry in enumerate(_synthetic_captions(corpus)):
        if entry["split"] == "train" and entry["span"] is not None:
            shots.setdefault(entry["path"], []).append((entry["span"][0], row_no, entry["caption"]))
    rows = [
        {
            "media": path,
            "media_path": str((corpus.root / path).resolve()),
            "caption": " ".join(caption for _, _, caption in sorted(video_shots)),
            "source_file": str(corpus.captions_json),
            "source_row": min(row_no for _, row_no, _ in video_shots),
        }
        for path, video_shots in shots.items()
    ]
    return pl.DataFrame(rows, schema=CAPTION_SCHEMA)


# ---------------------------------------------------------------------------------------------- writer


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
    """Materialize stage 1 into ``out_dir`` (layout in the module docstring); returns its files.

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
        sample_id = _pseudo_id(index)
        path = samples_dir / f"{sample_id}.npz"
        drawn, repeats = _draw(len(pool.captions), _sample_rng(config, index), config)
        if not path.is_file():
            video = _pseudo_sample(pool, index, config).video
            _write_npz(path, {"images": video.images, "frame_image": video.frame_image})
        rows.append(
            {
                "sample_id": sample_id,
                "file": f"samples/{path.name}",
                "n_frames": len(_frame_image(repeats)),
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
