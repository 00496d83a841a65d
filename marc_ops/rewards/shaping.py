"""C-GRPO reward shaping (paper 3.2.2, eqs 6-9): retention ratio, compression bonus, group advantages.

A group is the G completions the student samples for one training sample. Its rewards are
the per-completion accuracy and format rewards (:mod:`marc_ops.rewards.accuracy`) plus a
retention bonus ``r_c`` that only correct completions of video samples receive.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# A completion is "correct" (eq 8's indicator) when its accuracy reward reaches this value:
# exact for the 0/1 problem types, a majority match for OCR, free-form and regression.
CORRECTNESS_THRESHOLD = 0.5

# TRL's GRPOTrainer adds this to the group std before dividing (trl 1.16, grpo_trainer.py).
ADVANTAGE_EPSILON = 1e-4


def retention_ratio(a_comp: float, a_full: float, *, eta_cap: float = 1.0) -> float:
    """η = a_comp / a_full (eq 6), capped at ``eta_cap``; η = ``eta_cap`` when ``a_full == 0``.

    A teacher that never answers correctly leaves nothing to retain, so the student retains
    "all of it". Raises ``ValueError`` on a negative mean accuracy, which no reward here yields.
    """
    if a_comp < 0 or a_full < 0:
        raise ValueError(f"a_comp and a_full are mean accuracy rewards in [0, 1], got {a_comp=}, {a_full=}")
    if a_full == 0:
        return eta_cap
    return min(a_comp / a_full, eta_cap)


def compression_bonus(
    a_comp: float, a_full: float, *, tau: float, alpha: float = 1.0, eta_cap: float = 1.0
) -> float:
    """r_c = alpha · max(0, η − tau) (eq 7), with η from :func:`retention_ratio`."""
    return alpha * max(0.0, retention_ratio(a_comp, a_full, eta_cap=eta_cap) - tau)


@dataclass(frozen=True)
class CGRPORewardBreakdown:
    """The shaped rewards of one group and the terms that made them, for logging.

    ``rewards[i] = accuracy[i] + format[i] + (r_c if correct[i] else 0)`` (eq 8).
    ``eta`` is ``None`` for images, which are not compressed and get ``r_c = 0``.
    """

    rewards: list[float]
    correct: list[bool]
    a_comp: float
    eta: float | None
    r_c: float


def cgrpo_reward_breakdown(
    accuracy: Sequence[float],
    format: Sequence[float],
    *,
    a_full: float | None,
    tau: float,
    alpha: float = 1.0,
    eta_cap: float = 1.0,
    is_video: bool = True,
) -> CGRPORewardBreakdown:
    """Shape one group's rewards: R_i = accuracy_i + format_i + 1[accuracy_i ≥ 0.5] · r_c.

    Args:
        accuracy: the G accuracy rewards of the group, each in [0, 1].
        format: the G format rewards, aligned with ``accuracy``.
        a_full: the teacher's mean accuracy on this sample (``teacher_rewards``); may be
            ``None`` for images, required for videos.
        tau, alpha, eta_cap: eq 7's threshold and scale, and the cap on η.
        is_video: images get no compression, hence ``r_c = 0`` and ``eta = None``.

    a_comp is the mean of ``accuracy``.
    """
    if len(accuracy) != len(format) or not accuracy:
        raise ValueError(
            f"accuracy and format must be non-empty and aligned, got {len(accuracy)} and {len(format)} rewards"
        )
    a_comp = statistics.fmean(accuracy)
    if is_video:
        if a_full is None:
            raise ValueError("a video group needs a_full (the teacher's mean accuracy); got None")
        eta: float | None = retention_ratio(a_comp, a_full, eta_cap=eta_cap)
        r_c = compression_bonus(a_comp, a_full, tau=tau, alpha=alpha, eta_cap=eta_cap)
    else:
        eta, r_c = None, 0.0
    correct = [acc >= CORRECTNESS_THRESHOLD for acc in accuracy]
    rewards = [
        acc + fmt + (r_c if is_correct else 0.0)
        for acc, fmt, is_correct in zip(accuracy, format, correct, strict=True)
    ]
    return CGRPORewardBreakdown(rewards=rewards, correct=correct, a_comp=a_comp, eta=eta, r_c=r_c)


def cgrpo_rewards(
    accuracy: Sequence[float],
    format: Sequence[float],
    *,
    a_full: float | None,
    tau: float,
    alpha: float = 1.0,
    eta_cap: float = 1.0,
    is_video: bool = True,
) -> list[float]:
    """The shaped rewards R_i of one group; see :func:`cgrpo_reward_breakdown`."""
    return cgrpo_reward_breakdown(
        accuracy, format, a_full=a_full, tau=tau, alpha=alpha, eta_cap=eta_cap, is_video=is_video
    ).rewards


def group_advantages(rewards: Sequence[float]) -> list[float]:
    """A_i = (R_i − mean R) / (std R + 1e-4) within one group (eq 9), as TRL 1.16 computes it.

    TRL's default ``scale_rewards="group"`` divides by ``nanstd``, which applies Bessel's
    correction: this is the sample standard deviation (n − 1), so a group needs at least two
    rewards. A group with equal rewards gets all-zero advantages.
    """
    if len(rewards) < 2:
        raise ValueError(f"a group needs at least 2 rewards for a sample std, got {len(rewards)}")
    mean = statistics.fmean(rewards)
    std = statistics.stdev(rewards)
    return [(reward - mean) / (std + ADVANTAGE_EPSILON) for reward in rewards]
