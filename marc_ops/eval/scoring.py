"""Scores from the per-sample records files: per benchmark × method figures and the Table-1-like frame.

A records file (written by :mod:`marc_ops.eval.runner`) is JSON lines, one object per sample with
the fields of :data:`RECORD_SCHEMA`. Only its last line can be torn (a run killed mid-write
appends nothing after it); reading ignores such a line, and the runner removes it on resume.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from marc_ops.config.tasks import PAPER_BENCHMARKS, TASKS, BenchmarkTask, resolve_task
from marc_ops.errors import MarcError
from marc_ops.io import parse_jsonl
from marc_ops.rewards import AnswerRule
from marc_ops.rewards.accuracy import extract_answer

logger = logging.getLogger(__name__)

RECORD_SCHEMA: dict[str, pl.DataType] = {
    "problem_id": pl.String(),
    "benchmark": pl.String(),
    "method": pl.String(),
    "prompt_hash": pl.String(),  # sha256 of the prompt and the method name
    "problem_type": pl.String(),
    "answer": pl.String(),  # the ground truth, extracted from the solution
    "output": pl.String(),  # null when the sample failed
    "extracted": pl.String(),  # the answer scored (eval.answer_rule); strict: null without <answer> tags
    "reward": pl.Float64(),  # accuracy or MRA in [0, 1]; 0 for a failed sample
    "correct": pl.Boolean(),
    "visual_tokens": pl.Int64(),
    "latency_s": pl.Float64(),
    "status": pl.String(),  # "ok" | "failed"
    "error": pl.String(),  # why it failed: exception type and message
}
STATUSES = ("ok", "failed")

# One row per (benchmark, method); figures in percent except counts, tokens and seconds.
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "benchmark": pl.String(),
    "method": pl.String(),
    "score": pl.Float64(),
    "accuracy": pl.Float64(),
    "mra": pl.Float64(),
    "n": pl.Int64(),
    "n_failed": pl.Int64(),
    "n_accuracy_items": pl.Int64(),
    "n_mra_items": pl.Int64(),
    "visual_tokens_mean": pl.Float64(),
    "latency_s_mean": pl.Float64(),
}


# Measured, not computed: each record's seconds live beside the records file (``<method>.latency.jsonl``,
# ``{"problem_id", "latency_s"}`` per line), so the records themselves are the same bytes on every machine
# and a reproduction can match their hash (docs/auditing.md). Readers join them back in.
MEASURED_FIELDS = ("latency_s",)
LATENCY_SUFFIX = ".latency.jsonl"


def latency_path(records_file: Path | str) -> Path:
    """The latency file beside a records file: ``<benchmark>/<method>.latency.jsonl``."""
    records_file = Path(records_file)
    return records_file.with_name(records_file.name.removesuffix(".jsonl") + LATENCY_SUFFIX)


def read_latencies(records_file: Path | str) -> dict[str, float]:
    """Seconds by ``problem_id`` from the latency file beside ``records_file`` (the last line of an id wins;
    a torn last line is skipped; no file: none measured)."""
    path = latency_path(records_file)
    if not path.is_file():
        return {}
    values, _ = parse_jsonl(path.read_bytes(), path, RecordsFileError)
    return {
        str(value["problem_id"]): value["latency_s"]
        for _, value in values
        if isinstance(value, dict) and "problem_id" in value
    }


class RecordsFileError(MarcError, ValueError):
    """A records file whose content is not what the runner writes (not a torn last line)."""


def parse_records(data: bytes, path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records in ``data`` and whether its last line was torn (no final newline).

    Raises :class:`RecordsFileError`, naming the file and line, for a complete line that is not a
    record: only the last line can be cut short by a crash, anything else is a damaged file.
    """
    values, torn = parse_jsonl(data, path, RecordsFileError)
    records = []
    for line_no, record in values:
        required = set(RECORD_SCHEMA) - set(MEASURED_FIELDS)
        missing = required - set(record) if isinstance(record, dict) else required
        if missing:
            raise RecordsFileError(f"{path}:{line_no}: record lacks field(s) {sorted(missing)}")
        if record["status"] not in STATUSES:
            raise RecordsFileError(f"{path}:{line_no}: status {record['status']!r} is not one of {STATUSES}")
        records.append(record)
    return records, torn


def records_frame(records: Iterable[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame([{k: r.get(k) for k in RECORD_SCHEMA} for r in records], schema=RECORD_SCHEMA)


def read_records(path: Path | str) -> pl.DataFrame:
    """One records file as a frame (:data:`RECORD_SCHEMA`, the seconds of :func:`read_latencies` joined in);
    a torn last line is skipped with a warning."""
    path = Path(path)
    records, torn = parse_records(path.read_bytes(), path)
    if torn:
        logger.warning("%s: ignoring a torn last line (the run was interrupted; resuming repairs it)", path)
    latencies = read_latencies(path)
    return records_frame(
        {**record, "latency_s": latencies.get(str(record["problem_id"]), record.get("latency_s"))}
        for record in records
    )


def read_records_dir(root: Path | str) -> pl.DataFrame:
    """Every ``*.jsonl`` records file under ``root``, concatenated."""
    return read_records_files(
        sorted(p for p in Path(root).rglob("*.jsonl") if not p.name.endswith(LATENCY_SUFFIX))
    )


def read_records_files(files: Sequence[Path]) -> pl.DataFrame:
    """The records files ``files``, concatenated in order."""
    frames = [read_records(path) for path in files]
    return pl.concat(frames) if frames else pl.DataFrame(schema=RECORD_SCHEMA)


def scored(
    task: BenchmarkTask, row: Mapping[str, Any], record: Mapping[str, Any], rule: AnswerRule
) -> dict[str, Any]:
    """``record`` with the ``extracted``, ``reward`` and ``correct`` that ``rule`` gives its recorded output
    (a failed record as it is: it scores 0 under every rule); ``row`` is its benchmark row."""
    if record["status"] != "ok":
        return dict(record)
    score = task.score(row, record["output"], rule=rule)
    return {**record, "extracted": score.extracted, "reward": score.reward, "correct": score.correct}


def score_records(records: pl.DataFrame, rows: Mapping[str, pl.DataFrame], rule: AnswerRule) -> pl.DataFrame:
    """``records`` scored under ``rule`` from their recorded outputs (:func:`scored`), whatever rule scored
    them when they were written; ``rows``: each benchmark's rows by name, holding every record's row."""
    by_id = {
        (benchmark, row["problem_id"]): row
        for benchmark, frame in rows.items()
        for row in frame.iter_rows(named=True)
    }
    return records_frame(
        scored(resolve_task(r["benchmark"]), by_id[r["benchmark"], r["problem_id"]], r, rule)
        for r in records.iter_rows(named=True)
    )


def summarize(records: pl.DataFrame) -> pl.DataFrame:
    """One row per (benchmark, method): each benchmark's own aggregate (:meth:`BenchmarkTask.aggregate`)."""
    rows = []
    for (benchmark, method), group in records.group_by(["benchmark", "method"], maintain_order=True):
        rows.append({"benchmark": benchmark, "method": method, **resolve_task(benchmark).aggregate(group)})
    return pl.DataFrame([{k: r[k] for k in SUMMARY_SCHEMA} for r in rows], schema=SUMMARY_SCHEMA)


def _wide(long: pl.DataFrame, value: str, benchmarks: Sequence[str], methods: Sequence[str]) -> pl.DataFrame:
    """Methods as rows, benchmarks (display names, in ``benchmarks`` order) as columns, plus ``Mean``.

    ``Mean`` is the mean over the benchmark columns and is null when any of them is missing, so a
    method is never ranked on fewer benchmarks than another.
    """
    columns = [TASKS[name].display_name for name in benchmarks]
    cells = {(r["method"], r["benchmark"]): r[value] for r in long.iter_rows(named=True)}
    rows = []
    for method in methods:
        values = [cells.get((method, name)) for name in benchmarks]
        mean = None if any(v is None for v in values) else sum(values) / len(values)
        rows.append({"method": method, **dict(zip(columns, values, strict=True)), "Mean": mean})
    schema = {"method": pl.String(), **{c: pl.Float64() for c in columns}, "Mean": pl.Float64()}
    return pl.DataFrame(rows, schema=schema)


def score_table(
    summary: pl.DataFrame,
    *,
    benchmarks: Sequence[str] = PAPER_BENCHMARKS,
    methods: Sequence[str] | None = None,
    value: str = "score",
) -> pl.DataFrame:
    """The Table-1-like frame of our runs: one row per method (``methods`` order, default: first seen).

    ``summary`` is :func:`summarize`'s output; ``value`` picks the figure (``score``,
    ``visual_tokens_mean``, ``latency_s_mean``, ...).
    """
    unknown = [name for name in benchmarks if name not in TASKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(TASKS)}")
    if methods is None:
        methods = summary["method"].unique(maintain_order=True).to_list()
    return _wide(summary, value, benchmarks, methods)


PRIOR_METHOD = "prior-answer"


def prior_answer_records(
    task: Any, train_rows: pl.DataFrame, eval_rows: pl.DataFrame, *, method: str = PRIOR_METHOD
) -> pl.DataFrame:
    """Records of a reference that looks at nothing: each item answered with the most common training
    answer of its problem type (ties: the answer seen first), scored as a model's output would be.

    It is the suite's chance level for every problem type at once (multiple choice, counts,
    durations, words, descriptions): a model that scores below it has learnt the answer format
    but not what the video shows. Items whose type never occurs in training score 0.
    """
    prior: dict[str, str] = {}
    for problem_type, group in train_rows.group_by("problem_type", maintain_order=True):
        answers = [extract_answer(solution) or "" for solution in group["solution"].to_list()]
        counts: dict[str, int] = {}
        for answer in answers:
            counts[answer] = counts.get(answer, 0) + 1
        prior[str(problem_type[0])] = max(counts, key=lambda a: (counts[a], -answers.index(a)))
    records = []
    for row in eval_rows.iter_rows(named=True):
        answer = prior.get(row["problem_type"])
        output = None if answer is None else f"<think></think><answer>{answer}</answer>"
        scored = task.score(row, output, rule="strict")  # a tagged output: every rule reads the same answer
        records.append(
            {
                "problem_id": str(row["problem_id"]),
                "benchmark": task.name,
                "method": method,
                "prompt_hash": "",
                "problem_type": row["problem_type"],
                "answer": extract_answer(row["solution"]),
                "output": output,
                "extracted": scored.extracted,
                "reward": scored.reward,
                "correct": scored.correct,
                "visual_tokens": 0,
                "latency_s": 0.0,
                "status": "ok",
                "error": None,
            }
        )
    return pl.DataFrame(records, schema=RECORD_SCHEMA)
