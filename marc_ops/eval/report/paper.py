"""The papers' printed figures, laid out as printed so they can be checked line by line.

MARC: Tables 1-3, each method's score per benchmark (percent) and its printed mean, the rows of
each table in the paper's order and its caption; Table 4, mean visual tokens per sample at 64
frames, 16 frames and one frame's worth; Fig. 4's points; section 4.2's efficiency reduction
(Fig. 5). Column order of every tuple: :data:`~marc_ops.config.tasks.PAPER_BENCHMARKS` (VSI-Bench,
VideoMMMU, MMVU (mc), MVBench, TempCompass, VideoMME (w/o sub)).

SCORE (``BASELINES.md`` section 7): Table 1, the compared compressors at token retention R = 40 %,
25 % and 10 % on LVBench, MLVU and VideoMME, in :data:`SCORE_COLUMNS` order; Table 3's visual tokens
per retention.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from marc_ops.config.tasks import PAPER_BENCHMARKS
from marc_ops.eval.scoring import score_table


@dataclass(frozen=True)
class PaperRow:
    """One row of the MARC paper's results tables, as printed (Table 1, 2 or 3).

    ``key`` is our method name where we run the same method (``baseline-64f``, ``marc@0.6``, and the
    compared compressors at MARC's setting: ``moviechat-1f``, ``vidcom2@120``, ``bytevideollm@120``),
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
    ("bytevideollm@120", "ByteVideoLLM-3B", 64, "Table 1", 25.52, (21.33, 22.33, 28.63, 22.56, 35.55, 22.7)),
    ("moviechat-1f", "MovieChat-3B", 1, "Table 1", 32.10, (25.14, 25.78, 39.35, 37.1, 38.79, 26.41)),
    ("vidcom2@120", "VidCom2-3B", 64, "Table 1", 27.84, (25.5, 23.89, 31.08, 29.88, 35.23, 21.48)),
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
        "bytevideollm@120",
        "moviechat-1f",
        "vidcom2@120",
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


@dataclass(frozen=True)
class ScorePaperRow:
    """One row of the SCORE paper's Table 1, as printed.

    ``key`` is our method name for the same method at the same retention (``vidcom2@0.25``; SCORE's
    vanilla Qwen2.5-VL is our uncompressed ``baseline-64f``), ``retention`` is R in percent as printed
    and ``scores`` the printed figure per column of :data:`SCORE_COLUMNS`.
    """

    key: str
    label: str
    retention: int
    scores: dict[str, float]


# Qwen2.5-VL-7B, at most 128 frames, outer-LLM parts of each method only. VideoMME is the overall
# score, Short / Medium / Long its splits; Avg is the mean of LVBench, MLVU and VideoMME; Acc % is
# Avg relative to vanilla.
SCORE_COLUMNS = ("LVBench", "MLVU", "VideoMME", "Short", "Medium", "Long", "Avg", "Acc %")
SCORE_SETTING = "Qwen2.5-VL-7B, at most 128 frames, outer-LLM parts only"
# method, R (%), our method name, then one figure per column of SCORE_COLUMNS.
_SCORE_PRINTED_ROWS: tuple[tuple[str, int, str, tuple[float, ...]], ...] = (
    ("Vanilla", 100, "baseline-64f", (38.3, 69.7, 63.8, 74.4, 64.2, 52.8, 57.3, 100.0)),
    ("DyCoke", 40, "dycoke@0.4", (39.8, 70.0, 64.9, 74.3, 65.3, 55.0, 58.2, 101.7)),
    ("HoliTom", 40, "holitom@0.4", (39.1, 69.9, 61.6, 73.1, 59.9, 51.8, 56.9, 99.3)),
    ("VidCom2", 40, "vidcom2@0.4", (40.2, 70.6, 64.7, 74.8, 64.7, 54.6, 58.5, 102.1)),
    ("FastVID", 40, "fastvid@0.4", (39.9, 68.8, 63.7, 73.9, 62.8, 54.4, 57.5, 100.3)),
    ("SCORE", 40, "score@0.4", (40.6, 70.6, 65.0, 75.0, 65.0, 55.1, 58.7, 102.4)),
    ("DyCoke", 25, "dycoke@0.25", (37.3, 64.6, 61.0, 71.2, 60.0, 51.7, 54.3, 94.8)),
    ("HoliTom", 25, "holitom@0.25", (38.2, 68.4, 60.3, 70.2, 60.1, 50.4, 55.6, 97.1)),
    ("VidCom2", 25, "vidcom2@0.25", (41.3, 68.7, 64.6, 73.3, 65.2, 55.3, 58.2, 101.6)),
    ("FastVID", 25, "fastvid@0.25", (39.7, 68.4, 63.3, 74.3, 61.7, 53.9, 57.1, 99.8)),
    ("SCORE", 25, "score@0.25", (41.2, 70.1, 65.3, 74.8, 65.4, 55.7, 58.9, 102.8)),
    ("HoliTom", 10, "holitom@0.1", (36.7, 65.2, 56.6, 66.1, 55.1, 48.4, 52.8, 92.3)),
    ("VidCom2", 10, "vidcom2@0.1", (38.6, 63.4, 61.8, 70.4, 62.4, 52.6, 54.6, 95.3)),
    ("FastVID", 10, "fastvid@0.1", (37.8, 65.0, 62.0, 72.9, 61.7, 51.4, 54.9, 95.9)),
    ("SCORE", 10, "score@0.1", (39.6, 67.7, 63.6, 73.6, 63.1, 53.9, 57.0, 99.5)),
)
SCORE_ROWS: tuple[ScorePaperRow, ...] = tuple(
    ScorePaperRow(key, label, retention, dict(zip(SCORE_COLUMNS, scores, strict=True)))
    for label, retention, key, scores in _SCORE_PRINTED_ROWS
)
# SCORE Table 3 (7B, VideoMME): mean visual tokens per sample by R (%); 100 is vanilla.
SCORE_VISUAL_TOKENS: dict[int, int] = {100: 42_566, 40: 17_117, 25: 10_733, 10: 4_348}
