"""The report: our numbers beside the paper's (marked), "—" for what did not run, plots, metrics, the profile schema."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from PIL import Image
from pydantic import ValidationError

from marc_ops.config.tasks import TASKS
from marc_ops.eval import RECORD_SCHEMA, SUMMARY_SCHEMA
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report import (
    CHANCE_SCHEMA,
    ReportFiles,
    build_report,
    guessing_p_value,
    multiple_choice_by_category,
    multiple_choice_vs_chance,
    reward_by_problem_type,
)


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
    return build_report(summary, efficiency, out_dir, profile="paper", multiple_choice=chance)


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
    files = build_report(summary, None, tmp_path, profile="tiny")
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
        build_report(summary, bad, tmp_path, profile="paper")
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
        build_report(pl.concat([summary, summary.slice(4, 1)]), None, tmp_path, profile="paper")


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
    files = build_report(summary, None, tmp_path, profile="tiny", by_category=out)
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
        build_report(summary, None, tmp_path / "x", profile="tiny", by_category=out.drop("category"))


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
    files = build_report(with_prior, None, tmp_path, profile="tiny", by_type=types)
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
        build_report(summary, None, tmp_path / "x", profile="tiny", by_type=types.drop("n"))


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
