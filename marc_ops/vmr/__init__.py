"""The Visual Memory Retriever (SPEC section 4, paper 3.1): shots, clip embeddings, the index, retrieval."""

from marc_ops.vmr.shots import (
    DEFAULT_SHOT_CONFIG,
    ShotConfig,
    ShotSegmentation,
    detect_shots,
    load_transnetv2,
    resolve_precision,
    score_frames,
    scores_to_spans,
    segment_video,
)

__all__ = [
    "DEFAULT_SHOT_CONFIG",
    "ShotConfig",
    "ShotSegmentation",
    "detect_shots",
    "load_transnetv2",
    "resolve_precision",
    "score_frames",
    "scores_to_spans",
    "segment_video",
]
