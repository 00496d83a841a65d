"""The report: the paper's Tables 1-3 with our numbers beside the paper's, and the Fig. 4 / Fig. 5 analogues.

``build_report(summary, efficiency, out_dir, profile=...)`` writes, each file atomically::

    out_dir/
      report.md               the tables and notes; plots linked relatively
      report.html             the same content, self-contained (plots embedded as base64)
      accuracy_vs_tokens.png  score against mean visual tokens per method, log x (paper Fig. 4)
      efficiency.png          bars per method for each cost measure (paper Fig. 5); only with a profile
      metrics.json            flat numbers for ``dvc metrics``: {"synthetic/marc@0.6/score": 41.2, ...}
      accuracy_vs_tokens.csv  the plotted points for ``dvc plots`` (x: visual_tokens, y: score)

Every number in a table is either ours (from ``summary``, :data:`~marc_ops.eval.scoring.SUMMARY_SCHEMA`)
or the paper's, printed in rows labelled "(paper)" in italics; a benchmark we did not run is "—".
The paper's figures come from six real benchmarks; a benchmark outside them (the embedded default's
``synthetic`` suite) gets its own table and is never set beside them.

The efficiency profile is the JSON the profiler writes; :class:`EfficiencyProfile` is its schema and
validates it on both sides.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from marc_ops.config.methods import METHODS, resolve_method
from marc_ops.config.tasks import PAPER_BENCHMARKS, TASKS, resolve_task
from marc_ops.eval.paper import PAPER_ROWS, PAPER_VISUAL_TOKENS
from marc_ops.eval.scoring import PRIOR_METHOD, SUMMARY_SCHEMA, paper_table, score_table
from marc_ops.io import atomic_file, write_json
from marc_ops.tables import markdown_table

MISSING = "—"

# --- the efficiency profile (the profiler writes it, the report reads it) ---------------------------------


class MethodEfficiency(BaseModel):
    """One method's measured cost per sample; seconds, GB.

    ``vision_s`` (the vision tower), ``merge_s`` (the memory-aware merge), ``prefill_s`` and
    ``generate_s`` are parts of ``end_to_end_s``, so none of them may exceed it.
    ``memory_kind`` says what ``peak_memory_gb`` measures: process RSS (CPU) or CUDA peak allocated.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = Field(min_length=1)
    frames: int = Field(ge=1)
    visual_tokens: float = Field(ge=0)
    vision_s: float = Field(ge=0)
    prefill_s: float = Field(ge=0)
    generate_s: float = Field(ge=0)
    end_to_end_s: float = Field(gt=0)
    merge_s: float = Field(ge=0)
    peak_memory_gb: float = Field(ge=0)
    memory_kind: Literal["rss", "cuda"]

    @model_validator(mode="after")
    def _parts_within_end_to_end(self) -> MethodEfficiency:
        for part in ("vision_s", "merge_s", "prefill_s", "generate_s"):
            value = getattr(self, part)
            if value > self.end_to_end_s:
                raise ValueError(
                    f"method {self.method!r}: {part}={value:g} exceeds end_to_end_s={self.end_to_end_s:g}; "
                    "each stage time is a part of the end-to-end time of the same sample (same unit: seconds)"
                )
        return self

    @property
    def vision_share(self) -> float:
        """The vision tower's share of end-to-end time, in [0, 1]."""
        return self.vision_s / self.end_to_end_s


class EfficiencyProfile(BaseModel):
    """What the ``efficiency_profile`` asset writes: the setting, then one entry per method.

    Attributes:
        device: where it ran, e.g. ``"NVIDIA A6000"`` or ``"cpu (2 cores)"``.
        model: the model id or path.
        dtype: e.g. ``"bfloat16"``.
        batch_size: samples per forward pass (the paper uses 15).
        input: what was fed, e.g. ``"MMVU (mc), answer-only prompt, 30 samples"``.
        methods: one entry per method, unique names, all measured with the same ``memory_kind``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str
    model: str
    dtype: str
    batch_size: int = Field(ge=1)
    input: str
    methods: list[MethodEfficiency] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_entry_per_method_one_memory_kind(self) -> EfficiencyProfile:
        names = [m.method for m in self.methods]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"methods {repeated} appear more than once; keep one entry per method")
        kinds = sorted({m.memory_kind for m in self.methods})
        if len(kinds) > 1:
            raise ValueError(
                f"memory_kind differs between methods ({kinds}); RSS and CUDA peaks are not comparable, "
                "profile every method on the same device"
            )
        return self

    @property
    def memory_kind(self) -> str:
        return self.methods[0].memory_kind


# --- what the paper printed, laid out as its tables -------------------------------------------------------

# Rows of each table in the paper's order, by PaperRow key (Tables 2 and 3 repeat Table 1 rows).
PAPER_LAYOUTS: dict[str, tuple[str, ...]] = {
    "Table 1": (
        "baseline-64f",
        "baseline-16f",
        "internvl3.5-2b",
        "internvl3.5-4b",
        "gemma-3-4b",
        "bytevideollm",
        "moviechat",
        "vidcom2",
        "marc@0.6",
    ),  # fmt: skip
    "Table 2": ("baseline-64f", "vmr-64f", "sft-vmr-1f", "sft-1f", "marc@0.6"),
    "Table 3": ("marc@0.4", "marc@0.6", "marc@0.8"),
}
PAPER_CAPTIONS = {
    "Table 1": "Performance of models and compression methods on the six benchmarks",
    "Table 2": "Effect of the VMR; MARC against supervised fine-tuning",
    "Table 3": "Ablation of τ in C-GRPO",
}
# Fig. 4 plots the baseline at 64 and 16 frames and MARC; their tokens are the paper's Table 4 settings.
PAPER_FIG4_POINTS = {"baseline-64f": "64f", "baseline-16f": "16f", "marc@0.6": "1f"}
# Paper section 4.2 / Fig. 5: MMVU (mc), one A6000, batch 15; MARC-3B relative to Qwen2.5-VL-3B at 64 frames.
PAPER_EFFICIENCY_SETTING = "MMVU (mc) samples, answer-only prompt, one NVIDIA A6000, batch 15"
PAPER_EFFICIENCY_CHANGE = {
    "visual_tokens": (122.69 - 2589.93) / 2589.93 * 100,
    "peak_memory_gb": -72.4,  # 41.63 -> 11.48 GB
    "prefill_s": None,  # not reported
    "generate_s": -23.9,
    "end_to_end_s": -11.1,
}

_EFFICIENCY_MEASURES: tuple[tuple[str, str], ...] = (
    ("visual_tokens", "Visual tokens"),
    ("peak_memory_gb", "Peak memory (GB)"),
    ("prefill_s", "Prefill latency (s)"),
    ("generate_s", "Generation latency (s)"),
    ("end_to_end_s", "End-to-end latency (s)"),
)
_SUMMARY_METRICS = ("score", "accuracy", "mra", "n", "n_failed", "visual_tokens_mean", "latency_s_mean")

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


@dataclass(frozen=True)
class ReportFiles:
    """The files :func:`build_report` wrote; ``plots`` by name (``accuracy_vs_tokens``, ``efficiency``)."""

    markdown: Path
    html: Path
    plots: dict[str, Path]
    metrics_json: Path
    plot_data: Path


# --- entry point ---------------------------------------------------------------------------------------


def build_report(
    summary: pl.DataFrame,
    efficiency: Mapping[str, Any] | EfficiencyProfile | None,
    out_dir: Path | str,
    *,
    profile: str,
    multiple_choice: pl.DataFrame | None = None,
    by_type: pl.DataFrame | None = None,
    by_category: pl.DataFrame | None = None,
) -> ReportFiles:
    """Render the report of one profile's runs into ``out_dir`` (see the module docstring for the files).

    Args:
        summary: :func:`~marc_ops.eval.scoring.summarize` output, one row per (benchmark, method).
        efficiency: the efficiency profile (validated as :class:`EfficiencyProfile`), or ``None``.
        profile: the profile name, e.g. ``"tiny"``; printed in the title.
        multiple_choice: :func:`multiple_choice_vs_chance` output, for the chance levels; the records
            alone do not hold the number of options.
        by_type: :func:`reward_by_problem_type` output: our own suites (not the paper's tables) show
            each method's mean reward per problem type beside `prior-answer`'s.
        by_category: :func:`multiple_choice_by_category` output: our own suites show each method's
            multiple-choice accuracy against chance per category.
    """
    summary = _checked_summary(summary)
    cost = None if efficiency is None else EfficiencyProfile.model_validate(efficiency)
    chance = _checked_chance(multiple_choice)
    types = _checked_frame(by_type, BY_TYPE_SCHEMA, "by_type", "reward_by_problem_type(records)")
    categories = _checked_frame(
        by_category, CATEGORY_CHANCE_SCHEMA, "by_category", "multiple_choice_by_category(records, rows)"
    )
    sections = _sections(summary, cost, chance, types, categories)
    colours = _colours(
        summary["method"].to_list() + ([] if cost is None else [m.method for m in cost.methods])
    )
    pngs = {"accuracy_vs_tokens": _accuracy_vs_tokens_png(summary, colours)}
    if cost is not None:
        pngs["efficiency"] = _efficiency_png(cost, colours)
    title = f"MARC evaluation report — profile `{profile}`"
    return _write(
        Path(out_dir),
        markdown=_markdown(title, sections),
        html_text=_html(title, sections, pngs),
        pngs=pngs,
        metrics=_metrics(summary, cost, chance, types, categories),
        points=_plot_points(summary),
    )


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

    The exact one-sided test of "above chance" for items with different numbers of options (a
    Poisson-binomial tail, by dynamic programming over the items): a method whose multiple-choice
    score has ``p < 0.05`` beats uniform guessing with 95 % confidence. ``n_right <= 0`` gives 1.
    """
    if any(not 0.0 <= c <= 1.0 for c in chances):
        raise ValueError(f"chances must be probabilities in [0, 1], got {[c for c in chances if not 0 <= c <= 1][:3]}")
    dist = np.zeros(len(chances) + 1)  # dist[k] = P(k right among the items so far)
    dist[0] = 1.0
    for i, c in enumerate(chances):
        dist[1 : i + 2] = dist[1 : i + 2] * (1 - c) + dist[: i + 1] * c
        dist[0] *= 1 - c
    return float(min(1.0, dist[max(n_right, 0) :].sum()))


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


# --- inputs --------------------------------------------------------------------------------------------


def _checked_frame(frame: pl.DataFrame | None, schema: dict[str, pl.DataType], name: str, how: str) -> pl.DataFrame:
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


def _checked_chance(frame: pl.DataFrame | None) -> pl.DataFrame:
    return _checked_frame(frame, CHANCE_SCHEMA, "multiple_choice", "multiple_choice_vs_chance()")


def _method_order(methods: Sequence[str]) -> list[str]:
    """Registry order first (the paper's), then other ``marc@τ`` by τ, then the rest as first seen."""
    registry = list(METHODS)

    def key(item: tuple[int, str]) -> tuple[int, float, int]:
        seen, name = item
        if name in registry:
            return (0, registry.index(name), seen)
        tau = _tau(name)
        return (1, tau, seen) if tau is not None else (2, 0.0, seen)

    unique = list(dict.fromkeys(methods))
    return [name for _, name in sorted(enumerate(unique), key=key)]


def _tau(method: str) -> float | None:
    match = re.fullmatch(r"marc@(\d+(?:\.\d+)?)", method)
    return float(match[1]) if match else None


def _frames(method: str) -> str:
    """The paper's "Frames" column: frames fed, or the temporal blocks left after compression."""
    if method not in METHODS and _tau(method) is None:
        return MISSING
    spec = resolve_method(method)
    if not spec.compression.enabled:
        return str(spec.max_frames)
    return MISSING if spec.compression.target_blocks is None else str(spec.compression.target_blocks)


# --- formatting ----------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return (
        MISSING
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _seconds(value: float) -> str:
    return f"{value:#.3g}"


def _change(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.1f}%"


# --- the report's content, independent of the output format --------------------------------------------


@dataclass(frozen=True)
class _Row:
    cells: tuple[str, ...]
    paper: bool = False


@dataclass(frozen=True)
class _Table:
    columns: tuple[str, ...]
    rows: tuple[_Row, ...]


@dataclass(frozen=True)
class _Figure:
    name: str
    caption: str


_Block = str | _Table | _Figure


@dataclass(frozen=True)
class _Section:
    title: str
    blocks: tuple[_Block, ...]


def _sections(
    summary: pl.DataFrame,
    cost: EfficiencyProfile | None,
    chance: pl.DataFrame,
    types: pl.DataFrame,
    categories: pl.DataFrame,
) -> list[_Section]:
    methods = _method_order(summary["method"].to_list())
    ran = set(summary["benchmark"].to_list())
    others = [name for name in TASKS if name in ran and name not in PAPER_BENCHMARKS]
    sections = [_overview(summary, methods, others)]
    sections += [_other_benchmark(summary, name, methods, chance, types, categories) for name in others]
    sections += [_paper_comparison(summary, table, methods) for table in PAPER_LAYOUTS]
    sections.append(_visual_tokens(summary, methods))
    if chance.filter(pl.col("benchmark").is_in(PAPER_BENCHMARKS)).height:
        sections.append(_paper_benchmarks_vs_chance(chance, methods))
    sections.append(
        _Section(
            "Accuracy against visual tokens (cf. paper Fig. 4)",
            (
                "Each point is one method: its score against the mean visual tokens per sample that the "
                "LLM saw (log scale). Hollow grey squares are the paper's figures (Table 1 scores, Table 4 "
                "token counts), drawn only on the paper's benchmarks.",
                _Figure("accuracy_vs_tokens", "Score against mean visual tokens per method"),
            ),
        )
    )
    sections.append(_efficiency(cost))
    sections.append(_failures(summary, methods))
    return sections


def _overview(summary: pl.DataFrame, methods: list[str], others: list[str]) -> _Section:
    ran_paper = [TASKS[n].display_name for n in PAPER_BENCHMARKS if n in set(summary["benchmark"])]
    ran_names = ran_paper + [TASKS[n].display_name for n in others]
    n, failed = int(summary["n"].sum()), int(summary["n_failed"].sum())
    mra = [TASKS[n].display_name for n in TASKS if TASKS[n].mra_problem_types]
    blocks: list[_Block] = [
        f"Benchmarks run: {', '.join(ran_names) or 'none'}. "
        f"Methods: {', '.join(f'`{m}`' for m in methods) or 'none'}. "
        f"Samples: {n} scored, of which {failed} failed (a failed sample scores 0 and stays in the denominator).",
        "Scores are percent: accuracy, or for "
        f"{' and '.join(mra)} the mean of accuracy and MRA (mean relative accuracy on numerical-answer items). Rows in italics labelled "
        "**(paper)** are the MARC paper's printed figures; every other number is ours. "
        f"{MISSING} marks a benchmark we did not run. † marks a score with failed samples.",
    ]
    if not ran_paper:
        blocks.append(
            "> **Not comparable to the paper.** This run scored none of the paper's six benchmarks, only "
            f"{', '.join(ran_names) or 'nothing'}. The paper's figures in Tables 1-3 were measured with "
            "2B-4B video LLMs (Qwen2.5-VL-3B and peers) on real benchmarks (VSI-Bench, VideoMMMU, MMVU, MVBench, TempCompass, "
            f"VideoMME); they are shown for reference only, and our rows there are {MISSING}."
        )
    return _Section("Overview", tuple(blocks))


def _other_benchmark(
    summary: pl.DataFrame,
    name: str,
    methods: list[str],
    chance: pl.DataFrame,
    types: pl.DataFrame,
    categories: pl.DataFrame,
) -> _Section:
    task = TASKS[name]
    rows_by_method = {
        r["method"]: r for r in summary.filter(pl.col("benchmark") == name).iter_rows(named=True)
    }
    mc = {r["method"]: r for r in chance.filter(pl.col("benchmark") == name).iter_rows(named=True)}
    columns = ["Method", "Frames", "Score", "Accuracy", "MRA", "n", "Failed", "Visual tokens", "Latency (s)"]
    if mc:
        columns += ["MC items", "MC accuracy", "MC chance", "Above chance (pp)", "p (guessing)"]
    table_rows = []
    for method in (m for m in methods if m in rows_by_method):
        r = rows_by_method[method]
        cells = [
            f"`{method}`",
            _frames(method),
            _num(r["score"]),
            _num(r["accuracy"]),
            _num(r["mra"]),
            str(r["n"]),
            str(r["n_failed"]),
            _num(r["visual_tokens_mean"], 1),
            MISSING if r["latency_s_mean"] is None else _seconds(r["latency_s_mean"]),
        ]
        if mc:
            c = mc.get(method)
            cells += (
                [MISSING] * 5
                if c is None
                else [str(c["n_mc"]), _num(c["mc_accuracy"]), _num(c["chance"]), f"{c['above_chance']:+.2f}",
                      _p_value(c["p_guessing"])]  # fmt: skip
            )
        table_rows.append(_Row(tuple(cells)))
    blocks: list[_Block] = [
        f"{task.display_name}: {task.description}. Our own suite: the paper has no figures for it, and its "
        "scores are not comparable to the paper's real-benchmark numbers.",
        _Table(tuple(columns), tuple(table_rows)),
    ]
    if PRIOR_METHOD in rows_by_method:
        blocks.append(
            f"`{PRIOR_METHOD}` is no model: each item gets the most common training answer of its problem type "
            "(a majority-answer baseline, stronger than guessing where one answer dominates, as durations "
            "do); a model at or below it on a problem type has learnt the answer format but not what the "
            f"video shows. Score above `{PRIOR_METHOD}`, in points: "
            + ", ".join(
                f"`{m}` {rows_by_method[m]['score'] - rows_by_method[PRIOR_METHOD]['score']:+.2f}"
                for m in methods
                if m in rows_by_method and m != PRIOR_METHOD
            )
            + "."
        )
    if mc:
        levels = sorted({round(c["chance"], 2) for c in mc.values()})
        blocks.append(
            f"Chance on the multiple-choice items (guessing uniformly among each item's options): "
            f"{', '.join(f'{v:.2f}%' for v in levels)}. Above chance is MC accuracy minus chance, in points. "
            "p (guessing) is the probability that guessing gets at least as many items right (exact, one-sided): "
            "below 0.05 a method is above chance with 95 % confidence; above it the margin may be luck. "
            + _confidently_above(mc)
        )
    else:
        blocks.append(
            "Chance level not shown: it needs each item's options, which the records do not hold "
            "(pass `multiple_choice=multiple_choice_vs_chance(records, rows)`)."
        )
    blocks += _by_category_blocks(categories.filter(pl.col("benchmark") == name), methods)
    blocks += _by_type_blocks(types.filter(pl.col("benchmark") == name), methods)
    return _Section(f"{task.display_name} suite (ours)", tuple(blocks))


def _p_value(p: float | None) -> str:
    if p is None:
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _confidently_above(mc: Mapping[str, Mapping[str, Any]]) -> str:
    above = [f"`{m}`" for m, c in mc.items() if m != PRIOR_METHOD and c["p_guessing"] is not None and c["p_guessing"] < 0.05]
    return (
        f"Above chance with 95 % confidence: {', '.join(above)}."
        if above
        else "No method is above chance with 95 % confidence."
    )


def _by_category_blocks(categories: pl.DataFrame, methods: list[str]) -> list[_Block]:
    """Multiple-choice accuracy per category and method, with its margin over chance and a star where
    guessing would do as well less than 5 % of the time."""
    if not categories.height:
        return []
    names = sorted(categories["category"].unique().to_list())
    cell = {(r["method"], r["category"]): r for r in categories.iter_rows(named=True)}
    listed = [m for m in methods if any((m, c) in cell for c in names)]

    confident = {key for key, r in cell.items() if r["p_guessing"] < 0.05}

    def text(key: tuple[str, str]) -> str:
        if key not in cell:
            return MISSING
        r = cell[key]
        return f"{_num(r['mc_accuracy'])} ({r['above_chance']:+.2f}{'*' if key in confident else ''})"

    first = {c: next(r for (_, k), r in cell.items() if k == c) for c in names}
    n_items = {c: max(r["n_mc"] for (_, k), r in cell.items() if k == c) for c in names}
    header = [f"{c} (n={n_items[c]}, chance {_num(first[c]['chance'])})" for c in names]
    rows = tuple(_Row((f"`{m}`", *(text((m, c)) for c in names))) for m in listed)
    above = [
        f"`{m}` on {', '.join(c for c in names if (m, c) in confident)}"
        for m in listed
        if any((m, c) in confident for c in names)
    ]
    return [
        "Multiple-choice accuracy per category, % (in brackets: points above chance; * where guessing gets "
        "as many right less than 5 % of the time):",
        _Table(("Method", *header), rows),
        "Above chance with 95 % confidence: " + "; ".join(above) + "."
        if above
        else "No method is above chance with 95 % confidence on any category.",
    ]


def _by_type_blocks(types: pl.DataFrame, methods: list[str]) -> list[_Block]:
    """Mean reward per problem type and method, and against `prior-answer` per type."""
    if not types.height:
        return []
    kinds = types["problem_type"].unique(maintain_order=True).sort().to_list()
    cell = {(r["method"], r["problem_type"]): r for r in types.iter_rows(named=True)}
    counts = {k: max(r["n"] for (_, t), r in cell.items() if t == k) for k in kinds}
    listed = [m for m in methods if any((m, k) in cell for k in kinds)]
    rows = [
        _Row((f"`{m}`", *(MISSING if (m, k) not in cell else _num(cell[m, k]["mean_reward"]) for k in kinds)))
        for m in listed
    ]
    blocks: list[_Block] = [
        "Mean reward per problem type, % (multiple choice and numbers: right or wrong; regression: MRA; "
        "free-form: mean ROUGE-1/2/L F1 against the reference; failed samples count 0):",
        _Table(("Method", *(f"{k} (n={counts[k]})" for k in kinds)), tuple(rows)),
    ]
    if PRIOR_METHOD in listed:
        beats = []
        for m in (m for m in listed if m != PRIOR_METHOD):
            shared = [k for k in kinds if (m, k) in cell and (PRIOR_METHOD, k) in cell]
            above = [k for k in shared if cell[m, k]["mean_reward"] > cell[PRIOR_METHOD, k]["mean_reward"]]
            beats.append(f"`{m}` {len(above)} of {len(shared)}")
        blocks.append(f"Problem types on which a method's mean reward is above `{PRIOR_METHOD}`'s: " + ", ".join(beats) + ".")
    return blocks


def _paper_comparison(summary: pl.DataFrame, table: str, methods: list[str]) -> _Section:
    layout = PAPER_LAYOUTS[table]
    labels = {row.key: row for row in PAPER_ROWS}
    paper = {r["method"]: r for r in paper_table().iter_rows(named=True)}
    ours = {r["method"]: r for r in score_table(summary, methods=methods).iter_rows(named=True)}
    failed = {
        (r["benchmark"], r["method"]) for r in summary.filter(pl.col("n_failed") > 0).iter_rows(named=True)
    }
    bench_columns = [TASKS[n].display_name for n in PAPER_BENCHMARKS]
    with_tau = table == "Table 3"

    def our_row(method: str) -> _Row:
        r = ours[method]
        cells = []
        for name in PAPER_BENCHMARKS:
            value = r[TASKS[name].display_name]
            mark = "†" if (name, method) in failed else ""
            cells.append(MISSING if value is None else _num(value) + mark)
        tau = [_num(_tau(method), 1) if _tau(method) is not None else MISSING] if with_tau else []
        return _Row((f"`{method}` (ours)", *tau, _frames(method), *cells, _num(r["Mean"])))

    def paper_row(key: str) -> _Row:
        row, r = labels[key], paper[key]
        tau = [_num(_tau(key), 1) if _tau(key) is not None else MISSING] if with_tau else []
        cells = [_num(r[c]) for c in bench_columns]
        return _Row((f"{row.label} (paper)", *tau, str(row.frames), *cells, _num(r["Mean"])), paper=True)

    rows = []
    for key in layout:
        if key in ours:
            rows.append(our_row(key))
        rows.append(paper_row(key))
    placed = {k for keys in PAPER_LAYOUTS.values() for k in keys}
    extra = [
        m for m in methods if m not in placed and (_tau(m) is not None) == with_tau and table != "Table 2"
    ]
    rows += [our_row(m) for m in extra]
    columns = ("Method", *(["τ"] if with_tau else []), "Frames", *bench_columns, "Mean")
    return _Section(
        f"{table}: {PAPER_CAPTIONS[table]}",
        (
            _Table(columns, tuple(rows)),
            f"Mean is over the six benchmarks ({MISSING} unless all six ran). Frames: frames fed, or "
            "for compressed methods the frames' worth of tokens left (paper Table 1 note).",
        ),
    )


def _visual_tokens(summary: pl.DataFrame, methods: list[str]) -> _Section:
    ours = score_table(summary, methods=methods, value="visual_tokens_mean")
    columns = ("Method", *(TASKS[n].display_name for n in PAPER_BENCHMARKS), "Mean")
    rows = [
        _Row((f"`{r['method']}` (ours)", *(_num(r[c], 1) for c in columns[1:])))
        for r in ours.iter_rows(named=True)
    ]
    for setting, label in (("64f", "64 frames"), ("16f", "16 frames"), ("1f", "1 frame")):
        values = [PAPER_VISUAL_TOKENS[setting][n] for n in PAPER_BENCHMARKS]
        rows.append(
            _Row(
                (f"{label} (paper)", *(_num(v) for v in values), _num(sum(values) / len(values))), paper=True
            )
        )
    return _Section(
        "Visual tokens per sample (cf. paper Table 4)",
        (
            "Mean visual tokens the LLM saw per sample, over the samples that ran.",
            _Table(columns, tuple(rows)),
        ),
    )


def _paper_benchmarks_vs_chance(chance: pl.DataFrame, methods: list[str]) -> _Section:
    rows = [
        _Row(
            (
                TASKS[r["benchmark"]].display_name,
                f"`{r['method']}`",
                str(r["n_mc"]),
                _num(r["mc_accuracy"]),
                _num(r["chance"]),
                f"{r['above_chance']:+.2f}",
                _p_value(r["p_guessing"]),
            )
        )  # fmt: skip
        for name in PAPER_BENCHMARKS
        for method in methods
        for r in chance.filter((pl.col("benchmark") == name) & (pl.col("method") == method)).iter_rows(
            named=True
        )
    ]
    columns = ("Benchmark", "Method", "MC items", "MC accuracy", "Chance", "Above chance (pp)", "p (guessing)")
    return _Section("Multiple-choice items against chance", (_Table(columns, tuple(rows)),))


def _reference_method(cost: EfficiencyProfile) -> MethodEfficiency:
    """``baseline-64f`` when profiled, else the method with the most visual tokens (the least compressed)."""
    by_name = {m.method: m for m in cost.methods}
    return by_name.get("baseline-64f") or max(cost.methods, key=lambda m: m.visual_tokens)


def _efficiency(cost: EfficiencyProfile | None) -> _Section:
    title = "Efficiency (cf. paper Fig. 5)"
    if cost is None:
        return _Section(title, ("No efficiency profile was given; run the `efficiency_profile` asset.",))
    memory = "peak CUDA memory" if cost.memory_kind == "cuda" else "peak process RSS"
    setting = (
        f"`{cost.model}` on {cost.device}, {cost.dtype}, batch {cost.batch_size}; input: {cost.input}. "
        f"Times are seconds per sample; memory is {memory} in GB."
    )
    columns = ("Method", "Frames", "Visual tokens", "Peak memory (GB)", "Vision (s)", "Merge (s)",
               "Prefill (s)", "Generation (s)", "End-to-end (s)", "Vision share")  # fmt: skip
    rows = tuple(
        _Row(
            (
                f"`{m.method}`",
                str(m.frames),
                _num(m.visual_tokens, 1),
                _num(m.peak_memory_gb),
                _seconds(m.vision_s),
                _seconds(m.merge_s),
                _seconds(m.prefill_s),
                _seconds(m.generate_s),
                _seconds(m.end_to_end_s),
                f"{m.vision_share * 100:.1f}%",
            )
        )  # fmt: skip
        for m in _profiled_in_order(cost)
    )
    ref = _reference_method(cost)
    change_cols = ("Method", *(label for _, label in _EFFICIENCY_MEASURES))
    change_rows = [
        _Row(
            (
                f"`{m.method}`",
                *(_change(_relative(getattr(m, f), getattr(ref, f))) for f, _ in _EFFICIENCY_MEASURES),
            )
        )
        for m in _profiled_in_order(cost)
        if m.method != ref.method
    ]
    change_rows.append(
        _Row(
            (
                "MARC-3B vs Qwen2.5-VL-3B 64f (paper)",
                *(_change(PAPER_EFFICIENCY_CHANGE[f]) for f, _ in _EFFICIENCY_MEASURES),
            ),
            paper=True,
        )  # fmt: skip
    )
    share = ref.vision_share * 100
    bound = (
        f"The vision tower takes **{share:.1f}%** of end-to-end time for `{ref.method}`. Compression after the "
        f"encoder leaves that part untouched, so on this input it can save at most {100 - share:.1f}% of "
        "end-to-end time; the vision share of each method is in the last column above."
    )
    return _Section(
        title,
        (
            setting,
            _Table(columns, rows),
            bound,
            f"Change relative to `{ref.method}` (negative is cheaper). The paper's row is its reported "
            f"reduction ({PAPER_EFFICIENCY_SETTING}; peak GPU memory 41.63 → 11.48 GB).",
            _Table(change_cols, tuple(change_rows)),
            _Figure("efficiency", "Cost per method, one panel per measure"),
        ),
    )


def _relative(value: float, reference: float) -> float | None:
    return None if reference == 0 else (value - reference) / reference * 100


def _profiled_in_order(cost: EfficiencyProfile) -> list[MethodEfficiency]:
    by_name = {m.method: m for m in cost.methods}
    return [by_name[name] for name in _method_order(list(by_name))]


def _failures(summary: pl.DataFrame, methods: list[str]) -> _Section:
    order = {m: i for i, m in enumerate(methods)}
    bench_order = {n: i for i, n in enumerate(TASKS)}
    rows = sorted(
        summary.iter_rows(named=True), key=lambda r: (bench_order[r["benchmark"]], order[r["method"]])
    )
    table = _Table(
        ("Benchmark", "Method", "Samples", "Failed", "Failed share"),
        tuple(
            _Row(
                (
                    TASKS[r["benchmark"]].display_name,
                    f"`{r['method']}`",
                    str(r["n"]),
                    str(r["n_failed"]),
                    f"{r['n_failed'] / r['n'] * 100:.1f}%" if r["n"] else MISSING,
                )
            )  # fmt: skip
            for r in rows
        ),
    )
    return _Section(
        "Failed samples",
        (
            "Samples whose media could not be read; each scores 0 and the reason is in its record's `error`.",
            table,
        ),
    )


# --- metrics and plot data -----------------------------------------------------------------------------


def _metrics(
    summary: pl.DataFrame,
    cost: EfficiencyProfile | None,
    chance: pl.DataFrame,
    types: pl.DataFrame,
    categories: pl.DataFrame,
) -> dict[str, float]:
    """Flat ``<benchmark>/<method>/<figure>`` numbers; absent figures are left out, never filled in."""
    metrics: dict[str, float] = {}
    for r in summary.iter_rows(named=True):
        for field in _SUMMARY_METRICS:
            if r[field] is not None:
                metrics[f"{r['benchmark']}/{r['method']}/{field}"] = r[field]
    methods = _method_order(summary["method"].to_list())
    for value in ("score", "visual_tokens_mean"):
        for r in score_table(summary, methods=methods, value=value).iter_rows(named=True):
            if r["Mean"] is not None:
                metrics[f"mean/{r['method']}/{value}"] = r["Mean"]
    for r in chance.iter_rows(named=True):
        prefix = f"{r['benchmark']}/{r['method']}"
        metrics |= {f"{prefix}/mc_accuracy": r["mc_accuracy"], f"{prefix}/mc_chance": r["chance"],
                    f"{prefix}/mc_above_chance": r["above_chance"], f"{prefix}/mc_p_guessing": r["p_guessing"]}  # fmt: skip
    for r in types.iter_rows(named=True):
        metrics[f"{r['benchmark']}/{r['method']}/reward_by_type/{r['problem_type']}"] = r["mean_reward"]
    for r in categories.iter_rows(named=True):
        prefix = f"{r['benchmark']}/{r['method']}/mc_by_category/{r['category']}"
        metrics |= {f"{prefix}/mc_accuracy": r["mc_accuracy"], f"{prefix}/mc_above_chance": r["above_chance"],
                    f"{prefix}/mc_p_guessing": r["p_guessing"]}  # fmt: skip
    if cost is not None:
        for m in cost.methods:
            for field in ("visual_tokens", "peak_memory_gb", "vision_s", "merge_s", "prefill_s", "generate_s",
                          "end_to_end_s"):  # fmt: skip
                metrics[f"efficiency/{m.method}/{field}"] = getattr(m, field)
            metrics[f"efficiency/{m.method}/vision_share"] = m.vision_share
    return metrics


_POINTS_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.String(),
    "method": pl.String(),
    "visual_tokens": pl.Float64(),
    "score": pl.Float64(),
}


def _plot_points(summary: pl.DataFrame) -> pl.DataFrame:
    """Our (visual tokens, score) points per benchmark, plus ``mean`` where all six paper benchmarks ran."""
    methods = _method_order(summary["method"].to_list())
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
    return pl.concat([points.cast(_POINTS_SCHEMA), pl.DataFrame(means, schema=_POINTS_SCHEMA)])


# --- plots ---------------------------------------------------------------------------------------------

_PNG_METADATA = {"Software": None}  # no version stamp: the same numbers give the same bytes
_DPI = 120


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    """One colour per method, the same in every plot of the report."""
    palette = colormaps["tab10"].colors
    return {m: palette[i % len(palette)] for i, m in enumerate(_method_order(methods))}


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot, no global state), laid out by constrained layout."""
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    return buffer.getvalue()


def _accuracy_vs_tokens_png(summary: pl.DataFrame, colours: Mapping[str, Any]) -> bytes:
    """One panel per benchmark run (and the six-benchmark mean when complete): score vs tokens, log x."""
    points = _plot_points(summary)
    panels = [n for n in TASKS if n in set(points["benchmark"])]
    if "mean" in set(points["benchmark"]):
        panels.append("mean")
    ncols = min(max(len(panels), 1), 3)
    nrows = max(math.ceil(len(panels) / ncols), 1)
    fig = _figure(5.6 * ncols, 4.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    if not panels:
        axes[0].text(0.5, 0.5, "no scored runs with visual tokens", ha="center", va="center")
        axes[0].set_axis_off()
    panel_points = []
    for ax, panel in zip(axes, panels, strict=False):
        ours = points.filter(pl.col("benchmark") == panel)
        prior = summary.filter((pl.col("benchmark") == panel) & (pl.col("method") == PRIOR_METHOD))
        if prior.height and prior["score"][0] is not None:
            ax.axhline(prior["score"][0], color="grey", linestyle="--", linewidth=1)
            ax.text(0.02, prior["score"][0], f" {PRIOR_METHOD} (no model: majority answer)", color="grey", fontsize=8,
                    va="bottom", transform=ax.get_yaxis_transform())  # fmt: skip
        labelled = [
            (r["visual_tokens"], r["score"], r["method"], colours[r["method"]], False)
            for r in ours.iter_rows(named=True)
        ]
        labelled += _paper_points(panel)
        _scatter_panel(ax, labelled, _panel_title(panel))
        panel_points.append((ax, labelled))
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if any(is_paper for _, labelled in panel_points for *_, is_paper in labelled):
        fig.legend(
            handles=[
                Line2D([], [], ls="", marker="o", ms=8, mfc="0.6", mec="black", label="ours"),
                Line2D(
                    [],
                    [],
                    ls="",
                    marker="s",
                    ms=8,
                    mfc="none",
                    mec="0.45",
                    mew=1.5,
                    label="paper (Table 1 score, Table 4 tokens)",
                ),
            ],  # fmt: skip
            loc="outside upper center",
            ncols=2,
            frameon=False,
        )
    fig.draw_without_rendering()  # settle the layout once, so that pixel positions are final
    for ax, labelled in panel_points:
        _place_labels(ax, _merge_coincident(labelled))
    return _png(fig)


def _merge_coincident(
    points: list[tuple[float, float, str, Any, bool]],
) -> list[tuple[float, float, str, Any, bool]]:
    """One label for points drawn on top of each other (same tokens and score), listing every method there."""
    groups: list[list[tuple[float, float, str, Any, bool]]] = []
    for point in points:
        x, y, *_, is_paper = point
        for group in groups:
            gx, gy, *_, g_paper = group[0]
            if g_paper == is_paper and abs(math.log10(x / gx)) < 0.01 and abs(y - gy) < 0.05:
                group.append(point)
                break
        else:
            groups.append([point])
    merged = []
    for group in groups:
        x, y, label, colour, is_paper = group[0]
        if len(group) > 1:
            names = [p[2] for p in group]
            label = ",\n".join(", ".join(names[i : i + 3]) for i in range(0, len(names), 3))
            colour = "black"
        merged.append((x, y, label, colour, is_paper))
    return merged


def _panel_title(panel: str) -> str:
    if panel == "mean":
        return "Mean of the six benchmarks"
    task = TASKS[panel]
    return task.display_name if panel in PAPER_BENCHMARKS else f"{task.display_name} (ours; no paper figures)"


def _paper_points(panel: str) -> list[tuple[float, float, str, Any, bool]]:
    if panel != "mean" and panel not in PAPER_BENCHMARKS:
        return []
    paper = {r["method"]: r for r in paper_table().iter_rows(named=True)}
    labels = {row.key: row.label for row in PAPER_ROWS}
    out = []
    for key, setting in PAPER_FIG4_POINTS.items():
        if panel == "mean":
            tokens = [PAPER_VISUAL_TOKENS[setting][n] for n in PAPER_BENCHMARKS]
            x, y = sum(tokens) / len(tokens), paper[key]["Mean"]
        else:
            x, y = PAPER_VISUAL_TOKENS[setting][panel], paper[key][TASKS[panel].display_name]
        out.append((x, y, f"{labels[key]} {setting} (paper)", "0.45", True))
    return out


def _scatter_panel(ax: Any, points: list[tuple[float, float, str, Any, bool]], title: str) -> None:
    """Points ``(x, y, label, colour, is_paper)``; labels placed where they overlap nothing placed before."""
    for x, y, _, colour, is_paper in points:
        if is_paper:
            ax.scatter(
                [x], [y], s=60, marker="s", facecolors="none", edgecolors=colour, linewidths=1.5, zorder=3
            )
        else:
            ax.scatter([x], [y], s=70, color=colour, edgecolors="black", linewidths=0.6, zorder=4)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(min(xs) / 2.5, max(xs) * 2.5)
    references = [line.get_ydata()[0] for line in ax.get_lines()]  # the prior answer's level, if drawn
    low, high = min([*ys, *references]), max([*ys, *references])
    pad = max((high - low) * 0.25, 5.0)
    ax.set_ylim(max(low - pad, 0.0), min(high + pad, 100.0))
    ax.set_xlabel("mean visual tokens per sample (log scale)")
    ax.set_ylabel("score (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)


def _place_labels(ax: Any, points: list[tuple[float, float, str, Any, bool]]) -> None:
    """Annotate each point at the first candidate offset whose box overlaps no label or point drawn so far.

    The figure must have been drawn (laid out) already: boxes are measured in its final pixels.
    """
    renderer = ax.figure.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    markers = [ax.transData.transform((x, y)) for x, y, *_ in points]
    taken: list[Any] = []
    for x, y, label, colour, is_paper in sorted(points, key=lambda p: (-p[1], p[0])):
        chosen = None
        for dx, dy, ha in _LABEL_OFFSETS:
            text = _annotate(ax, x, y, label, "0.3" if is_paper else colour, is_paper, dx, dy, ha)
            box = text.get_window_extent(renderer).expanded(1.04, 1.2)
            clear = not any(box.overlaps(other) for other in taken) and not any(
                box.contains(mx, my) for mx, my in markers
            )
            if clear and axes_box.contains(box.x0, box.y0) and axes_box.contains(box.x1, box.y1):
                chosen = box
                break
            text.remove()
        if chosen is None:  # nowhere clear: keep the first offset rather than drop the label
            dx, dy, ha = _LABEL_OFFSETS[0]
            text = _annotate(ax, x, y, label, "0.3" if is_paper else colour, is_paper, dx, dy, ha)
            chosen = text.get_window_extent(renderer)
        taken.append(chosen)


# Offsets in points (dx, dy, horizontal alignment) tried in order: beside the point, then further out.
_LABEL_OFFSETS = (
    (7, 4, "left"), (7, -14, "left"), (-7, 4, "right"), (-7, -14, "right"),
    (7, 18, "left"), (7, -28, "left"), (-7, 18, "right"), (-7, -28, "right"),
    (0, 32, "center"), (0, -42, "center"),
)  # fmt: skip


def _annotate(
    ax: Any, x: float, y: float, label: str, colour: Any, is_paper: bool, dx: int, dy: int, ha: str
) -> Any:
    text = ax.annotate(
        label, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va="bottom", fontsize=8.5,
        color=colour, style="italic" if is_paper else "normal",
    )  # fmt: skip
    text.set_in_layout(False)  # labels must not move the axes they were placed in
    return text


def _efficiency_png(cost: EfficiencyProfile, colours: Mapping[str, Any]) -> bytes:
    """A 2 × 3 grid: one bar panel per measure (bars = methods), the end-to-end bars with their vision part
    hatched, and the vision tower's share of end-to-end time."""
    profiled = _profiled_in_order(cost)
    names = [m.method for m in profiled]
    memory = "Peak CUDA memory (GB)" if cost.memory_kind == "cuda" else "Peak RSS (GB)"
    panels = [
        ("visual_tokens", "Visual tokens", "{:.0f}"),
        ("peak_memory_gb", memory, "{:.2f}"),
        ("prefill_s", "Prefill latency (s)", "{:#.3g}"),
        ("generate_s", "Generation latency (s)", "{:#.3g}"),
        ("end_to_end_s", "End-to-end latency (s)", "{:#.3g}"),
        ("vision_share", "Vision tower share of end-to-end (%)", "{:.1f}"),
    ]
    fig = _figure(13.5, 7.6)
    axes = fig.subplots(2, 3).ravel()
    positions = list(range(len(profiled)))
    for ax, (field, title, fmt) in zip(axes, panels, strict=True):
        values = [getattr(m, field) * (100 if field == "vision_share" else 1) for m in profiled]
        bars = ax.bar(positions, values, color=[colours[n] for n in names], edgecolor="black", linewidth=0.6)
        if field == "end_to_end_s":
            ax.bar(positions, [m.vision_s for m in profiled], color="none", edgecolor="black", hatch="///",
                   linewidth=0.0, label="vision tower")  # fmt: skip
            ax.legend(loc="upper right", fontsize=8, frameon=False)
        # Upright value labels collide beyond a handful of bars; turn them then.
        upright = len(profiled) <= 6
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8 if upright else 7, padding=2,
                     rotation=0 if upright else 90)  # fmt: skip
        ax.set_title(title, fontsize=10.5)
        ax.set_xticks(positions, names, rotation=25, ha="right", fontsize=9)
        ax.set_ylim(0, max(max(values) * (1.22 if upright else 1.4), 1e-9))
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(
        f"{cost.model} on {cost.device} · {cost.dtype} · batch {cost.batch_size} · {cost.input}", fontsize=11
    )
    return _png(fig)


# --- rendering -----------------------------------------------------------------------------------------


def _markdown(title: str, sections: list[_Section]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        for block in section.blocks:
            if isinstance(block, _Table):
                parts.append(_markdown_table(block))
            elif isinstance(block, _Figure):
                parts.append(f"![{block.caption}]({block.name}.png)")
            else:
                parts.append(block)
    return "\n\n".join(parts) + "\n"


def _markdown_table(table: _Table) -> str:
    def italic(cell: str) -> str:
        return f"_{cell}_" if cell else cell

    rows = [[italic(c) for c in row.cells] if row.paper else list(row.cells) for row in table.rows]
    frame = pl.DataFrame(rows, schema={c: pl.String() for c in table.columns}, orient="row")
    return markdown_table(frame, max_rows=max(frame.height, 1))


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.paper td { font-style: italic; color: #666; background: #fafafa; }
blockquote { border-left: 4px solid #d9822b; margin: 1em 0; padding: 0.4em 1em; background: #fff6ec; }
code { background: #f1f1f1; padding: 0 0.25em; border-radius: 3px; font-size: 0.95em; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
"""


def _inline_html(text: str) -> str:
    """The little Markdown the report's prose uses: `code` and **bold**."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def _html(title: str, sections: list[_Section], pngs: Mapping[str, bytes]) -> str:
    body = [f"<h1>{_inline_html(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{_inline_html(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, _Table):
                body.append(_html_table(block))
            elif isinstance(block, _Figure):
                data = base64.b64encode(pngs[block.name]).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}">'
                    f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
                )
            elif block.startswith("> "):
                body.append(f"<blockquote>{_inline_html(block[2:])}</blockquote>")
            else:
                body.append(f"<p>{_inline_html(block)}</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title.replace('`', ''))}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(table: _Table) -> str:
    head = "".join(f"<th>{_inline_html(c)}</th>" for c in table.columns)
    rows = []
    for row in table.rows:
        cells = "".join(f"<td>{_inline_html(c)}</td>" for c in row.cells)
        rows.append(f'<tr class="paper">{cells}</tr>' if row.paper else f"<tr>{cells}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


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
