"""The bad-input corpus (``marc bad-inputs``) through the loader, the manifest stage, media probing, frame
sampling and shot segmentation, mixed with good rows.

Every bad row ends quarantined with a reason code and a message naming its file and row (the loader), or
its media file (probing, sampling, shots); a file that cannot be read at all is refused with an error
naming it; every good row comes through; and, traced with strace, loading and probing open nothing outside
the project, the data root and the Python install.
"""

from __future__ import annotations

import json
import os
import re
import sys
import sysconfig
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest
import torch
from file_opens import traced_opens
from tests_support import REPO_ROOT, small_tiny_params, write_params

from marc_ops.config import ProjectPaths
from marc_ops.data.stages import train_subset_stage, videor1_manifest_stage, videor1_source_stage
from marc_ops.data.synthetic.bad_inputs import CASES_FILE, BadInputCorpus, generate_bad_inputs
from marc_ops.data.videor1 import DataFileError, LoadedManifest, load_many, load_videor1
from marc_ops.train.dataset import usable_rows
from marc_ops.video import (
    ImageLoadError,
    VideoConfig,
    VideoDecodeError,
    load_image,
    probe_video,
    sample_frames,
)
from marc_ops.video import sampling as video_sampling
from marc_ops.vmr import shots
from marc_ops.vmr.stages import shot_segments_stage

# Rows the loader quarantines: case -> reason code.
LOADER_QUARANTINE = {
    "zero_length_mp4": "empty_media",
    "options_10000": "too_many_options",
    "missing_fields": "missing_field",
    "bad_evidence": "bad_type",
    "duplicate_id": "duplicate_problem_id",
    "escape_dotdot": "path_escapes_root",
    "escape_deep": "path_escapes_root",
    "escape_absolute": "path_escapes_root",
    "escape_symlink": "path_escapes_root",
    "lines_not_utf8": "not_utf8",
    "lines_nested": "malformed_json",
}
# Rows the loader keeps whose media cannot be opened: case -> (error, words of its message).
PROBE_QUARANTINE = {
    "truncated_mp4": (VideoDecodeError, "cannot open the container"),
    "image_named_mp4": (VideoDecodeError, "the file is a still image (piped jpeg sequence), not a video"),
    "video_named_jpg": (ImageLoadError, "not a readable image"),
    "image_bomb": (ImageLoadError, "too large to decode"),
    "image_huge": (ImageLoadError, "image is 9000x9000 (81.0 megapixels), above the 35.7-megapixel limit"),
}
# Opens (its index is intact), fails when its frames are sampled: the frames past the cut are gone.
SAMPLING_QUARANTINE = {
    "truncated_tail_mp4": (VideoDecodeError, "container reports 32 frames but frame 24 could not be decoded"),
}
# Legal but unusual videos: case -> (source frames sampled at 1 fps, shape of a resized frame).
UNUSUAL_VIDEOS = {
    "one_frame": ([0], (56, 56, 3)),
    "claims_hours": ([0, 1, 2, 3, 4, 5, 6, 7], (56, 56, 3)),
    "frame_8k": ([0], (224, 420, 3)),
    "grayscale": ([0, 8], (56, 56, 3)),
    "ten_bit": ([0, 8], (56, 56, 3)),
}
# Rows that come through everything (extra fields are ignored).
GOOD = [
    "good_video",
    "good_image",
    "extra_fields",
    "good_video_2",
    "good_image_2",
    "lines_good_video",
    "lines_good_image",
]
# Files refused whole: case -> words of the DataFileError.
FILE_ERRORS = {
    "file_not_utf8": "not UTF-8 (byte 0xff: invalid start byte at byte offset 57, line 4)",
    "file_object": "holds one JSON object; expected an array of records or JSON lines",
    "file_number": "holds one JSON number; expected an array of records or JSON lines",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> BadInputCorpus:
    return generate_bad_inputs(tmp_path_factory.mktemp("bad_inputs").resolve())


@pytest.fixture(scope="module")
def loaded(corpus: BadInputCorpus) -> LoadedManifest:
    return load_many(corpus.annotation_files(), corpus.data_root)


def _kept(loaded: LoadedManifest, corpus: BadInputCorpus, case: str) -> dict:
    row = corpus.row(case)
    (kept,) = loaded.rows.filter(
        (pl.col("source_file") == str(corpus.data_root / row.file)) & (pl.col("source_row") == row.row)
    ).iter_rows(named=True)
    return kept


def test_every_case_has_one_expected_outcome(corpus: BadInputCorpus) -> None:
    tables = [LOADER_QUARANTINE, PROBE_QUARANTINE, SAMPLING_QUARANTINE, UNUSUAL_VIDEOS, GOOD, FILE_ERRORS]
    expected = [case for table in tables for case in table]
    assert sorted(expected) == sorted(row.case for row in corpus.rows)
    assert len(set(expected)) == len(expected)
    assert (corpus.data_root.parent / CASES_FILE).is_file()


def test_the_media_are_what_they_claim_to_be(corpus: BadInputCorpus) -> None:
    media = corpus.data_root / "media"
    claims = probe_video(media / "claims_hours.mp4", "pyav")
    assert claims.num_frames == 8 and claims.duration_s == pytest.approx(10_000 * 3600)
    frame_8k = probe_video(media / "frame_8k.mp4", "pyav")
    assert (frame_8k.num_frames, frame_8k.width, frame_8k.height) == (1, 7680, 4320)
    for name, pix_fmt in (("grayscale.mp4", "gray"), ("ten_bit.mp4", "yuv420p10le")):
        with av.open(str(media / name)) as container:
            assert container.streams.video[0].codec_context.pix_fmt == pix_fmt
    assert (media / "empty.mp4").stat().st_size == 0
    assert (media / "image_named.mp4").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    assert (media / "video_named.jpg").read_bytes()[4:8] == b"ftyp"  # an mp4
    assert (media / "outside_link.mp4").resolve() == corpus.outside / "secret.mp4"


def test_loader_quarantines_each_bad_row_naming_file_and_row(
    corpus: BadInputCorpus, loaded: LoadedManifest
) -> None:
    quarantine = {
        (Path(f).name, r): (code, reason)
        for f, r, code, reason in loaded.quarantine.select(
            "source_file", "source_row", "reason_code", "reason"
        ).iter_rows()
    }
    for case, code in LOADER_QUARANTINE.items():
        row = corpus.row(case)
        got_code, reason = quarantine.pop((row.file, row.row))
        assert got_code == code, case
        assert reason.startswith(f"{row.file} row {row.row}: "), reason
        if code == "path_escapes_root":
            assert repr(row.media) in reason, reason
    assert not quarantine, f"quarantined beyond the expected cases: {quarantine}"
    reasons = dict(loaded.quarantine.select("reason_code", "reason").iter_rows())
    assert "already used at annotations.json row 0" in reasons["duplicate_problem_id"]
    assert str(corpus.data_root / "media" / "empty.mp4") in reasons["empty_media"]
    assert "file offset 377" in reasons["not_utf8"]
    symlink = loaded.quarantine.filter(pl.col("problem_id") == "bad-symlink")["reason"].item()
    assert str(corpus.outside / "secret.mp4") in symlink and "through a symlink" in symlink


def test_loader_keeps_every_other_row_whole(corpus: BadInputCorpus, loaded: LoadedManifest) -> None:
    kept_cases = [*GOOD, *PROBE_QUARANTINE, *SAMPLING_QUARANTINE, *UNUSUAL_VIDEOS]
    assert loaded.rows.height == len(kept_cases)
    for case in kept_cases:
        row = _kept(loaded, corpus, case)
        assert Path(row["media_path"]).is_relative_to(corpus.data_root)
        assert row["answer"] == "A" and len(row["options"]) == 3
    assert "rating" not in loaded.rows.columns


@pytest.mark.parametrize("case", sorted(FILE_ERRORS))
def test_a_file_that_cannot_be_read_whole_is_refused_naming_it(corpus: BadInputCorpus, case: str) -> None:
    path = corpus.data_root / corpus.row(case).file
    with pytest.raises(DataFileError, match=re.escape(FILE_ERRORS[case])) as raised:
        load_videor1(path, corpus.data_root)
    assert raised.value.path == path and str(path) in str(raised.value)
    if case == "file_not_utf8":
        assert path.read_bytes()[57] == 0xFF


def test_media_probing_quarantines_unreadable_media_by_row(
    corpus: BadInputCorpus, loaded: LoadedManifest
) -> None:
    kept, skipped = usable_rows(loaded.rows)
    by_id = {s.problem_id: s.reason for s in skipped}
    assert sorted(by_id) == sorted(f"bad-{case}" for case in PROBE_QUARANTINE)
    for case, (error, words) in PROBE_QUARANTINE.items():
        row = _kept(loaded, corpus, case)
        assert row["media_path"] in by_id[row["problem_id"]]
        assert words in by_id[row["problem_id"]], by_id[row["problem_id"]]
        read = load_image if row["data_type"] == "image" else probe_video
        with pytest.raises(error) as raised:
            read(row["media_path"])
        assert str(raised.value.path) == row["media_path"]
    assert len(kept) == len(GOOD) + len(SAMPLING_QUARANTINE) + len(UNUSUAL_VIDEOS)


def test_frame_sampling_over_the_videos_that_open(corpus: BadInputCorpus, loaded: LoadedManifest) -> None:
    config = VideoConfig()  # "auto": decord, PyAV where decord fails
    for case, (error, words) in SAMPLING_QUARANTINE.items():
        path = _kept(loaded, corpus, case)["media_path"]
        with pytest.raises(error, match=re.escape(words)) as raised:
            sample_frames(path, config)
        assert str(raised.value.path) == path
    sampled = {
        case: sample_frames(_kept(loaded, corpus, case)["media_path"], config) for case in UNUSUAL_VIDEOS
    }
    for case, (indices, shape) in UNUSUAL_VIDEOS.items():
        assert sampled[case].indices.tolist() == indices, case
        assert sampled[case].frames.shape == (len(indices), *shape), case
    # 8 frames 4.5 million seconds apart: eight decoded frames, stamped where the header puts them.
    np.testing.assert_allclose(sampled["claims_hours"].timestamps, np.arange(8) * 4_500_000.0)
    grey = sampled["grayscale"].frames.astype(np.int16)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 0] - grey[..., 2]).max() <= 1
    assert np.abs(sampled["ten_bit"].frames.reshape(-1, 3).mean(0) - (100, 150, 200)).max() < 4
    # top-left and bottom-right pixels of the 8K gradient: red rises rightwards, green downwards
    corners = sampled["frame_8k"].frames[0][[0, -1], [0, -1]].astype(np.int16)
    assert corners[0, 0] < 8 and corners[0, 1] < 8 and corners[1, 0] > 247 and corners[1, 1] > 247
    for case in ("good_video", "good_video_2", "lines_good_video"):
        assert len(sample_frames(_kept(loaded, corpus, case)["media_path"], config).indices) == 3


class _ChunkRecorder:
    """A reader that reports `frame_size` and records the chunk sizes asked for, yielding small frames."""

    def __init__(self, frame_size: tuple[int, int]) -> None:
        self.size, self.chunks = frame_size, []

    def frame_size(self) -> tuple[int, int]:
        return self.size

    def read(self, indices: np.ndarray, chunk_size: int):
        self.chunks.append(chunk_size)
        for start in range(0, len(indices), chunk_size):
            yield np.zeros((len(indices[start : start + chunk_size]), 56, 56, 3), np.uint8)


@pytest.mark.parametrize(
    ("frame_size", "chunk"), [((480, 640), 16), ((1080, 1920), 16), ((2160, 3840), 4), ((4320, 7680), 1)]
)
def test_large_frames_are_decoded_and_resized_a_few_at_a_time(
    frame_size: tuple[int, int], chunk: int
) -> None:
    reader = _ChunkRecorder(frame_size)
    frames = video_sampling.read_resized(reader, np.arange(20), VideoConfig())
    assert reader.chunks == [chunk] and frames.shape == (20, 56, 56, 3)


def test_frames_above_the_pixel_limit_are_refused_naming_the_file(
    corpus: BadInputCorpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marc_ops.video import decode

    monkeypatch.setattr(decode, "MAX_SOURCE_PIXELS", 3840 * 2160)
    path = corpus.data_root / "media" / "frame_8k.mp4"
    for backend in ("auto", "pyav"):
        with pytest.raises(
            VideoDecodeError, match=r"frames are 7680x4320 \(33.2 megapixels\), above the 8.3"
        ) as raised:
            sample_frames(path, VideoConfig(backend=backend))
        assert raised.value.path == path


def test_a_stream_that_declares_no_frame_size_is_refused_naming_the_file(
    corpus: BadInputCorpus, monkeypatch: pytest.MonkeyPatch
) -> None:
    from marc_ops.video import decode

    monkeypatch.setattr(decode._PyAVReader, "frame_size", lambda self: (0, 0))
    path = corpus.data_root / "media" / "good_0.mp4"
    with pytest.raises(VideoDecodeError, match=r"declares a frame size of 0x0") as raised:
        sample_frames(path, VideoConfig(backend="pyav"))
    assert raised.value.path == path


def _project(tmp_path: Path, corpus: BadInputCorpus, annotation_files: list[str]) -> ProjectPaths:
    params = small_tiny_params()
    params["data"].update(
        source="videor1",
        data_root=str(corpus.data_root),
        annotation_files=annotation_files,
        eval_dir=str(tmp_path / "no-benchmarks"),
        train_size=len(GOOD) + len(PROBE_QUARANTINE) + len(SAMPLING_QUARANTINE) + len(UNUSUAL_VIDEOS),
    )
    params["vmr"]["shot_workers"] = 1
    write_params(tmp_path, params)
    return ProjectPaths(tmp_path)


class _NoCuts(torch.nn.Module):
    """TransNetV2's interface, scoring no frame as a cut: (B, 100, 27, 48, 3) uint8 -> ((B, 100, 1) logits,)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor]:
        return (torch.full((*frames.shape[:2], 1), -10.0),)


def test_manifest_and_shot_stages_quarantine_and_finish(
    corpus: BadInputCorpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _project(tmp_path, corpus, [p.name for p in corpus.annotation_files()])
    params = paths.params()
    videor1_source_stage(paths, params)
    manifest = videor1_manifest_stage(paths, params)
    quarantine = pl.read_parquet(manifest.outputs["quarantine"])
    assert sorted(quarantine["reason_code"]) == sorted(LOADER_QUARANTINE.values())
    assert manifest.metadata == {"rows": params.data.train_size, "quarantined": len(LOADER_QUARANTINE)}
    train_subset_stage(paths, params)

    # The network is a stand-in (TransNetV2 runs ~100 frames/s here, a second per short video); the
    # decoding, the bookkeeping and the quarantine are the stage's own.
    monkeypatch.setattr(shots, "load_transnetv2", lambda device: _NoCuts())
    result = shot_segments_stage(paths, params)
    failed = pl.read_parquet(paths.asset("shot_segments") / "quarantine.parquet")
    media = corpus.data_root / "media"
    assert sorted(failed["media_path"]) == sorted(
        str(media / n) for n in ("image_named.mp4", "truncated.mp4")
    )
    for path, reason in failed.select("media_path", "reason").iter_rows():
        assert reason.startswith(f"{path}: "), reason
    videos = dict(pl.read_parquet(result.outputs["videos"]).select("media_path", "num_frames").iter_rows())
    assert videos == {
        str(media / "good_0.mp4"): 24,
        str(media / "good_1.mp4"): 24,
        str(media / "one_frame.mp4"): 1,
        str(media / "claims_hours.mp4"): 8,
        str(media / "frame_8k.mp4"): 1,
        str(media / "grayscale.mp4"): 16,
        str(media / "ten_bit.mp4"): 16,
        # the frames before the cut: shots trust what decodes (sampling refuses the file, see above)
        str(media / "truncated_tail.mp4"): 18,
    }


def test_manifest_stage_names_an_unreadable_annotation_file(corpus: BadInputCorpus, tmp_path: Path) -> None:
    paths = _project(tmp_path, corpus, ["annotations.json", "not_utf8.json"])
    videor1_source_stage(paths, paths.params())
    with pytest.raises(DataFileError, match="not UTF-8") as raised:
        videor1_manifest_stage(paths, paths.params())
    assert raised.value.path == corpus.data_root / "not_utf8.json"


# --- nothing outside the roots is opened ------------------------------------------------------

WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT")
# What any Python process here opens whatever its data: the dynamic linker's cache and search path
# (it probes for libcuda.so.1 in every library folder), kernel interfaces, OpenSSL's config and the
# locale alias file (both symlinks into /etc), time zones. Matched on the path as opened.
SYSTEM_PATHS = (
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/localtime",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/share/locale",
    "/usr/share/zoneinfo",
    "/proc",
    "/sys",
    "/dev",
)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def test_loading_and_probing_open_nothing_outside_the_roots(corpus: BadInputCorpus, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    log = tmp_path / "strace.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        # Temporary files (dill writes one when imported) and polars' spill folder go to the scratch folder.
        "TMPDIR": str(scratch),
        "POLARS_OOC_SPILL_DIR": str(scratch / "spill"),
        "HOME": str(scratch),
        # Importing torch._dynamo names inductor's cache folder with getpass.getuser(), which reads /etc/passwd
        # when these are unset: the interpreter's read, not the data's, and it would hide the one looked for.
        "USER": "marc",
        "LOGNAME": "marc",
        "OMP_NUM_THREADS": "1",
    }
    files = [os.path.realpath(p) for p in corpus.annotation_files()]
    done, opens = traced_opens(
        REPO_ROOT / "tests" / "bad_input_trace.py",
        [str(corpus.data_root), *files],
        log,
        cwd=scratch,
        env=env,
        timeout=300,
        seccomp=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    python = sorted(
        {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *sysconfig.get_paths().values())}
    )
    roots = [os.path.realpath(p) for p in (REPO_ROOT, corpus.data_root, scratch)] + python
    opened, outside, written = set(), set(), set()
    for opened_path, flags in opens:
        # Where the open lands, symlinks followed: a link inside the data root to a file outside it is outside.
        literal = os.path.normpath(os.path.join(scratch, opened_path))
        path = os.path.realpath(literal)
        opened.add(path)
        if not (_under(path, roots) or _under(literal, list(SYSTEM_PATHS))):
            outside.add(path)
        if any(flag in flags for flag in WRITE_FLAGS) and not _under(path, [str(scratch), "/dev"]):
            written.add(path)
    assert not outside, f"opened outside the project, data root and Python: {sorted(outside)[:10]}"
    assert not written, f"opened for writing outside the scratch folder: {sorted(written)[:10]}"
    assert "/etc/passwd" not in opened and str(corpus.outside / "secret.mp4") not in opened
    # The trace sees what it is meant to: the annotation files and the media the kept rows name.
    media = os.path.realpath(corpus.data_root / "media")
    assert {*files, f"{media}/good_0.mp4", f"{media}/frame_8k.mp4", f"{media}/bomb.png"} <= opened
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "kept": len(GOOD) + len(PROBE_QUARANTINE) + len(SAMPLING_QUARANTINE) + len(UNUSUAL_VIDEOS),
        "quarantined": len(LOADER_QUARANTINE),
        "media_errors": len(PROBE_QUARANTINE) + len(SAMPLING_QUARANTINE),
    }
