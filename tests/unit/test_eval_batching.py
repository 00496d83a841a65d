"""The order evaluation answers in: expected visual tokens from the files' headers, longest first."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from marc_ops.data.messages import MediaSpec
from marc_ops.eval.batching import by_visual_length, expected_visual_tokens
from marc_ops.video import VideoConfig

VIDEO = VideoConfig(fps=1.0, max_frames=64)


def write_video(path: Path, num_frames: int, *, width: int = 64, height: int = 48, fps: int = 10) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(num_frames):
            pixels = np.full((height, width, 3), index % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lengths")
    image = root / "wide.png"
    Image.new("RGB", (100, 60)).save(image)
    return {
        "short": write_video(root / "short.mp4", 35),  # 3.5 s at 10 fps
        "long": write_video(root / "long.mp4", 95),  # 9.5 s
        "image": image,
    }


def spec(path: Path, *, max_frames: int = 64) -> MediaSpec:
    kind = "image" if path.suffix == ".png" else "video"
    row = {"problem_id": path.stem, "data_type": kind, "media_path": str(path)}
    return MediaSpec.for_row(row, VIDEO.model_copy(update={"max_frames": max_frames}))


def test_expected_visual_tokens_are_groups_times_the_resized_frame(
    media: dict[str, Path], tmp_path: Path
) -> None:
    # 64x48 frames resize to 56x56 (4 tokens a temporal group); 100x60 to 112x56 (8 tokens).
    # short: 3.5 s at 1 fps = 4 frames = 2 groups; long: 10 frames = 5 groups, or 4 frames at max_frames=4.
    assert expected_visual_tokens(spec(media["short"]), VIDEO) == 2 * 4
    assert expected_visual_tokens(spec(media["long"]), VIDEO) == 5 * 4
    assert expected_visual_tokens(spec(media["long"], max_frames=4), VIDEO) == 2 * 4
    assert expected_visual_tokens(spec(media["image"]), VIDEO) == 8
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 64)
    assert expected_visual_tokens(spec(broken), VIDEO) == 0
    assert expected_visual_tokens(spec(tmp_path / "missing.mp4"), VIDEO) == 0


def test_rows_are_answered_longest_first_and_ties_keep_their_order() -> None:
    rows = [{"problem_id": name} for name in ("short", "image", "long", "broken")]
    ordered = by_visual_length(rows, [8, 8, 20, 0])
    assert [row["problem_id"] for row in ordered] == ["long", "short", "image", "broken"]
