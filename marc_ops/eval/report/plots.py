"""The report's plots as PNG bytes: accuracy against visual tokens (paper Fig. 4) and cost per method (Fig. 5).

Figures are drawn on the Agg canvas without pyplot (no global state) and saved without a version
stamp, so the same numbers give the same bytes. Each method has one style in every plot: the colour of
its family (every ``vidcom2@*`` one colour) and a marker of its own within the family.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from marc_ops.config.tasks import PAPER_BENCHMARKS, TASKS
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report.efficiency_tables import profiled_in_order
from marc_ops.eval.report.methods import method_family, method_order
from marc_ops.eval.report.metrics import plot_points
from marc_ops.eval.report.paper import PAPER_FIG4_POINTS, PAPER_ROWS, PAPER_VISUAL_TOKENS, paper_table
from marc_ops.eval.scoring import PRIOR_METHOD

_PNG_METADATA = {"Software": None}  # no version stamp: the same numbers give the same bytes
_DPI = 120

# A point to draw: (x, y, label, colour, is_paper).
_Point = tuple[float, float, str, Any, bool]

# Offsets in points (dx, dy, horizontal alignment) tried in order: beside the point, then further out.
_LABEL_OFFSETS = (
    (7, 4, "left"),
    (7, -14, "left"),
    (-7, 4, "right"),
    (-7, -14, "right"),
    (7, 18, "left"),
    (7, -28, "left"),
    (-7, 18, "right"),
    (-7, -28, "right"),
    (0, 32, "center"),
    (0, -42, "center"),
)


# Our markers, one per member of a family; the square is left to the paper's points.
_MARKERS = ("o", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h", "8")
# Our points are named on the panel up to this many; beyond it only the legend names them.
_MAX_POINT_LABELS = 8


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn: its family's colour, its own marker within the family."""

    colour: Any
    marker: str


def method_styles(methods: Sequence[str]) -> dict[str, MethodStyle]:
    """One style per method, the same in every plot of the report: families (:func:`method_family`)
    take colours in the report's method order, members take markers in that order."""
    ordered = method_order(methods)
    families = list(dict.fromkeys(method_family(m) for m in ordered))
    palette = colormaps["tab10" if len(families) <= 10 else "tab20"].colors
    members: dict[str, int] = {}
    styles = {}
    for method in ordered:
        family = method_family(method)
        index = members[family] = members.get(family, -1) + 1
        styles[method] = MethodStyle(
            palette[families.index(family) % len(palette)], _MARKERS[index % len(_MARKERS)]
        )
    return styles


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas (no pyplot, no global state), laid out by constrained layout."""
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    return buffer.getvalue()


# --- accuracy against visual tokens (Fig. 4) ---------------------------------------------------------------


def accuracy_vs_tokens_png(summary: pl.DataFrame, styles: Mapping[str, MethodStyle]) -> bytes:
    """:func:`accuracy_vs_tokens_figure` as PNG bytes."""
    return _png(accuracy_vs_tokens_figure(summary, styles))


def accuracy_vs_tokens_figure(summary: pl.DataFrame, styles: Mapping[str, MethodStyle]) -> Figure:
    """One panel per benchmark run (and the six-benchmark mean when complete): score vs tokens, log x;
    below the panels, a legend with one entry per method plotted (its marker, its colour)."""
    points = plot_points(summary)
    panels = [n for n in TASKS if n in set(points["benchmark"])]
    if "mean" in set(points["benchmark"]):
        panels.append("mean")
    plotted = method_order(points["method"].to_list())
    ncols = min(max(len(panels), 1), 3)
    nrows = max(math.ceil(len(panels) / ncols), 1)
    legend_columns = min(max(len(plotted), 1), 2 * ncols)
    legend_rows = math.ceil(len(plotted) / legend_columns)
    fig = _figure(5.6 * ncols, 4.4 * nrows + 0.25 * legend_rows)
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
            ax.text(
                0.02,
                prior["score"][0],
                f" {PRIOR_METHOD} (no model: majority answer)",
                color="grey",
                fontsize=8,
                va="bottom",
                transform=ax.get_yaxis_transform(),
            )
        ours_points = [
            (r["visual_tokens"], r["score"], r["method"], styles[r["method"]].colour, False)
            for r in ours.iter_rows(named=True)
        ]
        paper_points = _paper_points(panel)
        _scatter_panel(ax, [*ours_points, *paper_points], styles, _panel_title(panel))
        named = ours_points if len(ours_points) <= _MAX_POINT_LABELS else []
        panel_points.append((ax, [*named, *paper_points], [*ours_points, *paper_points]))
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if any(is_paper for _, _, drawn in panel_points for *_, is_paper in drawn):
        ours_marker = Line2D([], [], ls="", marker="o", ms=8, mfc="0.6", mec="black", label="ours")
        paper_marker = Line2D(
            [],
            [],
            ls="",
            marker="s",
            ms=8,
            mfc="none",
            mec="0.45",
            mew=1.5,
            label="paper (Table 1 score, Table 4 tokens)",
        )
        fig.legend(handles=[ours_marker, paper_marker], loc="outside upper center", ncols=2, frameon=False)
    if plotted:
        handles = [
            Line2D([], [], ls="", marker=styles[m].marker, ms=8, mfc=styles[m].colour, mec="black", label=m)
            for m in plotted
        ]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=legend_columns,
            frameon=False,
            fontsize=8.5,
            title="ours, by method",
            title_fontsize=9,
        )
    fig.draw_without_rendering()  # settle the layout once, so that pixel positions are final
    for ax, labelled, drawn in panel_points:
        _place_labels(ax, _merge_coincident(labelled), drawn)
    return fig


def _merge_coincident(points: list[_Point]) -> list[_Point]:
    """One label for points drawn on top of each other (same tokens and score), listing every method there."""
    groups: list[list[_Point]] = []
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


def _paper_points(panel: str) -> list[_Point]:
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


def _scatter_panel(ax: Any, points: list[_Point], styles: Mapping[str, MethodStyle], title: str) -> None:
    """Points ``(x, y, label, colour, is_paper)``: ours in their method's style, the paper's hollow squares."""
    for x, y, label, colour, is_paper in points:
        if is_paper:
            ax.scatter(
                [x], [y], s=60, marker="s", facecolors="none", edgecolors=colour, linewidths=1.5, zorder=3
            )
        else:
            marker = styles[label].marker
            ax.scatter(
                [x], [y], s=70, marker=marker, color=colour, edgecolors="black", linewidths=0.6, zorder=4
            )
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


def _place_labels(ax: Any, points: list[_Point], drawn: list[_Point]) -> None:
    """Annotate each of ``points`` at the first candidate offset whose box overlaps no label placed so far
    and no marker of ``drawn`` (every point on the panel, named or not).

    The figure must have been drawn (laid out) already: boxes are measured in its final pixels.
    """
    renderer = ax.figure.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    markers = [ax.transData.transform((x, y)) for x, y, *_ in drawn]
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


def _annotate(
    ax: Any, x: float, y: float, label: str, colour: Any, is_paper: bool, dx: int, dy: int, ha: str
) -> Any:
    text = ax.annotate(
        label,
        (x, y),
        xytext=(dx, dy),
        textcoords="offset points",
        ha=ha,
        va="bottom",
        fontsize=8.5,
        color=colour,
        style="italic" if is_paper else "normal",
    )
    text.set_in_layout(False)  # labels must not move the axes they were placed in
    return text


# --- cost per method (Fig. 5) ------------------------------------------------------------------------------


def efficiency_png(cost: EfficiencyProfile, styles: Mapping[str, MethodStyle]) -> bytes:
    """A 2 × 3 grid: one bar panel per measure (bars = methods), the end-to-end bars with their vision part
    hatched, and the vision tower's share of end-to-end time."""
    profiled = profiled_in_order(cost)
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
    fig = _figure(max(13.5, 3 * (1.2 + 0.3 * len(profiled))), 7.6)
    axes = fig.subplots(2, 3).ravel()
    positions = list(range(len(profiled)))
    for ax, (field, title, fmt) in zip(axes, panels, strict=True):
        values = [getattr(m, field) * (100 if field == "vision_share" else 1) for m in profiled]
        bars = ax.bar(
            positions, values, color=[styles[n].colour for n in names], edgecolor="black", linewidth=0.6
        )
        if field == "end_to_end_s":
            vision = [m.vision_s for m in profiled]
            ax.bar(
                positions,
                vision,
                color="none",
                edgecolor="black",
                hatch="///",
                linewidth=0.0,
                label="vision tower",
            )
            ax.legend(loc="upper right", fontsize=8, frameon=False)
        # Upright value labels collide beyond a handful of bars; turn them then.
        upright = len(profiled) <= 6
        ax.bar_label(
            bars,
            labels=[fmt.format(v) for v in values],
            fontsize=8 if upright else 7,
            padding=2,
            rotation=0 if upright else 90,
        )
        ax.set_title(title, fontsize=10.5)
        ax.set_xticks(positions, names, rotation=25 if upright else 60, ha="right", fontsize=9)
        ax.set_ylim(0, max(max(values) * (1.22 if upright else 1.4), 1e-9))
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(
        f"{cost.model} on {cost.device} · {cost.dtype} · batch {cost.batch_size} · {cost.input}", fontsize=11
    )
    return _png(fig)
