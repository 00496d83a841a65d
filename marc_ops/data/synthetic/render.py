"""Pixels: draw a scene, lay shots on a timeline (cuts and cross-fades), write mp4 and PNG files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from marc_ops.config.synthetic import BACKGROUNDS
from marc_ops.data.synthetic.scenes import SHAPE_COLOURS, Scene

CUT, DISSOLVE = "cut", "dissolve"


@dataclass(frozen=True)
class VideoTimeline:
    """Shots back to back. ``spans[i]`` = (first_frame, last_frame) of shot i, inclusive, covering every frame;
    ``transitions[i]`` is the boundary between shot i and i+1. A dissolve of ``dissolve_frames`` frames is
    centred on the boundary: it starts ``dissolve_frames // 2`` frames before the next shot's first frame.
    """

    scenes: tuple[Scene, ...]
    spans: tuple[tuple[int, int], ...]
    transitions: tuple[str, ...]
    fps: int
    dissolve_frames: int

    @classmethod
    def from_lengths(
        cls, scenes: list[Scene], lengths: list[int], transitions: list[str], fps: int, dissolve_frames: int
    ) -> VideoTimeline:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
        spans = tuple((int(s), int(s + n - 1)) for s, n in zip(starts, lengths, strict=True))
        return cls(tuple(scenes), spans, tuple(transitions), fps, dissolve_frames)

    @property
    def n_frames(self) -> int:
        return self.spans[-1][1] + 1

    def shot_at(self, frame: int) -> int:
        return next(i for i, (_, last) in enumerate(self.spans) if frame <= last)

    def seconds(self, shot: int) -> tuple[float, float]:
        """(start, end) of a shot in seconds."""
        first, last = self.spans[shot]
        return first / self.fps, (last + 1) / self.fps

    def layers(self, frame: int) -> list[tuple[int, float]]:
        """(shot, weight) pairs that make up ``frame``: one shot, or two inside a dissolve."""
        for boundary, kind in enumerate(self.transitions):
            if kind != DISSOLVE:
                continue
            window_start = self.spans[boundary + 1][0] - self.dissolve_frames // 2
            step = frame - window_start
            if 0 <= step < self.dissolve_frames:
                alpha = (step + 1) / (self.dissolve_frames + 1)
                return [(boundary, 1.0 - alpha), (boundary + 1, alpha)]
        return [(self.shot_at(frame), 1.0)]


@lru_cache(maxsize=8)
def _font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font (no file on disk needed); a quarter of the frame height reads well at 224x128.
    return ImageFont.load_default(size=max(12, height // 4))


def draw_scene(scene: Scene, t: float, width: int, height: int) -> np.ndarray:
    """The scene at time ``t`` seconds, without noise. Returns (H, W, 3) uint8."""
    image = Image.new("RGB", (width, height), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        x, y = shape.centre(t, width, height)
        r = shape.radius
        fill = SHAPE_COLOURS[shape.colour]
        outline = (250, 250, 250) if shape.colour == "black" else (12, 12, 12)
        if shape.kind == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=outline, width=2)
        elif shape.kind == "square":
            side = 0.85 * r
            draw.rectangle((x - side, y - side, x + side, y + side), fill=fill, outline=outline, width=2)
        else:
            points = [(x, y - r), (x + 0.95 * r, y + 0.8 * r), (x - 0.95 * r, y + 0.8 * r)]
            draw.polygon(points, fill=fill, outline=outline, width=2)
    if scene.text:
        _draw_word(draw, scene, width, height)
    return np.asarray(image)


def _draw_word(draw: ImageDraw.ImageDraw, scene: Scene, width: int, height: int) -> None:
    font = _font(height)
    left, top, right, bottom = draw.textbbox((0, 0), scene.text, font=font, stroke_width=2)
    margin = 4
    free_x = max(0, width - (right - left) - 2 * margin)
    free_y = max(0, height - (bottom - top) - 2 * margin)
    fx, fy = scene.text_anchor
    origin = (margin - left + round(fx * free_x), margin - top + round(fy * free_y))
    r, g, b = BACKGROUNDS[scene.background]
    dark_background = 0.299 * r + 0.587 * g + 0.114 * b < 140
    fill, stroke = ((250, 250, 250), (12, 12, 12)) if dark_background else ((12, 12, 12), (250, 250, 250))
    draw.text(origin, scene.text, font=font, fill=fill, stroke_width=2, stroke_fill=stroke)


def add_noise(frame: np.ndarray, rng: np.random.Generator, amplitude: int) -> np.ndarray:
    """Mild pixel noise, uniform integers in [-amplitude, amplitude], so no two frames of a shot are identical.

    (H, W, 3) uint8 → same. Integer noise: a Gaussian draw per pixel would cost as much as the encoder.
    """
    if amplitude == 0:
        return frame
    noise = rng.integers(-amplitude, amplitude + 1, size=frame.shape, dtype=np.int16)
    return np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def video_frames(
    timeline: VideoTimeline, width: int, height: int, rng: np.random.Generator, noise_amplitude: int
) -> Iterator[np.ndarray]:
    """Every frame of the video in order, (H, W, 3) uint8 each."""
    for frame in range(timeline.n_frames):
        layers = timeline.layers(frame)
        pictures = [
            draw_scene(timeline.scenes[shot], (frame - timeline.spans[shot][0]) / timeline.fps, width, height)
            for shot, _ in layers
        ]
        if len(layers) == 1:
            picture = pictures[0]
        else:
            mixed = sum(
                weight * p.astype(np.float32) for (_, weight), p in zip(layers, pictures, strict=True)
            )
            picture = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        yield add_noise(picture, rng, noise_amplitude)


def resolve_codec(preference: str) -> str:
    """'auto' → libx264 when PyAV's bundled FFmpeg has it, else mpeg4; an explicit choice must exist."""
    available = av.codecs_available
    if preference == "auto":
        return "libx264" if "libx264" in available else "mpeg4"
    if preference not in available:
        raise RuntimeError(f"video_codec {preference!r} is not in this PyAV build's FFmpeg; use 'auto'")
    return preference


def write_mp4(
    path: Path, frames: Iterator[np.ndarray], *, width: int, height: int, fps: int, codec: str, crf: int
) -> int:
    """Encode (H, W, 3) uint8 frames to ``path`` as yuv420p; returns the number of frames written.

    One encoder thread and no B-frames: the bytes are reproducible and every decoder (decord, PyAV)
    reports the same frame count.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        context = stream.codec_context
        context.thread_count = 1
        context.max_b_frames = 0
        context.gop_size = 2 * fps
        if codec == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        else:  # MPEG-4 Part 2 has no CRF: a generous bit rate keeps the fallback readable
            context.bit_rate = 4 * width * height * fps
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
            written += 1
        container.mux(stream.encode(None))
    return written


def write_png(path: Path, frame: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path, format="PNG")
