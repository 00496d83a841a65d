"""The evaluation prompt, byte for byte: a silent change to a template or to how a question is built fails here.

Snapshots live in ``tests/unit/snapshots/``; after an intended change, rewrite them with
``UPDATE_SNAPSHOTS=1 pytest tests/unit/test_eval_prompts.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from marc_ops.config.prompts import (
    MARC_PAPER,
    PROMPT_TEMPLATES,
    VIDEO_R1_EVAL,
    PromptTemplate,
    build_prompt,
    prompt_template,
    question_text,
)
from marc_ops.data import MediaSpec, build_messages
from marc_ops.video import VideoConfig

SNAPSHOTS = Path(__file__).parent / "snapshots"

# One row per problem type, in the Video-R1 schema (as the loader returns it).
ROWS = {
    "multiple choice": {
        "problem_id": "mc-1",
        "problem": "What is the color of the ball that rolls behind the box?",
        "problem_type": "multiple choice",
        "options": ["A. red", "B. green", "C. blue", "D. yellow"],
        "data_type": "video",
        "media_path": "/data/eval/SynthShapes/eval_00001.mp4",
    },
    "numerical": {
        "problem_id": "num-1",
        "problem": "How many cubes enter the scene?",
        "problem_type": "numerical",
        "options": [],
        "data_type": "video",
        "media_path": "/data/eval/SynthCount/eval_00002.mp4",
    },
    "OCR": {
        "problem_id": "ocr-1",
        "problem": "What word is written on the sign?",
        "problem_type": "OCR",
        "options": [],
        "data_type": "image",
        "media_path": "/data/eval/SynthImage/eval_00003.png",
    },
    "free-form": {
        "problem_id": "ff-1",
        "problem": "Describe what happens after the cube stops.",
        "problem_type": "free-form",
        "options": None,
        "data_type": "video",
        "media_path": "/data/eval/SynthShapes/eval_00004.mp4",
    },
    "regression": {
        "problem_id": "reg-1",
        "problem": "How far apart are the chair and the table, in meters?",
        "problem_type": "regression",
        "options": [],
        "data_type": "video",
        "media_path": "/data/eval/SynthShapes/eval_00005.mp4",
    },
}


def _slug(text: str) -> str:
    return text.lower().replace(" ", "_").replace("-", "_")


def assert_snapshot(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    data = actual.encode("utf-8")
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    assert path.is_file(), f"snapshot {path} is missing; create it with UPDATE_SNAPSHOTS=1 and review it"
    assert path.read_bytes() == data, (
        f"rendered text differs from {path}; if the change is intended, rerun with UPDATE_SNAPSHOTS=1"
    )


@pytest.mark.parametrize("template", [VIDEO_R1_EVAL, MARC_PAPER], ids=lambda t: t.name)
@pytest.mark.parametrize("problem_type", list(ROWS))
def test_prompt_matches_snapshot(template: PromptTemplate, problem_type: str) -> None:
    prefix = "prompt" if template is VIDEO_R1_EVAL else "prompt_marc_paper"
    assert_snapshot(f"{prefix}_{_slug(problem_type)}.txt", build_prompt(ROWS[problem_type], template))


@pytest.mark.parametrize("problem_type", ["multiple choice", "OCR"])
def test_messages_match_snapshot(problem_type: str) -> None:
    row = ROWS[problem_type]
    media = MediaSpec.for_row(row, VideoConfig(fps=1.0, max_frames=64, max_pixels=128 * 28 * 28))
    rendered = json.dumps(build_messages(row, media), indent=2, ensure_ascii=False) + "\n"
    assert_snapshot(f"messages_{row['data_type']}_{_slug(problem_type)}.json", rendered)


def test_multiple_choice_question_is_built_as_video_r1_does() -> None:
    # Nothing between the problem and "Options:"; every option, the last included, ends with "\n".
    assert question_text("Which?", "multiple choice", ["A. x", "B. y"]) == "Which?Options:\nA. x\nB. y\n"
    assert question_text("How many?", "numerical", ["ignored"]) == "How many?"


def test_prompt_is_template_then_type_suffix() -> None:
    row = ROWS["numerical"]
    prompt = build_prompt(row)
    assert prompt.startswith("How many cubes enter the scene?\nPlease think about this question")
    assert prompt.endswith(
        "</answer> tags. Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags."
    )


def test_templates_cover_every_problem_type_and_differ_only_where_the_sources_do() -> None:
    for template in PROMPT_TEMPLATES.values():
        assert set(template.type_suffix) == {"multiple choice", "numerical", "OCR", "free-form", "regression"}
    differing = {
        k for k in VIDEO_R1_EVAL.type_suffix if VIDEO_R1_EVAL.type_suffix[k] != MARC_PAPER.type_suffix[k]
    }
    assert differing == {"OCR"}
    assert "etc, or other natural language thought expressions It's" in VIDEO_R1_EVAL.question
    assert "etc., or other natural language thought expressions. It's" in MARC_PAPER.question


def test_unknown_problem_type_and_template_fail_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="no suffix for problem_type 'essay'"):
        build_prompt({**ROWS["numerical"], "problem_type": "essay"})
    with pytest.raises(ValueError, match="video-r1-eval"):
        prompt_template("lmms-eval")
    assert prompt_template("marc-paper") is MARC_PAPER


def test_video_media_item_carries_the_sampling_rule_and_image_item_only_its_path() -> None:
    video = VideoConfig(fps=1.0, max_frames=16, max_pixels=128 * 28 * 28, min_pixels=4 * 28 * 28)
    assert MediaSpec.for_row(ROWS["regression"], video).content_item() == {
        "type": "video",
        "video": "/data/eval/SynthShapes/eval_00005.mp4",
        "fps": 1.0,
        "max_frames": 16,
        "min_pixels": 3136,
        "max_pixels": 100352,
    }
    assert MediaSpec.for_row(ROWS["OCR"], video).content_item() == {
        "type": "image",
        "image": "/data/eval/SynthImage/eval_00003.png",
    }
    messages = build_messages(ROWS["regression"], MediaSpec.for_row(ROWS["regression"], video))
    assert [item["type"] for item in messages[0]["content"]] == ["video", "text"]
    assert messages[0]["content"][1]["text"] == build_prompt(ROWS["regression"])
