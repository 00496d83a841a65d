"""Per-sample scoring, benchmark aggregation and the tables, against hand-computed values; the task registry."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from marc_ops.config.tasks import PAPER_BENCHMARKS, TASKS, resolve_task
from marc_ops.data import BenchmarkFileNotFoundError, load_task_rows
from marc_ops.eval import RECORD_SCHEMA, read_records_dir, score_table, summarize
from marc_ops.eval.report import PAPER_ROWS, paper_scores, paper_table, paper_visual_tokens
from marc_ops.eval.scoring import PRIOR_METHOD, prior_answer_records


def _row(pid: str, problem_type: str, answer: str) -> dict:
    return {
        "problem_id": pid,
        "problem_type": problem_type,
        "solution": f"<answer>{answer}</answer>",
        "answer": answer,
    }


def _records(
    benchmark: str, method: str, samples: list[tuple[dict, str | None]], tokens: int = 100
) -> pl.DataFrame:
    """Records as the runner writes them; an output of ``None`` is a failed sample."""
    task = resolve_task(benchmark)
    records = []
    for row, output in samples:
        base = {
            "problem_id": row["problem_id"],
            "benchmark": benchmark,
            "method": method,
            "prompt_hash": "h",
            "problem_type": row["problem_type"],
            "answer": row["answer"],
        }
        if output is None:
            records.append(
                {
                    **base,
                    "output": None,
                    "extracted": None,
                    "reward": 0.0,
                    "correct": False,
                    "visual_tokens": None,
                    "latency_s": None,
                    "status": "failed",
                    "error": "VideoDecodeError: x.mp4: no frames",
                }
            )
            continue
        score = task.score(row, output, rule="strict")
        records.append(
            {
                **base,
                "output": output,
                "extracted": score.extracted,
                "reward": score.reward,
                "correct": score.correct,
                "visual_tokens": tokens,
                "latency_s": 2.0,
                "status": "ok",
                "error": None,
            }
        )
    return pl.DataFrame(records, schema=RECORD_SCHEMA)


# (benchmark, problem_type, ground truth, output) -> (reward, correct, extracted)
SAMPLE_TABLE = [
    ("mvbench", "multiple choice", "B", "<think>so</think><answer>B</answer>", (1.0, True, "B")),
    ("mvbench", "multiple choice", "B", "<answer> B </answer>", (1.0, True, "B")),
    ("mvbench", "multiple choice", "B", "B", (0.0, False, None)),  # no tags: 0, no fallback to the raw text
    ("mvbench", "multiple choice", "B", "The answer is B.", (0.0, False, None)),
    ("mvbench", "multiple choice", "B", "<answer>b</answer>", (0.0, False, "b")),
    ("mvbench", "multiple choice", "B", "<answer>B. no</answer>", (0.0, False, "B. no")),
    (
        "mvbench",
        "multiple choice",
        "B",
        "<answer>A</answer><answer>B</answer>",
        (0.0, False, "A"),
    ),  # first pair
    ("vsibench", "regression", "10", "<answer>12</answer>", (0.6, False, "12")),  # rel. err 0.2: θ 0.50..0.75
    ("vsibench", "regression", "4", "<answer>5</answer>", (0.5, False, "5")),  # rel. err 0.25: θ 0.50..0.70
    ("vsibench", "regression", "10", "<answer>10</answer>", (1.0, True, "10")),
    ("vsibench", "regression", "10", "12", (0.0, False, None)),
    (
        "vsibench",
        "numerical",
        "3",
        "<answer>4</answer>",
        (0.4, False, "4"),
    ),  # MRA: rel. err 1/3, θ 0.50..0.65
    ("synthetic", "numerical", "3", "<answer>4</answer>", (0.0, False, "4")),  # exact match elsewhere
    ("synthetic", "regression", "10", "<answer>12</answer>", (0.6, False, "12")),
]


@pytest.mark.parametrize(("benchmark", "problem_type", "gt", "output", "expected"), SAMPLE_TABLE)
def test_sample_score(benchmark: str, problem_type: str, gt: str, output: str, expected: tuple) -> None:
    score = resolve_task(benchmark).score(_row("x", problem_type, gt), output, rule="strict")
    assert (score.reward, score.correct, score.extracted) == pytest.approx(expected)


# Video-R1's eval_bench.py: the tagged answer, or the whole output when that is empty or missing.
# (benchmark, problem_type, ground truth, output) -> (reward, correct, extracted)
WHOLE_OUTPUT_TABLE = [
    ("mvbench", "multiple choice", "B", "<think>so</think><answer>B</answer>", (1.0, True, "B")),
    ("mvbench", "multiple choice", "B", "<answer>A</answer>", (0.0, False, "A")),  # the tags win, even wrong
    ("mvbench", "multiple choice", "B", "B", (1.0, True, "B")),  # no tags: the whole text is the answer
    ("mvbench", "multiple choice", "B", " B\n", (1.0, True, " B\n")),  # compared after strip
    ("mvbench", "multiple choice", "B", "The answer is B.", (0.0, False, "The answer is B.")),  # no match
    ("mvbench", "multiple choice", "B", "<answer></answer>B", (0.0, False, "<answer></answer>B")),
    ("mvbench", "multiple choice", "B", None, (0.0, False, None)),  # a failed sample
    ("synthetic", "numerical", "3", "3", (1.0, True, "3")),
    ("synthetic", "numerical", "3", "3.0", (0.0, False, "3.0")),  # a decimal mark on one side only
    ("synthetic", "numerical", "2.5", "2.504", (1.0, True, "2.504")),  # equal at 2 decimals
    ("synthetic", "numerical", "3", "three", (0.0, False, "three")),
    ("vsibench", "regression", "10", "12", (0.6, False, "12")),  # MRA: rel. err 0.2, θ 0.50..0.75
    ("vsibench", "regression", "10", "10", (1.0, True, "10")),
    ("vsibench", "regression", "10", "about 12 m", (0.0, False, "about 12 m")),  # not a number
    ("vsibench", "numerical", "3", "4", (0.4, False, "4")),  # MRA: rel. err 1/3, θ 0.50..0.65
    # ROUGE against "the red car stops": 1- and L-F1 2·1·(3/4)/(1+3/4) = 6/7, 2-F1 (2 of 3 bigrams) 4/5.
    ("synthetic", "free-form", "the red car stops", "the red car", (88 / 105, False, "the red car")),
]


@pytest.mark.parametrize(("benchmark", "problem_type", "gt", "output", "expected"), WHOLE_OUTPUT_TABLE)
def test_sample_score_whole_output(
    benchmark: str, problem_type: str, gt: str, output: str | None, expected: tuple
) -> None:
    score = resolve_task(benchmark).score(_row("x", problem_type, gt), output, rule="whole-output")
    assert (score.reward, score.correct, score.extracted) == pytest.approx(expected)


def test_vsibench_is_the_mean_of_mc_accuracy_and_mean_mra() -> None:
    records = _records(
        "vsibench",
        "m",
        [
            (_row("1", "multiple choice", "A"), "<answer>A</answer>"),  # right
            (_row("2", "multiple choice", "C"), "<answer>D</answer>"),  # wrong
            (_row("3", "regression", "10"), "<answer>12</answer>"),  # MRA 0.6
            (_row("4", "regression", "4"), "<answer>5</answer>"),  # MRA 0.5
        ],
    )
    scores = resolve_task("vsibench").aggregate(records)
    assert scores["accuracy"] == pytest.approx(50.0)
    assert scores["mra"] == pytest.approx(55.0)
    assert scores["score"] == pytest.approx(52.5)
    assert (scores["n"], scores["n_accuracy_items"], scores["n_mra_items"], scores["n_failed"]) == (
        4,
        2,
        2,
        0,
    )


def test_failed_samples_count_as_wrong_and_are_counted() -> None:
    records = _records(
        "mmvu",
        "m",
        [
            (_row("1", "multiple choice", "A"), "<answer>A</answer>"),
            (_row("2", "multiple choice", "B"), "<answer>C</answer>"),
            (_row("3", "multiple choice", "C"), None),
        ],
        tokens=120,
    )
    scores = resolve_task("mmvu").aggregate(records)
    assert scores["score"] == pytest.approx(100 / 3)
    assert scores["accuracy"] == scores["score"] and scores["mra"] is None
    assert scores["n_failed"] == 1
    # Costs are means over the samples that ran.
    assert (scores["visual_tokens_mean"], scores["latency_s_mean"]) == (120.0, 2.0)


def test_a_failed_regression_item_scores_zero_mra() -> None:
    records = _records(
        "vsibench",
        "m",
        [(_row("1", "multiple choice", "A"), "<answer>A</answer>"), (_row("2", "regression", "4"), None)],
    )
    assert resolve_task("vsibench").aggregate(records)["score"] == pytest.approx(50.0)


def test_empty_records_have_no_score() -> None:
    scores = resolve_task("mvbench").aggregate(pl.DataFrame(schema=RECORD_SCHEMA))
    assert scores["score"] is None and scores["n"] == 0


def test_repeated_problem_ids_are_refused() -> None:
    sample = (_row("1", "multiple choice", "A"), "<answer>A</answer>")
    with pytest.raises(ValueError, match="more than once"):
        resolve_task("mvbench").aggregate(_records("mvbench", "m", [sample, sample]))


def test_summary_and_table_from_records_files(tmp_path: Path) -> None:
    right, wrong = "<answer>A</answer>", "<answer>B</answer>"
    runs = {
        ("mvbench", "baseline-64f"): [right, right, wrong, wrong],  # 50
        ("mmvu", "baseline-64f"): [right, wrong, wrong, wrong],  # 25
        ("mvbench", "marc@0.6"): [right, right, right, wrong],  # 75
    }
    for (benchmark, method), outputs in runs.items():
        samples = [(_row(str(i), "multiple choice", "A"), out) for i, out in enumerate(outputs)]
        path = tmp_path / benchmark / f"{method}.jsonl"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            "".join(json.dumps(r) + "\n" for r in _records(benchmark, method, samples).to_dicts())
        )

    summary = summarize(read_records_dir(tmp_path))
    assert summary.height == 3
    table = score_table(summary, benchmarks=("mvbench", "mmvu"), methods=["baseline-64f", "marc@0.6"])
    assert table.columns == ["method", "MVBench", "MMVU (mc)", "Mean"]
    assert table.rows() == [("baseline-64f", 50.0, 25.0, 37.5), ("marc@0.6", 75.0, None, None)]
    tokens = score_table(summary, benchmarks=("mvbench",), methods=["marc@0.6"], value="visual_tokens_mean")
    assert tokens.rows() == [("marc@0.6", 100.0, 100.0)]


def test_paper_table_transcribes_the_paper() -> None:
    table = paper_table()
    assert table.columns[:8] == [
        "method",
        "VSI-Bench",
        "VideoMMMU",
        "MMVU (mc)",
        "MVBench",
        "TempCompass",
        "VideoMME (w/o sub)",
        "Mean",
    ]
    baseline = table.filter(pl.col("method") == "baseline-64f").row(0, named=True)
    assert (baseline["VSI-Bench"], baseline["VideoMME (w/o sub)"], baseline["Mean"]) == (32.93, 53.55, 42.21)
    assert baseline["source"] == "MARC paper Table 1"
    # Each row's six figures average to the mean the paper prints (to its rounding).
    for row in table.iter_rows(named=True):
        recomputed = sum(row[TASKS[name].display_name] for name in PAPER_BENCHMARKS) / 6
        assert recomputed == pytest.approx(row["Mean"], abs=0.011), row["method"]
    assert paper_table(table="Table 3")["method"].to_list() == ["marc@0.4", "marc@0.8"]
    assert len(PAPER_ROWS) == table.height == 14


def test_paper_visual_tokens_average_to_table_4() -> None:
    for frames, mean in (("64f", 2589.93), ("16f", 858.53), ("1f", 122.69)):
        values = [paper_visual_tokens(name)[frames] for name in PAPER_BENCHMARKS]
        assert sum(values) / 6 == pytest.approx(mean, abs=0.01)


# --- the task registry ---------------------------------------------------------------------


def test_registry_names_the_video_r1_eval_files() -> None:
    assert set(TASKS) == {"vsibench", "videommmu", "mmvu", "mvbench", "tempcompass", "videomme", "synthetic"}
    for name, task in TASKS.items():
        assert task.name == name and task.file_name == f"eval_{name}.json"
    assert resolve_task("vsibench").mra_problem_types == ("regression", "numerical")
    assert all(not TASKS[n].mra_problem_types for n in PAPER_BENCHMARKS if n != "vsibench")
    assert paper_scores("synthetic") == {}


def test_unknown_benchmark_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown benchmark 'egoschema'.*vsibench.*synthetic"):
        resolve_task("egoschema")


def test_missing_benchmark_file_names_the_path_and_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkFileNotFoundError) as info:
        load_task_rows(resolve_task("videomme"), tmp_path)
    message = str(info.value)
    assert "'eval_videomme.json'" in message and str(tmp_path / "eval_videomme.json") in message
    assert isinstance(info.value, FileNotFoundError)


def test_rows_load_in_file_order_with_media_resolved_against_the_eval_dir(tmp_path: Path) -> None:
    rows = [
        {
            "problem_id": i,
            "problem": "How far?",
            "data_type": "video",
            "problem_type": "regression",
            "solution": "<answer>2.5</answer>",
            "path": f"./VSI/{i}.mp4",
        }
        for i in (3, 1, 2)
    ]
    (tmp_path / "eval_vsibench.json").write_text(json.dumps(rows))
    manifest = load_task_rows(resolve_task("vsibench"), tmp_path)
    assert manifest.rows["problem_id"].to_list() == ["3", "1", "2"]
    assert manifest.rows["media_path"][0] == str((tmp_path / "VSI" / "3.mp4").resolve())
    other = load_task_rows(resolve_task("vsibench"), tmp_path, data_root=tmp_path / "media")
    assert other.rows["media_path"][0] == str((tmp_path / "media" / "VSI" / "3.mp4").resolve())


def test_prior_answer_records_answer_each_type_with_its_most_common_training_answer() -> None:

    train = pl.DataFrame(
        {
            "problem_type": ["numerical", "numerical", "numerical", "multiple choice", "multiple choice"],
            "solution": [
                "<answer>2</answer>",
                "<answer>3</answer>",
                "<answer>3</answer>",
                "<answer>B</answer>",
                "<answer>A</answer>",
            ],
        }
    )
    eval_rows = pl.DataFrame(
        {
            "problem_id": ["1", "2", "3", "4"],
            "problem_type": ["numerical", "numerical", "multiple choice", "OCR"],
            "solution": [
                "<answer>3</answer>",
                "<answer>2</answer>",
                "<answer>B</answer>",
                "<answer>CAT</answer>",
            ],
            "options": [None, None, ["A. x", "B. y"], None],
        }
    )
    records = prior_answer_records(resolve_task("synthetic"), train, eval_rows)
    assert records["method"].unique().to_list() == [PRIOR_METHOD]
    # numerical: "3" (2 of 3); multiple choice: a tie, the first seen ("B"); OCR never trained: no answer
    assert records["extracted"].to_list() == ["3", "3", "B", None]
    assert records["reward"].to_list() == [1.0, 0.0, 1.0, 0.0]
    assert records["visual_tokens"].to_list() == [0, 0, 0, 0]
