"""The MARC paper's printed figures, laid out as printed so they can be checked line by line.

Tables 1-3: each method's score per benchmark (percent) and its printed mean; Table 4: mean visual
tokens per sample at 64 frames, 16 frames and one frame's worth. Column order of every tuple:
:data:`~marc_ops.config.tasks.PAPER_BENCHMARKS` (VSI-Bench, VideoMMMU, MMVU (mc), MVBench,
TempCompass, VideoMME (w/o sub)).
"""

from __future__ import annotations

from dataclasses import dataclass

from marc_ops.config.tasks import PAPER_BENCHMARKS


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
