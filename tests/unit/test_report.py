"""The report: our numbers beside the paper's (marked), "—" for what did not run, plots, metrics, the profile schema."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from pydantic import ValidationError
from tests_support import REPO_ROOT

from marc_ops.config.methods import METHODS
from marc_ops.config.tasks import TASKS
from marc_ops.eval import RECORD_SCHEMA, SUMMARY_SCHEMA
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report import (
    CHANCE_SCHEMA,
    SCORE_COLUMNS,
    SCORE_ROWS,
    SCORE_VISUAL_TOKENS,
    ReportFiles,
    build_report,
    format_table,
    guessing_p_value,
    multiple_choice_by_category,
    multiple_choice_vs_chance,
    reward_by_problem_type,
)
from marc_ops.eval.report import sections as report_sections
from marc_ops.eval.report.methods import method_order
from marc_ops.eval.report.plots import accuracy_vs_tokens_figure, accuracy_vs_tokens_png, method_styles


def _summary_row(
    benchmark: str, method: str, score: float, tokens: float, *, n: int = 50, failed: int = 0
) -> dict:
    mra = TASKS[benchmark].mra_problem_types
    return {
        "benchmark": benchmark,
        "method": method,
        "score": score,
        "accuracy": score,
        "mra": score if mra else None,
        "n": n,
        "n_failed": failed,
        "n_accuracy_items": n,
        "n_mra_items": 0,
        "visual_tokens_mean": tokens,
        "latency_s_mean": 1.5,
    }


@pytest.fixture(scope="module")
def summary() -> pl.DataFrame:
    """Synthetic for three methods; two of the six paper benchmarks for two of them."""
    rows = [
        _summary_row("synthetic", "baseline-64f", 31.25, 2048.0, n=48),
        _summary_row("synthetic", "marc@0.6", 27.5, 64.0, n=48, failed=2),
        _summary_row("synthetic", "baseline-16f", 26.0, 512.0, n=48),
        _summary_row("mmvu", "baseline-64f", 47.11, 2360.0, n=1000),
        _summary_row("mmvu", "marc@0.6", 50.42, 121.0, n=1000, failed=3),
        _summary_row("mvbench", "marc@0.6", 44.9, 124.0, n=4000),
    ]
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


def _method_cost(method: str, tokens: float, memory: float, e2e: float) -> dict:
    return {
        "method": method,
        "frames": 64 if method.startswith("baseline") else 1,
        "visual_tokens": tokens,
        "vision_s": 0.4,
        "prefill_s": e2e * 0.3,
        "generate_s": e2e * 0.5,
        "end_to_end_s": e2e,
        "merge_s": 0.0 if method.startswith("baseline") else 0.01,
        "peak_memory_gb": memory,
        "memory_kind": "cuda",
    }


@pytest.fixture(scope="module")
def efficiency() -> dict:
    return {
        "device": "NVIDIA H100",
        "model": "Qwen/Qwen2.5-VL-3B-Instruct",
        "dtype": "bfloat16",
        "batch_size": 15,
        "repeats": 3,
        "source": "mmvu",
        "input": "MMVU (mc), answer-only prompt",
        "methods": [
            _method_cost("baseline-64f", 2364.9, 40.0, 2.0),
            _method_cost("marc@0.6", 121.5, 11.0, 1.6),
        ],
    }


@pytest.fixture(scope="module")
def chance() -> pl.DataFrame:
    rows = [
        {
            "benchmark": "synthetic",
            "method": "baseline-64f",
            "n_mc": 20,
            "mc_accuracy": 45.0,
            "chance": 25.0,
            "above_chance": 20.0,
            "p_guessing": 0.0409,
        },
        {
            "benchmark": "synthetic",
            "method": "marc@0.6",
            "n_mc": 20,
            "mc_accuracy": 30.0,
            "chance": 25.0,
            "above_chance": 5.0,
            "p_guessing": 0.3828,
        },
    ]
    return pl.DataFrame(rows, schema=CHANCE_SCHEMA)


@pytest.fixture(scope="module")
def report(
    summary: pl.DataFrame, efficiency: dict, chance: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> ReportFiles:
    """Rendered once for the module: drawing the plots takes seconds."""
    out_dir = tmp_path_factory.mktemp("report")
    return build_report(
        summary, efficiency, out_dir, profile="paper", answer_rule="whole-output", multiple_choice=chance
    )


def _table_line(markdown: str, start: str, after: str) -> str:
    """The first table line starting with ``start`` below the heading ``after``."""
    text = markdown[markdown.index(after) :]
    return next(line for line in text.splitlines() if line.startswith(start))


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_files_are_written(report: ReportFiles) -> None:
    root = report.markdown.parent
    assert sorted(p.name for p in root.iterdir()) == [
        "accuracy_vs_tokens.csv",
        "accuracy_vs_tokens.png",
        "efficiency.png",
        "metrics.json",
        "report.html",
        "report.md",
    ]
    assert set(report.plots) == {"accuracy_vs_tokens", "efficiency"}


def test_table_1_sets_our_numbers_beside_the_papers(report: ReportFiles) -> None:
    md = report.markdown.read_text()
    # Columns: Method, Frames, VSI-Bench, VideoMMMU, MMVU, MVBench, TempCompass, VideoMME, Mean.
    ours = _cells(_table_line(md, "| `marc@0.6` (ours)", "## Table 1"))
    assert ours == ["`marc@0.6` (ours)", "1", "—", "—", "50.42†", "44.90", "—", "—", "—"]
    paper = _cells(_table_line(md, "| _MARC-3B (paper)_", "## Table 1"))
    assert paper == [
        "_MARC-3B (paper)_",
        "_1_",
        "_27.55_",
        "_33.11_",
        "_51.99_",
        "_45.82_",
        "_55.34_",
        "_39.44_",
        "_42.20_",
    ]
    baseline = _cells(_table_line(md, "| `baseline-64f` (ours)", "## Table 1"))
    assert baseline[1:5] == ["64", "—", "—", "47.11"]
    # A model we only quote has its paper row and no row of ours.
    assert "_InternVL3.5-4B (paper)_" in md and "internvl3.5-4b` (ours)" not in md


def test_tables_2_and_3_keep_the_paper_layout(report: ReportFiles) -> None:
    md = report.markdown.read_text()
    table2 = md[md.index("## Table 2") : md.index("## Table 3")]
    assert "_Qwen2.5-VL-3B(SFT) (paper)_" in table2 and "_38.50_" in table2
    assert "sft-1f` (ours)" not in table2  # not run: no row of ours
    table3 = md[md.index("## Table 3") : md.index("## Visual tokens")]
    assert _cells(_table_line(table3, "| `marc@0.6` (ours)", "## Table 3"))[:2] == [
        "`marc@0.6` (ours)",
        "0.6",
    ]
    assert "_41.34_" in table3 and "_41.40_" in table3


def test_synthetic_suite_is_its_own_table_with_chance(report: ReportFiles) -> None:
    md = report.markdown.read_text()
    section = md[md.index("## Synthetic suite") : md.index("## Table 1")]
    assert "not comparable" in section
    row = _cells(_table_line(section, "| `marc@0.6`", "## Synthetic"))
    # Method, Frames, Score, Accuracy, MRA, n, Failed, Visual tokens, Latency, MC items, MC acc, chance, above.
    assert row == [
        "`marc@0.6`",
        "1",
        "27.50",
        "27.50",
        "27.50",
        "48",
        "2",
        "64.0",
        "1.50",
        "20",
        "30.00",
        "25.00",
        "+5.00",
        "0.383",
    ]
    assert "25.00%" in section
    # baseline-16f has no MC figures: dashes, not zeros.
    assert _cells(_table_line(section, "| `baseline-16f`", "## Synthetic"))[-5:] == ["—"] * 5
    assert "Above chance with 95 % confidence: `baseline-64f`." in section


def test_the_answer_rule_is_stated_under_each_table_of_scores(report: ReportFiles, tmp_path: Path) -> None:
    """The fixture's tables of our scores: the synthetic suite, Tables 1-3, SCORE Table 1 at R = 100, 40, 25
    and 10 %, and Fig. 4: nine, each followed by the rule's sentence; the visual tokens, efficiency and
    failure tables are not scores."""
    md = report.markdown.read_text()
    assert md.count("Our scores here: the **whole-output** answer rule") == 1 + 3 + 4 + 1
    assert "**strict** answer rule" not in md
    table_1 = md.split("## Table 1")[1].split("\n## ")[0]
    last_table_line = max(i for i, line in enumerate(table_1.splitlines()) if line.startswith("|"))
    assert "**whole-output** answer rule" in table_1.splitlines()[last_table_line + 2]  # right below it

    summary = pl.DataFrame([_summary_row("synthetic", "baseline-64f", 30.0, 2048.0)], schema=SUMMARY_SCHEMA)
    strict = build_report(summary, None, tmp_path, profile="tiny", answer_rule="strict")
    text = strict.markdown.read_text()
    assert "**whole-output** answer rule" not in text
    assert (
        text.count("Our scores here: the **strict** answer rule (`eval.answer_rule: strict`)")
        == 1 + 3 + 4 + 1
    )


def test_the_efficiency_section_states_the_protocol(report: ReportFiles, efficiency: dict) -> None:
    md = report.markdown.read_text()
    section = md.split("## Efficiency")[1]
    assert (
        "Protocol: batch 15 of the first 15 video samples of MMVU (mc) (`efficiency.source: mmvu`), answer-only "
        "prompt, 3 timed run(s) per method (each method's row is its run with the median end-to-end time)."
    ) in section
    assert "memory is peak CUDA memory in GB, for the whole batch" in section
    longest = {**efficiency, "batch_size": 1, "repeats": 1, "source": "longest"}
    assert (
        "Protocol: batch 1 of copies of the eval set's longest video (`efficiency.source: longest`), answer-only "
        "prompt, 1 timed run(s) per method"
    ) in format_table(longest)


def test_a_profile_written_before_the_protocol_was_recorded_still_reports(
    summary: pl.DataFrame, efficiency: dict, tmp_path: Path
) -> None:
    """Older profiles (the committed CPU figures among them) have no ``repeats`` or ``source``: each was one
    video copied ``batch_size`` times, its timed runs stated in its input."""
    committed = json.loads((REPO_ROOT / "benchmarks" / "results" / "prefill_efficiency.json").read_text())
    assert not {"repeats", "source"} & set(committed)
    assert "Protocol: batch 1 of copies of one video, answer-only prompt, as many timed runs" in format_table(
        committed
    )
    older = {k: v for k, v in efficiency.items() if k not in ("repeats", "source")}
    files = build_report(summary, older, tmp_path, profile="paper", answer_rule="whole-output")
    section = files.markdown.read_text().split("## Efficiency")[1]
    assert (
        "Protocol: batch 15 of copies of one video, answer-only prompt, as many timed runs per method as the "
        "input states. Input: MMVU (mc), answer-only prompt."
    ) in section


def test_failed_samples_are_counted(report: ReportFiles) -> None:
    md = report.markdown.read_text()
    section = md[md.index("## Failed samples") :]
    assert _cells(_table_line(section, "| MMVU (mc) | `marc@0.6`", "## Failed")) == [
        "MMVU (mc)",
        "`marc@0.6`",
        "1000",
        "3",
        "0.3%",
    ]
    assert "| Synthetic | `marc@0.6` | 48 | 2 | 4.2% |" in section


def test_efficiency_section_shows_vision_share_and_changes(report: ReportFiles) -> None:
    md = report.markdown.read_text()
    section = md[md.index("## Efficiency") : md.index("## Failed samples")]
    assert "**20.0%** of end-to-end time for `baseline-64f`" in section  # 0.4 s of 2.0 s
    change = _cells(_table_line(section, "| `marc@0.6` | -", "## Efficiency"))
    assert change == ["`marc@0.6`", "-94.9%", "-72.5%", "-20.0%", "-20.0%", "-20.0%"]
    paper = _cells(_table_line(section, "| _MARC-3B vs", "## Efficiency"))
    assert paper[2:] == ["_-72.4%_", "_—_", "_-23.9%_", "_-11.1%_"]


def test_metrics_are_flat_numbers_without_gaps_filled(report: ReportFiles) -> None:
    metrics = json.loads(report.metrics_json.read_text())
    assert metrics["synthetic/marc@0.6/score"] == 27.5
    assert metrics["synthetic/marc@0.6/n_failed"] == 2
    assert metrics["mmvu/baseline-64f/visual_tokens_mean"] == 2360.0
    assert metrics["synthetic/baseline-64f/mc_above_chance"] == 20.0
    assert metrics["efficiency/marc@0.6/peak_memory_gb"] == 11.0
    assert metrics["efficiency/baseline-64f/vision_share"] == pytest.approx(0.2)
    assert "mmvu/baseline-64f/mra" not in metrics  # MMVU has no MRA items: left out, not 0
    assert not any(key.startswith("mean/") for key in metrics)  # no method ran all six benchmarks
    assert all(isinstance(v, int | float) for v in metrics.values())


def test_plot_data_holds_our_points(report: ReportFiles) -> None:
    points = pl.read_csv(report.plot_data)
    assert points.columns == ["benchmark", "method", "visual_tokens", "score"]
    assert points.height == 6
    row = points.filter((pl.col("benchmark") == "mmvu") & (pl.col("method") == "marc@0.6")).row(0, named=True)
    assert (row["visual_tokens"], row["score"]) == (121.0, 50.42)


def test_plots_are_real_pngs(report: ReportFiles) -> None:
    for path in report.plots.values():
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width >= 600 and image.height >= 400
        assert path.stat().st_size > 10_000


def test_html_embeds_the_plots_and_marks_paper_rows(report: ReportFiles) -> None:
    page = report.html.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert '<tr class="paper"><td>MARC-3B (paper)</td>' in page
    assert "<td>50.42†</td>" in page
    assert "<code>marc@0.6</code> (ours)" in page


def test_tiny_profile_says_paper_figures_are_not_comparable(tmp_path: Path) -> None:
    summary = pl.DataFrame([_summary_row("synthetic", "marc@0.6", 30.0, 64.0)], schema=SUMMARY_SCHEMA)
    files = build_report(summary, None, tmp_path, profile="tiny", answer_rule="strict")
    md = files.markdown.read_text()
    assert "profile `tiny`" in md
    assert "**Not comparable to the paper.**" in md
    assert _cells(_table_line(md, "| `marc@0.6` (ours)", "## Table 1"))[2:] == ["—"] * 7
    assert "No efficiency profile" in md and "Chance level not shown" in md
    assert set(files.plots) == {"accuracy_vs_tokens"}
    assert not (tmp_path / "efficiency.png").exists()


def test_invalid_efficiency_profile_is_rejected_with_the_field(efficiency: dict, tmp_path: Path) -> None:
    summary = pl.DataFrame(schema=SUMMARY_SCHEMA)
    bad = {**efficiency, "methods": [{**efficiency["methods"][0], "memory_kind": "vram"}]}
    with pytest.raises(ValidationError, match=r"methods\.0\.memory_kind"):
        build_report(summary, bad, tmp_path, profile="paper", answer_rule="whole-output")
    missing = {k: v for k, v in efficiency.items() if k != "batch_size"}
    with pytest.raises(ValidationError, match="batch_size"):
        EfficiencyProfile.model_validate(missing)
    slower_part = {**efficiency, "methods": [{**efficiency["methods"][0], "vision_s": 9.0}]}
    with pytest.raises(ValidationError, match="vision_s=9 exceeds end_to_end_s=2"):
        EfficiencyProfile.model_validate(slower_part)
    twice = {**efficiency, "methods": efficiency["methods"] * 2}
    with pytest.raises(ValidationError, match="more than once"):
        EfficiencyProfile.model_validate(twice)
    assert not any(tmp_path.iterdir())  # nothing written for a bad profile


def test_summary_with_a_repeated_pair_is_rejected(summary: pl.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"more than once: \[\('mmvu', 'marc@0.6'\)\]"):
        build_report(
            pl.concat([summary, summary.slice(4, 1)]),
            None,
            tmp_path,
            profile="paper",
            answer_rule="whole-output",
        )


def test_multiple_choice_vs_chance_from_records_and_rows() -> None:
    def record(pid: str, problem_type: str, reward: float, status: str = "ok") -> dict:
        return {
            **dict.fromkeys(RECORD_SCHEMA),
            "problem_id": pid,
            "benchmark": "synthetic",
            "method": "m",
            "problem_type": problem_type,
            "reward": reward,
            "status": status,
        }

    records = pl.DataFrame(
        [
            record("1", "multiple choice", 1.0),
            record("2", "multiple choice", 0.0),
            record("3", "multiple choice", 1.0, status="failed"),  # counts as wrong
            record("4", "numerical", 1.0),  # not multiple choice: ignored
        ],
        schema=RECORD_SCHEMA,
    )
    rows = pl.DataFrame(
        {
            "problem_id": ["1", "2", "3", "4"],
            "options": [["A. x", "B. y"], ["A", "B", "C", "D"], ["A", "B", "C", "D"], []],
        }
    )
    out = multiple_choice_vs_chance(records, {"synthetic": rows}).row(0, named=True)
    assert out["n_mc"] == 3
    assert out["mc_accuracy"] == pytest.approx(100 / 3)
    assert out["chance"] == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3 * 100)
    assert out["above_chance"] == pytest.approx(out["mc_accuracy"] - out["chance"])
    # one right of items guessed with 1/2, 1/4, 1/4: 1 - P(none right) = 1 - 1/2 * 3/4 * 3/4
    assert out["p_guessing"] == pytest.approx(1 - 9 / 32)
    with pytest.raises(ValueError, match="no options"):
        multiple_choice_vs_chance(records, {"synthetic": rows.filter(pl.col("problem_id") != "2")})


def test_multiple_choice_by_category_and_its_table(summary: pl.DataFrame, tmp_path: Path) -> None:
    def record(pid: str, method: str, reward: float) -> dict:
        return {
            **dict.fromkeys(RECORD_SCHEMA),
            "problem_id": pid,
            "benchmark": "synthetic",
            "method": method,
            "problem_type": "multiple choice",
            "reward": reward,
            "status": "ok",
        }

    # Scenes: 9 items of 4 options; Shapes: 2 items of 3 options.
    scenes = [str(i) for i in range(9)]
    rows = pl.DataFrame(
        {
            "problem_id": [*scenes, "s1", "s2"],
            "category": ["SynthScenes"] * 9 + ["SynthShapes"] * 2,
            "options": [["A", "B", "C", "D"]] * 9 + [["A", "B", "C"]] * 2,
        }
    )
    records = pl.DataFrame(
        [record(pid, "marc@0.6", 1.0 if int(pid) < 6 else 0.0) for pid in scenes]
        + [record("s1", "marc@0.6", 0.0), record("s2", "marc@0.6", 1.0)]
        + [record(pid, "baseline-64f", 0.0) for pid in scenes],
        schema=RECORD_SCHEMA,
    )
    out = multiple_choice_by_category(records, {"synthetic": rows})
    by = {(r["method"], r["category"]): r for r in out.iter_rows(named=True)}
    assert set(by) == {
        ("marc@0.6", "SynthScenes"),
        ("marc@0.6", "SynthShapes"),
        ("baseline-64f", "SynthScenes"),
    }
    scene = by["marc@0.6", "SynthScenes"]
    assert (scene["n_mc"], scene["mc_accuracy"], scene["chance"]) == (
        9,
        pytest.approx(600 / 9),
        pytest.approx(25.0),
    )
    assert scene["above_chance"] == pytest.approx(600 / 9 - 25)
    assert scene["p_guessing"] == pytest.approx(guessing_p_value([0.25] * 9, 6))  # 6 of 9 at 1/4: 0.0100
    assert scene["p_guessing"] == pytest.approx(0.0100, abs=5e-5)
    shapes = by["marc@0.6", "SynthShapes"]
    assert (shapes["n_mc"], shapes["mc_accuracy"], shapes["p_guessing"]) == (
        2,
        50.0,
        pytest.approx(1 - 4 / 9),
    )
    files = build_report(summary, None, tmp_path, profile="tiny", answer_rule="strict", by_category=out)
    md = files.markdown.read_text()
    section = md[md.index("## Synthetic suite") : md.index("## Table 1")]
    assert "| Method | SynthScenes (n=9, chance 25.00) | SynthShapes (n=2, chance 33.33) |" in section
    assert _cells(_table_line(section, "| `marc@0.6` | 66", "## Synthetic")) == [
        "`marc@0.6`",
        "66.67 (+41.67*)",
        "50.00 (+16.67)",
    ]
    assert _cells(_table_line(section, "| `baseline-64f` | 0", "## Synthetic")) == [
        "`baseline-64f`",
        "0.00 (-25.00)",
        "—",
    ]
    assert "Above chance with 95 % confidence: `marc@0.6` on SynthScenes." in section
    metrics = json.loads(files.metrics_json.read_text())
    assert metrics["synthetic/marc@0.6/mc_by_category/SynthScenes/mc_above_chance"] == pytest.approx(
        600 / 9 - 25
    )
    with pytest.raises(ValueError, match="by_category lacks"):
        build_report(
            summary,
            None,
            tmp_path / "x",
            profile="tiny",
            answer_rule="strict",
            by_category=out.drop("category"),
        )


def test_reward_by_problem_type_and_its_table_against_the_prior(
    summary: pl.DataFrame, tmp_path: Path
) -> None:
    def record(pid: str, method: str, problem_type: str, reward: float, status: str = "ok") -> dict:
        return {
            **dict.fromkeys(RECORD_SCHEMA),
            "problem_id": pid,
            "benchmark": "synthetic",
            "method": method,
            "problem_type": problem_type,
            "reward": reward,
            "status": status,
        }

    records = pl.DataFrame(
        [
            record("1", "marc@0.6", "multiple choice", 1.0),
            record("2", "marc@0.6", "multiple choice", 0.0),
            record("3", "marc@0.6", "regression", 0.4),
            record("4", "marc@0.6", "regression", 1.0, status="failed"),  # counts 0
            record("1", "prior-answer", "multiple choice", 0.0),
            record("2", "prior-answer", "multiple choice", 0.0),
            record("3", "prior-answer", "regression", 0.8),
            record("4", "prior-answer", "regression", 0.6),
        ],
        schema=RECORD_SCHEMA,
    )
    types = reward_by_problem_type(records)
    by = {(r["method"], r["problem_type"]): (r["n"], r["mean_reward"]) for r in types.iter_rows(named=True)}
    assert by["marc@0.6", "multiple choice"] == (2, pytest.approx(50.0))
    assert by["marc@0.6", "regression"] == (2, pytest.approx(20.0))
    assert by["prior-answer", "regression"] == (2, pytest.approx(70.0))
    with_prior = pl.concat(
        [summary, pl.DataFrame([_summary_row("synthetic", "prior-answer", 35.0, 0.0)], schema=SUMMARY_SCHEMA)]
    )
    files = build_report(with_prior, None, tmp_path, profile="tiny", answer_rule="strict", by_type=types)
    md = files.markdown.read_text()
    section = md[md.index("## Synthetic suite") : md.index("## Table 1")]
    assert "| Method | multiple choice (n=2) | regression (n=2) |" in section
    assert _cells(_table_line(section, "| `marc@0.6` | 50", "## Synthetic")) == [
        "`marc@0.6`",
        "50.00",
        "20.00",
    ]
    assert _cells(_table_line(section, "| `prior-answer` | 0", "## Synthetic")) == [
        "`prior-answer`",
        "0.00",
        "70.00",
    ]
    assert "above `prior-answer`'s: `marc@0.6` 1 of 2." in section
    metrics = json.loads(files.metrics_json.read_text())
    assert metrics["synthetic/marc@0.6/reward_by_type/regression"] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="by_type lacks"):
        build_report(
            summary, None, tmp_path / "x", profile="tiny", answer_rule="strict", by_type=types.drop("n")
        )


def test_guessing_p_value_is_the_exact_tail_of_the_guessers_right_answers() -> None:
    # by hand, items with 2, 4 and 4 options
    chances = [1 / 2, 1 / 4, 1 / 4]
    assert guessing_p_value(chances, 0) == 1.0
    assert guessing_p_value(chances, 3) == pytest.approx(1 / 2 * 1 / 4 * 1 / 4)
    # two or more right: all three, or exactly two (right-right-wrong and so on)
    two = 1 / 2 * 1 / 4 * 3 / 4 + 1 / 2 * 3 / 4 * 1 / 4 + 1 / 2 * 1 / 4 * 1 / 4
    assert guessing_p_value(chances, 2) == pytest.approx(two + 1 / 32)
    # equal chances: the binomial tail; 9 or more of 20 at 1/4 is 0.0409 (a binomial table)
    assert guessing_p_value([0.25] * 20, 9) == pytest.approx(0.0409, abs=5e-5)
    assert guessing_p_value([0.25] * 20, 21) == 0.0
    with pytest.raises(ValueError, match="probabilities"):
        guessing_p_value([1.5], 1)


# --- the compared compressors: MARC Table 1, SCORE Table 1, the plot, the efficiency table -----------------


def test_score_table_1_is_transcribed_as_printed() -> None:
    # BASELINES.md section 7, SCORE Table 1: method, R, LVBench, MLVU, VideoMME, Short, Medium, Long, Avg, Acc %.
    printed = [
        ("Vanilla", 100, 38.3, 69.7, 63.8, 74.4, 64.2, 52.8, 57.3, 100.0),
        ("DyCoke", 40, 39.8, 70.0, 64.9, 74.3, 65.3, 55.0, 58.2, 101.7),
        ("HoliTom", 40, 39.1, 69.9, 61.6, 73.1, 59.9, 51.8, 56.9, 99.3),
        ("VidCom2", 40, 40.2, 70.6, 64.7, 74.8, 64.7, 54.6, 58.5, 102.1),
        ("FastVID", 40, 39.9, 68.8, 63.7, 73.9, 62.8, 54.4, 57.5, 100.3),
        ("SCORE", 40, 40.6, 70.6, 65.0, 75.0, 65.0, 55.1, 58.7, 102.4),
        ("DyCoke", 25, 37.3, 64.6, 61.0, 71.2, 60.0, 51.7, 54.3, 94.8),
        ("HoliTom", 25, 38.2, 68.4, 60.3, 70.2, 60.1, 50.4, 55.6, 97.1),
        ("VidCom2", 25, 41.3, 68.7, 64.6, 73.3, 65.2, 55.3, 58.2, 101.6),
        ("FastVID", 25, 39.7, 68.4, 63.3, 74.3, 61.7, 53.9, 57.1, 99.8),
        ("SCORE", 25, 41.2, 70.1, 65.3, 74.8, 65.4, 55.7, 58.9, 102.8),
        ("HoliTom", 10, 36.7, 65.2, 56.6, 66.1, 55.1, 48.4, 52.8, 92.3),
        ("VidCom2", 10, 38.6, 63.4, 61.8, 70.4, 62.4, 52.6, 54.6, 95.3),
        ("FastVID", 10, 37.8, 65.0, 62.0, 72.9, 61.7, 51.4, 54.9, 95.9),
        ("SCORE", 10, 39.6, 67.7, 63.6, 73.6, 63.1, 53.9, 57.0, 99.5),
    ]
    assert SCORE_COLUMNS == ("LVBench", "MLVU", "VideoMME", "Short", "Medium", "Long", "Avg", "Acc %")
    assert [(r.label, r.retention, *(r.scores[c] for c in SCORE_COLUMNS)) for r in SCORE_ROWS] == printed
    # Each row is keyed by our method of the same compressor at the same retention.
    assert [r.key for r in SCORE_ROWS[:4]] == ["baseline-64f", "dycoke@0.4", "holitom@0.4", "vidcom2@0.4"]
    assert all(r.key == f"{r.label.lower()}@{r.retention / 100:g}" for r in SCORE_ROWS[1:])
    assert all(r.key in METHODS for r in SCORE_ROWS if r.label != "SCORE")
    # Avg is the mean of the first three (to the printed rounding); Acc % is Avg against vanilla's.
    vanilla = sum(SCORE_ROWS[0].scores[c] for c in SCORE_COLUMNS[:3]) / 3
    for row in SCORE_ROWS:
        mean = sum(row.scores[c] for c in SCORE_COLUMNS[:3]) / 3
        assert mean == pytest.approx(row.scores["Avg"], abs=0.05), row
        assert mean / vanilla * 100 == pytest.approx(row.scores["Acc %"], abs=0.2), row
    assert SCORE_VISUAL_TOKENS == {100: 42_566, 40: 17_117, 25: 10_733, 10: 4_348}  # SCORE Table 3


COMPARED = ("baseline-64f", "vidcom2@0.25", "fastvid@0.25", "moviechat-1f", "bytevideollm@120", "vidcom2@120")


@pytest.fixture(scope="module")
def compared_summary() -> pl.DataFrame:
    """The compared compressors at MARC's setting and SCORE's 25 %; MMVU for three of them."""
    rows = [
        _summary_row("synthetic", "baseline-64f", 40.0, 2048.0),
        _summary_row("synthetic", "vidcom2@0.25", 36.0, 512.0),
        _summary_row("synthetic", "fastvid@0.25", 30.0, 491.52, failed=1),
        _summary_row("synthetic", "moviechat-1f", 28.0, 64.0),
        _summary_row("synthetic", "bytevideollm@120", 26.0, 128.0),
        _summary_row("synthetic", "vidcom2@120", 27.0, 120.0),
        _summary_row("mmvu", "moviechat-1f", 38.12, 121.5),
        _summary_row("mmvu", "vidcom2@120", 30.5, 120.0),
        _summary_row("mmvu", "bytevideollm@120", 29.25, 128.0),
    ]
    return pl.DataFrame(rows, schema=SUMMARY_SCHEMA)


@pytest.fixture(scope="module")
def compared(
    compared_summary: pl.DataFrame, efficiency: dict, tmp_path_factory: pytest.TempPathFactory
) -> ReportFiles:
    costs = [
        _method_cost(m, tokens, 10.0, 1.5)
        for m, tokens in (("vidcom2@0.25", 512.0), ("moviechat-1f", 64.0), ("marc@0.6", 121.5))
    ]
    profile = {**efficiency, "methods": [*costs, _method_cost("baseline-64f", 2048.0, 12.0, 2.0)]}
    return build_report(
        compared_summary, profile, tmp_path_factory.mktemp("compared"), profile="tiny", answer_rule="strict"
    )


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(f"## {heading}")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end > 0 else None]


def test_marc_table_1_sets_the_compressors_at_marcs_setting_beside_the_papers(compared: ReportFiles) -> None:
    table1 = _section(compared.markdown.read_text(), "Table 1")
    lines = [line for line in table1.splitlines() if line.startswith("| ")]
    for ours, paper, frames in (
        ("bytevideollm@120", "ByteVideoLLM-3B", "64"),
        ("moviechat-1f", "MovieChat-3B", "1"),
        ("vidcom2@120", "VidCom2-3B", "64"),
    ):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"| `{ours}` (ours)"))
        assert lines[at + 1].startswith(f"| _{paper} (paper)_"), ours  # our row right above the paper's
        assert _cells(lines[at])[1] == frames
    assert _cells(_table_line(table1, "| `moviechat-1f` (ours)", "## Table 1"))[2:] == [
        "—",
        "—",
        "38.12",
        "—",
        "—",
        "—",
        "—",
    ]
    # SCORE's setting (a retention) is not MARC's: those rows are in the SCORE section only.
    assert "vidcom2@0.25" not in table1 and "fastvid@0.25" not in table1


def test_bytevideollm_rounding_rule_is_stated_from_the_method_spec(
    compared: ReportFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    table1 = _section(compared.markdown.read_text(), "Table 1")
    assert "`bytevideollm@120` ran the `round` rule, s = max(1, round(√(B/T)))" in table1
    floored = METHODS["bytevideollm@120"].compression.model_copy(update={"options": {"rounding": "floor"}})
    spec = METHODS["bytevideollm@120"].model_copy(update={"compression": floored})
    monkeypatch.setattr(report_sections, "resolve_method", lambda name: spec)
    (sentence,) = report_sections._bytevideollm_rounding(["bytevideollm@120"])
    assert "ran the `floor` rule, s = max(1, ⌊√(B/T)⌋), ByteVideoLLM's official rule" in sentence


def test_score_table_1_sets_our_rows_beside_the_papers_at_each_retention(compared: ReportFiles) -> None:
    section = _section(compared.markdown.read_text(), "SCORE Table 1")
    assert "**Not comparable to SCORE's figures.**" in section
    assert "our rows are this profile's model at 64 frames on MMVU (mc), Synthetic" in section
    assert "DyCoke has no 10 % row" in section
    assert "Our rows of SCORE itself are — until the `score@*` methods run." in section
    at_25 = section[section.index("**R = 25 %.**") : section.index("**R = 10 %.**")]
    assert "10,733 visual tokens per sample, 25.2 % of vanilla's" in at_25
    assert _cells(_table_line(at_25, "| _VidCom2 (paper)_", "**R = 25"))[1:] == [
        "_41.3_",
        "_68.7_",
        "_64.6_",
        "_73.3_",
        "_65.2_",
        "_55.3_",
        "_58.2_",
        "_101.6_",
    ]
    # Ours: MMVU (mc), Synthetic, Mean, % of uncompressed, visual tokens, retention.
    assert (
        "| Method (ours) | MMVU (mc) | Synthetic | Mean | % of uncompressed | Visual tokens | Retention |"
        in at_25
    )
    vidcom2 = _cells(_table_line(at_25, "| `vidcom2@0.25` (ours)", "**R = 25"))
    assert vidcom2 == ["`vidcom2@0.25` (ours)", "—", "36.00", "—", "—", "512.0", "25.0%"]
    fastvid = _cells(_table_line(at_25, "| `fastvid@0.25` (ours)", "**R = 25"))
    assert fastvid[2:3] + fastvid[-2:] == ["30.00†", "491.5", "24.0%"]
    # Paper rows at 25 % that did not run here are ours too, "—" throughout: DyCoke, HoliTom, SCORE.
    assert _cells(_table_line(at_25, "| `score@0.25` (ours)", "**R = 25")) == [
        "`score@0.25` (ours)",
        *["—"] * 6,
    ]
    order = [line.split("`")[1] for line in at_25.splitlines() if line.startswith("| `")]
    assert order == ["dycoke@0.25", "holitom@0.25", "vidcom2@0.25", "fastvid@0.25", "score@0.25"]
    uncompressed = section[section.index("**Uncompressed") : section.index("**R = 40 %.**")]
    # It did not run MMVU: no Mean, so no % of uncompressed either; its tokens are its own reference.
    assert _cells(_table_line(uncompressed, "| `baseline-64f` (ours)", "**Uncompressed"))[-4:] == [
        "—",
        "—",
        "2048.0",
        "100.0%",
    ]
    # MARC's setting is not SCORE's: those rows are in MARC Table 1 only.
    assert "moviechat-1f" not in section and "vidcom2@120" not in section


def test_score_table_1_relative_columns_need_every_benchmark_and_the_baseline(tmp_path: Path) -> None:
    rows = [
        _summary_row("synthetic", "baseline-64f", 40.0, 2000.0),
        _summary_row("synthetic", "holitom@0.1", 30.0, 200.0),
        _summary_row("synthetic", "vidcom2@0.5", 35.0, 1000.0),  # a retention SCORE does not print
    ]
    files = build_report(
        pl.DataFrame(rows, schema=SUMMARY_SCHEMA), None, tmp_path, profile="tiny", answer_rule="strict"
    )
    section = _section(files.markdown.read_text(), "SCORE Table 1")
    assert _cells(_table_line(section, "| `holitom@0.1` (ours)", "**R = 10")) == [
        "`holitom@0.1` (ours)",
        "30.00",
        "30.00",
        "75.0",
        "200.0",
        "10.0%",
    ]
    assert "**R = 50 %.** SCORE prints no row at this retention." in section
    assert _cells(_table_line(section, "| `vidcom2@0.5` (ours)", "**R = 50"))[-2:] == ["1000.0", "50.0%"]
    assert section.index("**R = 50 %.**") < section.index("**R = 40 %.**")  # largest retention first
    without = build_report(
        pl.DataFrame(rows[1:], schema=SUMMARY_SCHEMA),
        None,
        tmp_path / "without",
        profile="tiny",
        answer_rule="strict",
    )
    section = _section(without.markdown.read_text(), "SCORE Table 1")
    assert "`baseline-64f` did not run" in section
    assert _cells(_table_line(section, "| `holitom@0.1` (ours)", "**R = 10"))[-4:] == [
        "30.00",
        "—",
        "200.0",
        "—",
    ]


def test_method_order_groups_the_compressors_by_family_and_budget() -> None:
    shuffled = [
        "prior-answer",
        "dycoke@0.25",
        "vidcom2@0.1",
        "fastvid@0.4",
        "vidcom2@120",
        "marc@0.5",
        "holitom@0.25",
        "vidcom2@0.4",
        "baseline-64f",
        "bytevideollm@120",
        "moviechat-1f",
        "marc@0.6",
        "sft-1f",
        "dycoke@0.4",
        "vidcom2@0.25",
    ]
    assert method_order(shuffled) == [
        "baseline-64f",
        "marc@0.5",
        "marc@0.6",
        "sft-1f",
        "moviechat-1f",
        "vidcom2@120",
        "vidcom2@0.4",
        "vidcom2@0.25",
        "vidcom2@0.1",
        "bytevideollm@120",
        "fastvid@0.4",
        "holitom@0.25",
        "dycoke@0.4",
        "dycoke@0.25",
        "prior-answer",
    ]


def test_every_method_has_its_own_style_in_its_familys_colour() -> None:
    styles = method_styles(list(METHODS))
    assert len({(s.colour, s.marker) for s in styles.values()}) == len(METHODS)
    vidcom2 = [styles[m] for m in ("vidcom2@120", "vidcom2@0.4", "vidcom2@0.25", "vidcom2@0.1")]
    assert len({s.colour for s in vidcom2}) == 1 and len({s.marker for s in vidcom2}) == 4
    assert styles["fastvid@0.25"].colour != styles["vidcom2@0.25"].colour
    assert styles["marc@0.4"].colour == styles["marc@0.8"].colour != styles["baseline-64f"].colour


def test_accuracy_plot_has_one_legend_entry_per_method_and_the_same_bytes_twice(
    compared_summary: pl.DataFrame,
) -> None:
    methods = compared_summary["method"].to_list()
    styles = method_styles(methods)
    fig = accuracy_vs_tokens_figure(compared_summary, styles)
    (legend,) = [lg for lg in fig.legends if lg.get_title().get_text() == "ours, by method"]
    assert [t.get_text() for t in legend.get_texts()] == method_order(methods)
    assert [h.get_marker() for h in legend.legend_handles] == [
        styles[m].marker for m in method_order(methods)
    ]
    assert accuracy_vs_tokens_png(compared_summary, styles) == accuracy_vs_tokens_png(
        compared_summary, styles
    )


def test_efficiency_table_lists_the_compared_methods_in_order_with_the_compressors_time(
    compared: ReportFiles,
) -> None:
    section = _section(compared.markdown.read_text(), "Efficiency")
    header = _cells(_table_line(section, "| Method | Frames", "## Efficiency"))
    assert header[5] == "Compressor (s)"
    costs = section[: section.index("Change relative to")]
    listed = [line.split("`")[1] for line in costs.splitlines() if line.startswith("| `")]
    assert listed == ["baseline-64f", "marc@0.6", "moviechat-1f", "vidcom2@0.25"]  # profiled in another order
    assert _cells(_table_line(costs, "| `vidcom2@0.25` |", "## Efficiency"))[5] == "0.0100"
