"""Per-completion rewards with Video-R1's semantics: answer accuracy by problem type, and format.

Reference: tulerfeng/Video-R1, ``src/r1-v/src/open_r1/grpo.py`` (``accuracy_reward``,
``format_reward``) and ``src/eval_bench.py`` (``mean_relative_accuracy``). Where this module
departs from that code it says so in the function's docstring. Every scorer here is total:
malformed input (no tags, an empty answer, text where a number is expected, ``None``) scores
0.0 instead of raising, because a policy's output is data, not code.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Literal

import jiwer
from rouge_score import rouge_scorer

# First <answer>...</answer>, as Video-R1's `re.search`; DOTALL so multi-line answers count.
_ANSWER_PATTERN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_FORMAT_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)

# MRA thresholds θ ∈ {0.50, 0.55, ..., 0.95} as whole percentages, so that 1 - θ is computed
# as (100 - p) / 100 and never accumulates float drift (0.5 + 9 * 0.05 != 0.95).
_MRA_THRESHOLD_PERCENTS = tuple(range(50, 100, 5))
MRA_THRESHOLDS: tuple[float, ...] = tuple(p / 100 for p in _MRA_THRESHOLD_PERCENTS)


def extract_answer(text: str | None) -> str | None:
    """The stripped text inside the first ``<answer>...</answer>`` of ``text``.

    The first, not the last, pair wins: Video-R1 uses ``re.search`` (pattern
    ``<answer>\\s*(.*?)\\s*</answer>`` then ``.strip()``, which is what this returns).
    Returns ``None`` when ``text`` is not a string or holds no complete pair; an empty pair
    ``<answer></answer>`` gives ``""``.
    """
    if not isinstance(text, str):
        return None
    match = _ANSWER_PATTERN.search(text)
    return match.group(1).strip() if match else None


# How an evaluated output becomes the answer that is scored (``eval.answer_rule``).
AnswerRule = Literal["strict", "whole-output"]
ANSWER_RULES: tuple[AnswerRule, ...] = ("strict", "whole-output")


def answer_text(completion: str | None, rule: AnswerRule) -> str | None:
    """The answer of ``completion`` that an evaluation scores, under ``rule``.

    - ``"strict"``: :func:`extract_answer`, so an output without ``<answer>...</answer>`` has no
      answer and scores 0.
    - ``"whole-output"``: Video-R1's ``eval_bench.py``, which produced the paper's figures: the tagged
      answer, or the whole output when that is empty or missing (``if output_ans == '': output_ans =
      model_output``); an output "B" then answers "B".

    ``None`` when ``completion`` is not a string (a failed sample) or, under ``"strict"``, has no pair.
    """
    tagged = extract_answer(completion)
    if rule == "strict" or tagged:
        return tagged
    return completion if isinstance(completion, str) else None


def parse_number(text: str) -> float | None:
    """``text`` as a finite float after removing commas (``"1,000"`` → 1000.0), else ``None``.

    Video-R1's ``normalize_number`` (``float(text.replace(",", ""))``), plus one departure:
    ``nan`` and ``inf`` are rejected, so that they can never compare equal or zero an error.
    """
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# Video-R1's word split: any run of whitespace separates words; case and punctuation stay as they are.
_WORDS = jiwer.Compose(
    [jiwer.SubstituteRegexes({r"\s+": " "}), jiwer.Strip(), jiwer.ReduceToListOfListOfWords()]
)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance (jiwer's alignment) divided by ``max(1, number of reference words)``.

    Words are whitespace-separated and compared case-sensitively, as Video-R1's ``wer``;
    the ``max(1, ·)`` keeps an empty reference from dividing by zero.
    """
    edits = jiwer.process_words(
        reference, hypothesis, reference_transform=_WORDS, hypothesis_transform=_WORDS
    )
    return (edits.substitutions + edits.deletions + edits.insertions) / max(1, len(reference.split()))


@lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    # Porter stemming is pure code in nltk: nothing is downloaded.
    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge_f1_mean(reference: str, hypothesis: str) -> float:
    """Mean of the ROUGE-1, ROUGE-2 and ROUGE-L F1 scores, with Porter stemming (``rouge_score``).

    ``rouge_score`` lowercases and keeps only ``[a-z0-9]`` tokens, so text without such tokens
    scores 0.0; a one-word answer has no bigram, so even an exact one-word match scores 2/3.
    """
    scores = _rouge().score(reference, hypothesis)
    return (scores["rouge1"].fmeasure + scores["rouge2"].fmeasure + scores["rougeL"].fmeasure) / 3


def _clip01(value: float) -> float:
    return max(0.0, min(1.0, value))


def _has_decimal_mark(text: str) -> bool:
    # Video-R1 counts a comma as a decimal mark too, so "1,000" and "1000" differ in kind.
    return "." in text or "," in text


def _numerical_score(pred: str, gt: str) -> float:
    if _has_decimal_mark(pred) != _has_decimal_mark(gt):
        return 0.0
    pred_number, gt_number = parse_number(pred), parse_number(gt)
    if pred_number is None or gt_number is None:
        return 0.0
    return 1.0 if round(pred_number, 2) == round(gt_number, 2) else 0.0


def _regression_score(pred: str, gt: str) -> float:
    pred_number, gt_number = parse_number(pred), parse_number(gt)
    if pred_number is None or gt_number is None:
        return 0.0
    if gt_number == 0:
        return 1.0 if pred_number == 0 else 0.0
    return 1.0 - min(1.0, abs(pred_number - gt_number) / abs(gt_number))


def score_answer_text(pred: str | None, gt: str | None, problem_type: str) -> float:
    """Accuracy reward in [0, 1] of an extracted answer ``pred`` against the extracted ``gt``.

    - ``"multiple choice"``: 1.0 iff the stripped strings are equal (case-sensitive).
    - ``"numerical"``: 1.0 iff both have a decimal mark (``.`` or ``,``) or neither, both parse
      (:func:`parse_number`) and they are equal after ``round(·, 2)``.
    - ``"OCR"``: ``clip(1 - WER(gt, pred), 0, 1)`` (:func:`word_error_rate`).
    - ``"free-form"``: ``clip(mean ROUGE-1/2/L F1, 0, 1)`` (:func:`rouge_f1_mean`).
    - ``"regression"``: ``1 - min(1, |pred - gt| / |gt|)``; with ``gt == 0`` it is 1.0 iff
      ``pred == 0``. Video-R1 adds 1e-9 to numerator and denominator instead, which gives an
      exact answer ``1 - 1e-9 / (|gt| + 1e-9)`` and an exact answer to ``gt == 0`` a reward of 0.
    - any other problem type: 0.0.

    An answer that is ``None`` or empty after stripping, on either side, scores 0.0 (Video-R1
    would give 1.0 to two empty multiple-choice answers).
    """
    if pred is None or gt is None:
        return 0.0
    pred, gt = pred.strip(), gt.strip()
    if not pred or not gt:
        return 0.0
    match problem_type:
        case "multiple choice":
            return 1.0 if pred == gt else 0.0
        case "numerical":
            return _numerical_score(pred, gt)
        case "OCR":
            return _clip01(1.0 - word_error_rate(gt, pred))
        case "free-form":
            return _clip01(rouge_f1_mean(gt, pred))
        case "regression":
            return _regression_score(pred, gt)
        case _:
            return 0.0


def score_answer(completion: str | None, solution: str | None, problem_type: str) -> float:
    """Accuracy reward in [0, 1] of a completion against a tagged solution (Video-R1 semantics).

    Both sides are reduced with :func:`extract_answer`, so a ``solution`` must carry
    ``<answer>...</answer>`` tags too; then :func:`score_answer_text` scores the pair. Never
    raises: missing tags, empty answers, non-numbers or ``None`` score 0.0.
    """
    return score_answer_text(extract_answer(completion), extract_answer(solution), problem_type)


def format_score(completion: str | None) -> float:
    """1.0 iff the whole completion is ``<think>...</think>`` then ``<answer>...</answer>``.

    ``re.fullmatch`` of ``<think>.*?</think>\\s*<answer>.*?</answer>`` with DOTALL on the raw
    text, as Video-R1: nothing may precede ``<think>`` or follow ``</answer>``, not even
    whitespace. ``None`` or non-text scores 0.0.
    """
    if not isinstance(completion, str):
        return 0.0
    return 1.0 if _FORMAT_PATTERN.fullmatch(completion) else 0.0


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """VSI-Bench's MRA: the mean over θ in :data:`MRA_THRESHOLDS` of ``[|pred - gt| / |gt| < 1 - θ]``.

    The comparison is strict, as Video-R1's ``eval_bench.py`` (a relative error of exactly 0.5
    passes no threshold). With ``gt == 0`` the relative error is undefined: the score is 1.0
    iff ``pred == 0`` (Video-R1's ``|gt| + 1e-8`` denominator gives the same for any
    ``|pred| >= 5e-9``). A non-finite input scores 0.0.
    """
    if gt == 0:
        return 1.0 if pred == 0 else 0.0
    relative_error = abs(pred - gt) / abs(gt)
    passed = sum(relative_error < (100 - p) / 100 for p in _MRA_THRESHOLD_PERCENTS)
    return passed / len(_MRA_THRESHOLD_PERCENTS)


def score_mra(completion: str | None, solution: str | None) -> float:
    """:func:`mean_relative_accuracy` of the tagged answers, 0.0 when either does not parse."""
    return score_mra_text(extract_answer(completion), extract_answer(solution))


def score_mra_text(pred_text: str | None, gt_text: str | None) -> float:
    """:func:`mean_relative_accuracy` of two answer texts, 0.0 when either is ``None`` or not a number."""
    if pred_text is None or gt_text is None:
        return 0.0
    pred, gt = parse_number(pred_text), parse_number(gt_text)
    if pred is None or gt is None:
        return 0.0
    return mean_relative_accuracy(pred, gt)
