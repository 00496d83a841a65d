"""The report's sections, in order: overview, our own suites, the paper's Tables 1-4, SCORE's Table 1
(:mod:`~marc_ops.eval.report.score_comparison`), chance, Fig. 4, Fig. 5, failures.

Every number in a table is either ours (from the summary, :data:`~marc_ops.eval.scoring.SUMMARY_SCHEMA`)
or the paper's, printed in rows labelled "(paper)" in italics; a benchmark we did not run is "—".
The paper's figures come from six real benchmarks; a benchmark outside them (the embedded default's
``synthetic`` suite) gets its own section and is never set beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from marc_ops.compression import method_options
from marc_ops.config.methods import resolve_method
from marc_ops.config.tasks import PAPER_BENCHMARKS, TASKS
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report import text
from marc_ops.eval.report.cells import MISSING, num, p_value, seconds
from marc_ops.eval.report.document import Block, Figure, Row, Section, Table
from marc_ops.eval.report.efficiency_tables import efficiency_section
from marc_ops.eval.report.methods import (
    method_compressor,
    method_frames,
    method_order,
    method_retention,
    method_tau,
)
from marc_ops.eval.report.paper import (
    PAPER_CAPTIONS,
    PAPER_LAYOUTS,
    PAPER_ROWS,
    PAPER_VISUAL_TOKENS,
    paper_table,
)
from marc_ops.eval.report.score_comparison import score_comparison
from marc_ops.eval.scoring import PRIOR_METHOD, score_table
from marc_ops.rewards import AnswerRule


def report_sections(
    summary: pl.DataFrame,
    cost: EfficiencyProfile | None,
    chance: pl.DataFrame,
    types: pl.DataFrame,
    categories: pl.DataFrame,
    answer_rule: AnswerRule,
) -> list[Section]:
    """Every section of the report, from checked inputs (the frames of :mod:`~marc_ops.eval.report.statistics`).

    Every record was scored by ``answer_rule``; each table and figure of scores says so below it.
    """
    methods = method_order(summary["method"].to_list())
    ran = set(summary["benchmark"].to_list())
    others = [name for name in TASKS if name in ran and name not in PAPER_BENCHMARKS]
    rule = text.ANSWER_RULE[answer_rule]
    sections = [_overview(summary, methods, others)]
    sections += [_other_benchmark(summary, name, methods, chance, types, categories, rule) for name in others]
    sections += [_paper_comparison(summary, table, methods, rule) for table in PAPER_LAYOUTS]
    sections.append(_visual_tokens(summary, methods))
    sections.append(score_comparison(summary, methods, rule))
    if chance.filter(pl.col("benchmark").is_in(PAPER_BENCHMARKS)).height:
        sections.append(_paper_benchmarks_vs_chance(chance, methods, rule))
    sections.append(
        Section(
            "Accuracy against visual tokens (cf. paper Fig. 4)",
            (
                text.ACCURACY_VS_TOKENS,
                Figure("accuracy_vs_tokens", "Score against mean visual tokens per method"),
                rule,
            ),
        )
    )
    sections.append(efficiency_section(cost))
    sections.append(_failures(summary, methods))
    return sections


def _overview(summary: pl.DataFrame, methods: list[str], others: list[str]) -> Section:
    ran_paper = [TASKS[n].display_name for n in PAPER_BENCHMARKS if n in set(summary["benchmark"])]
    ran_names = ran_paper + [TASKS[n].display_name for n in others]
    n, failed = int(summary["n"].sum()), int(summary["n_failed"].sum())
    mra = [TASKS[n].display_name for n in TASKS if TASKS[n].mra_problem_types]
    blocks: list[Block] = [
        text.RUN.format(
            benchmarks=", ".join(ran_names) or "none",
            methods=", ".join(f"`{m}`" for m in methods) or "none",
            n=n,
            failed=failed,
        ),
        text.SCORES.format(mra=" and ".join(mra), missing=MISSING),
    ]
    if not ran_paper:
        blocks.append(
            text.NOT_COMPARABLE.format(benchmarks=", ".join(ran_names) or "nothing", missing=MISSING)
        )
    return Section("Overview", tuple(blocks))


def _other_benchmark(
    summary: pl.DataFrame,
    name: str,
    methods: list[str],
    chance: pl.DataFrame,
    types: pl.DataFrame,
    categories: pl.DataFrame,
    rule: str,
) -> Section:
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
            method_frames(method),
            num(r["score"]),
            num(r["accuracy"]),
            num(r["mra"]),
            str(r["n"]),
            str(r["n_failed"]),
            num(r["visual_tokens_mean"], 1),
            MISSING if r["latency_s_mean"] is None else seconds(r["latency_s_mean"]),
        ]
        if mc:
            cells += _chance_cells(mc.get(method))
        table_rows.append(Row(tuple(cells)))
    blocks: list[Block] = [
        text.OWN_SUITE.format(name=task.display_name, description=task.description),
        Table(tuple(columns), tuple(table_rows)),
        rule,
    ]
    if PRIOR_METHOD in rows_by_method:
        margins = ", ".join(
            f"`{m}` {rows_by_method[m]['score'] - rows_by_method[PRIOR_METHOD]['score']:+.2f}"
            for m in methods
            if m in rows_by_method and m != PRIOR_METHOD
        )
        blocks.append(text.PRIOR_ANSWER.format(prior=PRIOR_METHOD, margins=margins))
    if mc:
        levels = sorted({round(c["chance"], 2) for c in mc.values()})
        blocks.append(
            text.CHANCE.format(levels=", ".join(f"{v:.2f}%" for v in levels), verdict=_confidently_above(mc))
        )
    else:
        blocks.append(text.CHANCE_NOT_SHOWN)
    blocks += _by_category_blocks(categories.filter(pl.col("benchmark") == name), methods, rule)
    blocks += _by_type_blocks(types.filter(pl.col("benchmark") == name), methods, rule)
    return Section(f"{task.display_name} suite (ours)", tuple(blocks))


def _chance_cells(c: Mapping[str, Any] | None) -> list[str]:
    """MC items, accuracy, chance, margin and p-value of one method; "—" for a method without them."""
    if c is None:
        return [MISSING] * 5
    return [
        str(c["n_mc"]),
        num(c["mc_accuracy"]),
        num(c["chance"]),
        f"{c['above_chance']:+.2f}",
        p_value(c["p_guessing"]),
    ]


def _confidently_above(mc: Mapping[str, Mapping[str, Any]]) -> str:
    above = [
        f"`{m}`"
        for m, c in mc.items()
        if m != PRIOR_METHOD and c["p_guessing"] is not None and c["p_guessing"] < 0.05
    ]
    return text.ABOVE_CHANCE.format(methods=", ".join(above)) if above else text.NONE_ABOVE_CHANCE


def _by_category_blocks(categories: pl.DataFrame, methods: list[str], rule: str) -> list[Block]:
    """Multiple-choice accuracy per category and method, with its margin over chance and a star where
    guessing would do as well less than 5 % of the time."""
    if not categories.height:
        return []
    names = sorted(categories["category"].unique().to_list())
    cell = {(r["method"], r["category"]): r for r in categories.iter_rows(named=True)}
    listed = [m for m in methods if any((m, c) in cell for c in names)]

    confident = {key for key, r in cell.items() if r["p_guessing"] < 0.05}

    def accuracy(key: tuple[str, str]) -> str:
        if key not in cell:
            return MISSING
        r = cell[key]
        return f"{num(r['mc_accuracy'])} ({r['above_chance']:+.2f}{'*' if key in confident else ''})"

    first = {c: next(r for (_, k), r in cell.items() if k == c) for c in names}
    n_items = {c: max(r["n_mc"] for (_, k), r in cell.items() if k == c) for c in names}
    header = [f"{c} (n={n_items[c]}, chance {num(first[c]['chance'])})" for c in names]
    rows = tuple(Row((f"`{m}`", *(accuracy((m, c)) for c in names))) for m in listed)
    above = [
        f"`{m}` on {', '.join(c for c in names if (m, c) in confident)}"
        for m in listed
        if any((m, c) in confident for c in names)
    ]
    return [
        text.BY_CATEGORY,
        Table(("Method", *header), rows),
        rule,
        text.ABOVE_CHANCE.format(methods="; ".join(above)) if above else text.NONE_ABOVE_CHANCE_ON_A_CATEGORY,
    ]


def _by_type_blocks(types: pl.DataFrame, methods: list[str], rule: str) -> list[Block]:
    """Mean reward per problem type and method, and against `prior-answer` per type."""
    if not types.height:
        return []
    kinds = types["problem_type"].unique(maintain_order=True).sort().to_list()
    cell = {(r["method"], r["problem_type"]): r for r in types.iter_rows(named=True)}
    counts = {k: max(r["n"] for (_, t), r in cell.items() if t == k) for k in kinds}
    listed = [m for m in methods if any((m, k) in cell for k in kinds)]
    rows = [
        Row((f"`{m}`", *(MISSING if (m, k) not in cell else num(cell[m, k]["mean_reward"]) for k in kinds)))
        for m in listed
    ]
    blocks: list[Block] = [
        text.BY_TYPE,
        Table(("Method", *(f"{k} (n={counts[k]})" for k in kinds)), tuple(rows)),
        rule,
    ]
    if PRIOR_METHOD in listed:
        beats = []
        for m in (m for m in listed if m != PRIOR_METHOD):
            shared = [k for k in kinds if (m, k) in cell and (PRIOR_METHOD, k) in cell]
            above = [k for k in shared if cell[m, k]["mean_reward"] > cell[PRIOR_METHOD, k]["mean_reward"]]
            beats.append(f"`{m}` {len(above)} of {len(shared)}")
        blocks.append(text.BY_TYPE_AGAINST_PRIOR.format(prior=PRIOR_METHOD, counts=", ".join(beats)))
    return blocks


def _paper_comparison(summary: pl.DataFrame, table: str, methods: list[str], rule: str) -> Section:
    layout = PAPER_LAYOUTS[table]
    labels = {row.key: row for row in PAPER_ROWS}
    paper = {r["method"]: r for r in paper_table().iter_rows(named=True)}
    ours = {r["method"]: r for r in score_table(summary, methods=methods).iter_rows(named=True)}
    failed = {
        (r["benchmark"], r["method"]) for r in summary.filter(pl.col("n_failed") > 0).iter_rows(named=True)
    }
    bench_columns = [TASKS[n].display_name for n in PAPER_BENCHMARKS]
    with_tau = table == "Table 3"

    def tau_cell(method: str) -> list[str]:
        if not with_tau:
            return []
        return [num(method_tau(method), 1) if method_tau(method) is not None else MISSING]

    def our_row(method: str) -> Row:
        r = ours[method]
        cells = []
        for name in PAPER_BENCHMARKS:
            value = r[TASKS[name].display_name]
            mark = "†" if (name, method) in failed else ""
            cells.append(MISSING if value is None else num(value) + mark)
        return Row((f"`{method}` (ours)", *tau_cell(method), method_frames(method), *cells, num(r["Mean"])))

    def paper_row(key: str) -> Row:
        row, r = labels[key], paper[key]
        cells = [num(r[c]) for c in bench_columns]
        return Row(
            (f"{row.label} (paper)", *tau_cell(key), str(row.frames), *cells, num(r["Mean"])), paper=True
        )

    rows = []
    for key in layout:
        if key in ours:
            rows.append(our_row(key))
        rows.append(paper_row(key))
    placed = {k for keys in PAPER_LAYOUTS.values() for k in keys}
    # A compressor run at a retention is SCORE's setting: it has its place in the SCORE Table 1 section.
    extra = [
        m
        for m in methods
        if m not in placed
        and (method_tau(m) is not None) == with_tau
        and table != "Table 2"
        and method_retention(m) is None
    ]
    rows += [our_row(m) for m in extra]
    columns = ("Method", *(["τ"] if with_tau else []), "Frames", *bench_columns, "Mean")
    blocks: list[Block] = [Table(columns, tuple(rows)), rule, text.PAPER_TABLE.format(missing=MISSING)]
    if table == "Table 1":
        shown = [*layout, *extra]
        blocks += _bytevideollm_rounding(
            [m for m in shown if m in ours and method_compressor(m) == "bytevideollm"]
        )
    return Section(f"{table}: {PAPER_CAPTIONS[table]}", tuple(blocks))


def _bytevideollm_rounding(methods: list[str]) -> list[str]:
    """One sentence per rounding rule that ByteVideoLLM's rows ran with: the ``rounding`` option of each
    method's spec, its default where the spec leaves it out."""
    by_rule: dict[str, list[str]] = {}
    for method in methods:
        compression = resolve_method(method).compression
        rounding = method_options(compression.method, compression.options).rounding
        by_rule.setdefault(rounding, []).append(f"`{method}`")
    return [
        text.BYTEVIDEOLLM_ROUNDING.format(
            methods=", ".join(names), rounding=rounding, rule=text.BYTEVIDEOLLM_RULES[rounding]
        )
        for rounding, names in by_rule.items()
    ]


def _visual_tokens(summary: pl.DataFrame, methods: list[str]) -> Section:
    ours = score_table(summary, methods=methods, value="visual_tokens_mean")
    columns = ("Method", *(TASKS[n].display_name for n in PAPER_BENCHMARKS), "Mean")
    rows = [
        Row((f"`{r['method']}` (ours)", *(num(r[c], 1) for c in columns[1:])))
        for r in ours.iter_rows(named=True)
    ]
    for setting, label in (("64f", "64 frames"), ("16f", "16 frames"), ("1f", "1 frame")):
        values = [PAPER_VISUAL_TOKENS[setting][n] for n in PAPER_BENCHMARKS]
        rows.append(
            Row((f"{label} (paper)", *(num(v) for v in values), num(sum(values) / len(values))), paper=True)
        )
    return Section(
        "Visual tokens per sample (cf. paper Table 4)",
        (text.VISUAL_TOKENS, Table(columns, tuple(rows))),
    )


def _paper_benchmarks_vs_chance(chance: pl.DataFrame, methods: list[str], rule: str) -> Section:
    rows = [
        Row((TASKS[r["benchmark"]].display_name, f"`{r['method']}`", *_chance_cells(r)))
        for name in PAPER_BENCHMARKS
        for method in methods
        for r in chance.filter((pl.col("benchmark") == name) & (pl.col("method") == method)).iter_rows(
            named=True
        )
    ]
    columns = (
        "Benchmark",
        "Method",
        "MC items",
        "MC accuracy",
        "Chance",
        "Above chance (pp)",
        "p (guessing)",
    )
    return Section("Multiple-choice items against chance", (Table(columns, tuple(rows)), rule))


def _failures(summary: pl.DataFrame, methods: list[str]) -> Section:
    order = {m: i for i, m in enumerate(methods)}
    bench_order = {n: i for i, n in enumerate(TASKS)}
    rows = sorted(
        summary.iter_rows(named=True), key=lambda r: (bench_order[r["benchmark"]], order[r["method"]])
    )
    table = Table(
        ("Benchmark", "Method", "Samples", "Failed", "Failed share"),
        tuple(
            Row(
                (
                    TASKS[r["benchmark"]].display_name,
                    f"`{r['method']}`",
                    str(r["n"]),
                    str(r["n_failed"]),
                    f"{r['n_failed'] / r['n'] * 100:.1f}%" if r["n"] else MISSING,
                )
            )
            for r in rows
        ),
    )
    return Section("Failed samples", (text.FAILURES, table))
