"""The evaluation stages: ``benchmark_scores`` (one benchmark × method) → ``report``, ``efficiency_profile``;
and ``marc eval``.

``benchmark_scores_stage(paths, params, benchmark=..., method=...)`` answers the benchmark's rows
with the method's checkpoint through :class:`~marc_ops.eval.qwen_adapter.QwenAdapter`, appending
one record per sample to ``assets/benchmark_scores/<benchmark>/<method>.jsonl``. The runner makes it
resumable: a rerun generates only the samples the file lacks (or whose prompt changed). Beside the
records it writes ``<method>.summary.json``: what the call did and the benchmark's figures.

Resuming is only right for the same run: ``<method>.run.json`` holds what the records were answered
with (:func:`evaluation_context`: the checkpoint's weights files, the benchmark file, the VMR
selection, decoding and frame sampling, and the answer rule that scored them). When any of it but the
answer rule changed (a retrained checkpoint, a regenerated corpus) the old records are dropped and every
sample runs again; an unchanged prompt must not carry over another model's answer. A new answer rule
only scores the recorded outputs again (:func:`~marc_ops.eval.runner.run_benchmark`).

``efficiency_profile_stage(paths, params)`` measures what each method costs on the base model
(:mod:`marc_ops.eval.efficiency`).

``report_stage(paths, params)`` reads the records file of each pair of the profile's ``eval`` section, keeps the records that match the current
benchmark files and prompt (a record of a changed row or prompt would score a question nobody asks
any more) and whose answers came from the current run context (whatever rule scored them), scores them from their recorded outputs under the
profile's ``eval.answer_rule`` (the rule it names), and renders the report
(``marc_ops.eval.report.build_report``) into ``assets/report``.

:class:`~marc_ops.config.eval.EvalConfig` is the profile's ``eval`` section.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from marc_ops.config import Params, ProjectPaths
from marc_ops.config.efficiency import LONGEST_VIDEO, EfficiencyConfig
from marc_ops.config.methods import MethodSpec, resolve_method
from marc_ops.config.prompts import PromptTemplate, prompt_template, question_text
from marc_ops.config.tasks import TASKS, BenchmarkTask, resolve_task
from marc_ops.config.video import VideoConfig
from marc_ops.data import load_videor1
from marc_ops.data.benchmarks import load_task_rows
from marc_ops.data.videor1 import DataFileError
from marc_ops.eval.efficiency.profiler import DEFAULT_METHODS, ProfileSample, profile_efficiency
from marc_ops.eval.qwen_adapter import (
    CheckpointNotFoundError,
    QwenAdapter,
    bind_method_artifacts,
    resolve_checkpoint,
)
from marc_ops.eval.report import (
    build_report,
    format_table,
    multiple_choice_by_category,
    multiple_choice_vs_chance,
    reward_by_problem_type,
)
from marc_ops.eval.runner import RunSummary, prompt_hash, records_path, run_benchmark
from marc_ops.eval.scoring import (
    latency_path,
    prior_answer_records,
    read_records,
    read_records_files,
    score_records,
    score_table,
    summarize,
)
from marc_ops.io import file_stamp, weights_stamp, write_json
from marc_ops.model import load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.stage import StageResult
from marc_ops.tables import markdown_table
from marc_ops.video import probe_video, sample_frames

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
            "answer_rule": params.eval.answer_rule,
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


def run_context_path(paths: ProjectPaths, benchmark: str, method: str) -> Path:
    """``assets/benchmark_scores/<benchmark>/<method>.run.json``: what the records file was answered with."""
    return paths.asset("benchmark_scores") / benchmark / f"{method}.run.json"


def evaluation_context(
    checkpoint: Path | str, benchmark_file: Path, selection: Path | None, params: Params
) -> dict[str, Any]:
    """Everything besides the prompt that decides a sample's answer (:func:`weights_stamp` of the
    checkpoint, the benchmark file, the VMR selection when the method uses it, decoding and sampling), and
    the answer rule that decides its score (:data:`SCORING_ONLY`)."""
    return {
        "checkpoint": weights_stamp(checkpoint),
        "benchmark_file": file_stamp(benchmark_file),
        "vmr_selection": file_stamp(selection) if selection is not None and selection.is_file() else None,
        "max_new_tokens": params.eval.max_new_tokens,
        "video": params.video.model_dump(mode="json"),
        "dtype": params.model.dtype,
        "answer_rule": params.eval.answer_rule,
    }


# Run-context keys that decide a sample's score but not its answer: a change scores the recorded outputs
# again instead of generating them again.
SCORING_ONLY = ("answer_rule",)


@dataclass(frozen=True)
class _RunInputs:
    """What one benchmark × method is answered with: the checkpoint, the VMR selection (VMR methods) and
    the run context they make."""

    task: BenchmarkTask
    spec: MethodSpec
    checkpoint: Path
    selection: Path | None
    context: dict[str, Any]


def _run_inputs(paths: ProjectPaths, params: Params, benchmark: str, method: str) -> _RunInputs:
    """Resolve ``benchmark`` × ``method`` (raises for an unknown name or a checkpoint not materialized)."""
    task, spec = resolve_task(benchmark), bind_method_artifacts(paths, resolve_method(method))
    checkpoint = resolve_checkpoint(paths, spec, init=params.train.init)
    selection = paths.asset("vmr_selection") / "selection.parquet" if spec.use_vmr else None
    benchmark_file = params.data.evals(paths.project_dir) / task.file_name
    context = evaluation_context(checkpoint, benchmark_file, selection, params)
    if "policy" in spec.compression.options:  # a retrained SCORE policy answers differently
        context["score_policy"] = file_stamp(Path(spec.compression.options["policy"]))
    return _RunInputs(task, spec, checkpoint, selection, context)


def _current_context(
    paths: ProjectPaths, params: Params, benchmark: str, method: str
) -> dict[str, Any] | None:
    """The run context ``benchmark`` × ``method`` would be answered with now (None: no checkpoint, or a
    method or benchmark this version does not know)."""
    try:
        return _run_inputs(paths, params, benchmark, method).context
    except (CheckpointNotFoundError, ValueError):
        return None


def _answered_with(context: dict[str, Any]) -> dict[str, Any]:
    """What of a run context decides the answers: all of it but :data:`SCORING_ONLY` (a run context written
    before the answer rule was recorded has none of those)."""
    return {k: v for k, v in context.items() if k not in SCORING_ONLY}


def _forget_records_of_another_run(records_file: Path, context_file: Path, context: dict[str, Any]) -> None:
    """Drop ``records_file`` when ``context_file`` says it was answered with something else (or says
    nothing: records of unknown provenance); then record ``context``."""
    previous = json.loads(context_file.read_text()) if context_file.is_file() else None
    answered_with = _answered_with(context)
    dropped = records_file.is_file() and (previous is None or _answered_with(previous) != answered_with)
    if dropped:
        changed = sorted(k for k in answered_with if previous is None or previous.get(k) != context[k])
        logger.warning(
            "%s: answered with another %s; running every sample again", records_file, ", ".join(changed)
        )
        records_file.unlink()
        latency_path(records_file).unlink(missing_ok=True)
    if previous != context:
        write_json(context_file, context)


def _evaluate(
    paths: ProjectPaths, params: Params, benchmark: str, method: str, *, limit: int | None
) -> tuple[RunSummary, Path]:
    """Run ``benchmark`` × ``method`` (resuming its records file) and write its summary JSON."""
    config = params.eval
    inputs = _run_inputs(paths, params, benchmark, method)
    task, spec, checkpoint, selection = inputs.task, inputs.spec, inputs.checkpoint, inputs.selection
    rows = load_task_rows(task, params.data.evals(paths.project_dir)).rows
    records_file = records_path(paths.asset("benchmark_scores"), task.name, spec.name)
    _forget_records_of_another_run(
        records_file, run_context_path(paths, task.name, spec.name), inputs.context
    )
    adapter = QwenAdapter(
        checkpoint,
        spec,
        video=params.video,
        dtype=params.model.dtype,
        device=params.model.device,
        attn_implementation=params.model.attn_implementation,
        selection_path=selection,
        split=f"eval:{task.name}",
        max_new_tokens=config.max_new_tokens,
        decode_workers=config.decode_workers,
    )
    summary = run_benchmark(
        task,
        spec,
        rows,
        adapter,
        records_file,
        batch_size=config.batch_size,
        answer_rule=config.answer_rule,
        limit=limit,
        video=params.video,
        template=prompt_template(config.prompt_template),
        sort_by_length=config.sort_by_length,
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
            "answer_rule": config.answer_rule,
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
    # The profile's pairs only: what the stage declares it reads (a `marc eval` of another method is not).
    files = [
        records_path(scores_dir, benchmark, method)
        for benchmark in params.eval.benchmarks
        for method in params.eval.methods
    ]
    records = read_records_files([path for path in files if path.is_file()])
    if not records.height:
        raise FileNotFoundError(
            f"no benchmark records under {scores_dir} for the profile's eval.benchmarks x eval.methods: "
            "materialize those benchmark_scores partitions before the report"
        )
    benchmarks = [name for name in TASKS if name in set(records["benchmark"].to_list())]
    eval_dir = params.data.evals(paths.project_dir)
    rows = {name: load_task_rows(resolve_task(name), eval_dir).rows for name in benchmarks}
    current = _current_records(records, rows, prompt_template(params.eval.prompt_template))
    current = _records_of_current_runs(paths, params, current)
    # Scored here under the rule the report names: a run stopped before it rescored its records (or one
    # of another rule) must not show its scores under this one.
    current = score_records(current, rows, params.eval.answer_rule)
    n_stale = records.height - current.height
    if not current.height:
        raise ValueError(
            f"all {records.height} records under {scores_dir} are of rows, prompts, checkpoints or settings that "
            f"changed since they ran (prompt_template is {params.eval.prompt_template!r}): rerun the "
            "benchmark_scores partitions"
        )
    if n_stale:
        logger.warning(
            "report: ignoring %d record(s) whose row, prompt, checkpoint or settings changed since they ran "
            "(rerun those benchmark_scores partitions to refresh them)",
            n_stale,
        )
    if "synthetic" in rows and params.data.source == "synthetic":
        # The synthetic suite's majority-answer baseline for all problem types: each type's prior answer.
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
        answer_rule=params.eval.answer_rule,
        multiple_choice=multiple_choice_vs_chance(current, rows),
        by_type=reward_by_problem_type(current),
        by_category=multiple_choice_by_category(current, rows),
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


def _records_of_current_runs(paths: ProjectPaths, params: Params, records: pl.DataFrame) -> pl.DataFrame:
    """The records of the (benchmark, method) pairs answered in the current run context: after a
    retraining or a new corpus, a pair not run again would show the old model's answers. The answer rule
    that scored them does not matter: the report scores them again under its own."""
    keep = []
    for benchmark, method in records.select("benchmark", "method").unique(maintain_order=True).iter_rows():
        recorded = run_context_path(paths, benchmark, method)
        current = _current_context(paths, params, benchmark, method)
        if (
            current is not None
            and recorded.is_file()
            and _answered_with(json.loads(recorded.read_text())) == _answered_with(current)
        ):
            keep.append((benchmark, method))
        else:
            logger.warning(
                "report: ignoring %s × %s: its records were answered with another checkpoint, benchmark file "
                "or settings (rerun that benchmark_scores partition)",
                benchmark,
                method,
            )
    pairs = pl.DataFrame(keep, schema={"benchmark": pl.String, "method": pl.String}, orient="row")
    return records.join(pairs, on=["benchmark", "method"], how="semi", maintain_order="left")


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


def efficiency_profile_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """Profile the methods with the pipeline's base model; write ``assets/efficiency_profile/profile.json``.

    The model is the ``base_model`` asset (tiny profile: the tiny Qwen2.5-VL; paper profile:
    Qwen2.5-VL-3B on ``params.model.device``), in ``params.model.dtype``. Costs do not depend on
    the weights. The batch is the profile's ``efficiency`` section (:func:`efficiency_rows`): the eval
    set's longest video copied ``batch_size`` times, or a benchmark's first ``batch_size`` video samples,
    each timed ``repeats`` times. A video is sampled at ``params.video.fps`` when that gives 64 frames, else
    at its own frame rate up to 64 frames (a short synthetic video at 1 fps would give the 64- and the
    16-frame rows the same few frames); frames are sized by ``params.video``. Each sample's question, with
    the answer-only prompt, is its text. Every compared compressor the profile evaluates is measured beside
    64 frames, 16 frames and MARC.
    """
    config = params.efficiency
    rows, input_name = efficiency_rows(params.data.evals(paths.project_dir), config)
    samples = _profile_samples(rows, params.video)
    started = time.perf_counter()
    model_path = paths.base_model()
    model = load_qwen2_5_vl(
        model_path,
        dtype=params.model.dtype,
        device=params.model.device,
        attn_implementation=params.model.attn_implementation,
    )
    processor = load_qwen2_5_vl_processor(model_path)
    profile = profile_efficiency(
        model,
        processor,
        samples,
        source=config.source,
        methods=[bind_method_artifacts(paths, resolve_method(m)) for m in efficiency_methods(params)],
        device=params.model.device,
        repeats=config.repeats,
        model_name=f"{params.model.source} base model ({model_path})",
        input_name=input_name,
    )
    out = paths.asset("efficiency_profile") / "profile.json"
    write_json(out, profile)
    table = format_table(profile)
    return StageResult(
        outputs={"profile": out},
        metadata={
            "device": profile["device"],
            "model": profile["model"],
            "source": profile["source"],
            "batch_size": profile["batch_size"],
            "repeats": profile["repeats"],
            "methods": len(profile["methods"]),
            "table": table,
            "seconds": round(time.perf_counter() - started, 2),
        },
        tables={"methods": pl.DataFrame(profile["methods"])},
    )


def efficiency_methods(params: Params) -> list[str]:
    """What ``efficiency_profile`` measures: 64 frames, 16 frames, MARC (the paper's Fig. 5), then every
    compared compressor the profile evaluates, in its order."""
    compared = [m for m in params.eval.methods if resolve_method(m).compression.method != "marc"]
    return list(dict.fromkeys([*(resolve_method(m).name for m in DEFAULT_METHODS), *compared]))


def efficiency_rows(
    eval_dir: Path, config: EfficiencyConfig
) -> tuple[list[tuple[dict[str, Any], Path]], str]:
    """The rows of the profiled batch with their video paths, in batch order, and a name for them.

    ``longest``: the first row of the eval set's longest video, ``batch_size`` times. A benchmark name: the
    first ``batch_size`` video rows of its eval file, in file order (image rows are skipped).
    """
    if config.source == LONGEST_VIDEO:
        row, path = _longest_eval_video(eval_dir)
        copies = f", {config.batch_size} copies" if config.batch_size > 1 else ""
        name = f"eval video {row['path']} (problem {row['problem_id']}{copies})"
        return [(row, path)] * config.batch_size, name
    task = resolve_task(config.source)
    file = eval_dir / task.file_name
    if not file.is_file():
        raise FileNotFoundError(
            f"efficiency.source is {config.source!r} but {file} does not exist; point data.eval_dir at the "
            f"folder of {task.file_name} or set efficiency.source to 'longest'"
        )
    videos = _video_rows([file])
    if len(videos) < config.batch_size:
        raise ValueError(
            f"{file} has {len(videos)} video sample(s), fewer than efficiency.batch_size={config.batch_size}; "
            "lower the batch size or choose another efficiency.source"
        )
    name = f"{task.display_name}: the first {config.batch_size} video samples of {task.file_name}"
    return videos[: config.batch_size], name


def _profile_samples(rows: list[tuple[dict[str, Any], Path]], video: VideoConfig) -> list[ProfileSample]:
    """Each row's video sampled for the profile (see :func:`efficiency_profile_stage`; a video several
    rows share is decoded once) with the row's question."""
    sampled: dict[Path, ProfileSample] = {}
    samples = []
    for row, path in rows:
        if path not in sampled:
            info = probe_video(path)
            fps = video.fps if info.num_frames / info.fps * video.fps >= 64 else info.fps
            sampling = VideoConfig(**{**video.model_dump(), "fps": fps, "max_frames": 64})
            sampled[path] = ProfileSample(frames=sample_frames(path, sampling).frames, fps=fps)
        question = question_text(row["problem"], row["problem_type"], row.get("options"))
        samples.append(replace(sampled[path], question=question))
    return samples


def _longest_eval_video(eval_dir: Path) -> tuple[dict[str, Any], Path]:
    """The first row of the eval set's longest video, and the video's path."""
    rows = _video_rows(sorted(eval_dir.glob("eval_*.json")))
    if not rows:
        raise FileNotFoundError(
            f"no video rows in {eval_dir}/eval_*.json; materialize videor1_source first (the synthetic corpus)"
        )
    frames = {path: probe_video(path).num_frames for path in {path for _, path in rows}}
    longest = max(frames, key=lambda path: (frames[path], str(path)))
    return next(row for row, path in rows if path == longest), longest


def _video_rows(files: list[Path]) -> list[tuple[dict[str, Any], Path]]:
    """The video rows of the eval files ``files`` (image rows skipped), in file order, with their videos'
    paths."""
    return [
        (row, (file.parent / row["path"]).resolve())
        for file in files
        for row in json.loads(file.read_text())
        if row["data_type"] == "video"
    ]
