"""The MARC paper's printed figures, laid out as printed so they can be checked line by line.

Tables 1-3: each method's score per benchmark (percent) and its printed mean, the rows of each
table in the paper's order and its caption; Table 4: mean visual tokens per sample at 64 frames,
16 frames and one frame's worth; Fig. 4's points; section 4.2's efficiency reduction (Fig. 5).
Column order of every tuple: :data:`~marc_ops.config.tasks.PAPER_BENCHMARKS` (VSI-Bench,
VideoMMMU, MMVU (mc), MVBench, TempCompass, VideoMME (w/o sub)).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from marc_ops.config.tasks import PAPER_BENCHMARKS
from marc_ops.eval.scoring import score_table


@dataclass(frozen=True)
class PaperRow:
    """One row of the MARC paper's results tables, as printed (Table 1, 2 or 3).

    ``key`` is our method name where we run the same method (``baseline-64f``, ``marc@0.6``, ...),
    else a label for a model we only quote. ``reported_mean`` is the paper's printed mean and
    ``scores`` the printed score per benchmark name.
    """

    key: str
    label: str
    frames: int
    table: str
    reported_mean: float
    scores: dict[str, float]


# key, label, frames, table, printed mean, then one score per benchmark in PAPER_BENCHMARKS order.
_PRINTED_ROWS: tuple[tuple[str, str, int, str, float, tuple[float, ...]], ...] = (
    ("baseline-64f", "Qwen2.5-VL-3B", 64, "Table 1", 42.21, (32.93, 35.33, 48.64, 44.77, 38.05, 53.55)),
    ("baseline-16f", "Qwen2.5-VL-3B", 16, "Table 1", 38.32, (27.63, 30.78, 45.28, 43.89, 37.95, 44.37)),
    ("internvl3.5-2b", "InternVL3.5-2B", 64, "Table 1", 15.95, (14.65, 15.56, 22.88, 14.71, 23.63, 4.26)),
    ("internvl3.5-4b", "InternVL3.5-4B", 64, "Table 1", 42.00, (28.96, 33.33, 47.51, 44.71, 58.34, 39.15)),
    ("gemma-3-4b", "Gemma-3-4B", 64, "Table 1", 38.87, (26.83, 26.78, 41.76, 36.82, 55.04, 46.0)),
    ("bytevideollm", "ByteVideoLLM-3B", 64, "Table 1", 25.52, (21.33, 22.33, 28.63, 22.56, 35.55, 22.7)),
    ("moviechat", "MovieChat-3B", 1, "Table 1", 32.10, (25.14, 25.78, 39.35, 37.1, 38.79, 26.41)),
    ("vidcom2", "VidCom2-3B", 64, "Table 1", 27.84, (25.5, 23.89, 31.08, 29.88, 35.23, 21.48)),
    ("marc@0.6", "MARC-3B", 1, "Table 1", 42.20, (27.55, 33.11, 51.99, 45.82, 55.34, 39.44)),
    ("vmr-64f", "Qwen2.5-VL-3B(VMR)", 64, "Table 2", 45.56, (34.02, 34.33, 55.52, 57.24, 40.38, 51.85)),
    ("sft-vmr-1f", "Qwen2.5-VL-3B(SFT+VMR)", 1, "Table 2", 40.16, (26.71, 31.00, 47.83, 43.91, 53.76, 37.77)),
    ("sft-1f", "Qwen2.5-VL-3B(SFT)", 1, "Table 2", 38.50, (25.70, 28.33, 45.76, 39.48, 54.05, 37.72)),
    ("marc@0.4", "MARC-3B", 1, "Table 3", 41.34, (28.27, 31.66, 49.12, 45.21, 54.72, 39.07)),
    ("marc@0.8", "MARC-3B", 1, "Table 3", 41.40, (28.23, 31.78, 49.34, 45.89, 54.12, 39.03)),
)
PAPER_ROWS: tuple[PaperRow, ...] = tuple(
    PaperRow(key, label, frames, table, mean, dict(zip(PAPER_BENCHMARKS, scores, strict=True)))
    for key, label, frames, table, mean, scores in _PRINTED_ROWS
)

# Table 4: mean visual tokens per sample, by setting ("64f", "16f", "1f") and benchmark.
PAPER_VISUAL_TOKENS: dict[str, dict[str, float]] = {
    setting: dict(zip(PAPER_BENCHMARKS, map(float, tokens), strict=True))
    for setting, tokens in (
        ("64f", (3917.61, 3849.23, 2364.87, 1005.06, 668.84, 3733.96)),
        ("16f", (1040, 963.70, 937.60, 640.28, 609.79, 959.82)),
        ("1f", (130, 120.46, 121.51, 124.07, 120, 120.08)),
    )
}


def paper_scores(benchmark: str) -> dict[str, float]:
    """The paper's score of every printed row on ``benchmark``, by row key; empty for our own suites."""
    return {row.key: row.scores[benchmark] for row in PAPER_ROWS if benchmark in row.scores}


def paper_visual_tokens(benchmark: str) -> dict[str, float]:
    """Table 4's mean visual tokens on ``benchmark`` per setting; empty for our own suites."""
    return {
        setting: tokens[benchmark] for setting, tokens in PAPER_VISUAL_TOKENS.items() if benchmark in tokens
    }


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
    ),
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


def paper_table(*, table: str | None = None) -> pl.DataFrame:
    """The paper's reported figures in :func:`~marc_ops.eval.scoring.score_table`'s layout, with
    ``label``/``frames``/``source`` columns.

    ``Mean`` is the paper's printed mean; ``table`` (``"Table 1"``, ``"Table 2"``, ``"Table 3"``)
    keeps one table's rows.
    """
    rows = [row for row in PAPER_ROWS if table is None or row.table == table]
    long = pl.DataFrame(
        [
            {"method": row.key, "benchmark": name, "score": row.scores[name]}
            for row in rows
            for name in PAPER_BENCHMARKS
        ],
        schema={"method": pl.String(), "benchmark": pl.String(), "score": pl.Float64()},
    )
    wide = score_table(long, methods=[row.key for row in rows])
    return wide.with_columns(
        pl.Series("Mean", [row.reported_mean for row in rows], dtype=pl.Float64()),
        pl.Series("label", [row.label for row in rows], dtype=pl.String()),
        pl.Series("frames", [row.frames for row in rows], dtype=pl.Int64()),
        pl.Series("source", [f"MARC paper {row.table}" for row in rows], dtype=pl.String()),
    )
