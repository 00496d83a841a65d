"""Video decoding: decord by default, PyAV as the fallback, both behind one small reader interface.

Both readers number frames 0..num_frames-1 in presentation order and report the container's
average frame rate, so frame indices (and the timestamps derived from them) agree between
backends; the decoded pixels may differ by the codec's and colour converter's rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import av
import numpy as np

from marc_ops.video.errors import VideoDecodeError
from marc_ops.video.resize import MAX_SOURCE_PIXELS

try:
    import decord
except ImportError:  # decord has no wheel for some platforms; PyAV decodes everything it does
    decord = None

logger = logging.getLogger(__name__)

Backend = Literal["auto", "decord", "pyav"]


@dataclass(frozen=True)
class VideoInfo:
    """What a video contains. `duration_s` is `num_frames / fps` (constant-frame-rate view)."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float


class VideoReader(Protocol):
    """An open video whose first frame decoded. Frames are RGB uint8 at source resolution."""

    path: Path
    num_frames: int
    fps: float

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the decoded frames."""
        ...

    def read(self, indices: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
        """Frames at sorted `indices: (T,)`, as chunks `(n <= chunk_size, H, W, 3)` uint8."""
        ...


def _first_line(error: Exception) -> str:
    # decord's messages carry a multi-line C++ backtrace; the first line says what failed.
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class _DecordReader:
    """decord.VideoReader on the CPU, at source resolution (callers resize).

    Opening decodes frame 0: decord 0.6.0 opens some files it cannot convert (frames 48 or
    72 px wide fail with "DECORDArrayCopyFromTo: The size must exactly match"), and that
    must surface here, where "auto" can still fall back to PyAV.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._video = decord.VideoReader(str(path), ctx=decord.cpu(0))
            self.num_frames = len(self._video)
            self.fps = float(self._video.get_avg_fps())
        # decord reports an unopenable file as RuntimeError("Error reading ..."), a stream it
        # cannot set up as DECORDError, and a stream without frames as AssertionError.
        except (decord.DECORDError, RuntimeError, AssertionError) as error:
            raise VideoDecodeError(path, f"decord cannot open the container: {_first_line(error)}") from error
        _check_counts(path, self.num_frames, self.fps)
        self._frame_size = self._batch([0]).shape[1:3]

    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    def read(self, indices: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(indices), chunk_size):
            yield self._batch(indices[start : start + chunk_size].tolist())

    def _batch(self, indices: list[int]) -> np.ndarray:
        try:
            return self._video.get_batch(indices).asnumpy()
        except decord.DECORDError as error:
            raise VideoDecodeError(
                self.path, f"decord failed to decode frames {indices[0]}..{indices[-1]}: {_first_line(error)}"
            ) from error


class _PyAVReader:
    """PyAV, decoding sequentially from the start: exact frame numbering without seeking, at
    the cost of decoding every frame up to the last one asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._open() as container:
            stream = self._video_stream(container)
            if _is_still_image(container):
                raise VideoDecodeError(
                    path, f"the file is a still image ({container.format.long_name}), not a video"
                )
            rate = stream.average_rate or stream.guessed_rate
            if rate is None:
                raise VideoDecodeError(path, "the video stream declares no frame rate")
            self.fps = float(rate)
            self._frame_size = (stream.codec_context.height, stream.codec_context.width)
            # mp4 headers carry the frame count; mkv/webm do not, so count the packets then
            # (the same count decord builds its frame index from).
            self.num_frames = stream.frames or self._count_packets(container, stream)
        _check_counts(path, self.num_frames, self.fps)

    def frame_size(self) -> tuple[int, int]:
        return self._frame_size

    def read(self, indices: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
        if len(indices) == 0:
            return
        chunk: list[np.ndarray] = []
        wanted = iter(indices.tolist())
        next_index = next(wanted)
        for index, frame in self._decode():
            if index < next_index:
                continue
            chunk.append(frame.to_ndarray(format="rgb24"))
            if len(chunk) == chunk_size:
                yield np.stack(chunk)
                chunk = []
            next_index = next(wanted, None)
            if next_index is None:
                break
        if next_index is not None:
            raise VideoDecodeError(
                self.path,
                f"container reports {self.num_frames} frames but frame {next_index} could not be decoded",
            )
        if chunk:
            yield np.stack(chunk)

    def stream(self, size: tuple[int, int], chunk_size: int) -> Iterator[np.ndarray]:
        """Every frame in order, scaled to `size = (width, height)` by swscale (bicubic), as
        chunks `(n <= chunk_size, height, width, 3)` uint8."""
        width, height = size
        chunk: list[np.ndarray] = []
        for _, frame in self._decode():
            scaled = frame.reformat(width=width, height=height, format="rgb24", interpolation="BICUBIC")
            chunk.append(scaled.to_ndarray())
            if len(chunk) == chunk_size:
                yield np.stack(chunk)
                chunk = []
        if chunk:
            yield np.stack(chunk)

    def _decode(self) -> Iterator[tuple[int, av.VideoFrame]]:
        with self._open() as container:
            stream = self._video_stream(container)
            stream.thread_type = "AUTO"
            try:
                yield from enumerate(container.decode(stream))
            except av.FFmpegError as error:
                raise VideoDecodeError(self.path, f"PyAV failed while decoding: {error}") from error

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(str(self.path))
        except av.FFmpegError as error:
            raise VideoDecodeError(self.path, f"PyAV cannot open the container: {error}") from error

    def _video_stream(self, container: av.container.InputContainer) -> av.video.stream.VideoStream:
        if not container.streams.video:
            raise VideoDecodeError(self.path, "the container has no video stream")
        return container.streams.video[0]

    def _count_packets(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> int:
        try:
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as error:
            raise VideoDecodeError(self.path, f"PyAV failed while reading packets: {error}") from error


def _is_still_image(container: av.container.InputContainer) -> bool:
    # FFmpeg opens a JPEG, PNG, WebP, ... file as a one-frame "video" through its image demuxers:
    # `image2` (picked by an image file name) or `<codec>_pipe` (picked by the bytes, whatever the name).
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def _check_frame_size(reader: VideoReader) -> None:
    height, width = reader.frame_size()
    if height <= 0 or width <= 0:
        raise VideoDecodeError(reader.path, f"the video stream declares a frame size of {width}x{height}")
    if height * width > MAX_SOURCE_PIXELS:
        raise VideoDecodeError(
            reader.path,
            f"frames are {width}x{height} ({height * width / 1e6:.1f} megapixels), above the "
            f"{MAX_SOURCE_PIXELS / 1e6:.1f}-megapixel limit on what is decoded and resized",
        )


def _check_counts(path: Path, num_frames: int, fps: float) -> None:
    if num_frames == 0:
        raise VideoDecodeError(path, "the video stream has zero frames")
    if not fps > 0:
        raise VideoDecodeError(path, f"the video stream reports a frame rate of {fps}")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise VideoDecodeError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def open_video(path: str | Path, backend: Backend = "auto") -> VideoReader:
    """Open `path` with the requested backend and decode nothing but (for decord) frame 0.

    "auto" uses decord and falls back to PyAV (with a warning) when decord is not installed or
    cannot open the file or convert its first frame; "decord" and "pyav" use only that backend.
    Raises VideoDecodeError naming the file if it is missing, empty, has no frames, is a still
    image, has frames larger than `MAX_SOURCE_PIXELS`, or no backend can read it.
    """
    path = Path(path)
    _check_file(path)
    reader = _open_reader(path, backend)
    _check_frame_size(reader)
    return reader


def _open_reader(path: Path, backend: Backend) -> VideoReader:
    if backend == "pyav":
        return _PyAVReader(path)
    if backend == "decord":
        if decord is None:
            raise ModuleNotFoundError(
                "backend='decord' needs the decord package; install it or use backend='pyav'"
            )
        return _DecordReader(path)
    if decord is None:
        return _PyAVReader(path)
    try:
        return _DecordReader(path)
    except VideoDecodeError as decord_error:
        logger.warning("%s; decoding with PyAV instead", decord_error)
        try:
            return _PyAVReader(path)
        except VideoDecodeError as pyav_error:
            raise VideoDecodeError(
                path, f"unreadable by decord ({decord_error.problem}) and by PyAV ({pyav_error.problem})"
            ) from pyav_error


def probe_video(path: str | Path, backend: Backend = "auto") -> VideoInfo:
    """Frame count, frame rate and source size of a video (decodes at most one frame)."""
    reader = open_video(path, backend)
    height, width = reader.frame_size()
    return VideoInfo(
        path=reader.path,
        num_frames=reader.num_frames,
        fps=reader.fps,
        width=width,
        height=height,
        duration_s=reader.num_frames / reader.fps,
    )


def iter_frames(
    path: str | Path, *, size: tuple[int, int] = (48, 27), chunk_size: int = 1000
) -> Iterator[np.ndarray]:
    """Every frame of the video, scaled to `size = (width, height)`, in bounded chunks.

    Yields `(n, height, width, 3)` uint8 arrays with `n <= chunk_size`, in frame order, so an
    hour-long video never sits in memory whole (the default feeds TransNetV2: 48x27 RGB).

    Always PyAV, streaming: each decoded frame is scaled by swscale with bicubic interpolation
    (`VideoFrame.reformat`), the scaler behind TransNetV2's reference `ffmpeg -s 48x27`
    extraction. Not decord: decord 0.6.0 cannot return 48-px-wide frames (its `width=48`
    output fails with "DECORDArrayCopyFromTo: The size must exactly match"), and decoding at
    source size to resize afterwards would hold full-resolution chunks in memory. Frames are
    numbered as `sample_frames` numbers them. The aspect ratio is not kept. The file is
    opened at the call, so a missing or corrupt file raises VideoDecodeError there.
    """
    width, height = size
    if width < 1 or height < 1 or chunk_size < 1:
        raise ValueError(f"size and chunk_size must be positive, got size={size}, chunk_size={chunk_size}")
    path = Path(path)
    _check_file(path)
    reader = _PyAVReader(path)
    _check_frame_size(reader)
    return reader.stream(size, chunk_size)
