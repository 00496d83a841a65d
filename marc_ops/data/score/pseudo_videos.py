"""SCORE's stage 1, pseudo-videos: :func:`make_pseudo_video` draws 2-4 images of a pool, centre-crops each to a
square of one size, repeats image j for r_j in 3..6 raw frames and pads an odd frame count with the last
frame, the target being the images' captions in order; :func:`stage1_pool` builds the pool from a caption file
or from the synthetic corpus's training shots (their middle frames) and images, and
:func:`pseudo_video_samples` yields the seeded samples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import polars as pl
from PIL import Image

from marc_ops.config.score import ScoreDataConfig
from marc_ops.data.score.captions import CAPTION_QUARANTINE_SCHEMA, load_caption_file, synthetic_captions
from marc_ops.data.synthetic import CorpusFiles
from marc_ops.data.videor1 import DataFileError


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
    drawn, repeats = draw(len(images), rng, config)
    return PseudoVideo(
        images=np.stack([square_frame(images[i], config.frame_size) for i in drawn]),
        frame_image=frame_image_of(repeats),
        caption=" ".join(captions[i] for i in drawn),
        drawn=drawn,
        repeats=repeats,
    )


def draw(
    pool_size: int, rng: np.random.Generator, config: ScoreDataConfig
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The pool indices of a pseudo-video's images and each image's repeat count, drawn from ``rng``."""
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


def frame_image_of(repeats: tuple[int, ...]) -> np.ndarray:
    """The image each raw frame shows, (F,) int64, for images repeated ``repeats`` times."""
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
        yield pseudo_video_sample(pool, index, config)


def pseudo_video_sample(pool: ImagePool, index: int, config: ScoreDataConfig) -> PseudoVideoSample:
    """Sample ``index`` of stage 1, drawn from the stream (seed, index)."""
    video = make_pseudo_video(pool.images, pool.captions, sample_rng(config, index), config)
    return PseudoVideoSample(
        sample_id=pseudo_id(index),
        video=video,
        sources=tuple(pool.sources[i] for i in video.drawn),
        prompt=config.prompt,
    )


def sample_rng(config: ScoreDataConfig, index: int) -> np.random.Generator:
    """Sample ``index``'s own random stream, independent of the other samples'."""
    return np.random.default_rng([config.seed, index])


def pseudo_id(index: int) -> str:
    """Sample ``index``'s id, ``pseudo-000042``."""
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
    entries = [entry for entry in synthetic_captions(corpus) if entry["split"] == "train"]
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
