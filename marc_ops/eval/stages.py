"""The evaluation stages: ``benchmark_scores`` (one benchmark × method) → ``report``; and ``marc eval``.

``benchmark_scores_stage(paths, params, benchmark=..., method=...)`` answers the benchmark's rows
with the method's checkpoint through :class:`~marc_ops.eval.qwen_adapter.QwenAdapter`, appending
one record per sample to ``assets/benchmark_scores/<benchmark>/<method>.jsonl``. The runner makes it
resumable: a rerun generates only the samples the file lacks (or whose prompt changed). Beside the
records it writes ``<method>.summary.json``: what the call did and the benchmark's figures.

``report_stage(paths, params)`` reads every records file, keeps the records that match the current
benchmark files and prompt (a record of a changed row or prompt would score a question nobody asks
any more), and renders the report (``marc_ops.eval.report.build_report``) into ``assets/report``.

:class:`~marc_ops.eval.config.EvalConfig` is the profile's ``eval`` section.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

from marc_ops.config import Params, ProjectPaths
from marc_ops.data import load_videor1
from marc_ops.data.videor1 import DataFileError
from marc_ops.eval.methods import resolve_method
from marc_ops.eval.prompts import PromptTemplate, prompt_template
from marc_ops.eval.qwen_adapter import QwenAdapter, resolve_checkpoint
from marc_ops.eval.report import build_report, multiple_choice_vs_chance
from marc_ops.eval.runner import RunSummary, prompt_hash, records_path, run_benchmark
from marc_ops.eval.scoring import prior_answer_records, read_records, read_records_dir, score_table, summarize
from marc_ops.eval.tasks import TASKS, load_task_rows, resolve_task
from marc_ops.io import write_json
from marc_ops.stage import StageResult
from marc_ops.tables import markdown_table

logger = logging.getLogger(__name__)

_PREVIEW_COLUMNS = (
    "problem_id",
    "problem_type",
    "answer",
    "extracted",
    "reward",
    "visual_tokens",
    "status",
    "error",
)


def summary_path(paths: ProjectPaths, benchmark: str, method: str) -> Path:
    """``assets/benchmark_scores/<benchmark>/<method>.summary.json``, beside the records file."""
    return paths.asset("benchmark_scores") / benchmark / f"{method}.summary.json"


def benchmark_scores_stage(
    paths: ProjectPaths, params: Params, *, benchmark: str, method: str
) -> StageResult:
    """The ``benchmark_scores`` asset, one partition per benchmark × method: run (or resume) and score."""
    summary, checkpoint = _evaluate(paths, params, benchmark, method, limit=params.eval.limit)
    records = read_records(summary.records_path)
    return StageResult(
        outputs={
            "records": summary.records_path,
            "summary": summary_path(paths, summary.benchmark, summary.method),
        },
        metadata={
            "benchmark": summary.benchmark,
            "method": summary.method,
            "checkpoint": str(checkpoint),
            **_figures(summary.scores),
            "generated_now": summary.n_generated,
            "resumed": summary.n_resumed,
            "dropped_stale": summary.n_dropped,
            "seconds": round(summary.elapsed_s, 2),
        },
        tables={
            "preview": records.select(_PREVIEW_COLUMNS).head(20),
            "failed": records.filter(pl.col("status") == "failed").select("problem_id", "error"),
            "by_problem_type": records.group_by("problem_type")
            .agg(n=pl.len(), mean_reward=pl.col("reward").mean(), failed=(pl.col("status") == "failed").sum())
            .sort("problem_type"),
        },
    )


def _figures(scores: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of ``BenchmarkTask.aggregate`` output (percent, counts, tokens, seconds)."""
    return {
        "score": scores["score"],
        "accuracy": scores["accuracy"],
        "mra": scores["mra"],
        "n": scores["n"],
        "failed": scores["n_failed"],
        "visual_tokens_mean": scores["visual_tokens_mean"],
        "latency_s_mean": scores["latency_s_mean"],
    }


def _evaluate(
    paths: ProjectPaths, params: Params, benchmark: str, method: str, *, limit: int | None
) -> tuple[RunSummary, Path]:
    """Run ``benchmark`` × ``method`` (resuming its records file) and write its summary JSON."""
    task = resolve_task(benchmark)
    spec = resolve_method(method)
    config = params.eval
    rows = load_task_rows(task, params.data.evals(paths.project_dir)).rows
    checkpoint = resolve_checkpoint(paths, spec, init=params.train.init)
    adapter = QwenAdapter(
        checkpoint,
        spec,
        video=params.video,
        dtype=params.model.dtype,
        device=params.model.device,
        attn_implementation=params.model.attn_implementation,
        selection_path=paths.asset("vmr_selection") / "selection.parquet" if spec.use_vmr else None,
        split=f"eval:{task.name}",
        max_new_tokens=config.max_new_tokens,
    )
    summary = run_benchmark(
        task,
        spec,
        rows,
        adapter,
        records_path(paths.asset("benchmark_scores"), task.name, spec.name),
        batch_size=config.batch_size,
        limit=limit,
        video=params.video,
        template=prompt_template(config.prompt_template),
    )
    write_json(
        summary_path(paths, task.name, spec.name),
        {
            "benchmark": task.name,
            "method": spec.name,
            "checkpoint": str(checkpoint),
            "records": str(summary.records_path),
            "limit": limit,
            "max_new_tokens": config.max_new_tokens,
            "prompt_template": config.prompt_template,
            "n_selected": summary.n_selected,
            "n_generated": summary.n_generated,
            "n_resumed": summary.n_resumed,
            "n_failed": summary.n_failed,
            "n_dropped": summary.n_dropped,
            "elapsed_s": summary.elapsed_s,
            "scores": summary.scores,
        },
    )
    return summary, checkpoint


# --- the CLI ------------------------------------------------------------------------------------------


def eval_command(paths: ProjectPaths, params: Params, benchmark: str, method: str, limit: int | None) -> int:
    """``marc eval --benchmark B --method M [--limit N]``: the ``benchmark_scores`` stage of one pair, printed.

    ``limit`` ``None`` keeps the profile's ``eval.limit``. Progress goes to stderr (tqdm); the
    summary to stdout. Returns the exit status: 0 (failed samples are results, not errors).
    """
    started = time.perf_counter()
    limit = params.eval.limit if limit is None else limit
    spec = resolve_method(method)
    print(
        f"eval {benchmark} × {spec.name}: {spec.description}; "
        f"{'all rows' if limit is None else f'first {limit} rows'}, batch {params.eval.batch_size}, "
        f"at most {params.eval.max_new_tokens} new tokens",
        flush=True,
    )
    summary, checkpoint = _evaluate(paths, params, benchmark, spec.name, limit=limit)
    figures = _figures(summary.scores)
    table = pl.DataFrame([figures], schema={key: pl.Float64 for key in figures})
    print(f"checkpoint: {checkpoint}")
    print(
        f"samples: {summary.n_selected} selected, {summary.n_generated} generated now, "
        f"{summary.n_resumed} already recorded, {summary.n_failed} failed"
        + (f", {summary.n_dropped} stale record line(s) dropped" if summary.n_dropped else "")
    )
    print(markdown_table(table))
    print(f"records: {summary.records_path}")
    print(f"summary: {summary_path(paths, summary.benchmark, summary.method)}")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


# --- report -------------------------------------------------------------------------------------------


def report_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """The ``report`` asset: every recorded benchmark × method, the efficiency profile if any, rendered."""
    scores_dir = paths.asset("benchmark_scores")
    records = read_records_dir(scores_dir)
    if not records.height:
        raise FileNotFoundError(
            f"no benchmark records under {scores_dir}: materialize benchmark_scores partitions "
            "(or run `marc eval`) before the report"
        )
    benchmarks = [name for name in TASKS if name in set(records["benchmark"].to_list())]
    eval_dir = params.data.evals(paths.project_dir)
    rows = {name: load_task_rows(resolve_task(name), eval_dir).rows for name in benchmarks}
    current = _current_records(records, rows, prompt_template(params.eval.prompt_template))
    n_stale = records.height - current.height
    if not current.height:
        raise ValueError(
            f"all {records.height} records under {scores_dir} are of rows or prompts that changed since they ran "
            f"(prompt_template is {params.eval.prompt_template!r}): rerun the benchmark_scores partitions"
        )
    if n_stale:
        logger.warning(
            "report: ignoring %d record(s) whose row or prompt changed since they ran "
            "(rerun those benchmark_scores partitions to refresh them)",
            n_stale,
        )
    if "synthetic" in rows and params.data.source == "synthetic":
        # The synthetic suite's chance level for all problem types: the prior answer of each type.
        root = params.data.root(paths.project_dir)
        try:
            train = load_videor1(root / params.data.annotation_files[0], root, check_media=False).rows
        except DataFileError as error:
            logger.warning("report: no prior-answer reference for the synthetic suite (%s)", error)
        else:
            prior = prior_answer_records(resolve_task("synthetic"), train, rows["synthetic"])
            current = pl.concat([current, prior])
    summary = summarize(current)
    profile_file = paths.asset("efficiency_profile") / "profile.json"
    efficiency = json.loads(profile_file.read_text()) if profile_file.is_file() else None
    files = build_report(
        summary,
        efficiency,
        paths.asset("report"),
        profile=params.profile,
        multiple_choice=multiple_choice_vs_chance(current, rows),
    )
    ran = set(zip(summary["benchmark"].to_list(), summary["method"].to_list(), strict=True))
    missing = [f"{b} × {m}" for b in params.eval.benchmarks for m in params.eval.methods if (b, m) not in ran]
    methods = summary["method"].unique(maintain_order=True).to_list()
    return StageResult(
        outputs={
            "markdown": files.markdown,
            "html": files.html,
            "metrics": files.metrics_json,
            "plot_data": files.plot_data,
            **{f"plot_{name}": path for name, path in files.plots.items()},
        },
        metadata={
            "pairs": summary.height,
            "samples": int(summary["n"].sum()),
            "failed": int(summary["n_failed"].sum()),
            "stale_records_ignored": n_stale,
            "missing_pairs": missing,
            "efficiency_profile": profile_file.is_file(),
            "metrics": json.loads(files.metrics_json.read_text()),
        },
        tables={
            "scores": score_table(summary, benchmarks=benchmarks, methods=methods),
            "visual_tokens": score_table(
                summary, benchmarks=benchmarks, methods=methods, value="visual_tokens_mean"
            ),
        },
    )


def _current_records(
    records: pl.DataFrame, rows: dict[str, pl.DataFrame], template: PromptTemplate
) -> pl.DataFrame:
    """The records whose row is still in its benchmark file, with the prompt it was answered with."""
    prompts = {
        (benchmark, row["problem_id"]): resolve_task(benchmark).prompt(row, template)
        for benchmark, frame in rows.items()
        for row in frame.iter_rows(named=True)
    }
    keep = [
        (benchmark, pid) in prompts and prompt_hash(prompts[benchmark, pid], method) == hash_
        for benchmark, method, pid, hash_ in records.select(
            "benchmark", "method", "problem_id", "prompt_hash"
        ).iter_rows()
    ]
    return records.filter(pl.Series(keep, dtype=pl.Boolean))
