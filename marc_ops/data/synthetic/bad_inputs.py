"""A corpus of inputs that must not break a run, written from scratch in about a second.

Media that are broken or lie about what they are (truncated, empty, an image named ``.mp4`` and a
video named ``.jpg``, image headers claiming 81 and 400 megapixels, a video whose time stamps
claim 10,000 hours), media that are legal but unusual (one frame, one 8K frame, grayscale, 10-bit),
annotation rows that break the schema (10,000 options, missing and extra fields, a malformed
``evidence``, a duplicate id) or point outside the data root (``../../etc/passwd``, a deeper climb,
an absolute path, a symlink out), and annotation files that cannot be read as a whole (not UTF-8,
one JSON object or number instead of an array). Every row-level case sits between good rows.

    marc bad-inputs OUT_DIR

Layout under ``OUT_DIR``::

    data/                      the data root
        annotations.json       a JSON array: good rows and one row per row-level case
        annotations.jsonl      JSON lines: good rows, a line that is not UTF-8, a line nested too deeply
        not_utf8.json          a JSON array with a byte that is not UTF-8 in a question
        top_level_object.json  one JSON object wrapping the rows
        top_level_number.json  one JSON number
        media/                 the media files; media/outside_link.mp4 is a symlink to ../../outside/secret.mp4
    outside/secret.mp4         a good video outside the data root, reachable only through that symlink
    cases.json                 every row and file: its case name, input class, file, row, media path

The expected outcome of each case is not written here: the tests state it (tests/unit/test_bad_inputs.py).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

DATA_DIR = "data"
OUTSIDE_DIR = "outside"
CASES_FILE = "cases.json"
ARRAY_FILE = "annotations.json"
LINES_FILE = "annotations.jsonl"
FPS = 8
SIZE = (64, 48)  # (width, height) of the small videos
CLAIMED_HOURS = 10_000


@dataclass(frozen=True)
class BadInputRow:
    """One row of an annotation file (``row`` set) or a whole annotation file (``row`` None)."""

    case: str  # "good_video", "truncated_mp4", ...
    input_class: str  # "good", "media", "schema", "path", "encoding", "file"
    file: str  # annotation file, relative to the data root
    row: int | None
    media: str | None  # the row's ``path`` as written
    description: str


@dataclass(frozen=True)
class BadInputCorpus:
    data_root: Path
    outside: Path
    rows: tuple[BadInputRow, ...]

    def row(self, case: str) -> BadInputRow:
        return next(r for r in self.rows if r.case == case)

    def annotation_files(self) -> list[Path]:
        """The files whose bad rows are quarantined one by one (the others are refused whole)."""
        return [self.data_root / ARRAY_FILE, self.data_root / LINES_FILE]


def generate_bad_inputs(out_dir: Path | str) -> BadInputCorpus:
    """Write the corpus into ``out_dir`` (created; files already there are overwritten) and describe it."""
    out_dir = Path(out_dir)
    root, outside = out_dir / DATA_DIR, out_dir / OUTSIDE_DIR
    (root / "media").mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    _write_media(root / "media", outside)
    rows = [
        *_write_rows(root / ARRAY_FILE, _array_rows()),
        *_write_lines(root / LINES_FILE),
        *_write_unreadable_files(root),
    ]
    (out_dir / CASES_FILE).write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return BadInputCorpus(data_root=root, outside=outside, rows=tuple(rows))


# ---------------------------------------------------------------------------------------------
# media


def _write_media(media: Path, outside: Path) -> None:
    _write_video(media / "good_0.mp4", _shots(24, [(200, 40, 40), (40, 40, 200)]))
    _write_video(media / "good_1.mp4", _shots(24, [(40, 160, 40), (220, 220, 220)]))
    _write_video(outside / "secret.mp4", _shots(16, [(90, 90, 90)]))
    _write_png(media / "good_0.png", (30, 120, 200))
    _write_png(media / "good_1.png", (220, 180, 20))
    link = media / "outside_link.mp4"
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.relpath(outside / "secret.mp4", media))

    whole = (media / "good_0.mp4").read_bytes()  # its index (moov) is written last
    (media / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    indexed_first = media / "truncated_tail.mp4"
    _write_video(indexed_first, _noise(32), faststart=True)
    data = indexed_first.read_bytes()
    indexed_first.write_bytes(data[: len(data) * 6 // 10])
    (media / "empty.mp4").write_bytes(b"")

    jpeg = media / "image_named.mp4"
    Image.new("RGB", SIZE, (10, 200, 30)).save(jpeg, format="JPEG")
    (media / "video_named.jpg").write_bytes(whole)
    (media / "bomb.png").write_bytes(_png_header(20_000, 20_000))
    (media / "huge.png").write_bytes(_png_header(9_000, 9_000))

    _write_video(media / "one_frame.mp4", _shots(1, [(120, 60, 200)]))
    _write_video(media / "claims_hours.mp4", _shots(8, [(60, 60, 60), (200, 200, 0)]))
    _claim_duration(media / "claims_hours.mp4", CLAIMED_HOURS * 3600)
    _write_video(media / "frame_8k.mp4", [_gradient(7680, 4320)])
    grey = _shots(16, [(30, 30, 30), (200, 200, 200)])
    _write_video(media / "grayscale.mp4", grey, codec="libx265", pix_fmt="gray")
    _write_video(media / "ten_bit.mp4", _shots(16, [(100, 150, 200)]), pix_fmt="yuv420p10le")


def _shots(n_frames: int, colours: list[tuple[int, int, int]]) -> list[np.ndarray]:
    """``n_frames`` solid frames (H, W, 3) uint8, the colours in equal runs (hard cuts between them)."""
    width, height = SIZE
    run = -(-n_frames // len(colours))
    return [np.full((height, width, 3), colours[i // run], np.uint8) for i in range(n_frames)]


def _noise(n_frames: int) -> list[np.ndarray]:
    """``n_frames`` frames of seeded noise: every frame costs about as many bytes, so a cut at a given
    share of the file lands after about that share of the frames."""
    width, height = SIZE
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n_frames)]


def _gradient(width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8: red rises left to right, green top to bottom."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)[None, :]
    frame[..., 1] = np.linspace(0, 255, height, dtype=np.float32).astype(np.uint8)[:, None]
    frame[..., 2] = 128
    return frame


def _write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
) -> None:
    """Encode (H, W, 3) uint8 RGB frames at ``FPS`` into an mp4; ``faststart`` puts the index first."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    if codec not in av.codecs_available:
        raise RuntimeError(f"this PyAV build's FFmpeg has no {codec} encoder, needed for {path.name}")
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.thread_count = 1
        stream.codec_context.max_b_frames = 0
        if codec == "libx265":  # x265 4:0:0 (libx264 here silently writes 4:2:0 for "gray")
            stream.options = {
                "preset": "ultrafast",
                "x265-params": "log-level=none:pools=none:frame-threads=1",
            }
        else:
            stream.options = {"preset": "ultrafast", "threads": "1"}
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` RGB and whose pixel data is empty: a few dozen bytes
    that a reader trusting the header would allocate width * height * 3 bytes for."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _write_png(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (96, 64), colour).save(path, format="PNG")


# Boxes that hold other boxes on the way to the ones rewritten (ISO/IEC 14496-12).
_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _claim_duration(path: Path, seconds: int) -> None:
    """Rewrite an mp4's header so that its frames span ``seconds``: time scales of 1 (one tick per
    second), every sample lasting ``seconds / frames`` ticks (``stts``), the movie, track and media
    durations set to match, and the edit list dropped (it would cut presentation to the real length).
    The frames and their count stay as they are."""
    data = bytearray(path.read_bytes())
    boxes = dict(_boxes(data, 0, len(data)))
    stts = boxes[b"stts"]
    entries = struct.unpack(">I", data[stts + 4 : stts + 8])[0]
    frames = sum(struct.unpack(">I", data[stts + 8 + 8 * i : stts + 12 + 8 * i])[0] for i in range(entries))
    for i in range(entries):
        struct.pack_into(">I", data, stts + 12 + 8 * i, seconds // frames)
    for kind in (b"mvhd", b"mdhd"):  # version 0: timescale at +12, duration at +16
        if data[boxes[kind]] != 0:
            raise ValueError(f"{path}: {kind.decode()} is version {data[boxes[kind]]}; expected 0")
        struct.pack_into(">II", data, boxes[kind] + 12, 1, seconds)
    struct.pack_into(">I", data, boxes[b"tkhd"] + 20, seconds)  # version 0, in the movie's time scale
    if b"edts" in boxes:
        data[boxes[b"edts"] - 4 : boxes[b"edts"]] = b"free"
    path.write_bytes(bytes(data))


def _boxes(data: bytearray, start: int, end: int) -> Iterable[tuple[bytes, int]]:
    """(box type, offset of its body) for the boxes between ``start`` and ``end``, into the containers."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        yield kind, pos + header
        if kind in _CONTAINER_BOXES:
            yield from _boxes(data, pos + header, pos + size)
        pos += size


# ---------------------------------------------------------------------------------------------
# annotations


def _record(problem_id: str, data_type: str, path: str, **overrides: Any) -> dict[str, Any]:
    record = {
        "problem_id": problem_id,
        "problem": "What colour is the first shot?",
        "data_type": data_type,
        "problem_type": "multiple choice",
        "options": ["A. red", "B. blue", "C. green"],
        "process": "<think>The first frames are red.</think>",
        "solution": "<answer>A</answer>",
        "path": path,
        "data_source": "BadInputs",
    }
    record.update(overrides)
    return record


def _array_rows() -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(case, input class, description, record) for each row of ``annotations.json``, in order."""
    good_video = _record("good-video", "video", "./media/good_0.mp4")
    missing = _record("missing-fields", "video", "./media/good_0.mp4")
    del missing["solution"], missing["path"]
    media_rows = [
        ("truncated_mp4", "an mp4 cut in half, its index (written last) lost", "video", "truncated.mp4"),
        (
            "truncated_tail_mp4",
            "an mp4 with its index first, its frames cut at 60%",
            "video",
            "truncated_tail.mp4",
        ),
        ("zero_length_mp4", "an empty .mp4 file", "video", "empty.mp4"),
        ("image_named_mp4", "a JPEG named .mp4 on a video row", "video", "image_named.mp4"),
        ("video_named_jpg", "an mp4 named .jpg on an image row", "image", "video_named.jpg"),
        ("image_bomb", "a PNG header claiming 20000x20000 (400 megapixels), no pixels", "image", "bomb.png"),
        ("image_huge", "a PNG header claiming 9000x9000 (81 megapixels), no pixels", "image", "huge.png"),
        ("one_frame", "a video of one frame", "video", "one_frame.mp4"),
        (
            "claims_hours",
            f"8 frames whose time stamps claim {CLAIMED_HOURS} hours",
            "video",
            "claims_hours.mp4",
        ),
        ("frame_8k", "one 7680x4320 frame", "video", "frame_8k.mp4"),
        ("grayscale", "HEVC 4:0:0 (grayscale)", "video", "grayscale.mp4"),
        ("ten_bit", "H.264 High 10, yuv420p10le", "video", "ten_bit.mp4"),
    ]
    rows: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("good_video", "good", "a good video row", good_video),
        ("good_image", "good", "a good image row", _record("good-image", "image", "./media/good_0.png")),
    ]
    for case, description, data_type, name in media_rows:
        rows.append((case, "media", description, _record(f"bad-{case}", data_type, f"./media/{name}")))
    rows += [
        (
            "options_10000",
            "schema",
            "a multiple-choice question with 10,000 options",
            _record("bad-options", "video", "./media/good_0.mp4", options=[f"{i}. x" for i in range(10_000)]),
        ),
        ("missing_fields", "schema", "no 'solution' and no 'path'", missing),
        (
            "extra_fields",
            "schema",
            "fields the schema does not name (kept row, extras ignored)",
            _record("extra-fields", "video", "./media/good_1.mp4", rating=5, notes={"by": "annotator 7"}),
        ),
        (
            "bad_evidence",
            "schema",
            "an 'evidence' field whose spans are not [first, last] pairs",
            _record(
                "bad-evidence", "video", "./media/good_0.mp4", evidence={"shots": [0], "spans": [[0, 1, 2]]}
            ),
        ),
        ("duplicate_id", "schema", "the problem_id of row 0 again", dict(good_video)),
        (
            "escape_dotdot",
            "path",
            "path ../../etc/passwd",
            _record("bad-dotdot", "image", "../../etc/passwd"),
        ),
        (
            "escape_deep",
            "path",
            "a path climbing 16 levels to /etc/passwd",
            _record("bad-deep", "image", "./" + "../" * 16 + "etc/passwd"),
        ),
        ("escape_absolute", "path", "path /etc/passwd", _record("bad-absolute", "image", "/etc/passwd")),
        (
            "escape_symlink",
            "path",
            "a symlink in the data root to a video outside it",
            _record("bad-symlink", "video", "./media/outside_link.mp4"),
        ),
        ("good_video_2", "good", "a good video row", _record("good-video-2", "video", "./media/good_1.mp4")),
        ("good_image_2", "good", "a good image row", _record("good-image-2", "image", "./media/good_1.png")),
    ]
    return rows


def _write_rows(path: Path, rows: list[tuple[str, str, str, dict[str, Any] | None]]) -> list[BadInputRow]:
    path.write_text(json.dumps([record for *_, record in rows], indent=1) + "\n", encoding="utf-8")
    return [
        BadInputRow(case, input_class, path.name, index, record.get("path"), description)
        for index, (case, input_class, description, record) in enumerate(rows)
    ]


def _write_lines(path: Path) -> list[BadInputRow]:
    good = _record("lines-good-video", "video", "./media/good_1.mp4")
    not_utf8 = json.dumps(_record("lines-not-utf8", "video", "./media/good_1.mp4", problem="Qu\x00")).encode()
    not_utf8 = not_utf8.replace(b"\\u0000", b"\xff\xfe")  # two bytes that are not UTF-8 inside the question
    lines = [
        json.dumps(good).encode(),
        not_utf8,
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps(_record("lines-good-image", "image", "./media/good_1.png")).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return [
        BadInputRow("lines_good_video", "good", path.name, 0, good["path"], "a good video line"),
        BadInputRow(
            "lines_not_utf8", "encoding", path.name, 1, "./media/good_1.mp4", "a line with bytes 0xff 0xfe"
        ),
        BadInputRow("lines_nested", "encoding", path.name, 2, None, "a line of 100,000 nested arrays"),
        BadInputRow("lines_good_image", "good", path.name, 3, "./media/good_1.png", "a good image line"),
    ]


def _write_unreadable_files(root: Path) -> list[BadInputRow]:
    rows = [
        _record("file-good", "video", "./media/good_0.mp4"),
        _record("file-bad", "video", "./media/good_1.mp4"),
    ]
    text = json.dumps(rows, indent=1).encode().replace(b"What colour", b"What colo\xffur", 1)
    (root / "not_utf8.json").write_bytes(text)
    (root / "top_level_object.json").write_text(json.dumps({"annotations": rows}, indent=1) + "\n")
    (root / "top_level_number.json").write_text("42\n")
    return [
        BadInputRow("file_not_utf8", "file", "not_utf8.json", None, None, "a JSON array with a byte 0xff"),
        BadInputRow(
            "file_object", "file", "top_level_object.json", None, None, "one JSON object, not an array"
        ),
        BadInputRow("file_number", "file", "top_level_number.json", None, None, "one JSON number"),
    ]
