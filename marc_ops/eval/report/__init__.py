"""The report: the paper's Tables 1-3 and SCORE's Table 1 with our numbers beside the papers', and the
Fig. 4 / Fig. 5 analogues.

``build_report(summary, efficiency, out_dir, profile=...)`` writes, each file atomically::

    out_dir/
      report.md               the tables and notes; plots linked relatively
      report.html             the same content, self-contained (plots embedded as base64)
      accuracy_vs_tokens.png  score against mean visual tokens per method, log x (paper Fig. 4)
      efficiency.png          bars per method for each cost measure (paper Fig. 5); only with a profile
      metrics.json            flat numbers for ``dvc metrics``: {"synthetic/marc@0.6/score": 41.2, ...}
      accuracy_vs_tokens.csv  the plotted points for ``dvc plots`` (x: visual_tokens, y: score)

- ``build``: ``build_report`` and the files it writes.
- ``statistics``: multiple-choice accuracy against chance, reward per problem type, from the records.
- ``paper``: the paper's printed figures (Tables 1-4, Fig. 4's points, Fig. 5's reduction) and SCORE's
  Table 1.
- ``sections``: the report's content, section by section (``document``: its building blocks;
  ``text``: its prose; ``cells``: how a number is written; ``methods``: method order and columns;
  ``score_comparison``: the SCORE Table 1 section).
- ``efficiency_tables``: the efficiency profile as the report's section and as Markdown on its own.
- ``metrics``, ``plots``, ``render``: the DVC metrics and plot points, the PNGs, Markdown and HTML.

The efficiency profile is the JSON the profiler writes; its schema,
:class:`~marc_ops.eval.efficiency.schema.EfficiencyProfile`, lives beside the profiler.
"""

from marc_ops.eval.report.build import ReportFiles, build_report
from marc_ops.eval.report.efficiency_tables import format_table, reference_method
from marc_ops.eval.report.paper import (
    PAPER_ROWS,
    PAPER_VISUAL_TOKENS,
    SCORE_COLUMNS,
    SCORE_ROWS,
    SCORE_VISUAL_TOKENS,
    PaperRow,
    ScorePaperRow,
    paper_scores,
    paper_table,
    paper_visual_tokens,
)
from marc_ops.eval.report.statistics import (
    BY_TYPE_SCHEMA,
    CATEGORY_CHANCE_SCHEMA,
    CHANCE_SCHEMA,
    guessing_p_value,
    multiple_choice_by_category,
    multiple_choice_vs_chance,
    reward_by_problem_type,
)

__all__ = [
    "BY_TYPE_SCHEMA",
    "CATEGORY_CHANCE_SCHEMA",
    "CHANCE_SCHEMA",
    "PAPER_ROWS",
    "PAPER_VISUAL_TOKENS",
    "PaperRow",
    "ReportFiles",
    "SCORE_COLUMNS",
    "SCORE_ROWS",
    "SCORE_VISUAL_TOKENS",
    "ScorePaperRow",
    "build_report",
    "format_table",
    "guessing_p_value",
    "multiple_choice_by_category",
    "multiple_choice_vs_chance",
    "paper_scores",
    "paper_table",
    "paper_visual_tokens",
    "reference_method",
    "reward_by_problem_type",
]
