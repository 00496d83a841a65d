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

- ``captions``: the caption-file loader and its quarantine, and the synthetic corpus's scripted captions.
- ``pseudo_videos``: stage 1, the pseudo-video builder, its image pool and its seeded samples.
- ``videos``: stage 2, the captioned videos and their uniform even frame sampling.
- ``store``: the stage-1 writer (the folder above) and its reader.
"""

from marc_ops.data.score.captions import (
    CAPTION_QUARANTINE_SCHEMA,
    CAPTION_SCHEMA,
    LoadedCaptions,
    MediaKind,
    load_caption_file,
)
from marc_ops.data.score.pseudo_videos import (
    ImagePool,
    PseudoVideo,
    PseudoVideoSample,
    make_pseudo_video,
    pseudo_video_samples,
    square_frame,
    stage1_pool,
)
from marc_ops.data.score.store import (
    PSEUDO_FORMAT,
    PSEUDO_INDEX_SCHEMA,
    PseudoVideoFiles,
    load_pseudo_videos,
    write_pseudo_videos,
)
from marc_ops.data.score.videos import (
    VideoCaptionSample,
    stage2_videos,
    uniform_even_frame_indices,
    video_caption_samples,
)

__all__ = [
    "CAPTION_QUARANTINE_SCHEMA",
    "CAPTION_SCHEMA",
    "PSEUDO_FORMAT",
    "PSEUDO_INDEX_SCHEMA",
    "ImagePool",
    "LoadedCaptions",
    "MediaKind",
    "PseudoVideo",
    "PseudoVideoFiles",
    "PseudoVideoSample",
    "VideoCaptionSample",
    "load_caption_file",
    "load_pseudo_videos",
    "make_pseudo_video",
    "pseudo_video_samples",
    "square_frame",
    "stage1_pool",
    "stage2_videos",
    "uniform_even_frame_indices",
    "video_caption_samples",
    "write_pseudo_videos",
]
