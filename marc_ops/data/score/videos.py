"""SCORE's stage 2, real videos with dense captions: :func:`stage2_videos` reads them from a caption file or
takes every training video of the synthetic corpus with its shots' captions in order, and
:func:`video_caption_samples` yields one sample per video, whose frames are sampled uniformly to an even count
(:func:`uniform_even_frame_indices`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from marc_ops.config.score import ScoreDataConfig
from marc_ops.data.score.captions import (
    CAPTION_QUARANTINE_SCHEMA,
    CAPTION_SCHEMA,
    LoadedCaptions,
    load_caption_file,
    synthetic_captions,
)
from marc_ops.data.synthetic import CorpusFiles


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
    for row_no, entry in enumerate(synthetic_captions(corpus)):
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
