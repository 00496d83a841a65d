"""The samples SCORE trains on, as frames and captions: pseudo-videos (stage 1) and real videos (stage 2).

A pseudo-video's raw frames stand for one second each (``PSEUDO_VIDEO_FPS``): a temporal group of two
raw frames then spans two seconds of mRoPE time, as a real video sampled at 1 fps does. A stage-2
video is decoded at the frames ``VideoCaptionSample.frame_indices`` chooses (uniform, an even count)
and resized by the profile's ``video`` pixel bounds; its rate is the frames kept over the video's
duration.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from marc_ops.config.score import ScoreDataConfig
from marc_ops.config.video import VideoConfig
from marc_ops.data.score import load_pseudo_videos, video_caption_samples
from marc_ops.train.score import CaptionClip
from marc_ops.video import open_video
from marc_ops.vmr.retrieval import decode_frames

PSEUDO_VIDEO_FPS = 1.0


def pseudo_video_clips(pseudo_videos: Path) -> Iterator[CaptionClip]:
    """Stage 1: the pseudo-videos the ``score_pseudo_videos`` stage wrote, in index order."""
    for sample in load_pseudo_videos(pseudo_videos):
        yield CaptionClip(
            sample_id=sample.sample_id,
            frames=sample.video.frames,
            fps=PSEUDO_VIDEO_FPS,
            caption=sample.video.caption,
            prompt=sample.prompt,
        )


def video_clips(config: ScoreDataConfig, data_root: Path, video: VideoConfig) -> Iterator[CaptionClip]:
    """Stage 2: each captioned training video, decoded at its sample's frames and sized by ``video``."""
    for sample in video_caption_samples(config, data_root):
        reader = open_video(sample.video, video.backend)
        indices = sample.frame_indices(reader.num_frames)
        duration = reader.num_frames / reader.fps
        yield CaptionClip(
            sample_id=sample.sample_id,
            frames=decode_frames(reader, indices, video),
            fps=len(indices) / duration,
            caption=sample.caption,
            prompt=sample.prompt,
        )
