"""The report's "SCORE Table 1" section: the SCORE paper's rows at each token retention R beside ours.

SCORE (``BASELINES.md`` section 7) measured Qwen2.5-VL-7B on LVBench, MLVU and VideoMME; we run other
benchmarks, so for each R the paper's rows and ours are two tables with their own columns, row for
row in the paper's order (the same method at the same retention; "—" where it did not run). Across
them, only relative figures can be read: our score relative to the uncompressed ``baseline-64f``
against SCORE's Acc %, and the retention our records show against R.
"""

from __future__ import annotations

import polars as pl

from marc_ops.config.tasks import TASKS
from marc_ops.eval.report import text
from marc_ops.eval.report.cells import MISSING, num
from marc_ops.eval.report.document import Block, Row, Section, Table
from marc_ops.eval.report.methods import method_retention
from marc_ops.eval.report.paper import (
    SCORE_COLUMNS,
    SCORE_ROWS,
    SCORE_SETTING,
    SCORE_VISUAL_TOKENS,
    ScorePaperRow,
)

# Our method without compression: the reference of "% of uncompressed" and of the retention.
UNCOMPRESSED = "baseline-64f"


def score_comparison(summary: pl.DataFrame, methods: list[str], rule: str) -> Section:
    """The section: the setting and its caveats, then per R the paper's rows and ours.

    ``summary`` is the checked summary (:data:`~marc_ops.eval.scoring.SUMMARY_SCHEMA`), ``methods``
    every method in it in the report's order, ``rule`` the sentence naming the answer rule that scored
    them (under each table of ours).
    """
    ours = _OurFigures(summary)
    ran = [TASKS[n].display_name for n in ours.benchmarks]
    blocks: list[Block] = [
        text.SCORE_TABLE.format(setting=SCORE_SETTING, missing=MISSING),
        text.SCORE_NOT_COMPARABLE.format(benchmarks=", ".join(ran) or "nothing"),
        text.SCORE_DYCOKE,
    ]
    if not any(row.key in methods for row in SCORE_ROWS if row.label == "SCORE"):
        blocks.append(text.SCORE_NOT_RUN.format(missing=MISSING))
    if UNCOMPRESSED not in methods:
        blocks.append(text.SCORE_NO_BASELINE.format(missing=MISSING))
    # R in percent, rounded so that a retention of 0.1 is R = 10 exactly.
    at_retention = {m: round(r * 100, 6) for m in methods if (r := method_retention(m)) is not None}
    retentions = sorted({row.retention for row in SCORE_ROWS} | set(at_retention.values()), reverse=True)
    for percent in retentions:
        paper = [row for row in SCORE_ROWS if row.retention == percent]
        keys = [row.key for row in paper]
        keys += [m for m, r in at_retention.items() if r == percent and m not in keys]
        blocks.append(_retention_heading(percent))
        if paper:
            blocks.append(Table(("Method (SCORE paper)", *SCORE_COLUMNS), tuple(map(_paper_row, paper))))
        columns = ("Method (ours)", *ran, "Mean", "% of uncompressed", "Visual tokens", "Retention")
        blocks.append(Table(columns, tuple(ours.row(m) for m in keys)))
        blocks.append(rule)
    return Section(
        "SCORE Table 1: accuracy at token retention R = 40 %, 25 %, 10 % (SCORE paper)", tuple(blocks)
    )


def _retention_heading(percent: float) -> str:
    if percent == 100:
        return text.SCORE_UNCOMPRESSED.format(tokens=f"{SCORE_VISUAL_TOKENS[100]:,}")
    if percent not in SCORE_VISUAL_TOKENS:
        return text.SCORE_RETENTION_NOT_IN_PAPER.format(percent=f"{percent:g}")
    tokens = SCORE_VISUAL_TOKENS[int(percent)]
    return text.SCORE_RETENTION.format(
        percent=f"{percent:g}", tokens=f"{tokens:,}", share=tokens / SCORE_VISUAL_TOKENS[100] * 100
    )


def _paper_row(row: ScorePaperRow) -> Row:
    return Row((f"{row.label} (paper)", *(num(row.scores[c], 1) for c in SCORE_COLUMNS)), paper=True)


class _OurFigures:
    """Our figures per method over every benchmark that ran, in the registry's benchmark order."""

    def __init__(self, summary: pl.DataFrame) -> None:
        ran = set(summary["benchmark"].to_list())
        self.benchmarks = [n for n in TASKS if n in ran]
        self._rows = {(r["benchmark"], r["method"]): r for r in summary.iter_rows(named=True)}

    def mean_score(self, method: str) -> float | None:
        """The mean over every benchmark that ran; ``None`` unless the method ran all of them."""
        scores = [self._value(n, method, "score") for n in self.benchmarks]
        if not scores or any(s is None for s in scores):
            return None
        return sum(scores) / len(scores)

    def row(self, method: str) -> Row:
        """Scores († with failed samples), Mean, % of uncompressed, visual tokens and retention."""
        cells = []
        for name in self.benchmarks:
            r = self._rows.get((name, method))
            mark = "†" if r is not None and r["n_failed"] > 0 else ""
            cells.append(MISSING if r is None or r["score"] is None else num(r["score"]) + mark)
        mean, reference = self.mean_score(method), self.mean_score(UNCOMPRESSED)
        relative = None if mean is None or not reference else mean / reference * 100
        tokens = [
            t for n in self.benchmarks if (t := self._value(n, method, "visual_tokens_mean")) is not None
        ]
        shares = [
            t / base
            for n in self.benchmarks
            if (t := self._value(n, method, "visual_tokens_mean")) is not None
            and (base := self._value(n, UNCOMPRESSED, "visual_tokens_mean"))
        ]
        return Row(
            (
                f"`{method}` (ours)",
                *cells,
                num(mean),
                num(relative, 1),
                num(sum(tokens) / len(tokens), 1) if tokens else MISSING,
                f"{sum(shares) / len(shares) * 100:.1f}%" if shares else MISSING,
            )
        )

    def _value(self, benchmark: str, method: str, field: str) -> float | None:
        r = self._rows.get((benchmark, method))
        return None if r is None else r[field]
