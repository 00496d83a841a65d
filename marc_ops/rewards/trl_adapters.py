"""The rewards in TRL's reward-function form: ``fn(prompts, completions, **kwargs) -> list[float]``.

What TRL 1.16's ``GRPOTrainer`` passes (``_calculate_rewards`` and ``_generate_and_score_completions``):

- ``completions``: one entry per completion, either the decoded text (standard prompts) or,
  for conversational prompts, a list of messages ``[{"role": "assistant", "content": text}]``.
- every dataset column other than ``prompt`` as a keyword list aligned with ``completions``
  (here ``solution``, ``problem_type``, ``a_full``, ``data_type``), plus ``completion_ids``,
  ``trainer_state``, ``log_extra`` and ``log_metric``.
- rows in groups: ``RepeatSampler(mini_repeat_count=num_generations)`` repeats each sample
  ``num_generations`` times consecutively, and advantages are taken over
  ``rewards.view(-1, num_generations)``; so completions ``[k*G, (k+1)*G)`` form group k.

The C-GRPO reward is a callable class, not a closure, so that it stays picklable (TRL's own
parameterised rewards, ``trl/rewards/other_rewards.py``, do the same); TRL logs a reward
under its ``__name__``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from marc_ops.rewards.accuracy import format_score, score_answer
from marc_ops.rewards.shaping import cgrpo_reward_breakdown

Completion = str | list[dict[str, Any]]


def completion_text(completion: Completion) -> str:
    """The text of one TRL completion: the string itself, or the last message's ``content``.

    TRL decodes a conversational completion into a single assistant message (Video-R1 reads
    ``completion[0]["content"]``; with one message the two agree). A message whose content
    is ``None`` (a tool call without text) reads as ``""`` and so scores 0.
    """
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if content is None:
        return ""
    if not isinstance(content, str):
        raise TypeError(f"expected a message with text content, got content of type {type(content).__name__}")
    return content


def accuracy_reward(
    prompts: Sequence[Any],
    completions: Sequence[Completion],
    solution: Sequence[str],
    problem_type: Sequence[str],
    **kwargs: Any,
) -> list[float]:
    """Video-R1's accuracy reward per completion (:func:`~marc_ops.rewards.accuracy.score_answer`).

    Each row is scored with its own ``problem_type``; Video-R1 applies the batch's first
    problem type to every row, which is wrong for a mixed batch.
    """
    return [
        score_answer(completion_text(completion), sol, ptype)
        for completion, sol, ptype in zip(completions, solution, problem_type, strict=True)
    ]


def format_reward(prompts: Sequence[Any], completions: Sequence[Completion], **kwargs: Any) -> list[float]:
    """Video-R1's format reward per completion (:func:`~marc_ops.rewards.accuracy.format_score`)."""
    return [format_score(completion_text(completion)) for completion in completions]


class CGRPOReward:
    """TRL reward function for C-GRPO: accuracy + format + the correctness-gated bonus r_c.

    It already contains the accuracy and format rewards: give the trainer this function
    alone (or add ``accuracy_reward``/``format_reward`` with weight 0 to log them apart).
    Each group of ``num_generations`` consecutive rows is one sample's completions; the
    local batch TRL hands a process (``per_device_train_batch_size * steps_per_generation``
    rows) must therefore be a multiple of ``num_generations``, or a group would be split
    across processes and its a_comp unknowable here. That raises ``ValueError``.

    Logs, when TRL provides the hooks: ``cgrpo/eta``, ``cgrpo/r_c`` and ``cgrpo/a_comp``
    (means over this batch's video groups) and a ``cgrpo_bonus`` column (the bonus each
    completion received) in the completions table.
    """

    __name__ = "cgrpo_reward"

    def __init__(self, tau: float, alpha: float, eta_cap: float, num_generations: int):
        if num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 to form a group, got {num_generations}")
        self.tau = tau
        self.alpha = alpha
        self.eta_cap = eta_cap
        self.num_generations = num_generations

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Completion],
        solution: Sequence[str],
        problem_type: Sequence[str],
        a_full: Sequence[float | None],
        data_type: Sequence[str],
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        group_size = self.num_generations
        if len(completions) % group_size != 0:
            raise ValueError(
                f"got {len(completions)} completions, not a multiple of num_generations={group_size}: make "
                "per_device_train_batch_size * steps_per_generation a multiple of num_generations so that "
                "every group reaches this process whole"
            )
        accuracy = accuracy_reward(prompts, completions, solution, problem_type)
        formats = format_reward(prompts, completions)
        rewards: list[float] = []
        bonuses: list[float] = []
        video_groups = []
        for start in range(0, len(completions), group_size):
            rows = range(start, start + group_size)
            _check_one_sample(rows, solution, problem_type, data_type)
            is_video = _is_video(data_type[start])
            breakdown = cgrpo_reward_breakdown(
                accuracy[start : start + group_size],
                formats[start : start + group_size],
                a_full=a_full[start],
                tau=self.tau,
                alpha=self.alpha,
                eta_cap=self.eta_cap,
                is_video=is_video,
            )
            rewards.extend(breakdown.rewards)
            bonuses.extend(breakdown.r_c if correct else 0.0 for correct in breakdown.correct)
            if is_video:
                video_groups.append(breakdown)
        if log_metric is not None and video_groups:
            log_metric("cgrpo/eta", sum(group.eta for group in video_groups) / len(video_groups))
            log_metric("cgrpo/r_c", sum(group.r_c for group in video_groups) / len(video_groups))
            log_metric("cgrpo/a_comp", sum(group.a_comp for group in video_groups) / len(video_groups))
        if log_extra is not None:
            log_extra("cgrpo_bonus", bonuses)
        return rewards


def make_cgrpo_reward(tau: float, alpha: float, eta_cap: float, num_generations: int) -> CGRPOReward:
    """A TRL reward function for C-GRPO; see :class:`CGRPOReward`. Its ``__name__`` is ``cgrpo_reward``."""
    return CGRPOReward(tau=tau, alpha=alpha, eta_cap=eta_cap, num_generations=num_generations)


def _is_video(data_type: str) -> bool:
    if data_type not in ("video", "image"):
        raise ValueError(f"data_type must be 'video' or 'image', got {data_type!r}")
    return data_type == "video"


def _check_one_sample(
    rows: range, solution: Sequence[str], problem_type: Sequence[str], data_type: Sequence[str]
) -> None:
    # A misaligned batch would silently mix two samples' completions into one a_comp.
    keys = {(solution[i], problem_type[i], data_type[i]) for i in rows}
    if len(keys) != 1:
        raise ValueError(
            f"rows {rows.start}..{rows.stop - 1} should be one sample's {len(rows)} completions but carry "
            f"{len(keys)} different (solution, problem_type, data_type); TRL must repeat each sample "
            "num_generations times consecutively"
        )
