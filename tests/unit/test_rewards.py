"""Literal tables for the reward functions: input → expected value, one table per function."""

from __future__ import annotations

import math
import pickle

import pytest

from marc_ops.rewards import (
    MRA_THRESHOLDS,
    accuracy_reward,
    cgrpo_reward_breakdown,
    cgrpo_rewards,
    compression_bonus,
    extract_answer,
    format_reward,
    format_score,
    group_advantages,
    make_cgrpo_reward,
    mean_relative_accuracy,
    retention_ratio,
    score_answer,
    score_mra,
    word_error_rate,
)

MC, NUM, OCR, FREE, REG = "multiple choice", "numerical", "OCR", "free-form", "regression"


def tagged(answer: str) -> str:
    return f"<answer>{answer}</answer>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>hmm</think><answer>B</answer>", "B"),
        ("<answer> B </answer>", "B"),
        ("<answer>\n line one\nline two \n</answer>", "line one\nline two"),
        ("<answer></answer>", ""),
        ("<answer>A</answer> on second thought <answer>B</answer>", "A"),  # first pair, as Video-R1
        ("the answer is B", None),
        ("<answer>B", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("completion", "solution", "problem_type", "expected"),
    [
        # multiple choice: exact match of the stripped answers
        (tagged("B"), tagged("B"), MC, 1.0),
        ("<think>B or C</think>\n<answer> B </answer>", tagged("B"), MC, 1.0),
        (tagged("C"), tagged("B"), MC, 0.0),
        (tagged("b"), tagged("B"), MC, 0.0),
        (tagged("B. a dog"), tagged("B"), MC, 0.0),
        ("B", tagged("B"), MC, 0.0),  # no tags
        ("<answer></answer>", tagged("B"), MC, 0.0),  # empty answer
        ("<answer></answer>", "<answer></answer>", MC, 0.0),  # empty on both sides is not a match
        (tagged("B"), "B", MC, 0.0),  # the solution needs tags too
        (None, tagged("B"), MC, 0.0),
        (tagged("B"), None, MC, 0.0),
        # numerical: same decimal-ness ('.' or ','), then equal after rounding to 2 places
        (tagged("3"), tagged("3"), NUM, 1.0),
        (tagged("3.0"), tagged("3"), NUM, 0.0),
        (tagged("3"), tagged("3.0"), NUM, 0.0),
        (tagged("3.00"), tagged("3.0"), NUM, 1.0),
        (tagged("3.004"), tagged("3.0"), NUM, 1.0),
        (tagged("3.01"), tagged("3.0"), NUM, 0.0),
        (tagged("-2"), tagged("-2"), NUM, 1.0),
        (tagged("1,000"), tagged("1,000"), NUM, 1.0),
        (tagged("1,000"), tagged("1000"), NUM, 0.0),  # Video-R1 counts ',' as a decimal mark
        (tagged("1,000"), tagged("1000.0"), NUM, 1.0),  # ... so these two agree in kind and value
        (tagged("three"), tagged("3"), NUM, 0.0),
        (tagged("3 apples"), tagged("3"), NUM, 0.0),
        (tagged("nan"), tagged("nan"), NUM, 0.0),
        (tagged("inf"), tagged("inf"), NUM, 0.0),
        ("3", tagged("3"), NUM, 0.0),
        # OCR: clip(1 - WER(gt, pred)), words split on whitespace, case-sensitive
        (tagged("the quick brown fox"), tagged("the quick brown fox"), OCR, 1.0),
        (tagged("the quick brown dog"), tagged("the quick brown fox"), OCR, 0.75),  # 1 substitution / 4
        (tagged("the quick fox"), tagged("the quick brown fox"), OCR, 0.75),  # 1 deletion / 4
        (tagged("the very quick brown fox jumps"), tagged("the quick brown fox"), OCR, 0.5),  # 2 inserted / 4
        (tagged("The quick brown fox"), tagged("the quick brown fox"), OCR, 0.75),
        (tagged("a b c d e f g h i"), tagged("the quick brown fox"), OCR, 0.0),  # WER 9/4, clipped
        (tagged("anything"), "<answer> </answer>", OCR, 0.0),  # empty reference does not crash
        # free-form: mean ROUGE-1/2/L F1 with stemming
        (tagged("the cat sat on the mat"), tagged("the cat sat on the mat"), FREE, 1.0),
        (tagged("red apple"), tagged("blue car"), FREE, 0.0),
        # R1 F1 = 2/3 (P 3/3, R 3/6), R2 F1 = 4/7 (P 2/2, R 2/5), RL F1 = 2/3 (LCS 3): mean 40/63
        (tagged("the cat sat"), tagged("the cat sat on the mat"), FREE, 40 / 63),
        (tagged("yes"), tagged("yes"), FREE, 2 / 3),  # one word has no bigram: ROUGE-2 is 0
        (tagged("run dog"), tagged("running dogs"), FREE, 1.0),  # Porter stemming
        (tagged("!!!"), tagged("!!!"), FREE, 0.0),  # no [a-z0-9] token survives rouge_score
        # regression: 1 - min(1, |pred - gt| / |gt|)
        (tagged("10"), tagged("10"), REG, 1.0),
        (tagged("15"), tagged("10"), REG, 0.5),
        (tagged("5"), tagged("10"), REG, 0.5),
        (tagged("2.5"), tagged("2"), REG, 0.75),  # no decimal-ness rule here
        (tagged("30"), tagged("10"), REG, 0.0),
        (tagged("0"), tagged("0"), REG, 1.0),
        (tagged("0.5"), tagged("0"), REG, 0.0),
        (tagged("ten"), tagged("10"), REG, 0.0),
        # unknown problem type
        (tagged("B"), tagged("B"), "yes/no", 0.0),
    ],
)
def test_score_answer(completion, solution, problem_type, expected):
    assert score_answer(completion, solution, problem_type) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("a b c d", "a b c d", 0.0),
        ("a b c d", "a x c d", 0.25),
        ("a b c d", "b c d", 0.25),
        ("a b", "b a", 1.0),  # two substitutions
        ("a  b\nc", "a b c", 0.0),  # any whitespace separates words
        ("", "", 0.0),
        ("", "a b", 2.0),  # divided by max(1, 0)
    ],
)
def test_word_error_rate(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>look at frame 3</think><answer>B</answer>", 1.0),
        ("<think>r</think>\n\n<answer>B</answer>", 1.0),
        ("<think>multi\nline</think> <answer>x\ny</answer>", 1.0),
        ("<think></think><answer></answer>", 1.0),
        ("<think>r</think><answer>B</answer><answer>C</answer>", 1.0),  # lazy .*? still reaches the last tag
        (" <think>r</think><answer>B</answer>", 0.0),  # leading whitespace
        ("<think>r</think><answer>B</answer>\n", 0.0),  # trailing whitespace
        ("<think>r</think>so<answer>B</answer>", 0.0),
        ("<answer>B</answer>", 0.0),
        ("<answer>B</answer><think>r</think>", 0.0),
        ("<think>r</think>", 0.0),
        ("", 0.0),
        (None, 0.0),
    ],
)
def test_format_score(completion, expected):
    assert format_score(completion) == expected


def test_mra_thresholds_are_exact():
    assert MRA_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        (100.0, 100.0, 1.0),
        (104.0, 100.0, 1.0),  # 0.04 < 0.05
        (105.0, 100.0, 0.9),  # 0.05 is not < 0.05 (θ = 0.95)
        (110.0, 100.0, 0.8),  # 0.1 < 1-θ for θ ≤ 0.85: 8 of 10
        (90.0, 100.0, 0.8),
        (149.0, 100.0, 0.1),  # only θ = 0.5
        (150.0, 100.0, 0.0),  # exactly 0.5: strict
        (50.0, 100.0, 0.0),
        (300.0, 100.0, 0.0),
        (-110.0, -100.0, 0.8),
        (0.0, 0.0, 1.0),
        (1.0, 0.0, 0.0),
        (math.nan, 100.0, 0.0),
        (math.inf, 100.0, 0.0),
    ],
)
def test_mean_relative_accuracy(pred, gt, expected):
    assert mean_relative_accuracy(pred, gt) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "solution", "expected"),
    [
        (tagged("110"), tagged("100"), 0.8),
        ("<think>about 1.1 m</think><answer> 1.1 </answer>", tagged("1.0"), 0.8),
        (tagged("1,100"), tagged("1000"), 0.8),  # commas removed, no decimal-ness rule
        (tagged("150"), tagged("100"), 0.0),
        (tagged("about 3"), tagged("3"), 0.0),
        ("110", tagged("100"), 0.0),
        ("<answer></answer>", tagged("100"), 0.0),
        (None, tagged("100"), 0.0),
    ],
)
def test_score_mra(completion, solution, expected):
    assert score_mra(completion, solution) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("a_comp", "a_full", "eta_cap", "expected_eta"),
    [
        (0.5, 1.0, 1.0, 0.5),
        (0.6, 0.5, 1.0, 1.0),  # 1.2 capped
        (0.6, 0.5, 1.5, 1.2),
        (0.0, 0.0, 1.0, 1.0),  # a_full = 0: eta_cap
        (0.5, 0.0, 1.0, 1.0),
        (0.0, 0.5, 1.0, 0.0),
    ],
)
def test_retention_ratio(a_comp, a_full, eta_cap, expected_eta):
    assert retention_ratio(a_comp, a_full, eta_cap=eta_cap) == pytest.approx(expected_eta)


@pytest.mark.parametrize(
    ("a_comp", "a_full", "tau", "alpha", "eta_cap", "expected"),
    [
        (0.6, 1.0, 0.4, 1.0, 1.0, 0.2),
        (0.6, 1.0, 0.6, 1.0, 1.0, 0.0),  # η = τ
        (0.3, 1.0, 0.6, 1.0, 1.0, 0.0),  # below τ: no penalty, just no bonus
        (0.6, 0.5, 0.6, 1.0, 1.0, 0.4),  # η = 1.2 capped at 1
        (0.6, 0.5, 0.6, 1.0, 1.5, 0.6),
        (0.0, 0.0, 0.6, 1.0, 1.0, 0.4),  # a_full = 0: η = eta_cap
        (0.5, 1.0, 0.4, 2.0, 1.0, 0.2),  # alpha scales
    ],
)
def test_compression_bonus(a_comp, a_full, tau, alpha, eta_cap, expected):
    assert compression_bonus(a_comp, a_full, tau=tau, alpha=alpha, eta_cap=eta_cap) == pytest.approx(expected)


def test_compression_bonus_rejects_negative_accuracy():
    with pytest.raises(ValueError, match="a_full"):
        compression_bonus(0.5, -1.0, tau=0.6)


@pytest.mark.parametrize(
    ("accuracy", "fmt", "a_full", "tau", "is_video", "rewards", "eta", "r_c"),
    [
        # a_comp 0.5, η 0.5, r_c 0.1: only the two correct completions get it
        ([1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], 1.0, 0.4, True, [2.1, 1.1, 1.0, 0.0], 0.5, 0.1),
        # the same group as images: no bonus
        ([1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], 1.0, 0.4, False, [2.0, 1.0, 1.0, 0.0], None, 0.0),
        # partial accuracy: 0.5 counts as correct, 0.25 does not; η = 0.375/0.25 capped at 1
        ([0.5, 0.25], [1.0, 1.0], 0.25, 0.6, True, [1.9, 1.25], 1.0, 0.4),
        # teacher always wrong: η = 1, r_c = 0.4, but nobody correct
        ([0.0, 0.0], [1.0, 0.0], 0.0, 0.6, True, [1.0, 0.0], 1.0, 0.4),
        # student far below the teacher: η 0.25 < τ
        ([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], 1.0, 0.6, True, [2.0, 1.0, 1.0, 1.0], 0.25, 0.0),
    ],
)
def test_cgrpo_reward_breakdown(accuracy, fmt, a_full, tau, is_video, rewards, eta, r_c):
    breakdown = cgrpo_reward_breakdown(accuracy, fmt, a_full=a_full, tau=tau, is_video=is_video)
    assert breakdown.rewards == pytest.approx(rewards)
    assert breakdown.correct == [acc >= 0.5 for acc in accuracy]
    assert breakdown.a_comp == pytest.approx(sum(accuracy) / len(accuracy))
    assert breakdown.eta == (None if eta is None else pytest.approx(eta))
    assert breakdown.r_c == pytest.approx(r_c)
    assert cgrpo_rewards(accuracy, fmt, a_full=a_full, tau=tau, is_video=is_video) == pytest.approx(rewards)


@pytest.mark.parametrize(
    ("accuracy", "fmt", "a_full", "match"),
    [
        ([1.0, 0.0], [1.0], 1.0, "aligned"),
        ([], [], 1.0, "non-empty"),
        ([1.0, 0.0], [1.0, 1.0], None, "a_full"),
    ],
)
def test_cgrpo_reward_breakdown_rejects(accuracy, fmt, a_full, match):
    with pytest.raises(ValueError, match=match):
        cgrpo_reward_breakdown(accuracy, fmt, a_full=a_full, tau=0.6)


@pytest.mark.parametrize(
    ("rewards", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]),
        # mean 1, sample std 1 (population std would be 0.816)
        ([2.0, 0.0, 1.0], [1 / 1.0001, -1 / 1.0001, 0.0]),
        # mean 0.875, sample std 0.8539125638299665: the values torch + trl.nanstd give
        ([1.0, 0.0, 2.0, 0.5], [0.14636787, -1.02457499, 1.31731081, -0.43910357]),
    ],
)
def test_group_advantages(rewards, expected):
    assert group_advantages(rewards) == pytest.approx(expected, abs=1e-6)


def test_group_advantages_needs_two_rewards():
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages([1.0])


def as_conversation(texts: list[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "assistant", "content": text}] for text in texts]


ADAPTER_TEXTS = [
    "<think>r</think><answer>B</answer>",
    "<think>r</think><answer>C</answer>",
    "<answer>3.0</answer>",
    "no tags at all",
]
ADAPTER_COLUMNS = {
    "solution": [tagged("B"), tagged("B"), tagged("3.00"), tagged("7")],
    "problem_type": [MC, MC, NUM, NUM],
}


@pytest.mark.parametrize("completions", [ADAPTER_TEXTS, as_conversation(ADAPTER_TEXTS)], ids=["text", "chat"])
def test_accuracy_reward_adapter(completions):
    rewards = accuracy_reward(
        prompts=["p"] * 4,
        completions=completions,
        completion_ids=[[0]] * 4,
        trainer_state=None,
        **ADAPTER_COLUMNS,
    )
    assert rewards == [1.0, 0.0, 1.0, 0.0]


@pytest.mark.parametrize("completions", [ADAPTER_TEXTS, as_conversation(ADAPTER_TEXTS)], ids=["text", "chat"])
def test_format_reward_adapter(completions):
    rewards = format_reward(prompts=["p"] * 4, completions=completions, **ADAPTER_COLUMNS)
    assert rewards == [1.0, 1.0, 0.0, 0.0]


def test_adapter_reads_missing_content_as_empty():
    completions = [[{"role": "assistant", "content": None}]]
    assert accuracy_reward(["p"], completions, solution=[tagged("B")], problem_type=[MC]) == [0.0]


CORRECT, WRONG = "<think>r</think><answer>B</answer>", "<think>r</think><answer>C</answer>"
CGRPO_COLUMNS = {
    # group 0: a video whose teacher scored 1.0; group 1: an image
    "solution": [tagged("B")] * 4,
    "problem_type": [MC] * 4,
    "a_full": [1.0, 1.0, None, None],
    "data_type": ["video", "video", "image", "image"],
}


@pytest.mark.parametrize(
    "completions",
    [[CORRECT, WRONG, CORRECT, "B"], as_conversation([CORRECT, WRONG, CORRECT, "B"])],
    ids=["text", "chat"],
)
def test_cgrpo_reward_adapter(completions):
    metrics: dict[str, float] = {}
    extra: dict[str, list] = {}
    reward_fn = make_cgrpo_reward(tau=0.4, alpha=1.0, eta_cap=1.0, num_generations=2)
    rewards = reward_fn(
        prompts=["p"] * 4,
        completions=completions,
        log_metric=metrics.__setitem__,
        log_extra=extra.__setitem__,
        trainer_state=None,
        **CGRPO_COLUMNS,
    )
    # video: a_comp 0.5, η 0.5, r_c 0.1 for the correct one only; image: accuracy + format
    assert rewards == pytest.approx([2.1, 1.0, 2.0, 0.0])
    assert metrics == pytest.approx({"cgrpo/eta": 0.5, "cgrpo/r_c": 0.1, "cgrpo/a_comp": 0.5})
    assert extra["cgrpo_bonus"] == pytest.approx([0.1, 0.0, 0.0, 0.0])


def test_cgrpo_reward_adapter_is_named_and_picklable():
    reward_fn = make_cgrpo_reward(tau=0.6, alpha=1.0, eta_cap=1.0, num_generations=2)
    assert (reward_fn.__name__, accuracy_reward.__name__, format_reward.__name__) == (
        "cgrpo_reward",
        "accuracy_reward",
        "format_reward",
    )
    restored = pickle.loads(pickle.dumps(reward_fn))
    assert restored(prompts=["p"] * 4, completions=[CORRECT] * 4, **CGRPO_COLUMNS) == pytest.approx(
        [2.4, 2.4, 2.0, 2.0]
    )


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({**CGRPO_COLUMNS, "solution": [tagged("B"), tagged("C"), tagged("B"), tagged("B")]}, "one sample"),
        ({**CGRPO_COLUMNS, "data_type": ["video", "video", "audio", "audio"]}, "data_type"),
        ({**CGRPO_COLUMNS, "a_full": [None, None, None, None]}, "a_full"),
    ],
)
def test_cgrpo_reward_adapter_rejects_bad_batches(columns, match):
    reward_fn = make_cgrpo_reward(tau=0.6, alpha=1.0, eta_cap=1.0, num_generations=2)
    with pytest.raises(ValueError, match=match):
        reward_fn(prompts=["p"] * 4, completions=[CORRECT] * 4, **columns)


def test_cgrpo_reward_adapter_rejects_split_groups():
    reward_fn = make_cgrpo_reward(tau=0.6, alpha=1.0, eta_cap=1.0, num_generations=4)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        reward_fn(
            prompts=["p"] * 2, completions=[CORRECT] * 2, **{k: v[:2] for k, v in CGRPO_COLUMNS.items()}
        )
