"""Rewards for training and evaluation: Video-R1 accuracy and format, MRA, and C-GRPO shaping.

Pure functions of text and numbers (SPEC sections 6 and 7); :mod:`.trl_adapters` wraps them
in TRL's reward-function signature.
"""

from marc_ops.rewards.accuracy import (
    ANSWER_RULES,
    MRA_THRESHOLDS,
    AnswerRule,
    answer_text,
    extract_answer,
    format_score,
    mean_relative_accuracy,
    parse_number,
    rouge_f1_mean,
    score_answer,
    score_answer_text,
    score_mra,
    score_mra_text,
    word_error_rate,
)
from marc_ops.rewards.shaping import (
    CORRECTNESS_THRESHOLD,
    CGRPORewardBreakdown,
    cgrpo_reward_breakdown,
    cgrpo_rewards,
    compression_bonus,
    group_advantages,
    retention_ratio,
)
from marc_ops.rewards.trl_adapters import (
    CGRPOReward,
    accuracy_reward,
    completion_text,
    format_reward,
    make_cgrpo_reward,
)

__all__ = [
    "ANSWER_RULES",
    "AnswerRule",
    "CGRPOReward",
    "CGRPORewardBreakdown",
    "CORRECTNESS_THRESHOLD",
    "MRA_THRESHOLDS",
    "accuracy_reward",
    "answer_text",
    "cgrpo_reward_breakdown",
    "cgrpo_rewards",
    "completion_text",
    "compression_bonus",
    "extract_answer",
    "format_reward",
    "format_score",
    "group_advantages",
    "make_cgrpo_reward",
    "mean_relative_accuracy",
    "parse_number",
    "retention_ratio",
    "rouge_f1_mean",
    "score_answer",
    "score_answer_text",
    "score_mra",
    "score_mra_text",
    "word_error_rate",
]
