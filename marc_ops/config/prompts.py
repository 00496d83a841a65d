"""The evaluation prompt: Video-R1's QUESTION_TEMPLATE + TYPE_TEMPLATE, and the chat message around it.

Source of the strings (SPEC section 8, paper App. A.1). The MARC paper says it "adopt[s] the
prompt from Video-R1", and prints it in App. A.1 as PDF-wrapped text; the exact bytes that
Video-R1's benchmark script sends are in ``tulerfeng/Video-R1`` ``src/eval_bench.py`` (the same
strings as its ``inference_example.py`` and ``generate_cot_vllm.py``). The two differ:

- eval_bench.py: "..., etc, or other natural language thought expressions It's encouraged ..."
  (no period: a typo in the code, kept byte for byte); the paper: "etc., or ... expressions. It's".
- OCR suffix, eval_bench.py: " Please transcribe text from the image/video clearly and provide
  your text answer within ..."; the paper: " Please transcribe text clearly and provide your
  answer within ...".

:data:`VIDEO_R1_EVAL` (the default) is eval_bench.py's text, because that script is what the
numbers compared in the paper come from. :data:`MARC_PAPER` is App. A.1 as printed, with the
PDF's line wraps joined by one space; select it by name to evaluate with the paper's wording.
Both are snapshot-tested (``tests/unit/snapshots/``): a silent change to either fails a test.

How a question is built (eval_bench.py): a multiple-choice question is ``problem + "Options:\\n"``
plus each option followed by ``"\\n"``, with nothing inserted between the problem and
``"Options:"``; then ``QUESTION_TEMPLATE.format(Question=question) + TYPE_TEMPLATE[type]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PromptTemplate:
    """A question template with a ``{Question}`` slot and one answer-format suffix per problem type."""

    name: str
    source: str
    question: str
    type_suffix: Mapping[str, str]

    def render(self, question: str, problem_type: str) -> str:
        if problem_type not in self.type_suffix:
            raise ValueError(
                f"prompt template {self.name!r} has no suffix for problem_type {problem_type!r}; "
                f"known: {sorted(self.type_suffix)}"
            )
        return self.question.format(Question=question) + self.type_suffix[problem_type]


VIDEO_R1_EVAL = PromptTemplate(
    name="video-r1-eval",
    source="tulerfeng/Video-R1 src/eval_bench.py (QUESTION_TEMPLATE, TYPE_TEMPLATE)",
    question=(
        "{Question}\n"
        "Please think about this question as if you were a human pondering deeply. "
        "Engage in an internal dialogue using expressions such as 'let me think', 'wait', 'Hmm', 'oh, I see', "
        "'let's break it down', etc, or other natural language thought expressions "
        "It's encouraged to include self-reflection or verification in the reasoning process. "
        "Provide your detailed reasoning between the <think> and </think> tags, and then give your final "
        "answer between the <answer> and </answer> tags."
    ),
    type_suffix={
        "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the "
        "<answer> </answer> tags.",
        "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
        "OCR": " Please transcribe text from the image/video clearly and provide your text answer within the "
        "<answer> </answer> tags.",
        "free-form": " Please provide your text answer within the <answer> </answer> tags.",
        "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    },
)

MARC_PAPER = PromptTemplate(
    name="marc-paper",
    source="MARC paper, Appendix A.1 (PDF line wraps joined with one space)",
    question=(
        "{Question}\n"
        "Please think about this question as if you were a human pondering deeply. "
        "Engage in an internal dialogue using expressions such as 'let me think', 'wait', "
        "'Hmm', 'oh, I see', 'let's break it down', etc., or other natural language "
        "thought expressions. It's encouraged to include self-reflection or verification "
        "in the reasoning process. Provide your detailed reasoning between the <think> "
        "and </think> tags, and then give your final answer between the <answer> and "
        "</answer> tags."
    ),
    type_suffix={
        "multiple choice": " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the "
        "<answer> </answer> tags.",
        "numerical": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
        "OCR": " Please transcribe text clearly and provide your answer within the <answer> </answer> tags.",
        "free-form": " Please provide your text answer within the <answer> </answer> tags.",
        "regression": " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    },
)

# Lookup by name is the feature: a run names the wording it was evaluated with.
PROMPT_TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (VIDEO_R1_EVAL, MARC_PAPER)}


def prompt_template(name: str) -> PromptTemplate:
    if name not in PROMPT_TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; known: {', '.join(PROMPT_TEMPLATES)}")
    return PROMPT_TEMPLATES[name]


def question_text(problem: str, problem_type: str, options: Sequence[str] | None) -> str:
    """The ``{Question}`` of a row, as eval_bench.py builds it (MC: ``"Options:\\n"`` + one option per line)."""
    if problem_type != "multiple choice":
        return problem
    return problem + "Options:\n" + "".join(option + "\n" for option in options or ())


def build_prompt(row: Mapping[str, Any], template: PromptTemplate = VIDEO_R1_EVAL) -> str:
    """The text prompt of one Video-R1-format row (``problem``, ``problem_type``, ``options``)."""
    question = question_text(row["problem"], row["problem_type"], row.get("options"))
    return template.render(question, row["problem_type"])
