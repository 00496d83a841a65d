"""Typed errors for media that cannot be read. Every error names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

from marc_ops.errors import MarcError


class MediaError(MarcError):
    """A video or image file could not be read.

    `path` is the offending file; the message says what is wrong with it, so a pipeline
    can quarantine the sample and move on while the log still explains why.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class VideoDecodeError(MediaError):
    """A video is missing, empty, has no decodable frames, or its container is unreadable."""


class ImageLoadError(MediaError):
    """An image is missing, empty or not a readable image file."""
