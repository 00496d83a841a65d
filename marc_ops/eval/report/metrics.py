"""The report's numbers for DVC: flat ``<benchmark>/<method>/<figure>`` metrics and the Fig. 4 plot points."""

from __future__ import annotations

import polars as pl

from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report.methods import method_order
from marc_ops.eval.scoring import score_table

SUMMARY_METRICS = ("score", "accuracy", "mra", "n", "n_failed", "visual_tokens_mean", "latency_s_mean")
EFFICIENCY_METRICS = (
    "visual_tokens",
    "peak_memory_gb",
    "vision_s",
    "merge_s",
    "prefill_s",
    "generate_s",
    "end_to_end_s",
)

POINTS_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.String(),
    "method": pl.String(),
    "visual_tokens": pl.Float64(),
    "score": pl.Float64(),
}


def report_metrics(
    summary: pl.DataFrame,
    cost: EfficiencyProfile | None,
    chance: pl.DataFrame,
    types: pl.DataFrame,
    categories: pl.DataFrame,
) -> dict[str, float]:
    """Flat ``<benchmark>/<method>/<figure>`` numbers; absent figures are left out, never filled in."""
    metrics: dict[str, float] = {}
    for r in summary.iter_rows(named=True):
        for field in SUMMARY_METRICS:
            if r[field] is not None:
                metrics[f"{r['benchmark']}/{r['method']}/{field}"] = r[field]
    methods = method_order(summary["method"].to_list())
    for value in ("score", "visual_tokens_mean"):
        for r in score_table(summary, methods=methods, value=value).iter_rows(named=True):
            if r["Mean"] is not None:
                metrics[f"mean/{r['method']}/{value}"] = r["Mean"]
    for r in chance.iter_rows(named=True):
        prefix = f"{r['benchmark']}/{r['method']}"
        metrics |= {
            f"{prefix}/mc_accuracy": r["mc_accuracy"],
            f"{prefix}/mc_chance": r["chance"],
            f"{prefix}/mc_above_chance": r["above_chance"],
            f"{prefix}/mc_p_guessing": r["p_guessing"],
        }
    for r in types.iter_rows(named=True):
        metrics[f"{r['benchmark']}/{r['method']}/reward_by_type/{r['problem_type']}"] = r["mean_reward"]
    for r in categories.iter_rows(named=True):
        prefix = f"{r['benchmark']}/{r['method']}/mc_by_category/{r['category']}"
        metrics |= {
            f"{prefix}/mc_accuracy": r["mc_accuracy"],
            f"{prefix}/mc_above_chance": r["above_chance"],
            f"{prefix}/mc_p_guessing": r["p_guessing"],
        }
    if cost is not None:
        for m in cost.methods:
            for field in EFFICIENCY_METRICS:
                metrics[f"efficiency/{m.method}/{field}"] = getattr(m, field)
            metrics[f"efficiency/{m.method}/vision_share"] = m.vision_share
    return metrics


def plot_points(summary: pl.DataFrame) -> pl.DataFrame:
    """Our (visual tokens, score) points per benchmark, plus ``mean`` where all six paper benchmarks ran."""
    methods = method_order(summary["method"].to_list())
    points = summary.filter(  # no visual tokens (the prior answer) has no place on a log axis: a line instead
        pl.col("score").is_not_null() & (pl.col("visual_tokens_mean") > 0)
    ).select("benchmark", "method", visual_tokens="visual_tokens_mean", score="score")
    score = score_table(summary, methods=methods)
    tokens = score_table(summary, methods=methods, value="visual_tokens_mean")
    means = [
        {"benchmark": "mean", "method": s["method"], "visual_tokens": t["Mean"], "score": s["Mean"]}
        for s, t in zip(score.iter_rows(named=True), tokens.iter_rows(named=True), strict=True)
        if s["Mean"] is not None and t["Mean"] is not None
    ]
    return pl.concat([points.cast(POINTS_SCHEMA), pl.DataFrame(means, schema=POINTS_SCHEMA)])
