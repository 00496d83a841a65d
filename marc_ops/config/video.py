"""`VideoConfig`: how frames are sampled from a video and how large they may be (SPEC section 3)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

# Qwen2.5-VL: 14-px patches merged 2x2, so every side must be a multiple of 28.
PATCH_FACTOR = 28


class VideoConfig(BaseModel):
    """Frame sampling and resizing for the visual input of Qwen2.5-VL.

    Frames are taken at `fps` frames per second of video, then thinned uniformly to at most
    `max_frames`; every frame is resized so that both sides are multiples of 28 and
    `min_pixels <= H*W <= max_pixels` (see `smart_resize`). `backend` picks the decoder:
    "auto" uses decord and falls back to PyAV, "decord" / "pyav" force one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fps: float = 1.0
    max_frames: int = 64
    max_pixels: int = 128 * 28 * 28
    min_pixels: int = 4 * 28 * 28
    backend: Literal["auto", "decord", "pyav"] = "auto"

    @field_validator("fps")
    @classmethod
    def _fps_positive(cls, fps: float) -> float:
        if not fps > 0:
            raise ValueError(
                f"fps must be > 0 (frames sampled per second of video), got {fps}; set fps to e.g. 1.0"
            )
        return fps

    @field_validator("max_frames")
    @classmethod
    def _max_frames_positive(cls, max_frames: int) -> int:
        if max_frames < 1:
            raise ValueError(
                f"max_frames must be >= 1, got {max_frames}; set it to e.g. 64 (or 16 for the 16-frame rows)"
            )
        return max_frames

    @field_validator("min_pixels", "max_pixels")
    @classmethod
    def _at_least_one_patch(cls, pixels: int) -> int:
        smallest = PATCH_FACTOR * PATCH_FACTOR
        if pixels < smallest:
            raise ValueError(
                f"pixel bounds must be >= {smallest} (one {PATCH_FACTOR}x{PATCH_FACTOR} merged patch), got {pixels}; "
                f"raise it to at least {smallest}"
            )
        return pixels

    @model_validator(mode="after")
    def _min_not_above_max(self) -> VideoConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels ({self.min_pixels}) must be <= max_pixels ({self.max_pixels}); "
                "lower min_pixels or raise max_pixels"
            )
        return self


# The default argument of the readers (a frozen instance: safe to share).
DEFAULT_VIDEO_CONFIG = VideoConfig()
