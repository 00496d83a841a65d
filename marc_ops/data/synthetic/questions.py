"""Plan a video (shots, scenes, timeline) or an image together with the questions asked about it.

Every video question names its evidence shot by the shot's background colour (unique within the
video), and the other shots are drawn so that answering from the wrong shot gives a wrong answer:
they lack the asked shape, hold a different count, show a different word, last a different time.

Question families by category (two per video category; ``questions_per_video`` rows per video):

- ``SynthShapes``: multiple choice (which shape moves / what colour the <shape> is), free-form (describe).
- ``SynthCount``: numerical (how many <shape>s), regression (how many seconds the scene lasts).
- ``SynthText``: OCR (what word is written), multiple choice (which word appears).
- ``SynthScenes``: multiple choice (which of four fixed colours is a scene's background: exactly one of
  them is, in the evidence shot), free-form (describe).
- ``SynthImage`` (single images): multiple choice (which shape), numerical (how many), OCR (what word).
- ``SynthLong`` (held-out long videos, many shots at ``long_video_fps``): the ``SynthScenes`` colour question,
  and in turn what colour the <shape> is, how many <shape>s, which shape moves, in a shot named by its
  background. A long video has more shots than there are backgrounds: the shots no question is about take
  the six colours that are not scene-colour options, repeating but never in adjacent shots (a cut always
  changes the background); the scene-colour evidence shot takes the option colour whose letter is next in
  turn, and the named shot a colour that no other shot of the video has.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from marc_ops.config.synthetic import BACKGROUNDS, SCENE_COLOUR_OPTIONS, SyntheticConfig
from marc_ops.data.synthetic.render import CUT, DISSOLVE, VideoTimeline
from marc_ops.data.synthetic.scenes import (
    MAX_SHAPES,
    SHAPE_COLOURS,
    SHAPE_KINDS,
    WORDS,
    Scene,
    ShapeSpec,
    count_phrase,
    join_phrases,
    place_shapes,
    plural,
    random_specs,
    shape_colours_on,
)

VIDEO_CATEGORIES: tuple[str, ...] = ("SynthShapes", "SynthCount", "SynthText", "SynthScenes")
IMAGE_CATEGORY = "SynthImage"
LONG_CATEGORY = "SynthLong"
LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class Question:
    """One row's question; ``evidence_shot`` is the 0-based shot that holds the answer (None for images)."""

    problem: str
    problem_type: str
    options: tuple[str, ...]
    answer: str
    reasoning: str
    evidence_shot: int | None = None


def lettered(choices: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``["red", "blue"]`` → ``("A. red", "B. blue")``: the options as a multiple-choice row lists them."""
    return tuple(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices))


@dataclass
class LetterBalancer:
    """Puts the correct option at A, B, C, ... in turn, per option count, so no letter is favoured."""

    asked: dict[Hashable, int] = field(default_factory=dict)

    def turn(self, key: Hashable, n_options: int) -> int:
        """The 0-based position of the correct option for the next question counted under ``key``."""
        position = self.asked.get(key, 0) % n_options
        self.asked[key] = self.asked.get(key, 0) + 1
        return position

    def options(self, correct: str, distractors: list[str]) -> tuple[tuple[str, ...], str]:
        """(``"A. ..."`` options, correct letter) with ``correct`` at this question's turn."""
        n_options = len(distractors) + 1
        position = self.turn(n_options, n_options)
        return lettered([*distractors[:position], correct, *distractors[position:]]), LETTERS[position]


@dataclass(frozen=True)
class ShapeRule:
    """What a question needs from the shapes: the evidence shot's shapes (None: any that pass the other
    questions' rules), and a test that every other shot's shapes pass."""

    evidence: list[ShapeSpec] | None
    distractor_ok: Callable[[list[ShapeSpec]], bool] = lambda specs: True
    kind: str = ""
    colour: str = ""
    count: int = 0


# --- shape rules: what the evidence shot shows, what the other shots must not -------------------------


def _kind_rule(rng: np.random.Generator, background: str) -> ShapeRule:
    """Evidence: 1-3 shapes, all of one kind. Other shots: none of that kind."""
    kind = str(rng.choice(SHAPE_KINDS))
    n = int(rng.integers(1, 4))
    evidence = random_specs(rng, background, n, kinds=(kind,))
    return ShapeRule(evidence, lambda specs: all(k != kind for k, _ in specs), kind=kind, count=n)


def _colour_rule(rng: np.random.Generator, background: str) -> ShapeRule:
    """Evidence: exactly one <kind>, of one colour, plus 0-2 shapes of other kinds. Other shots: no <kind> of it."""
    kind = str(rng.choice(SHAPE_KINDS))
    colour = str(rng.choice(shape_colours_on(background)))
    others = tuple(k for k in SHAPE_KINDS if k != kind)
    evidence = [(kind, colour), *random_specs(rng, background, int(rng.integers(0, 3)), kinds=others)]
    return ShapeRule(evidence, lambda specs: (kind, colour) not in specs, kind=kind, colour=colour)


def _count_rule(rng: np.random.Generator, background: str) -> ShapeRule:
    """Evidence: exactly n (1-4) <kind>s plus shapes of other kinds. Other shots: a different number of <kind>s."""
    kind = str(rng.choice(SHAPE_KINDS))
    n = int(rng.integers(1, MAX_SHAPES + 1))
    others = tuple(k for k in SHAPE_KINDS if k != kind)
    extra = random_specs(rng, background, int(rng.integers(0, MAX_SHAPES - n + 1)), kinds=others)
    evidence = [*random_specs(rng, background, n, kinds=(kind,)), *extra]
    return ShapeRule(evidence, lambda specs: sum(k == kind for k, _ in specs) != n, kind=kind, count=n)


def _free_rule(rng: np.random.Generator, background: str) -> ShapeRule:
    """No constraint on shapes (the question is about the word, the duration or the whole scene)."""
    return ShapeRule(None)


# --- asking: the question, its options, the answer and a short chain of thought ------------------------


def _locate(timeline: VideoTimeline, shot: int) -> str:
    """The first sentence of every video CoT: which shot the question points to, and where it is."""
    first, last = timeline.spans[shot]
    start, end = timeline.seconds(shot)
    others = list(dict.fromkeys(s.background for i, s in enumerate(timeline.scenes) if i != shot))
    return (
        f"The question points to the scene with the {timeline.scenes[shot].background} background: "
        f"shot {shot + 1} of {len(timeline.scenes)}, frames {first}-{last} ({start:.1f}-{end:.1f} s); "
        f"the other shots have {join_phrases(others)} backgrounds."
    )


def _other_words(timeline: VideoTimeline, shot: int) -> list[str]:
    return [s.text for i, s in enumerate(timeline.scenes) if i != shot and s.text]


def _ask_kind(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    background = timeline.scenes[shot].background
    options, letter = letters.options(rule.kind, [k for k in SHAPE_KINDS if k != rule.kind])
    verb = "moves" if rule.count == 1 else "move"
    reasoning = (
        f"{_locate(timeline, shot)} In it {count_phrase(rule.count, rule.kind)} {verb} and no other shape appears, "
        f"so the moving shape is a {rule.kind}: option {letter}."
    )
    problem = f"In the scene with the {background} background, which shape is moving?"
    return Question(problem, "multiple choice", options, letter, reasoning, shot)


def _ask_colour(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    background = timeline.scenes[shot].background
    # The colours of this kind in the other shots are the answers a wrong shot would give: offer them first.
    elsewhere = [
        s.colour
        for i, scene in enumerate(timeline.scenes)
        if i != shot
        for s in scene.shapes
        if s.kind == rule.kind
    ]
    wrong_shot = list(dict.fromkeys(c for c in elsewhere if c != rule.colour))
    rest = [str(c) for c in rng.permutation(list(SHAPE_COLOURS)) if c != rule.colour and c not in wrong_shot]
    options, letter = letters.options(rule.colour, [*wrong_shot, *rest][:3])
    seen = (
        f" (the {plural(rule.kind, 2)} in the other scenes are {join_phrases(wrong_shot)})"
        if wrong_shot
        else ""
    )
    reasoning = (
        f"{_locate(timeline, shot)} In it the only {rule.kind} is {rule.colour}{seen}, "
        f"so the answer is {rule.colour}: option {letter}."
    )
    problem = f"In the scene with the {background} background, what colour is the {rule.kind}?"
    return Question(problem, "multiple choice", options, letter, reasoning, shot)


def _ask_count(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    scene = timeline.scenes[shot]
    total = len(scene.shapes)
    among = f" among {total} shapes" if total > rule.count else ""
    reasoning = (
        f"{_locate(timeline, shot)} In it I count {count_phrase(rule.count, rule.kind)}{among}, "
        f"so the answer is {rule.count}."
    )
    problem = f"How many {plural(rule.kind, 2)} appear in the scene with the {scene.background} background?"
    return Question(problem, "numerical", (), str(rule.count), reasoning, shot)


def _ask_duration(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    first, last = timeline.spans[shot]
    n_frames = last - first + 1
    seconds = round(n_frames / timeline.fps, 2)
    reasoning = f"{_locate(timeline, shot)} It spans {n_frames} frames at {timeline.fps} fps, so it lasts {seconds} seconds."
    problem = f"How many seconds does the scene with the {timeline.scenes[shot].background} background last?"
    return Question(problem, "regression", (), str(seconds), reasoning, shot)


def _ask_word(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    scene = timeline.scenes[shot]
    others = _other_words(timeline, shot)
    elsewhere = f" (the other scenes show {join_phrases([repr(w) for w in others])})" if others else ""
    reasoning = f"{_locate(timeline, shot)} The word written in it is '{scene.text}'{elsewhere}, so the answer is {scene.text}."
    problem = f"What word is written in the scene with the {scene.background} background?"
    return Question(problem, "OCR", (), str(scene.text), reasoning, shot)


def _ask_word_choice(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    scene = timeline.scenes[shot]
    # The other shots' words are the answers a wrong shot would give: offer them first.
    wrong_shot = _other_words(timeline, shot)
    rest = [str(w) for w in rng.permutation(WORDS) if w != scene.text and w not in wrong_shot]
    options, letter = letters.options(str(scene.text), [*wrong_shot, *rest][:3])
    reasoning = (
        f"{_locate(timeline, shot)} The word written in it is '{scene.text}', which is option {letter}."
    )
    problem = f"Which word appears in the scene with the {scene.background} background?"
    return Question(problem, "multiple choice", options, letter, reasoning, shot)


def _ask_describe(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    scene = timeline.scenes[shot]
    description = scene.description()
    reasoning = f"{_locate(timeline, shot)} It shows {description}."
    return Question(
        f"Describe the scene with the {scene.background} background.",
        "free-form",
        (),
        description,
        reasoning,
        shot,
    )


def _ask_scene_colour(
    timeline: VideoTimeline, shot: int, rule: ShapeRule, rng: np.random.Generator, letters: LetterBalancer
) -> Question:
    colour = timeline.scenes[shot].background
    letter = LETTERS[SCENE_COLOUR_OPTIONS.index(colour)]
    options = lettered(SCENE_COLOUR_OPTIONS)
    # The letter right after the colour: the tiny model names the colour it sees, but does not carry it
    # ten tokens on to a "so the answer is <colour>: option <letter>" (measured, docs/benchmarks.md).
    options_text = join_phrases(list(SCENE_COLOUR_OPTIONS))
    reasoning = f"Of {options_text}, only {colour} (option {letter}) is the background of a scene."
    problem = "Which of these colours is the background of one of the scenes in the video?"
    return Question(problem, "multiple choice", options, letter, reasoning, shot)


@dataclass(frozen=True)
class _Family:
    rule: Callable[[np.random.Generator, str], ShapeRule]
    ask: Callable[[VideoTimeline, int, ShapeRule, np.random.Generator, LetterBalancer], Question]


_KIND, _COLOUR = _Family(_kind_rule, _ask_kind), _Family(_colour_rule, _ask_colour)
_DESCRIBE = _Family(_free_rule, _ask_describe)
_COUNT, _DURATION = _Family(_count_rule, _ask_count), _Family(_free_rule, _ask_duration)
_WORD, _WORD_CHOICE = _Family(_free_rule, _ask_word), _Family(_free_rule, _ask_word_choice)
_SCENE_COLOUR = _Family(_free_rule, _ask_scene_colour)


def _families(category: str, index: int, rng: np.random.Generator, questions_per_video: int) -> list[_Family]:
    """The question families asked about one video: both of its category's, or one in turn."""
    if category == "SynthShapes":
        pair = [_KIND if rng.random() < 0.5 else _COLOUR, _DESCRIBE]
    elif category == "SynthCount":
        pair = [_COUNT, _DURATION]
    elif category == "SynthText":
        pair = [_WORD, _WORD_CHOICE]
    else:
        pair = [_SCENE_COLOUR, _DESCRIBE]
    if questions_per_video == 2:
        return pair
    return [pair[(index // len(VIDEO_CATEGORIES)) % 2]]


_NAMED_SHOT_FAMILIES = (_COLOUR, _COUNT, _KIND)


def _long_families(index: int, questions_per_video: int) -> list[_Family]:
    """The families asked about a long video: the scene-colour question and a named shot's shapes (colour,
    count, kind in turn), or one of the two in turn."""
    pair = [_SCENE_COLOUR, _NAMED_SHOT_FAMILIES[index % len(_NAMED_SHOT_FAMILIES)]]
    if questions_per_video == 2:
        return pair
    return [pair[(index // len(_NAMED_SHOT_FAMILIES)) % 2]]


# --- planning -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedVideo:
    category: str
    timeline: VideoTimeline
    questions: tuple[Question, ...]


def video_category(index: int) -> str:
    """Videos take the categories in turn, so every split is balanced across them."""
    return VIDEO_CATEGORIES[index % len(VIDEO_CATEGORIES)]


def plan_video(
    config: SyntheticConfig, index: int, rng: np.random.Generator, letters: LetterBalancer
) -> PlannedVideo:
    """Shots (distinct backgrounds, distinct durations), their scenes, the boundaries and the questions."""
    category = video_category(index)
    n_shots = int(rng.integers(config.shots_per_video_min, config.shots_per_video_max + 1))
    backgrounds = [str(b) for b in rng.choice(list(BACKGROUNDS), size=n_shots, replace=False)]
    lengths = _distinct_lengths(config, n_shots, rng)
    transitions = [
        DISSOLVE if rng.random() < config.gradual_transition_prob else CUT for _ in range(n_shots - 1)
    ]
    words = [str(w) for w in rng.choice(WORDS, size=n_shots, replace=False)]
    shows_word = [category == "SynthText" or bool(rng.random() < config.text_prob) for _ in range(n_shots)]

    families = _families(category, index, rng, config.questions_per_video)
    evidence_shots = [int(s) for s in rng.choice(n_shots, size=len(families), replace=False)]
    if _SCENE_COLOUR in families:
        backgrounds = _scene_colour_backgrounds(
            n_shots, evidence_shots[families.index(_SCENE_COLOUR)], rng, letters
        )
    scenes, rules = _scenes(config, index, backgrounds, words, shows_word, families, evidence_shots, rng)
    timeline = VideoTimeline.from_lengths(scenes, lengths, transitions, config.fps, config.dissolve_frames)
    questions = tuple(
        family.ask(timeline, shot, rules[shot], rng, letters)
        for shot, family in zip(evidence_shots, families, strict=True)
    )
    return PlannedVideo(category, timeline, questions)


def plan_long_video(
    config: SyntheticConfig, index: int, rng: np.random.Generator, letters: LetterBalancer
) -> PlannedVideo:
    """A ``SynthLong`` video: ``long_shots_min..long_shots_max`` shots of ``long_shot_seconds_min..max`` at
    ``long_video_fps``, backgrounds repeating only where no question looks, and its questions."""
    n_shots = int(rng.integers(config.long_shots_min, config.long_shots_max + 1))
    families = _long_families(index, config.questions_per_video)
    evidence_shots = [int(s) for s in rng.choice(n_shots, size=len(families), replace=False)]
    backgrounds = _long_backgrounds(n_shots, families, evidence_shots, rng, letters)
    low, high = config.long_shot_frames_range
    lengths = [int(n) for n in rng.integers(low, high + 1, size=n_shots)]
    transitions = [
        DISSOLVE if rng.random() < config.gradual_transition_prob else CUT for _ in range(n_shots - 1)
    ]
    words = [str(w) for w in rng.choice(WORDS, size=n_shots)]
    shows_word = [bool(rng.random() < config.text_prob) for _ in range(n_shots)]
    scenes, rules = _scenes(config, index, backgrounds, words, shows_word, families, evidence_shots, rng)
    timeline = VideoTimeline.from_lengths(
        scenes, lengths, transitions, config.long_video_fps, config.long_dissolve_frames
    )
    questions = tuple(
        family.ask(timeline, shot, rules[shot], rng, letters)
        for shot, family in zip(evidence_shots, families, strict=True)
    )
    return PlannedVideo(LONG_CATEGORY, timeline, questions)


def _scenes(
    config: SyntheticConfig,
    index: int,
    backgrounds: list[str],
    words: list[str],
    shows_word: list[bool],
    families: list[_Family],
    evidence_shots: list[int],
    rng: np.random.Generator,
) -> tuple[list[Scene], dict[int, ShapeRule]]:
    """Every shot's scene: the evidence shots show what their question's rule asks, the other shots random
    shapes that keep every rule. Returns the scenes and the rule of each evidence shot."""
    rules = {
        shot: family.rule(rng, backgrounds[shot])
        for shot, family in zip(evidence_shots, families, strict=True)
    }
    specs = []
    for shot in range(len(backgrounds)):
        own = rules[shot].evidence if shot in rules else None
        others = [rule for other, rule in rules.items() if other != shot]
        if own is None:
            specs.append(_distractor_specs(rng, backgrounds[shot], others))
        elif all(rule.distractor_ok(own) for rule in others):
            specs.append(own)
        else:  # two constrained families in one video: not a combination _families makes
            raise AssertionError(
                f"video {index}: the evidence shapes of shot {shot} break another question's rule"
            )
    scenes = [
        Scene(
            background=backgrounds[shot],
            shapes=place_shapes(rng, specs[shot], config.width, config.height, config.shape_radius),
            text=words[shot] if shows_word[shot] else None,
            text_anchor=(float(rng.uniform()), float(rng.uniform())),
        )
        for shot in range(len(backgrounds))
    ]
    return scenes, rules


def _scene_colour_backgrounds(
    n_shots: int, shot: int, rng: np.random.Generator, letters: LetterBalancer
) -> list[str]:
    """Backgrounds for a "which background appears" video: ``shot`` takes the option colour whose letter
    is next in turn, every other shot a distinct colour that is none of the options."""
    present = SCENE_COLOUR_OPTIONS[letters.turn("scene colour", len(SCENE_COLOUR_OPTIONS))]
    others = [b for b in BACKGROUNDS if b not in SCENE_COLOUR_OPTIONS]
    drawn = [str(b) for b in rng.choice(others, size=n_shots - 1, replace=False)]
    return [*drawn[:shot], present, *drawn[shot:]]


def _long_backgrounds(
    n_shots: int,
    families: list[_Family],
    evidence_shots: list[int],
    rng: np.random.Generator,
    letters: LetterBalancer,
) -> list[str]:
    """Backgrounds of a long video. The scene-colour evidence shot takes the option colour whose letter is
    next in turn and a named evidence shot a non-option colour drawn for it alone; every other shot takes
    one of the remaining non-option colours, never its neighbour's."""
    palette = [b for b in BACKGROUNDS if b not in SCENE_COLOUR_OPTIONS]
    fixed: dict[int, str] = {}
    for family, shot in zip(families, evidence_shots, strict=True):
        if family is _SCENE_COLOUR:
            fixed[shot] = SCENE_COLOUR_OPTIONS[letters.turn("scene colour", len(SCENE_COLOUR_OPTIONS))]
        else:
            fixed[shot] = str(rng.choice(palette))
            palette.remove(fixed[shot])
    backgrounds: list[str] = []
    for shot in range(n_shots):
        if shot in fixed:
            backgrounds.append(fixed[shot])
            continue
        neighbours = {*backgrounds[-1:], fixed.get(shot + 1)}
        backgrounds.append(str(rng.choice([b for b in palette if b not in neighbours])))
    return backgrounds


def _distinct_lengths(config: SyntheticConfig, n_shots: int, rng: np.random.Generator) -> list[int]:
    """Shot lengths in frames, all different: on a half-second grid when it has room, else any frame count."""
    low, high = config.shot_frames_range
    grid = list(range(low, high + 1, max(1, config.fps // 2)))
    if len(grid) < n_shots:
        grid = list(range(low, high + 1))
    return [int(n) for n in rng.choice(grid, size=n_shots, replace=False)]


def _distractor_specs(rng: np.random.Generator, background: str, rules: list[ShapeRule]) -> list[ShapeSpec]:
    """Random shapes for a shot no question is about, redrawn until every question's rule holds."""
    for _ in range(1000):
        specs = random_specs(rng, background, int(rng.integers(1, MAX_SHAPES + 1)))
        if all(rule.distractor_ok(specs) for rule in rules):
            return specs
    raise AssertionError(
        f"no random shapes for the shot with the {background} background satisfy the question rules"
    )


def plan_image(
    config: SyntheticConfig, index: int, rng: np.random.Generator, letters: LetterBalancer
) -> tuple[Scene, Question]:
    """One still image and its question: which shape (MC), how many (numerical), what word (OCR), in turn."""
    background = str(rng.choice(list(BACKGROUNDS)))
    family = index % 3
    if family == 0:
        rule = _kind_rule(rng, background)
    elif family == 1:
        rule = _count_rule(rng, background)
    else:
        rule = _free_rule(rng, background)
    shows_word = family == 2 or bool(rng.random() < config.text_prob)
    specs = (
        rule.evidence if rule.evidence is not None else random_specs(rng, background, int(rng.integers(1, 4)))
    )
    scene = Scene(
        background=background,
        shapes=place_shapes(rng, specs, config.width, config.height, config.shape_radius),
        text=str(rng.choice(WORDS)) if shows_word else None,
        text_anchor=(float(rng.uniform()), float(rng.uniform())),
    )
    seen = f"The image shows {scene.description()}."
    if family == 0:
        options, letter = letters.options(rule.kind, [k for k in SHAPE_KINDS if k != rule.kind])
        reasoning = f"{seen} Every shape in it is a {rule.kind}, so the answer is option {letter}."
        return scene, Question(
            "Which shape appears in the image?", "multiple choice", options, letter, reasoning
        )
    if family == 1:
        reasoning = f"{seen} Counting only the {plural(rule.kind, 2)} gives {rule.count}."
        problem = f"How many {plural(rule.kind, 2)} are in the image?"
        return scene, Question(problem, "numerical", (), str(rule.count), reasoning)
    reasoning = f"{seen} The word written in it is '{scene.text}'."
    return scene, Question("What word is written in the image?", "OCR", (), str(scene.text), reasoning)
