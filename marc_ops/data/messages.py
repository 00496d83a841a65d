"""The chat message of one Video-R1 row: its media item (how qwen-vl-utils samples it), then the prompt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from marc_ops.config.prompts import VIDEO_R1_EVAL, PromptTemplate, build_prompt
from marc_ops.config.video import VideoConfig


@dataclass(frozen=True)
class MediaSpec:
    """The visual input of one sample, in the form qwen-vl-utils reads.

    ``kind`` is the row's ``data_type``. For a video, ``fps`` / ``max_frames`` / pixel bounds
    are the sampling rule (SPEC section 3); an image carries only its path, as in eval_bench.py,
    so the processor's own image limits apply.
    """

    kind: Literal["video", "image"]
    path: str
    fps: float | None = None
    max_frames: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None

    @classmethod
    def for_row(cls, row: Mapping[str, Any], video: VideoConfig) -> MediaSpec:
        """The media of a manifest row (its resolved ``media_path``), sampled by ``video`` if it is a video."""
        if row["data_type"] == "image":
            return cls(kind="image", path=row["media_path"])
        if row["data_type"] != "video":
            raise ValueError(
                f"data_type {row['data_type']!r} of problem {row['problem_id']!r} is not 'video' or 'image'"
            )
        return cls(
            kind="video",
            path=row["media_path"],
            fps=video.fps,
            max_frames=video.max_frames,
            min_pixels=video.min_pixels,
            max_pixels=video.max_pixels,
        )

    def exists(self) -> bool:
        return Path(self.path).is_file()

    def content_item(self) -> dict[str, Any]:
        """``{"type": "video", "video": path, "fps": ..., ...}`` or ``{"type": "image", "image": path}``."""
        item: dict[str, Any] = {"type": self.kind, self.kind: self.path}
        for key in ("fps", "max_frames", "min_pixels", "max_pixels"):
            value = getattr(self, key)
            if value is not None:
                item[key] = value
        return item


def build_messages(
    row: Mapping[str, Any], media: MediaSpec, template: PromptTemplate = VIDEO_R1_EVAL
) -> list[dict[str, Any]]:
    """One user turn: the media item, then the prompt text (eval_bench.py's order)."""
    return [
        {
            "role": "user",
            "content": [media.content_item(), {"type": "text", "text": build_prompt(row, template)}],
        }
    ]
