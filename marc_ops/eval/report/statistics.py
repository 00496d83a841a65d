"""Figures computed from the per-sample records: multiple-choice accuracy against chance, reward per problem type.

Every frame here has a declared schema (:data:`CHANCE_SCHEMA`, :data:`CATEGORY_CHANCE_SCHEMA`,
:data:`BY_TYPE_SCHEMA`); a failed sample (status other than ``ok``) counts as wrong / 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import poisson_binom

CHANCE_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.String(),
    "method": pl.String(),
    "n_mc": pl.Int64(),
    "mc_accuracy": pl.Float64(),  # percent; failed samples score 0
    "chance": pl.Float64(),  # percent: mean over the items of 1 / number of options
    "above_chance": pl.Float64(),  # percentage points
    "p_guessing": pl.Float64(),  # P(at least as many right by guessing uniformly), one-sided, exact
}

CATEGORY_CHANCE_SCHEMA: dict[str, pl.DataType] = {**CHANCE_SCHEMA, "category": pl.String()}

BY_TYPE_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.String(),
    "method": pl.String(),
    "problem_type": pl.String(),
    "n": pl.Int64(),
    "mean_reward": pl.Float64(),  # percent; failed samples score 0
}


def multiple_choice_vs_chance(records: pl.DataFrame, rows: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Per (benchmark, method): accuracy on the multiple-choice items against uniform guessing (percent).

    Args:
        records: per-sample records (:data:`~marc_ops.eval.scoring.RECORD_SCHEMA`).
        rows: each benchmark's manifest rows (``load_task_rows(...).rows``) by benchmark name; only
            ``problem_id`` and ``options`` are read.

    Chance is the mean over the items a method answered of ``1 / len(options)``; failed samples
    count as wrong. Returns a frame of :data:`CHANCE_SCHEMA`.
    """
    return pl.DataFrame(_vs_chance(records, rows, by_category=False), schema=CHANCE_SCHEMA)


def multiple_choice_by_category(records: pl.DataFrame, rows: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """:func:`multiple_choice_vs_chance` per (benchmark, method, category): the manifest rows' ``category``
    (the media folder, e.g. ``SynthScenes``) splits a suite by what its items ask. Returns a frame of
    :data:`CATEGORY_CHANCE_SCHEMA`."""
    return pl.DataFrame(_vs_chance(records, rows, by_category=True), schema=CATEGORY_CHANCE_SCHEMA)


def _vs_chance(
    records: pl.DataFrame, rows: Mapping[str, pl.DataFrame], *, by_category: bool
) -> list[dict[str, Any]]:
    mc = records.filter(pl.col("problem_type") == "multiple choice")
    out = []
    for (benchmark, method), group in mc.group_by(["benchmark", "method"], maintain_order=True):
        if benchmark not in rows:
            raise ValueError(
                f"no manifest rows for benchmark {benchmark!r}; pass rows={{{benchmark!r}: ...}}"
            )
        keys = ["problem_id", "category"] if by_category else ["problem_id"]
        items = rows[benchmark].select(*keys, n_options=pl.col("options").list.len())
        joined = group.join(items, on="problem_id", how="left")
        unknown = joined.filter(pl.col("n_options").fill_null(0) == 0)["problem_id"].to_list()
        if unknown:
            raise ValueError(
                f"{benchmark}/{method}: multiple-choice record(s) {unknown[:5]} have no options in the "
                "manifest rows given; the records and the rows must come from the same benchmark file"
            )
        if not by_category:
            out.append({"benchmark": benchmark, "method": method, **_against_chance(joined)})
            continue
        parts = joined.partition_by("category", maintain_order=True, as_dict=True)
        for (category,), part in sorted(parts.items(), key=lambda kv: str(kv[0][0])):
            out.append(
                {"benchmark": benchmark, "method": method, "category": category, **_against_chance(part)}
            )
    return out


def _against_chance(items: pl.DataFrame) -> dict[str, Any]:
    """n, accuracy, chance, margin and the guessing p-value of some multiple-choice records that carry
    ``n_options``."""
    reward = _scored_reward()
    row = items.select(
        n_mc=pl.len(),
        mc_accuracy=reward.mean() * 100,
        chance=(1 / pl.col("n_options")).mean() * 100,
        n_right=(reward >= 0.5).sum(),
    ).row(0, named=True)
    n_right = row.pop("n_right")
    return {
        **row,
        "above_chance": row["mc_accuracy"] - row["chance"],
        "p_guessing": guessing_p_value((1 / items["n_options"]).to_list(), n_right),
    }


def _scored_reward() -> pl.Expr:
    """A record's reward, with a failed sample (status other than ``ok``) scored 0."""
    return pl.when(pl.col("status") == "ok").then(pl.col("reward")).otherwise(0.0)


def guessing_p_value(chances: Sequence[float], n_right: int) -> float:
    """P(at least ``n_right`` items right) for a guesser who gets item i right with probability ``chances[i]``.

    The exact one-sided test of "above chance" for items with different numbers of options (the
    tail of a Poisson binomial distribution, summed from its probability masses): a method whose
    multiple-choice score has ``p < 0.05`` beats uniform guessing with 95 % confidence.
    ``n_right <= 0`` gives 1, more than ``len(chances)`` gives 0.
    """
    if any(not 0.0 <= c <= 1.0 for c in chances):
        raise ValueError(
            f"chances must be probabilities in [0, 1], got {[c for c in chances if not 0 <= c <= 1][:3]}"
        )
    first = max(n_right, 0)
    if first > len(chances):
        return 0.0
    if len(chances) == 0:
        return 1.0
    # The masses, not 1 - cdf: a small tail keeps its precision.
    tail = poisson_binom.pmf(np.arange(first, len(chances) + 1), list(chances))
    return float(min(1.0, tail.sum()))


def reward_by_problem_type(records: pl.DataFrame) -> pl.DataFrame:
    """Per (benchmark, method, problem type): the number of items and their mean reward (percent).

    The reward is the task's per-item score (0/1 for multiple choice and numbers, MRA for regression,
    the mean ROUGE-1/2/L F1 for free-form); failed samples count as 0. Returns :data:`BY_TYPE_SCHEMA`.
    """
    reward = _scored_reward()
    return (
        records.group_by("benchmark", "method", "problem_type", maintain_order=True)
        .agg(n=pl.len(), mean_reward=reward.mean() * 100)
        .select(list(BY_TYPE_SCHEMA))
        .cast(BY_TYPE_SCHEMA)
    )
