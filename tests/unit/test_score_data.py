"""SCORE's curriculum data: the pseudo-video builder (SCORE.md invariant 14), the caption loaders'
quarantine, the synthetic source's training-only samples and scripted captions, and the stage-1 writer."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from pydantic import ValidationError

from marc_ops.config.score import ScoreDataConfig
from marc_ops.config.synthetic import BACKGROUNDS
from marc_ops.data.score import (
    CAPTION_QUARANTINE_SCHEMA,
    CAPTION_SCHEMA,
    PseudoVideoFiles,
    load_caption_file,
    load_pseudo_videos,
    make_pseudo_video,
    pseudo_video_samples,
    square_frame,
    stage1_pool,
    stage2_videos,
    uniform_even_frame_indices,
    video_caption_samples,
    write_pseudo_videos,
)
from marc_ops.data.score import store as score_module
from marc_ops.data.synthetic import CorpusFiles, SyntheticConfig, generate_corpus
from marc_ops.data.videor1 import DataFileError

# Three training videos of 2-3 shots, two training images, and held-out media that must never be used.
CORPUS = SyntheticConfig(
    n_train_videos=3,
    n_eval_videos=2,
    n_train_images=2,
    n_eval_images=1,
    width=128,
    height=64,
    shots_per_video_min=2,
    shots_per_video_max=3,
    shot_seconds_min=1.0,
    shot_seconds_max=2.5,
)
TINY = ScoreDataConfig(stage1_size=6, frame_size=56, stage2_max_frames=16)


def pool_of(n: int, shape: tuple[int, int] = (28, 28)) -> tuple[list[np.ndarray], list[str]]:
    """n images, image i filled with the value 10 * (i + 1), captioned f"caption {i}."."""
    images = [np.full((*shape, 3), 10 * (i + 1), dtype=np.uint8) for i in range(n)]
    return images, [f"caption {i}." for i in range(n)]


# ---------------------------------------------------------------------------------------------- invariant 14


def test_pseudo_video_invariant_14() -> None:
    images, captions = pool_of(6)
    config = ScoreDataConfig(frame_size=28)
    n_seen: Counter[int] = Counter()
    repeats_seen: Counter[int] = Counter()
    for seed in range(300):
        video = make_pseudo_video(images, captions, np.random.default_rng(seed), config)
        n = len(video.drawn)
        raw = sum(video.repeats)
        assert 2 <= n <= 4 and len(set(video.drawn)) == n
        assert len(video.repeats) == n and all(3 <= r <= 6 for r in video.repeats)
        assert 6 <= raw <= 24
        frames = video.frames
        assert frames.shape == (raw + raw % 2, 28, 28, 3) and frames.dtype == np.uint8
        assert len(frames) % 2 == 0
        # image j fills r_j consecutive frames, in draw order; an odd count repeats the last frame once
        expected = np.repeat(np.arange(n), video.repeats)
        expected = np.append(expected, expected[-1:]) if raw % 2 else expected
        np.testing.assert_array_equal(video.frame_image, expected)
        for frame, image in zip(frames, video.frame_image, strict=True):
            np.testing.assert_array_equal(frame, images[video.drawn[image]])
        assert video.caption == " ".join(captions[i] for i in video.drawn)
        n_seen[n] += 1
        repeats_seen.update(video.repeats)
    assert set(n_seen) == {2, 3, 4} and set(repeats_seen) == {3, 4, 5, 6}


def test_pseudo_video_same_seed_same_sample() -> None:
    images, captions = pool_of(6)
    config = ScoreDataConfig(frame_size=28)
    first = make_pseudo_video(images, captions, np.random.default_rng(7), config)
    again = make_pseudo_video(images, captions, np.random.default_rng(7), config)
    np.testing.assert_array_equal(first.frames, again.frames)
    assert (first.caption, first.drawn, first.repeats) == (again.caption, again.drawn, again.repeats)
    others = [make_pseudo_video(images, captions, np.random.default_rng(s), config) for s in range(8, 16)]
    assert any((o.drawn, o.repeats) != (first.drawn, first.repeats) for o in others)


def test_pseudo_video_needs_enough_images() -> None:
    images, captions = pool_of(3)
    with pytest.raises(ValueError, match="up to 4 distinct images and the pool has 3"):
        make_pseudo_video(images, captions, np.random.default_rng(0), ScoreDataConfig(frame_size=28))


def test_square_centre_crop_and_one_size() -> None:
    wide = np.zeros((28, 56, 3), dtype=np.uint8)
    wide[:, :14] = (255, 0, 0)
    wide[:, 14:42] = (0, 255, 0)
    wide[:, 42:] = (0, 0, 255)
    square = square_frame(wide, 28)
    assert square.shape == (28, 28, 3)
    assert (square == np.array([0, 255, 0], dtype=np.uint8)).all()
    tall = np.zeros((90, 30, 3), dtype=np.uint8)
    tall[30:60] = 200
    assert (square_frame(tall, 28) == 200).all()
    # images of any shape come out at one size in a pseudo-video
    images = [
        np.full(shape, 50 * i, dtype=np.uint8)
        for i, shape in enumerate([(30, 50, 3), (80, 40, 3), (64, 64, 3), (17, 99, 3)])
    ]
    video = make_pseudo_video(images, list("abcd"), np.random.default_rng(1), ScoreDataConfig(frame_size=56))
    assert video.frames.shape[1:] == (56, 56, 3)


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"frame_size": 100}, "multiple of 28.*use 112"),
        ({"stage2_max_frames": 127}, "must be even.*use 126"),
        ({"images_per_video": (4, 2)}, "images_per_video must be"),
        ({"repeats_per_image": (0, 6)}, "repeats_per_image must be"),
        ({"source": "files", "stage1_captions": "a.jsonl"}, "set stage2_captions"),
        ({"stage1_captions": "a.jsonl"}, "remove stage1_captions or set source to 'files'"),
        ({"prompt": " "}, "prompt is empty"),
        ({"stage1_sizes": 5}, "Extra inputs"),
    ],
)
def test_config_errors_say_what_to_change(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScoreDataConfig(**fields)


def test_config_paper_defaults_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ScoreDataConfig()
    assert defaults.images_per_video == (2, 4) and defaults.repeats_per_image == (3, 6)
    assert (defaults.stage1_size, defaults.stage2_max_videos, defaults.stage2_max_frames) == (
        10_000,
        57_000,
        128,
    )
    assert defaults.frame_size == 448 and defaults.prompt == "Describe this video in detail."
    monkeypatch.setenv("LLAVA_OV", str(tmp_path / "ov"))
    config = ScoreDataConfig(
        source="files",
        stage1_captions="${LLAVA_OV}/captions.jsonl",
        stage2_captions="video/captions.jsonl",
        stage2_media_root="${VIDEOS:-video/media}",
    )
    assert config.stage1_files(tmp_path) == (tmp_path / "ov" / "captions.jsonl", tmp_path / "ov")
    assert config.stage2_files(tmp_path) == (
        tmp_path / "video" / "captions.jsonl",
        tmp_path / "video" / "media",
    )
    with pytest.raises(ValidationError, match="frozen"):
        config.seed = 3  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- caption files


def write_png(path: Path, value: int, shape: tuple[int, int] = (32, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), value, dtype=np.uint8)).save(path)


def test_caption_file_quarantines_every_bad_row_class(tmp_path: Path) -> None:
    media = tmp_path / "media"
    for name, value in (("a.png", 10), ("b.png", 20), ("c.png", 30)):
        write_png(media / name, value)
    lines = [
        json.dumps({"image": "a.png", "caption": "  A red circle. "}),  # 0 good (caption stripped)
        b"\xff\xfe not utf-8",  # 1
        "{not json",  # 2
        json.dumps(["a.png", "caption"]),  # 3
        json.dumps({"caption": "no image"}),  # 4
        json.dumps({"image": "b.png"}),  # 5
        json.dumps({"image": "b.png", "caption": 7}),  # 6
        json.dumps({"image": "b.png", "caption": "   "}),  # 7
        json.dumps({"image": "missing.png", "caption": "gone"}),  # 8
        json.dumps({"image": "a.png", "caption": "again"}),  # 9
        "",  # 10 blank: skipped
        json.dumps({"image": "b.png", "caption": "Two squares.", "id": 4}),  # 11 good
        json.dumps({"video": "c.mp4", "caption": "a video row"}),  # 12
        json.dumps({"image": "c.png", "caption": "Ünïcode\u2028caption"}),  # 13 good
        json.dumps({"image": "../a.png", "caption": "outside the media root"}),  # 14
    ]
    write_png(tmp_path / "a.png", 40)
    caption_file = tmp_path / "stage1.jsonl"
    caption_file.write_bytes(
        b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n"
    )

    loaded = load_caption_file(caption_file, media, "image")

    assert loaded.rows.schema == pl.Schema(CAPTION_SCHEMA)
    assert loaded.quarantine.schema == pl.Schema(CAPTION_QUARANTINE_SCHEMA)
    assert loaded.rows.select("media", "caption", "source_row").rows() == [
        ("a.png", "A red circle.", 0),
        ("b.png", "Two squares.", 11),
        ("c.png", "Ünïcode\u2028caption", 13),
    ]
    assert loaded.rows["media_path"].to_list() == [str(media / n) for n in ("a.png", "b.png", "c.png")]
    assert dict(loaded.quarantine.select("source_row", "reason_code").rows()) == {
        1: "not_utf8",
        2: "malformed_json",
        3: "not_an_object",
        4: "missing_field",
        5: "missing_field",
        6: "bad_type",
        7: "empty_caption",
        8: "missing_media",
        9: "duplicate_media",
        12: "missing_field",
        14: "path_escapes_root",
    }
    assert set(loaded.quarantine["source_file"]) == {str(caption_file)}
    for row, reason in loaded.quarantine.select("source_row", "reason").rows():
        assert reason.startswith(f"stage1.jsonl row {row}: ")
    reasons = dict(loaded.quarantine.select("source_row", "reason").rows())
    assert "already captioned at row 0" in reasons[9]
    assert "a file of the other stage?" in reasons[12]
    assert str(media / "missing.png") in reasons[8]
    assert loaded.quarantine.filter(pl.col("source_row") == 9)["media"].item() == "a.png"


def test_video_caption_file_and_unchecked_media(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "one.mp4").write_bytes(b"x")
    caption_file = tmp_path / "stage2.jsonl"
    caption_file.write_text(
        json.dumps({"video": "clips/one.mp4", "caption": "A dense caption."})
        + "\n"
        + json.dumps({"video": "clips/two.mp4", "caption": "Not on disk."})
        + "\n"
    )
    checked = load_caption_file(caption_file, tmp_path, "video")
    assert checked.rows["media"].to_list() == ["clips/one.mp4"]
    assert checked.quarantine["reason_code"].to_list() == ["missing_media"]
    unchecked = load_caption_file(caption_file, tmp_path, "video", check_media=False)
    assert unchecked.rows.height == 2 and unchecked.quarantine.height == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "caption file not found"),
        ("dir", "cannot be read"),
        (b"", "caption file is empty"),
        (b" \n\n", "caption file is empty"),
        (b'[{"image": "a.png", "caption": "x"}]', "one JSON array"),
    ],
)
def test_unreadable_caption_file_raises_naming_it(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "captions.jsonl"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as raised:
        load_caption_file(path, tmp_path)
    assert str(path) in str(raised.value) and raised.value.path == path


# ---------------------------------------------------------------------------------------------- stage 2 frames


def test_uniform_even_frame_indices() -> None:
    np.testing.assert_array_equal(uniform_even_frame_indices(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(uniform_even_frame_indices(5, 128), [0, 1, 2, 3, 4, 4])
    np.testing.assert_array_equal(uniform_even_frame_indices(1, 128), [0, 0])
    many = uniform_even_frame_indices(1000, 128)
    assert len(many) == 128 and many[0] == 0 and many[-1] == 999 and (np.diff(many) > 0).all()
    with pytest.raises(ValueError, match="at least one frame"):
        uniform_even_frame_indices(0, 128)


# ---------------------------------------------------------------------------------------------- synthetic source


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusFiles:
    return generate_corpus(CORPUS, tmp_path_factory.mktemp("score") / "corpus")


def scripted(corpus: CorpusFiles) -> list[dict]:
    return json.loads(corpus.captions_json.read_text())


def test_synthetic_stage1_pool_is_training_keyframes_and_images(corpus: CorpusFiles) -> None:
    pool, quarantine = stage1_pool(TINY, corpus.root)
    train = [entry for entry in scripted(corpus) if entry["split"] == "train"]
    assert quarantine.height == 0
    assert pool.captions == tuple(entry["caption"] for entry in train)
    assert not any(source.startswith("./eval/") for source in pool.sources)
    shots = json.loads(corpus.shots_json.read_text())
    for entry, source, image in zip(train, pool.sources, pool.images, strict=True):
        if entry["span"] is None:
            assert source == entry["path"] and image.shape == (CORPUS.height, CORPUS.width, 3)
            continue
        first, last = entry["span"]
        assert source == f"{entry['path']}#frame={(first + last) // 2}"
        # the keyframe shows its own shot: its background is the scripted scene's
        shot = shots[entry["path"]]["spans"].index([first, last])
        background = shots[entry["path"]]["scenes"][shot]["background"]
        median = np.median(image.reshape(-1, 3), axis=0)
        assert np.abs(median - BACKGROUNDS[background]).max() <= 16, (source, background, median)


def test_synthetic_stage1_samples_use_training_split_and_scripted_captions(corpus: CorpusFiles) -> None:
    caption_of = {entry["path"]: entry["caption"] for entry in scripted(corpus) if entry["span"] is None}
    caption_of.update(
        {
            f"{entry['path']}#frame={(entry['span'][0] + entry['span'][1]) // 2}": entry["caption"]
            for entry in scripted(corpus)
            if entry["span"] is not None
        }
    )
    samples = list(pseudo_video_samples(TINY, corpus.root))
    assert [s.sample_id for s in samples] == [f"pseudo-{i:06d}" for i in range(6)]
    for sample in samples:
        assert all(not source.startswith("./eval/") for source in sample.sources)
        assert sample.video.caption == " ".join(caption_of[source] for source in sample.sources)
        assert sample.video.frames.shape[1:] == (56, 56, 3) and len(sample.video.frames) % 2 == 0
        assert sample.prompt == "Describe this video in detail."
    again = list(pseudo_video_samples(TINY, corpus.root))
    for first, second in zip(samples, again, strict=True):
        np.testing.assert_array_equal(first.video.frames, second.video.frames)


def test_synthetic_stage2_is_training_videos_with_shot_captions_in_order(corpus: CorpusFiles) -> None:
    shots = json.loads(corpus.shots_json.read_text())
    train_videos = {path: truth for path, truth in shots.items() if not path.startswith("./eval/")}
    samples = list(video_caption_samples(TINY, corpus.root))
    assert [s.source for s in samples] == list(train_videos)
    for sample in samples:
        truth = train_videos[sample.source]
        assert sample.caption == " ".join(truth["descriptions"])
        assert sample.video == (corpus.root / sample.source).resolve() and sample.video.is_file()
        indices = sample.frame_indices(truth["n_frames"])
        assert len(indices) == 16 and indices[0] == 0 and indices[-1] == truth["n_frames"] - 1
    assert stage2_videos(TINY.model_copy(update={"stage2_max_videos": 2}), corpus.root).rows.height == 2


# ---------------------------------------------------------------------------------------------- files source


def test_files_source_builds_both_stages(tmp_path: Path) -> None:
    for i in range(5):
        write_png(tmp_path / "ov" / f"{i}.png", 40 * i, shape=(30 + i, 60))
    (tmp_path / "ov" / "captions.jsonl").write_text(
        "".join(json.dumps({"image": f"{i}.png", "caption": f"Image {i}."}) + "\n" for i in range(6))
    )
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "videos" / "captions.jsonl").write_text(
        json.dumps({"video": "a.mp4", "caption": "Video a."})
        + "\n"
        + json.dumps({"video": "b.mp4", "caption": "B."})
    )
    config = ScoreDataConfig(
        source="files",
        stage1_captions="ov/captions.jsonl",
        stage2_captions="videos/captions.jsonl",
        stage1_size=3,
        frame_size=28,
    )
    pool, quarantine = stage1_pool(config, tmp_path)
    assert len(pool.images) == 5 and quarantine["reason_code"].to_list() == ["missing_media"]
    for sample in pseudo_video_samples(config, tmp_path):
        assert sample.video.caption == " ".join(
            f"Image {source.removesuffix('.png')}." for source in sample.sources
        )
        for j, source in enumerate(sample.sources):
            assert (sample.video.images[j] == 40 * int(source.removesuffix(".png"))).all()
    videos = list(video_caption_samples(config, tmp_path))
    assert [(v.source, v.caption) for v in videos] == [("a.mp4", "Video a."), ("b.mp4", "B.")]


# ---------------------------------------------------------------------------------------------- writer


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_writer_round_trips_and_is_byte_identical(corpus: CorpusFiles, tmp_path: Path) -> None:
    files = write_pseudo_videos(TINY, corpus.root, tmp_path / "first")
    assert files == PseudoVideoFiles.under(tmp_path / "first")
    index = pl.read_parquet(files.index)
    assert index["sample_id"].to_list() == [f"pseudo-{i:06d}" for i in range(6)]
    built = list(pseudo_video_samples(TINY, corpus.root))
    loaded = list(load_pseudo_videos(files.root))
    assert index["n_frames"].to_list() == [len(s.video.frames) for s in built]
    for made, read in zip(built, loaded, strict=True):
        assert (read.sample_id, read.sources, read.prompt) == (made.sample_id, made.sources, made.prompt)
        assert (read.video.caption, read.video.drawn, read.video.repeats) == (
            made.video.caption,
            made.video.drawn,
            made.video.repeats,
        )
        np.testing.assert_array_equal(read.video.frames, made.video.frames)
    assert pl.read_parquet(files.quarantine).height == 0
    assert not list(tmp_path.glob(".first.*"))

    second = write_pseudo_videos(TINY, corpus.root, tmp_path / "second")
    assert folder_bytes(files.root) == folder_bytes(second.root)
    # written again from the same config: left as it is
    before = {p: p.stat().st_mtime_ns for p in files.root.rglob("*")}
    write_pseudo_videos(TINY, corpus.root, files.root)
    assert {p: p.stat().st_mtime_ns for p in files.root.rglob("*")} == before
    # another stage-1 config rewrites it; a stage-2 field does not count
    assert write_pseudo_videos(TINY.model_copy(update={"stage2_max_frames": 8}), corpus.root, files.root)
    assert {p: p.stat().st_mtime_ns for p in files.root.rglob("*")} == before
    write_pseudo_videos(TINY.model_copy(update={"seed": 1}), corpus.root, files.root)
    assert json.loads(files.record.read_text())["config"]["seed"] == 1


def test_writer_resumes_an_interrupted_run(
    corpus: CorpusFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Interrupted(Exception):
        pass

    write_npz = score_module._write_npz
    calls: list[str] = []

    def fail_on_the_third(path: Path, arrays: dict[str, np.ndarray]) -> None:
        calls.append(path.name)
        if len(calls) == 3:
            raise Interrupted
        write_npz(path, arrays)

    def record(path: Path, arrays: dict[str, np.ndarray]) -> None:
        calls.append(path.name)
        write_npz(path, arrays)

    monkeypatch.setattr(score_module, "_write_npz", fail_on_the_third)
    with pytest.raises(Interrupted):
        write_pseudo_videos(TINY, corpus.root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (partial,) = tmp_path.glob(".out.partial-*")
    assert sorted(p.name for p in (partial / "samples").iterdir()) == [
        "pseudo-000000.npz",
        "pseudo-000001.npz",
    ]

    calls.clear()
    monkeypatch.setattr(score_module, "_write_npz", record)
    files = write_pseudo_videos(TINY, corpus.root, tmp_path / "out")
    assert calls == [f"pseudo-{i:06d}.npz" for i in range(2, 6)]
    assert not partial.exists()
    clean = write_pseudo_videos(TINY, corpus.root, tmp_path / "clean")
    assert folder_bytes(files.root) == folder_bytes(clean.root)
