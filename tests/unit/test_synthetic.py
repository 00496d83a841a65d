"""The synthetic corpus: Video-R1 schema, splits, determinism, shot ground truth against decoded
frames, questions whose answer is right only in the shot they name, and the long held-out videos."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import av
import decord
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from marc_ops.config.synthetic import SCENE_COLOUR_OPTIONS
from marc_ops.data.synthetic import (
    BACKGROUNDS,
    IMAGE_CATEGORY,
    LONG_CATEGORY,
    SHAPE_KINDS,
    VIDEO_CATEGORIES,
    CorpusFiles,
    SyntheticConfig,
    generate_corpus,
)
from marc_ops.data.synthetic import corpus as corpus_module
from marc_ops.data.synthetic.questions import LetterBalancer, plan_video
from marc_ops.data.synthetic.scenes import MovingShape, Scene

# Small enough for a second or two, large enough for every category, problem type, cuts and dissolves.
SMALL = {
    "n_train_videos": 8,
    "n_eval_videos": 4,
    "n_train_images": 3,
    "n_eval_images": 3,
    "width": 128,
    "height": 64,
    "shots_per_video_min": 2,
    "shots_per_video_max": 4,
    "shot_seconds_min": 1.0,
    "shot_seconds_max": 2.5,
    "gradual_transition_prob": 0.3,
}
# Two short held-out videos, an image and three long ones (one per named-shot family) at SMALL's frame size.
LONG = {
    **SMALL,
    "n_train_videos": 1,
    "n_eval_videos": 2,
    "n_train_images": 0,
    "n_eval_images": 1,
    "n_eval_long_videos": 3,
}
VIDEOR1_FIELDS = {
    "problem_id",
    "problem",
    "data_type",
    "problem_type",
    "options",
    "process",
    "solution",
    "path",
    "data_source",
    "evidence",
}
PROBLEM_TYPES = {"multiple choice", "numerical", "OCR", "free-form", "regression"}
ANSWER = re.compile(r"^<answer>(.+)</answer>$", re.DOTALL)
THINK = re.compile(r"^<think>.+</think>$", re.DOTALL)
BACKGROUND = re.compile(r"the scene with the (\w+) background")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusFiles:
    return generate_corpus(SyntheticConfig(**SMALL), tmp_path_factory.mktemp("synthetic") / "corpus")


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusFiles:
    return generate_corpus(SyntheticConfig(**LONG), tmp_path_factory.mktemp("synthetic") / "long")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _splits(corpus: CorpusFiles) -> list[tuple[list[dict[str, Any]], Path]]:
    """(rows, the folder their paths resolve against) for the training and the eval file."""
    return [(_load(corpus.train_json), corpus.root), (_load(corpus.eval_json), corpus.eval_json.parent)]


def _shots_key(corpus: CorpusFiles, media_root: Path, path: str) -> str:
    return "./" + (media_root / path).resolve().relative_to(corpus.root.resolve()).as_posix()


def _answer(row: dict[str, Any]) -> str:
    return ANSWER.match(row["solution"]).group(1)


def _decode_pyav(path: Path) -> np.ndarray:
    """(T, H, W, 3) uint8, every frame."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


# --- config ---------------------------------------------------------------------------------------------


def test_config_defaults_and_bench_preset() -> None:
    config = SyntheticConfig()
    assert (config.seed, config.n_train_videos, config.n_eval_videos) == (0, 48, 24)
    assert (config.width, config.height, config.fps) == (224, 128, 8)
    assert (config.shots_per_video_min, config.shots_per_video_max) == (3, 5)
    assert config.shot_frames_range == (16, 32)
    assert config.shape_radius == (0.09, 0.15)
    assert config.n_eval_long_videos == 0
    assert (config.long_shots_min, config.long_shots_max, config.long_video_fps) == (12, 20, 2)
    assert config.long_shot_frames_range == (12, 18) and config.long_dissolve_frames == 2
    bench = SyntheticConfig.bench(seed=3)
    assert bench.n_train_videos > config.n_train_videos and bench.seed == 3 and bench.width == config.width


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 225}, "width must be even"),
        ({"shots_per_video_min": 5, "shots_per_video_max": 3}, "shots_per_video_min (5) exceeds"),
        (
            {"shots_per_video_max": 8},
            "must be at most 7: every shot of a video gets its own background colour",
        ),
        ({"shot_seconds_min": 0.5, "fps": 8}, "shorter than dissolve_frames"),
        ({"shot_seconds_min": 2.0, "shot_seconds_max": 2.25}, "distinct durations"),
        ({"questions_per_video": 3}, "less than or equal to 2"),
        ({"shape_radius": (0.3, 0.2)}, "0 < smallest <= largest: got [0.3, 0.2]"),
        ({"shape_radius": (0.2, 0.5)}, "(64 px) gives a shape as wide as the 224x128 frame"),
        ({"shape_radius": (0.2, 0.3), "width": 64, "height": 128}, "lower it below 0.25"),
        ({"n_videos": 3}, "Extra inputs are not permitted"),
        ({"long_shots_min": 20, "long_shots_max": 12}, "long_shots_min (20) exceeds long_shots_max (12)"),
        ({"long_shot_seconds_min": 9.0, "long_shot_seconds_max": 6.0}, "long_shot_seconds_min (9.0) exceeds"),
        (
            {"long_shot_seconds_min": 0.5, "long_shot_seconds_max": 1.0},
            "shorter than a long video's cross-fade",
        ),
        ({"long_video_fps": 1}, "greater than or equal to 2"),
        (
            {"n_eval_long_videos": 1, "long_shots_min": 2, "long_shots_max": 3},
            "the shortest long video (long_shots_min * long_shot_seconds_min = 12 s) is no longer than the "
            "longest short one (shots_per_video_max * shot_seconds_max = 20 s)",
        ),
    ],
)
def test_config_errors_say_what_to_change(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        SyntheticConfig(**overrides)


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError):
        SyntheticConfig().seed = 1  # type: ignore[misc]


# --- pure pieces ----------------------------------------------------------------------------------------


def _still(kind: str, colour: str) -> MovingShape:
    return MovingShape(kind=kind, colour=colour, radius=5.0, x0=10.0, y0=10.0, vx=0.0, vy=0.0)


@pytest.mark.parametrize(
    ("shapes", "text", "expected"),
    [
        (
            [("square", "blue"), ("circle", "red"), ("square", "blue")],
            "KIWI",
            "a red circle and two blue squares on a yellow background, text 'KIWI'",
        ),
        ([("triangle", "black")], None, "a black triangle on a yellow background"),
        (
            [("triangle", "white"), ("circle", "green"), ("circle", "red")],
            None,
            "a red circle, a green circle and a white triangle on a yellow background",
        ),
    ],
)
def test_scene_description_is_systematic(
    shapes: list[tuple[str, str]], text: str | None, expected: str
) -> None:
    scene = Scene(background="yellow", shapes=tuple(_still(k, c) for k, c in shapes), text=text)
    assert scene.description() == expected
    orange = Scene(background="orange", shapes=(_still("square", "white"),))
    assert orange.description() == "a white square on an orange background"


def test_shapes_bounce_inside_the_frame() -> None:
    shape = MovingShape(kind="circle", colour="red", radius=10.0, x0=50.0, y0=30.0, vx=97.0, vy=-61.0)
    for t in np.linspace(-5.0, 20.0, 301):
        x, y = shape.centre(float(t), 128, 64)
        assert 10.0 <= x <= 118.0 and 10.0 <= y <= 54.0


@pytest.mark.parametrize("radius", [(0.09, 0.15), (0.2, 0.3)])
def test_shape_radius_sets_every_shape_size_of_a_video(radius: tuple[float, float]) -> None:
    config = SyntheticConfig(**{**SMALL, "shape_radius": radius})
    letters = LetterBalancer()
    radii = [
        shape.radius
        for index in range(6)
        for scene in plan_video(config, index, np.random.default_rng(index), letters).timeline.scenes
        for shape in scene.shapes
    ]
    low, high = radius[0] * SMALL["height"], radius[1] * SMALL["height"]
    assert radii and all(low <= r <= high for r in radii)
    assert max(radii) - min(radii) > 0.5 * (high - low)  # drawn across the range, not pinned to one end


def test_scene_colour_questions_have_one_fixed_list_and_one_option_on_screen() -> None:
    """Which of four fixed colours is a scene's background: exactly one shot has one of them, its letter is
    the answer, the options never change order, and the answer takes A, B, C, D in turn."""
    config = SyntheticConfig(**SMALL)
    letters = LetterBalancer()
    answers = []
    for index in range(3, 40, len(VIDEO_CATEGORIES)):  # the SynthScenes videos
        planned = plan_video(config, index, np.random.default_rng(index), letters)
        assert planned.category == "SynthScenes"
        backgrounds = [scene.background for scene in planned.timeline.scenes]
        (question,) = [q for q in planned.questions if q.problem_type == "multiple choice"]
        assert question.options == ("A. red", "B. yellow", "C. green", "D. blue")
        on_screen = [shot for shot, colour in enumerate(backgrounds) if colour in SCENE_COLOUR_OPTIONS]
        assert on_screen == [question.evidence_shot]
        assert question.answer == "ABCD"[SCENE_COLOUR_OPTIONS.index(backgrounds[question.evidence_shot])]
        assert len(set(backgrounds)) == len(backgrounds)
        answers.append(question.answer)
    assert answers == list("ABCD" * 3)[: len(answers)]


def test_letter_balancer_puts_the_answer_at_every_letter_in_turn() -> None:
    letters = LetterBalancer()
    answers = [letters.options("yes", ["no", "maybe", "never"]) for _ in range(8)]
    assert [letter for _, letter in answers] == list("ABCDABCD")
    options, letter = answers[2]
    assert options == ("A. no", "B. maybe", "C. yes", "D. never") and letter == "C"
    assert letters.options("circle", ["square", "triangle"])[1] == "A"  # a separate turn per option count


# --- the files ------------------------------------------------------------------------------------------


def test_every_row_has_the_videor1_schema(corpus: CorpusFiles) -> None:
    shots = _load(corpus.shots_json)
    for rows, media_root in _splits(corpus):
        assert rows
        for row in rows:
            assert set(row) == VIDEOR1_FIELDS, row
            assert isinstance(row["problem_id"], int) and isinstance(row["problem"], str) and row["problem"]
            assert row["data_type"] in {"video", "image"} and row["problem_type"] in PROBLEM_TYPES
            assert THINK.match(row["process"]), row["process"]
            assert ANSWER.match(row["solution"]), row["solution"]
            assert row["path"].startswith("./") and (media_root / row["path"]).is_file(), row["path"]
            category = row["path"].split("/")[1]
            assert row["data_source"] == category
            if row["problem_type"] == "multiple choice":
                letters = [option.split(". ", 1)[0] for option in row["options"]]
                assert letters == list("ABCD"[: len(letters)]) and len(letters) >= 3
                assert _answer(row) in letters
                assert len({option.split(". ", 1)[1] for option in row["options"]}) == len(letters)
            else:
                assert row["options"] == []
            if row["data_type"] == "video":
                assert category in VIDEO_CATEGORIES and row["path"].endswith(".mp4")
                entry = shots[_shots_key(corpus, media_root, row["path"])]
                evidence = row["evidence"]
                assert (
                    set(evidence) == {"shots", "spans"}
                    and len(evidence["shots"]) == len(evidence["spans"]) == 1
                )
                assert [entry["spans"][s] for s in evidence["shots"]] == evidence["spans"]
            else:
                assert category == IMAGE_CATEGORY and row["path"].endswith(".png") and row["evidence"] is None
                assert row["problem_type"] in {"multiple choice", "numerical", "OCR"}


def test_cot_file_holds_the_training_rows(corpus: CorpusFiles) -> None:
    assert _load(corpus.cot_json) == _load(corpus.train_json)


def test_problem_ids_are_unique_across_train_and_eval(corpus: CorpusFiles) -> None:
    ids = [row["problem_id"] for rows, _ in _splits(corpus) for row in rows]
    assert len(ids) == len(set(ids))


def test_train_and_eval_media_are_disjoint(corpus: CorpusFiles) -> None:
    (train, train_root), (evaluation, eval_root) = _splits(corpus)
    train_media = {(train_root / row["path"]).resolve() for row in train}
    eval_media = {(eval_root / row["path"]).resolve() for row in evaluation}
    assert train_media and eval_media and not train_media & eval_media
    assert not {p.name for p in train_media} & {p.name for p in eval_media}


def test_every_problem_type_and_category_is_present(corpus: CorpusFiles) -> None:
    for rows, _ in _splits(corpus):
        assert {row["problem_type"] for row in rows} == PROBLEM_TYPES
        assert {row["data_source"] for row in rows} == {*VIDEO_CATEGORIES, IMAGE_CATEGORY}  # no SynthLong


def test_images_are_pngs_of_the_configured_size(corpus: CorpusFiles) -> None:
    for rows, media_root in _splits(corpus):
        for row in rows:
            if row["data_type"] == "image":
                with Image.open(media_root / row["path"]) as image:
                    assert image.format == "PNG" and image.size == (SMALL["width"], SMALL["height"])


# --- determinism and atomicity --------------------------------------------------------------------------


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_different_seed_different_corpus(corpus: CorpusFiles, tmp_path: Path) -> None:
    again = generate_corpus(SyntheticConfig(**SMALL), tmp_path / "again")
    assert _all_bytes(again.root) == _all_bytes(corpus.root)  # JSON, mp4 and PNG alike
    other = generate_corpus(SyntheticConfig(**SMALL, seed=1), tmp_path / "other")
    assert _load(other.train_json) != _load(corpus.train_json)
    assert _load(other.shots_json) != _load(corpus.shots_json)


def test_an_interrupted_run_leaves_the_previous_corpus(
    corpus: CorpusFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = SyntheticConfig(**{**SMALL, "n_train_videos": 1, "n_eval_videos": 0, "n_eval_images": 0})
    out_dir = tmp_path / "corpus"
    generate_corpus(small, out_dir)
    before = _all_bytes(out_dir)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(corpus_module, "write_png", fail)
    with pytest.raises(OSError, match="disk full"):
        generate_corpus(small.model_copy(update={"seed": 7}), out_dir)
    assert _all_bytes(out_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]  # no temporary folder left behind
    with pytest.raises(OSError, match="disk full"):
        generate_corpus(small, tmp_path / "never")
    assert not (tmp_path / "never").exists()


# --- shots against decoded frames -----------------------------------------------------------------------


def test_spans_cover_every_decoded_frame(corpus: CorpusFiles) -> None:
    shots = _load(corpus.shots_json)
    assert len(shots) == SMALL["n_train_videos"] + SMALL["n_eval_videos"]
    for key, entry in shots.items():
        path = corpus.root / key
        n_frames = entry["n_frames"]
        assert len(decord.VideoReader(str(path))) == n_frames
        assert _decode_pyav(path).shape == (n_frames, SMALL["height"], SMALL["width"], 3)
        spans = entry["spans"]
        assert spans[0][0] == 0 and spans[-1][1] == n_frames - 1
        assert all(first <= last for first, last in spans)
        assert all(nxt[0] == prev[1] + 1 for prev, nxt in zip(spans, spans[1:], strict=False))
        assert len(entry["transitions"]) == len(spans) - 1
        assert set(entry["transitions"]) <= {"cut", "dissolve"}
        assert len(entry["descriptions"]) == len(entry["scenes"]) == len(spans)
        backgrounds = [scene["background"] for scene in entry["scenes"]]
        assert len(set(backgrounds)) == len(backgrounds)  # every shot looks different
        lengths = [last - first + 1 for first, last in spans]
        assert len(set(lengths)) == len(lengths)  # and lasts a different time


def test_evidence_spans_lie_inside_their_video(corpus: CorpusFiles) -> None:
    shots = _load(corpus.shots_json)
    for rows, media_root in _splits(corpus):
        for row in rows:
            if row["data_type"] == "video":
                n_frames = shots[_shots_key(corpus, media_root, row["path"])]["n_frames"]
                assert all(0 <= first <= last < n_frames for first, last in row["evidence"]["spans"])


def test_hard_cuts_are_cuts_and_shots_move(corpus: CorpusFiles) -> None:
    shots = _load(corpus.shots_json)
    n_cuts = 0
    for key, entry in shots.items():
        frames = (
            decord.VideoReader(str(corpus.root / key)).get_batch(list(range(entry["n_frames"]))).asnumpy()
        )
        step = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))  # step[i]: frame i → i+1
        starts = [first for first, _ in entry["spans"][1:]]
        near_boundary = {i for b in starts for i in range(b - 5, b + 5)}
        within = np.array([step[i] for i in range(len(step)) if i not in near_boundary])
        assert within.size and within.min() > 0  # no two consecutive frames of a shot are identical
        for first, kind in zip(starts, entry["transitions"], strict=True):
            if kind == "cut":
                n_cuts += 1
                assert step[first - 1] > max(3 * np.median(within), within.max()), (key, first)
    assert n_cuts > 0


# --- questions: right only in the shot they name ---------------------------------------------------------


def _answer_from_shot(row: dict[str, Any], scene: dict[str, Any], span: list[int], fps: int) -> str | None:
    """What the question's answer would be if one looked at this shot (None: the shot cannot answer it)."""
    kinds = [shape["kind"] for shape in scene["shapes"]]
    problem, kind_type = row["problem"], row["problem_type"]
    options = {option.split(". ", 1)[1]: option.split(". ", 1)[0] for option in row["options"]}
    if kind_type == "numerical":
        kind = next(k for k in SHAPE_KINDS if f"many {k}s" in problem)
        return str(kinds.count(kind))
    if kind_type == "regression":
        return str(round((span[1] - span[0] + 1) / fps, 2))
    if kind_type == "OCR":
        return scene["text"]
    if kind_type == "free-form":
        return scene["description"]
    if "which shape" in problem:
        return options[kinds[0]] if len(set(kinds)) == 1 else None
    if "background of one of the scenes" in problem:
        return options.get(scene["background"])
    if "what colour" in problem:
        kind = next(k for k in SHAPE_KINDS if problem.endswith(f"the {k}?"))
        colours = [shape["colour"] for shape in scene["shapes"] if shape["kind"] == kind]
        return options.get(colours[0]) if len(colours) == 1 else None
    return options.get(scene["text"])  # which word appears


def test_the_answer_is_right_only_in_the_evidence_shot(corpus: CorpusFiles) -> None:
    shots = _load(corpus.shots_json)
    checked = set()
    for rows, media_root in _splits(corpus):
        for row in rows:
            if row["data_type"] != "video":
                continue
            entry = shots[_shots_key(corpus, media_root, row["path"])]
            (evidence,) = row["evidence"]["shots"]
            named = BACKGROUND.search(row["problem"])
            assert (named is None) == (
                row["data_source"] == "SynthScenes" and row["problem_type"] != "free-form"
            )
            assert named is None or named.group(1) == entry["scenes"][evidence]["background"]
            for shot, (scene, span) in enumerate(zip(entry["scenes"], entry["spans"], strict=True)):
                answer = _answer_from_shot(row, scene, span, entry["fps"])
                assert (answer == _answer(row)) == (shot == evidence), (row["problem_id"], shot, answer)
            checked.add(row["problem_type"])
    assert checked == PROBLEM_TYPES


def test_an_ocr_word_is_drawn_only_in_its_evidence_shot(corpus: CorpusFiles) -> None:
    shots = _load(corpus.shots_json)
    n_ocr = 0
    for rows, media_root in _splits(corpus):
        for row in rows:
            if row["data_type"] == "video" and row["problem_type"] == "OCR":
                n_ocr += 1
                scenes = shots[_shots_key(corpus, media_root, row["path"])]["scenes"]
                drawn_in = [i for i, scene in enumerate(scenes) if scene["text"] == _answer(row)]
                assert drawn_in == row["evidence"]["shots"]
                assert f"text '{_answer(row)}'" in scenes[drawn_in[0]]["description"]
    assert n_ocr > 0


# --- long held-out videos -------------------------------------------------------------------------------


def _long_videos(corpus: CorpusFiles) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The SynthLong rows and their shots.json entries."""
    rows = [row for row in _load(corpus.eval_json) if row["data_source"] == LONG_CATEGORY]
    shots = _load(corpus.shots_json)
    return rows, {
        row["path"]: shots[_shots_key(corpus, corpus.eval_json.parent, row["path"])] for row in rows
    }


def test_long_videos_last_long_in_many_shots_of_the_configured_lengths(long_corpus: CorpusFiles) -> None:
    config = SyntheticConfig(**LONG)
    rows, entries = _long_videos(long_corpus)
    assert len(entries) == config.n_eval_long_videos and len(rows) == 2 * config.n_eval_long_videos
    low, high = config.long_shot_seconds_min, config.long_shot_seconds_max
    for path, entry in entries.items():
        assert path.startswith(f"./{LONG_CATEGORY}/eval_long_") and entry["fps"] == config.long_video_fps
        spans = entry["spans"]
        assert config.long_shots_min <= len(spans) <= config.long_shots_max
        assert all(low <= (last - first + 1) / entry["fps"] <= high for first, last in spans)
        seconds = entry["n_frames"] / entry["fps"]
        assert seconds > 64 and len(spans) * low <= seconds <= len(spans) * high
        assert len(decord.VideoReader(str(long_corpus.eval_json.parent / path))) == entry["n_frames"]
        backgrounds = [scene["background"] for scene in entry["scenes"]]
        assert len(set(backgrounds)) < len(backgrounds)  # more shots than colours: some repeat ...
        assert all(
            a != b for a, b in zip(backgrounds, backgrounds[1:], strict=False)
        )  # ... never side by side
    assert not any(row["data_source"] == LONG_CATEGORY for row in _load(long_corpus.train_json))
    captioned = {caption["path"] for caption in _load(long_corpus.captions_json)}
    assert not any(LONG_CATEGORY in path for path in captioned)


def test_long_video_answers_are_right_only_in_the_evidence_shot(long_corpus: CorpusFiles) -> None:
    """The scene-colour question's option colour and a named shot's background each appear in one shot only,
    and the asked shapes read from any other shot give another answer."""
    rows, entries = _long_videos(long_corpus)
    scene_colour_letters, named_problems = [], []
    for row in rows:
        entry = entries[row["path"]]
        (evidence,) = row["evidence"]["shots"]
        backgrounds = [scene["background"] for scene in entry["scenes"]]
        named = BACKGROUND.search(row["problem"])
        if named is None:
            assert row["options"] == [
                f"{letter}. {c}" for letter, c in zip("ABCD", SCENE_COLOUR_OPTIONS, strict=True)
            ]
            assert [b in SCENE_COLOUR_OPTIONS for b in backgrounds].count(True) == 1
            scene_colour_letters.append(_answer(row))
        else:
            assert named.group(1) == backgrounds[evidence] and backgrounds.count(named.group(1)) == 1
            named_problems.append(row["problem"])
        for shot, (scene, span) in enumerate(zip(entry["scenes"], entry["spans"], strict=True)):
            answer = _answer_from_shot(row, scene, span, entry["fps"])
            assert (answer == _answer(row)) == (shot == evidence), (row["problem_id"], shot, answer)
    assert scene_colour_letters == ["A", "B", "C"]  # their own letter turns, from A
    asked = [next(f for f in ("what colour", "How many", "which shape") if f in p) for p in named_problems]
    assert asked == ["what colour", "How many", "which shape"]  # the named-shot families in turn


def test_a_long_videos_option_colour_is_on_screen_only_in_its_evidence_shot(long_corpus: CorpusFiles) -> None:
    """Decoded frames: the background (a frame's median colour) is a scene-colour option only inside the
    evidence shot, and it is that option's colour there (cross-fade frames left out)."""
    config = SyntheticConfig(**LONG)
    palette = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
    names = list(BACKGROUNDS)
    rows, entries = _long_videos(long_corpus)
    for row in rows:
        if BACKGROUND.search(row["problem"]):
            continue
        entry = entries[row["path"]]
        frames = _decode_pyav(long_corpus.eval_json.parent / row["path"])
        medians = np.median(frames.reshape(len(frames), -1, 3), axis=1)
        nearest = [names[i] for i in np.argmin(((medians[:, None] - palette) ** 2).sum(axis=2), axis=1)]
        fades = {
            frame
            for (first, _), kind in zip(entry["spans"][1:], entry["transitions"], strict=True)
            if kind == "dissolve"
            for frame in range(first - config.long_dissolve_frames, first + config.long_dissolve_frames)
        }
        first, last = row["evidence"]["spans"][0]
        answer_colour = SCENE_COLOUR_OPTIONS["ABCD".index(_answer(row))]
        for frame, colour in enumerate(nearest):
            if frame in fades:
                continue
            inside = first <= frame <= last
            assert (colour in SCENE_COLOUR_OPTIONS) == inside, (row["path"], frame, colour)
            assert not inside or colour == answer_colour


def test_long_videos_leave_every_other_item_byte_identical(long_corpus: CorpusFiles, tmp_path: Path) -> None:
    """Without the long videos the corpus holds the same media bytes, the same rows and shots (the long
    ones only append), the same captions."""
    without = generate_corpus(SyntheticConfig(**{**LONG, "n_eval_long_videos": 0}), tmp_path / "without")
    short_files, long_files = _all_bytes(without.root), _all_bytes(long_corpus.root)
    appended = {"eval/eval_synthetic.json", "shots.json", "synthetic_config.json"}
    assert {name: data for name, data in short_files.items() if name not in appended} == {
        name: data for name, data in long_files.items() if name not in appended and LONG_CATEGORY not in name
    }
    assert sorted(name for name in long_files if LONG_CATEGORY in name) == [
        f"eval/{LONG_CATEGORY}/eval_long_{index:05d}.mp4" for index in range(LONG["n_eval_long_videos"])
    ]
    short_rows, long_rows = _load(without.eval_json), _load(long_corpus.eval_json)
    assert long_rows[: len(short_rows)] == short_rows
    assert {row["data_source"] for row in long_rows[len(short_rows) :]} == {LONG_CATEGORY}
    short_shots, long_shots = _load(without.shots_json), _load(long_corpus.shots_json)
    assert list(long_shots.items())[: len(short_shots)] == list(short_shots.items())
