"""``build_report``: check the inputs, lay out the sections, draw the plots, write every file atomically."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from marc_ops.config.tasks import resolve_task
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report.metrics import plot_points, report_metrics
from marc_ops.eval.report.plots import accuracy_vs_tokens_png, efficiency_png, method_styles
from marc_ops.eval.report.render import render_html, render_markdown
from marc_ops.eval.report.sections import report_sections
from marc_ops.eval.report.statistics import BY_TYPE_SCHEMA, CATEGORY_CHANCE_SCHEMA, CHANCE_SCHEMA
from marc_ops.eval.scoring import SUMMARY_SCHEMA
from marc_ops.io import atomic_file, write_json
from marc_ops.rewards import AnswerRule


@dataclass(frozen=True)
class ReportFiles:
    """The files :func:`build_report` wrote; ``plots`` by name (``accuracy_vs_tokens``, ``efficiency``)."""

    markdown: Path
    html: Path
    plots: dict[str, Path]
    metrics_json: Path
    plot_data: Path


def build_report(
    summary: pl.DataFrame,
    efficiency: Mapping[str, Any] | EfficiencyProfile | None,
    out_dir: Path | str,
    *,
    profile: str,
    answer_rule: AnswerRule,
    multiple_choice: pl.DataFrame | None = None,
    by_type: pl.DataFrame | None = None,
    by_category: pl.DataFrame | None = None,
) -> ReportFiles:
    """Render the report of one profile's runs into ``out_dir`` (see :mod:`marc_ops.eval.report` for the files).

    Args:
        summary: :func:`~marc_ops.eval.scoring.summarize` output, one row per (benchmark, method).
        efficiency: the efficiency profile (validated as :class:`EfficiencyProfile`), or ``None``.
        profile: the profile name, e.g. ``"tiny"``; printed in the title.
        answer_rule: the rule that scored every record of ``summary`` (``eval.answer_rule``), stated
            under each table of scores.
        multiple_choice: :func:`multiple_choice_vs_chance` output, for the chance levels; the records
            alone do not hold the number of options.
        by_type: :func:`reward_by_problem_type` output: our own suites (not the paper's tables) show
            each method's mean reward per problem type beside `prior-answer`'s.
        by_category: :func:`multiple_choice_by_category` output: our own suites show each method's
            multiple-choice accuracy against chance per category.
    """
    summary = _checked_summary(summary)
    cost = None if efficiency is None else EfficiencyProfile.model_validate(efficiency)
    chance = _checked_frame(multiple_choice, CHANCE_SCHEMA, "multiple_choice", "multiple_choice_vs_chance()")
    types = _checked_frame(by_type, BY_TYPE_SCHEMA, "by_type", "reward_by_problem_type(records)")
    categories = _checked_frame(
        by_category, CATEGORY_CHANCE_SCHEMA, "by_category", "multiple_choice_by_category(records, rows)"
    )
    sections = report_sections(summary, cost, chance, types, categories, answer_rule)
    styles = method_styles(
        summary["method"].to_list() + ([] if cost is None else [m.method for m in cost.methods])
    )
    pngs = {"accuracy_vs_tokens": accuracy_vs_tokens_png(summary, styles)}
    if cost is not None:
        pngs["efficiency"] = efficiency_png(cost, styles)
    title = f"MARC evaluation report — profile `{profile}`"
    return _write(
        Path(out_dir),
        markdown=render_markdown(title, sections),
        html_text=render_html(title, sections, pngs),
        pngs=pngs,
        metrics=report_metrics(summary, cost, chance, types, categories),
        points=plot_points(summary),
    )


def _checked_frame(
    frame: pl.DataFrame | None, schema: dict[str, pl.DataType], name: str, how: str
) -> pl.DataFrame:
    if frame is None:
        return pl.DataFrame(schema=schema)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; build it with {how}")
    return frame.select(list(schema)).cast(schema)


def _checked_summary(summary: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in SUMMARY_SCHEMA if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks column(s) {missing}; build it with marc_ops.eval.summarize(records)")
    summary = summary.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA)
    repeated = summary.filter(pl.struct("benchmark", "method").is_duplicated())
    if repeated.height:
        pairs = sorted(set(zip(repeated["benchmark"], repeated["method"], strict=True)))
        raise ValueError(f"summary holds (benchmark, method) pair(s) more than once: {pairs}")
    for name in summary["benchmark"].unique().to_list():
        resolve_task(name)
    return summary


def _write(
    out_dir: Path,
    *,
    markdown: str,
    html_text: str,
    pngs: Mapping[str, bytes],
    metrics: dict[str, float],
    points: pl.DataFrame,
) -> ReportFiles:
    """Write every file atomically; a plot this build did not draw is removed so none is left stale."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name in ("accuracy_vs_tokens", "efficiency"):
        path = out_dir / f"{name}.png"
        if name in pngs:
            with atomic_file(path, "wb") as handle:
                handle.write(pngs[name])
            plots[name] = path
        else:
            path.unlink(missing_ok=True)
    plot_data = out_dir / "accuracy_vs_tokens.csv"
    with atomic_file(plot_data) as handle:
        handle.write(points.write_csv())
    metrics_json = out_dir / "metrics.json"
    write_json(metrics_json, metrics)
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    with atomic_file(markdown_path) as handle:
        handle.write(markdown)
    with atomic_file(html_path) as handle:
        handle.write(html_text)
    return ReportFiles(
        markdown=markdown_path, html=html_path, plots=plots, metrics_json=metrics_json, plot_data=plot_data
    )
