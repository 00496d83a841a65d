"""The evaluation stages on the tiny model: benchmark_scores (records, resume, failures), report, marc eval."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from tests_support import declared_check

from marc_ops.checks import ASSET_CHECKS
from marc_ops.config import Params, ProjectPaths
from marc_ops.config.eval import EvalConfig
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.eval import read_records, records_path
from marc_ops.eval.stages import (
    benchmark_scores_stage,
    eval_command,
    report_stage,
    run_context_path,
    summary_path,
)
from marc_ops.io import write_json

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = SyntheticConfig(n_train_videos=2, n_eval_videos=2, n_train_images=1, n_eval_images=1)
N_ROWS = 2 * 2 + 1  # two questions per video, one image question
TINY_EVAL = {
    "benchmarks": ["synthetic"],
    "methods": [
        "baseline-64f",
        "baseline-16f",
        "vmr-64f",
        "marc@0.4",
        "marc@0.6",
        "marc@0.8",
        "sft-1f",
        "sft-vmr-1f",
    ],
    "batch_size": 2,
    "max_new_tokens": 4,
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/unit/conftest.py


def _retrain(weights: Path) -> None:
    """New weights in the same file, as a retraining writes them: one tensor moved by 1e-3."""
    tensors = load_file(weights)
    name = next(key for key, value in tensors.items() if value.is_floating_point())
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, weights, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """The tiny checkpoint (shared, never written) and the small corpus, made once; each test copies what it changes."""
    root = tmp_path_factory.mktemp("built")
    generate_corpus(CORPUS, root / "corpus")
    return {"tiny": tiny_model, "corpus": root / "corpus"}


def make_params(corpus: Path, **eval_fields) -> Params:
    """The tiny profile with its eval files in ``corpus`` and the test's ``eval`` section."""
    raw = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    raw["data"]["eval_dir"] = str(corpus / "eval")
    raw["train"]["init"] = "base"  # the project below has a base model and no SFT warm-up
    raw["eval"] = EvalConfig(**{**TINY_EVAL, **eval_fields}).model_dump()
    return Params.model_validate(raw)


@pytest.fixture()
def project(tmp_path: Path, built: dict[str, Path]) -> ProjectPaths:
    """A project whose base model is the tiny one and whose C-GRPO τ=0.6 checkpoint is a copy of it."""
    paths = ProjectPaths(tmp_path)
    shutil.copytree(built["corpus"], tmp_path / "corpus")
    write_json(paths.asset("base_model") / "model.json", {"path": str(built["tiny"])})
    shutil.copytree(built["tiny"], paths.asset("cgrpo_checkpoint") / "tau_0.6" / "model")
    rows = json.loads((tmp_path / "corpus" / "eval" / "eval_synthetic.json").read_text())
    videos = [str(row["problem_id"]) for row in rows if row["data_type"] == "video"]
    selection = paths.asset("vmr_selection") / "selection.parquet"
    selection.parent.mkdir(parents=True)
    pl.DataFrame(
        {
            "problem_id": videos,
            "split": ["eval:synthetic"] * len(videos),
            "data_type": ["video"] * len(videos),
            "frame_indices": [[0, 8, 16, 24, 32, 40]] * len(videos),
            "frame_clip_ids": [[0, 0, 0, 0, 2, 2]] * len(videos),
        }
    ).write_parquet(selection)
    return paths


@pytest.fixture()
def params(project: ProjectPaths) -> SimpleNamespace:
    return make_params(project.project_dir / "corpus")


def test_benchmark_scores_records_every_row_then_resumes_without_generating(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    result = benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    path = records_path(project.asset("benchmark_scores"), "synthetic", "baseline-16f")
    assert result.outputs["records"] == path
    assert (result.metadata["n"], result.metadata["generated_now"], result.metadata["failed"]) == (
        N_ROWS,
        N_ROWS,
        0,
    )
    assert result.metadata["visual_tokens_mean"] > 0 and result.metadata["latency_s_mean"] > 0
    assert result.tables["preview"].height == N_ROWS
    written = path.read_bytes()
    summary = json.loads(summary_path(project, "synthetic", "baseline-16f").read_text())
    assert summary["n_generated"] == N_ROWS and summary["scores"]["n"] == N_ROWS

    again = benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    assert (again.metadata["generated_now"], again.metadata["resumed"]) == (0, N_ROWS)
    assert path.read_bytes() == written
    assert again.metadata["score"] == result.metadata["score"]


def test_records_of_another_checkpoint_are_answered_again(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    """Same prompts, retrained weights: resuming would report the old model's answers as the new one's."""
    benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.6")
    weights = project.asset("cgrpo_checkpoint") / "tau_0.6" / "model" / "model.safetensors"
    before = json.loads(run_context_path(project, "synthetic", "marc@0.6").read_text())["checkpoint"]
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # a checkout
    touched = benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.6")
    assert (touched.metadata["generated_now"], touched.metadata["resumed"]) == (0, N_ROWS)
    _retrain(weights)

    again = benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.6")
    assert (again.metadata["generated_now"], again.metadata["resumed"]) == (N_ROWS, 0)
    path = records_path(project.asset("benchmark_scores"), "synthetic", "marc@0.6")
    assert read_records(path).height == N_ROWS  # replaced, not appended to
    context = json.loads(run_context_path(project, "synthetic", "marc@0.6").read_text())
    assert context["checkpoint"] != before

    third = benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.6")
    assert (third.metadata["generated_now"], third.metadata["resumed"]) == (0, N_ROWS)


def test_report_reads_only_the_profiles_pairs(project: ProjectPaths, params: SimpleNamespace) -> None:
    """A records file of a method outside eval.methods (an older version's, a `marc eval` by hand) is not what
    the report stage declares it reads: it is not opened."""
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-64f")
    known = records_path(project.asset("benchmark_scores"), "synthetic", "baseline-64f")
    renamed = known.read_text().replace('"method": "baseline-64f"', '"method": "retired-method"')
    assert renamed != known.read_text()
    known.with_name("retired-method.jsonl").write_text(renamed)

    result = report_stage(project, params)
    assert result.tables["scores"]["method"].to_list() == ["baseline-64f"]
    assert result.metadata["stale_records_ignored"] == 0


def test_report_leaves_out_a_pair_answered_by_an_older_checkpoint(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-64f")
    benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.6")
    _retrain(project.asset("cgrpo_checkpoint") / "tau_0.6" / "model" / "model.safetensors")  # not rerun

    result = report_stage(project, params)
    assert result.tables["scores"]["method"].to_list() == ["baseline-64f"]
    assert result.metadata["stale_records_ignored"] == N_ROWS
    assert "synthetic × marc@0.6" in result.metadata["missing_pairs"]


def test_records_without_a_run_context_are_not_trusted(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    run_context_path(project, "synthetic", "baseline-16f").unlink()  # e.g. written by an older version
    again = benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    assert (again.metadata["generated_now"], again.metadata["resumed"]) == (N_ROWS, 0)


def test_outputs_without_answer_tags_score_zero(project: ProjectPaths, params: SimpleNamespace) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    records = read_records(records_path(project.asset("benchmark_scores"), "synthetic", "baseline-16f"))
    untagged = records.filter(~pl.col("output").str.contains("<answer>"))
    assert untagged.height > 0  # the untrained tiny model never writes the tags
    assert untagged["extracted"].is_null().all() and (untagged["reward"] == 0.0).all()


def test_the_answer_rule_is_recorded_and_a_new_one_scores_the_outputs_again(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    context_file = run_context_path(project, "synthetic", "baseline-16f")
    assert json.loads(context_file.read_text())["answer_rule"] == "strict"

    whole = make_params(project.project_dir / "corpus", answer_rule="whole-output")
    result = benchmark_scores_stage(project, whole, benchmark="synthetic", method="baseline-16f")
    assert (result.metadata["generated_now"], result.metadata["resumed"]) == (0, N_ROWS)
    assert result.metadata["answer_rule"] == "whole-output"
    assert json.loads(context_file.read_text())["answer_rule"] == "whole-output"
    assert json.loads(summary_path(project, "synthetic", "baseline-16f").read_text())["answer_rule"] == (
        "whole-output"
    )
    records = read_records(records_path(project.asset("benchmark_scores"), "synthetic", "baseline-16f"))
    untagged = records.filter(~pl.col("output").str.contains("<answer>"))
    assert untagged.height > 0 and untagged["extracted"].to_list() == untagged["output"].to_list()

    # A run context written before the answer rule was recorded: the records are kept and scored.
    context = json.loads(context_file.read_text())
    del context["answer_rule"]
    write_json(context_file, context)
    again = benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    assert (again.metadata["generated_now"], again.metadata["resumed"]) == (0, N_ROWS)
    assert json.loads(context_file.read_text())["answer_rule"] == "strict"


def test_the_report_names_the_answer_rule_under_each_table_of_scores(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    whole = make_params(project.project_dir / "corpus", answer_rule="whole-output")
    benchmark_scores_stage(project, whole, benchmark="synthetic", method="baseline-64f")
    report_stage(project, whole)
    markdown = (project.asset("report") / "report.md").read_text()
    assert "**whole-output** answer rule" in markdown and "**strict** answer rule" not in markdown

    # Scored under another rule than the profile's now: the report scores the outputs under its own.
    strict = report_stage(project, params)
    assert strict.tables["scores"]["method"].to_list() == ["baseline-64f"]
    markdown = (project.asset("report") / "report.md").read_text()
    assert "**strict** answer rule" in markdown and "**whole-output** answer rule" not in markdown


def test_the_report_reads_a_run_context_written_before_the_answer_rule_was_recorded(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-64f")
    context_file = run_context_path(project, "synthetic", "baseline-64f")
    context = json.loads(context_file.read_text())
    del context["answer_rule"]  # as every run.json before the rule was recorded; the strict rule scored it
    write_json(context_file, context)

    result = report_stage(project, params)
    assert result.tables["scores"]["method"].to_list() == ["baseline-64f"]
    assert result.metadata["stale_records_ignored"] == 0


def test_a_run_stopped_before_it_rescored_shows_no_score_under_the_new_rules_name(
    project: ProjectPaths, params: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run context names the new rule as soon as the run starts; its records are scored again later. Stopped
    in between, the report still shows only scores its rule gave."""
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-64f")
    path = records_path(project.asset("benchmark_scores"), "synthetic", "baseline-64f")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    # An untagged output that is the right answer: strict scores it 0 (as recorded), whole-output 1.
    lines[0] = {**lines[0], "output": lines[0]["answer"], "extracted": None, "reward": 0.0, "correct": False}
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    strict_score = report_stage(project, params).tables["scores"]["Mean"][0]

    def stopped(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stopped before the records were scored again")

    monkeypatch.setattr("marc_ops.eval.runner._rescore", stopped)
    whole = make_params(project.project_dir / "corpus", answer_rule="whole-output")
    with pytest.raises(RuntimeError, match="stopped"):
        benchmark_scores_stage(project, whole, benchmark="synthetic", method="baseline-64f")
    context = json.loads(run_context_path(project, "synthetic", "baseline-64f").read_text())
    assert context["answer_rule"] == "whole-output"
    assert path.read_text().splitlines()[0] == json.dumps(lines[0])  # still scored by the strict rule

    shown = report_stage(project, whole).tables["scores"]["Mean"][0]
    monkeypatch.undo()
    finished = benchmark_scores_stage(project, whole, benchmark="synthetic", method="baseline-64f")
    assert shown == pytest.approx(finished.metadata["score"]) and shown > strict_score


def test_a_corrupt_video_fails_its_samples_and_the_rest_complete(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    rows = json.loads((project.project_dir / "corpus" / "eval" / "eval_synthetic.json").read_text())
    video = next(row["path"] for row in rows if row["data_type"] == "video")
    broken = project.project_dir / "corpus" / "eval" / video
    broken.write_bytes(b"\x00 truncated download" * 32)
    n_broken = sum(row["path"] == video for row in rows)

    result = benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    assert n_broken == 2  # both questions on that video
    assert (result.metadata["n"], result.metadata["failed"]) == (N_ROWS, n_broken)
    records = read_records(result.outputs["records"])
    failed = records.filter(pl.col("status") == "failed")
    assert failed.height == n_broken and (failed["reward"] == 0.0).all()
    assert all(str(broken.name) in error and "VideoDecodeError" in error for error in failed["error"])
    assert records.filter(pl.col("status") == "ok").height == N_ROWS - n_broken
    assert result.tables["failed"].height == n_broken


def test_missing_checkpoint_names_the_asset(project: ProjectPaths, params: SimpleNamespace) -> None:
    with pytest.raises(FileNotFoundError, match="materialize the sft_checkpoint asset"):
        benchmark_scores_stage(project, params, benchmark="synthetic", method="sft-1f")
    with pytest.raises(FileNotFoundError, match="cgrpo_checkpoint partition 0.4"):
        benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.4")
    assert not project.asset("benchmark_scores").exists()


def test_report_renders_the_recorded_runs(project: ProjectPaths, params: SimpleNamespace) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-64f")
    benchmark_scores_stage(project, params, benchmark="synthetic", method="marc@0.6")
    write_json(project.asset("efficiency_profile") / "profile.json", _efficiency_profile())

    result = report_stage(project, params)
    out = project.asset("report")
    for name in ("report.md", "report.html", "accuracy_vs_tokens.png", "efficiency.png", "metrics.json"):
        assert (out / name).is_file(), name
    assert result.outputs["markdown"] == out / "report.md"
    assert (result.metadata["pairs"], result.metadata["samples"], result.metadata["failed"]) == (
        2,
        2 * N_ROWS,
        0,
    )
    assert "synthetic × sft-1f" in result.metadata["missing_pairs"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metadata["metrics"]
    assert (
        metrics["synthetic/marc@0.6/visual_tokens_mean"]
        < metrics["synthetic/baseline-64f/visual_tokens_mean"]
    )
    assert "synthetic/marc@0.6/mc_chance" in metrics  # chance from the benchmark's options
    scores = result.tables["scores"]
    assert scores["method"].to_list() == ["baseline-64f", "marc@0.6"] and "Synthetic" in scores.columns


def test_report_ignores_records_of_another_prompt(project: ProjectPaths, params: SimpleNamespace) -> None:
    benchmark_scores_stage(project, params, benchmark="synthetic", method="baseline-16f")
    with pytest.raises(ValueError, match="rerun the benchmark_scores partitions"):
        report_stage(project, make_params(project.project_dir / "corpus", prompt_template="marc-paper"))


def test_report_without_records_says_what_to_run(project: ProjectPaths, params: SimpleNamespace) -> None:
    with pytest.raises(FileNotFoundError, match="materialize those benchmark_scores partitions"):
        report_stage(project, params)


def test_eval_command_prints_the_summary(
    project: ProjectPaths, params: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert eval_command(project, params, "synthetic", "marc", 2) == 0
    printed = capsys.readouterr().out
    assert "eval synthetic × marc@0.6" in printed and "first 2 rows" in printed
    assert "2 selected, 2 generated now, 0 already recorded, 0 failed" in printed
    assert "| score | accuracy | mra | n | failed | visual_tokens_mean | latency_s_mean |" in printed
    assert records_path(project.asset("benchmark_scores"), "synthetic", "marc@0.6").is_file()


def test_benchmark_checks_pass_on_the_records_and_fail_on_broken_ones(
    project: ProjectPaths, params: SimpleNamespace
) -> None:
    for method in ("marc@0.6", "baseline-16f"):
        benchmark_scores_stage(project, params, benchmark="synthetic", method=method)
    marc = {
        check.name: check.run(project, params, "synthetic|marc@0.6")
        for check in ASSET_CHECKS["benchmark_scores"]
    }
    assert {name: o.summary for name, o in marc.items() if not o.passed} == {}
    assert (
        marc["one_record_per_item"].facts["items"] == marc["one_record_per_item"].facts["records"] == N_ROWS
    )
    tokens = marc["visual_tokens_within_group_budget"].facts
    # one temporal group at 128·28·28 pixels: 128 tokens
    assert (tokens["budget_groups"], tokens["token_bound"], tokens["video_records"]) == (1, 128, 4)
    assert 0 < tokens["max_visual_tokens"] <= 128
    baseline = declared_check("benchmark_scores", "visual_tokens_within_group_budget")
    unbounded = baseline.run(project, params, "synthetic|baseline-16f")
    assert unbounded.passed and unbounded.summary.startswith(
        "baseline-16f keeps no number of temporal groups"
    )

    path = records_path(project.asset("benchmark_scores"), "synthetic", "marc@0.6")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    rows = json.loads((project.project_dir / "corpus/eval/eval_synthetic.json").read_text())
    videos = {str(row["problem_id"]) for row in rows if row["data_type"] == "video"}
    repeated, dropped = records[0]["problem_id"], records[-1]["problem_id"]
    over = next(r for r in records[1:-1] if r["problem_id"] in videos)
    over["visual_tokens"] = 129
    path.write_text("".join(json.dumps(r) + "\n" for r in [records[0], *records[:-1]]))
    broken = {
        check.name: check.run(project, params, "synthetic|marc@0.6")
        for check in ASSET_CHECKS["benchmark_scores"]
    }
    per_item, tokens = broken["one_record_per_item"], broken["visual_tokens_within_group_budget"]
    assert not per_item.passed and per_item.facts["items_with_problems"] == 2
    assert per_item.evidence.rows() == [(dropped, "no record"), (repeated, "2 records")]
    assert not tokens.passed and tokens.evidence.rows() == [(over["problem_id"], 129)]


def test_eval_config_names_known_benchmarks_and_methods_once() -> None:
    assert EvalConfig(methods=["marc", "baseline-64f"]).methods == ["marc@0.6", "baseline-64f"]
    with pytest.raises(ValidationError, match="unknown benchmark"):
        EvalConfig(benchmarks=["mmlu"])
    with pytest.raises(ValidationError, match="unknown method"):
        EvalConfig(methods=["vidcom2"])
    with pytest.raises(ValidationError, match="more than once"):
        EvalConfig(methods=["marc", "marc@0.6"])
    with pytest.raises(ValidationError, match="unknown prompt_template"):
        EvalConfig(prompt_template="mine")
    with pytest.raises(ValidationError, match="batch_size"):
        EvalConfig(batch_size=0)
    with pytest.raises(ValidationError, match="'strict' or 'whole-output'"):
        EvalConfig(answer_rule="loose")
    assert EvalConfig().answer_rule == "strict"


def _efficiency_profile() -> dict:
    def cost(method: str, frames: int, tokens: float, seconds: float) -> dict:
        return {
            "method": method,
            "frames": frames,
            "visual_tokens": tokens,
            "vision_s": seconds / 4,
            "prefill_s": seconds / 4,
            "generate_s": seconds / 4,
            "end_to_end_s": seconds,
            "merge_s": 0.0,
            "peak_memory_gb": 0.5,
            "memory_kind": "rss",
        }

    return {
        "device": "cpu (2 cores)",
        "model": "tiny",
        "dtype": "float32",
        "batch_size": 1,
        "repeats": 1,
        "source": "longest",
        "input": "synthetic",
        "methods": [cost("baseline-64f", 64, 240.0, 1.0), cost("marc@0.6", 1, 40.0, 0.6)],
    }
