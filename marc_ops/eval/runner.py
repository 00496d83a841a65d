"""Run one benchmark with one method through a model adapter, resumably.

Each finished sample is appended as one JSON line to the (benchmark, method) records file, and
the file is flushed and fsynced after every batch. A rerun reads the file first and generates only
the samples it lacks, so an interrupted run resumes where it stopped and no sample is generated
twice. A sample is "finished" when a record with its ``problem_id`` and ``prompt_hash`` exists;
records of an older prompt (or of rows no longer in the benchmark) are dropped on resume. The seconds each
sample took are appended just before its record, to ``<method>.latency.jsonl`` beside it; a rerun cuts that
file back to one line per kept record, so a kill at any moment leaves neither a record without its seconds
nor a line that the next append would glue to a torn one.

Scores follow the answer rule of the call (``answer_rule``, :func:`marc_ops.rewards.answer_text`): a
resumed record whose score another rule produced is scored again from its recorded output, and the file
rewritten, so a change of rule costs no generation.

A sample whose media cannot be read is recorded as ``failed`` with the reason and scores 0; the
run goes on. Any other exception from the adapter is a bug and stops the run (what finished is
kept).

Decoding is the adapter's business (greedy, at most 1024 new tokens: SPEC section 8), and so are
frame sampling, VMR and compression for the method it was built for. While a batch generates, the runner
hands the adapter the next batch to read ahead (``prefetch``). With ``sort_by_length`` the pending samples
are answered longest first by their expected visual tokens (:mod:`marc_ops.eval.batching`), so a batch
holds videos of similar length; records are keyed by ``problem_id``, so their order in the file is free.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl
from tqdm import tqdm

from marc_ops.config.methods import MethodSpec
from marc_ops.config.prompts import VIDEO_R1_EVAL, PromptTemplate, build_prompt
from marc_ops.config.tasks import BenchmarkTask
from marc_ops.data.messages import MediaSpec, build_messages
from marc_ops.eval.batching import by_visual_length, expected_visual_tokens
from marc_ops.eval.scoring import (
    MEASURED_FIELDS,
    RecordsFileError,
    latency_path,
    parse_records,
    read_latencies,
    records_frame,
    scored,
)
from marc_ops.io import append_jsonl, atomic_file, parse_jsonl
from marc_ops.rewards import AnswerRule
from marc_ops.video import DEFAULT_VIDEO_CONFIG, ImageLoadError, MediaError, VideoConfig, VideoDecodeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalInput:
    """What the adapter needs for one sample: the manifest row, its prompt and chat messages, its media."""

    problem_id: str
    row: Mapping[str, Any]
    prompt: str
    messages: list[dict[str, Any]]
    media: MediaSpec


@dataclass(frozen=True)
class GenerationOutput:
    """One sample's decoded text, the visual tokens the LLM saw, and its share of the ``generate`` call's wall
    time (frames read ahead by ``prefetch`` are not in it; the efficiency profile is the timing to compare)."""

    text: str
    visual_tokens: int
    latency_s: float


class ModelAdapter(Protocol):
    """A model prepared for one method. ``generate`` returns one output per input, in order.

    It raises a :class:`~marc_ops.video.MediaError` (ideally naming the file in ``path``) when a
    sample's media cannot be read; the runner then records that sample as failed. ``prefetch`` is told
    the batch a later ``generate`` call gets, before the current one runs: an adapter may start reading
    its media then (and must raise their errors from ``generate``, not from ``prefetch``); an adapter
    without ``prefetch`` reads each batch when it generates it.
    """

    def generate(self, batch: Sequence[EvalInput]) -> list[GenerationOutput]: ...


@dataclass(frozen=True)
class RunSummary:
    """What one call did and the benchmark's figures over the selected rows (see ``BenchmarkTask.aggregate``)."""

    benchmark: str
    method: str
    records_path: Path
    n_selected: int
    n_generated: int
    n_resumed: int
    n_failed: int
    n_dropped: int
    elapsed_s: float
    scores: dict[str, Any]


def records_path(root: Path | str, benchmark: str, method: str) -> Path:
    """The records file of one (benchmark, method) pair: ``root/<benchmark>/<method>.jsonl``."""
    return Path(root) / benchmark / f"{method}.jsonl"


def prompt_hash(prompt: str, method: str) -> str:
    """sha256 of the prompt and the method name (NUL-separated, so no two pairs collide)."""
    return hashlib.sha256(f"{prompt}\0{method}".encode()).hexdigest()


def _sampling(video: VideoConfig, method: MethodSpec) -> VideoConfig:
    """``video`` with the method's ``max_frames``."""
    return VideoConfig(**{**video.model_dump(), "max_frames": method.max_frames})


def prepare_input(
    row: Mapping[str, Any], method: MethodSpec, video: VideoConfig, template: PromptTemplate = VIDEO_R1_EVAL
) -> EvalInput:
    """The adapter's input for one row; raises a ``MediaError`` when the media file is missing."""
    media = MediaSpec.for_row(row, _sampling(video, method))
    if not media.exists():
        error = VideoDecodeError if media.kind == "video" else ImageLoadError
        raise error(media.path, "file not found")
    return EvalInput(
        problem_id=row["problem_id"],
        row=row,
        prompt=build_prompt(row, template),
        messages=build_messages(row, media, template),
        media=media,
    )


def run_benchmark(
    task: BenchmarkTask,
    method: MethodSpec,
    rows: pl.DataFrame,
    adapter: ModelAdapter,
    out_path: Path | str,
    *,
    batch_size: int,
    answer_rule: AnswerRule,
    limit: int | None = None,
    progress: bool = True,
    video: VideoConfig = DEFAULT_VIDEO_CONFIG,
    template: PromptTemplate = VIDEO_R1_EVAL,
    retry_failed: bool = False,
    sort_by_length: bool = False,
) -> RunSummary:
    """Generate, score and record every selected row that the records file does not hold yet.

    Args:
        rows: the benchmark's manifest rows (``load_task_rows(...).rows``), in file order.
        out_path: the records file (see :func:`records_path`); created if absent.
        batch_size: samples per ``adapter.generate`` call; the file is fsynced after each.
        answer_rule: how an output becomes the scored answer (``eval.answer_rule``); resumed records
            are scored again under it.
        limit: only the first ``limit`` rows in file order (``--limit N``).
        video: frame sampling (fps, pixel bounds); ``max_frames`` comes from the method.
        retry_failed: regenerate samples recorded as failed (e.g. after fixing their media).
        sort_by_length: answer the pending rows longest first by expected visual tokens
            (:func:`~marc_ops.eval.batching.expected_visual_tokens`) instead of in file order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit} must be >= 0 (the number of rows to run, in file order)")
    started = time.perf_counter()
    out_path = Path(out_path)
    all_rows = list(rows.iter_rows(named=True))
    expected = {row["problem_id"]: prompt_hash(task.prompt(row, template), method.name) for row in all_rows}
    selected = all_rows if limit is None else all_rows[:limit]

    kept, n_dropped = _open_records(out_path, expected, retry_failed=retry_failed)
    _rescore(task, {row["problem_id"]: row for row in all_rows}, kept, answer_rule, out_path)
    pending = [row for row in selected if row["problem_id"] not in kept]
    if sort_by_length:
        sampling = _sampling(video, method)
        lengths = [expected_visual_tokens(MediaSpec.for_row(row, sampling), video) for row in pending]
        pending = by_visual_length(pending, lengths)
    n_generated = 0
    with (
        open(out_path, "a", encoding="utf-8") as sink,
        open(latency_path(out_path), "a", encoding="utf-8") as latency_sink,
        tqdm(
            total=len(selected),
            initial=len(selected) - len(pending),
            desc=f"{task.name} × {method.name}",
            unit="sample",
            disable=not progress,
        ) as bar,
    ):
        prepared = (_prepare(batch, method, video, template) for batch in _chunks(pending, batch_size))
        prefetch = getattr(adapter, "prefetch", None)  # optional: see ModelAdapter
        for batch, upcoming in _with_next(prepared):
            if upcoming is not None and prefetch is not None:
                prefetch(upcoming.inputs)  # read while this batch generates
            records = _run_batch(task, method, batch, adapter, expected, answer_rule)
            # The measured seconds beside the records (MEASURED_FIELDS), first: a sample is finished once its
            # record is written, and a finished sample has its seconds (a kill in between leaves seconds
            # without a record, which the next run drops).
            append_jsonl(
                latency_sink, [{"problem_id": r["problem_id"], "latency_s": r["latency_s"]} for r in records]
            )
            append_jsonl(sink, [{k: v for k, v in r.items() if k not in MEASURED_FIELDS} for r in records])
            for record in records:
                kept[record["problem_id"]] = record
            n_generated += len(records)
            bar.update(len(batch.rows))

    chosen = records_frame(kept[row["problem_id"]] for row in selected)
    return RunSummary(
        benchmark=task.name,
        method=method.name,
        records_path=out_path,
        n_selected=len(selected),
        n_generated=n_generated,
        n_resumed=len(selected) - len(pending),
        n_failed=chosen.filter(pl.col("status") == "failed").height,
        n_dropped=n_dropped,
        elapsed_s=time.perf_counter() - started,
        scores=task.aggregate(chosen),
    )


def _open_records(
    path: Path, expected: Mapping[str, str], *, retry_failed: bool
) -> tuple[dict[str, dict[str, Any]], int]:
    """The valid finished records by ``problem_id``, and how many lines were dropped.

    Dropped and rewritten away: a torn last line, records whose ``prompt_hash`` is not the current
    one (or whose row is gone), repeats of a ``problem_id``, and failed records if ``retry_failed``.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _keep_latencies_of(path, {})
        return {}, 0
    records, torn = parse_records(path.read_bytes(), path)
    latencies = read_latencies(path)
    kept: dict[str, dict[str, Any]] = {}
    for record in records:
        pid = record["problem_id"]
        stale = expected.get(pid) != record["prompt_hash"]
        if stale or pid in kept or (retry_failed and record["status"] == "failed"):
            continue
        kept[pid] = {**record, "latency_s": latencies.get(str(pid), record.get("latency_s"))}
    n_dropped = len(records) - len(kept) + int(torn)
    if n_dropped:
        logger.warning(
            "%s: dropping %d record line(s) (torn last line: %s; stale prompt, repeated or retried: %d)",
            path,
            n_dropped,
            torn,
            len(records) - len(kept),
        )
        _rewrite_records(path, kept)
    _keep_latencies_of(path, kept)
    return kept, n_dropped


def _rescore(
    task: BenchmarkTask,
    rows: Mapping[str, Mapping[str, Any]],
    kept: dict[str, dict[str, Any]],
    rule: AnswerRule,
    path: Path,
) -> None:
    """Score each kept record's output again under ``rule``; rewrite ``path`` when any score changed."""
    changed = 0
    for pid, record in kept.items():
        now = scored(task, rows[pid], record, rule)
        if now != record:
            kept[pid] = now
            changed += 1
    if changed:
        logger.info("%s: %d record(s) scored again under the %r answer rule", path, changed, rule)
        _rewrite_records(path, kept)


def _rewrite_records(path: Path, kept: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace ``path`` at once (a kill leaves the old file or the new one) by the ``kept`` records, in
    their order, without their measured fields (those live in the latency file)."""
    with atomic_file(path) as handle:
        append_jsonl(
            handle, [{k: v for k, v in r.items() if k not in MEASURED_FIELDS} for r in kept.values()]
        )


def _keep_latencies_of(records_file: Path, kept: Mapping[str, Mapping[str, Any]]) -> None:
    """Rewrite the latency file beside ``records_file`` to one line per kept record, in their order, when it
    holds anything else: a torn last line (appending after it would glue two lines into one that is not
    JSON), the seconds of a sample whose record was never written or was dropped, or repeats."""
    path = latency_path(records_file)
    if not path.is_file():
        return
    values, torn = parse_jsonl(path.read_bytes(), path, RecordsFileError)
    ids = [str(value["problem_id"]) for _, value in values]
    if not torn and ids == [str(pid) for pid in kept]:
        return
    latencies = {str(value["problem_id"]): value for _, value in values}
    with atomic_file(path) as handle:
        append_jsonl(handle, [latencies[str(pid)] for pid in kept if str(pid) in latencies])


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class _Batch:
    """A batch's rows, the adapter inputs of those whose media file exists, and the errors of the others."""

    rows: list[dict[str, Any]]
    inputs: list[EvalInput]
    missing: dict[str, MediaError]


def _prepare(
    rows: list[dict[str, Any]], method: MethodSpec, video: VideoConfig, template: PromptTemplate
) -> _Batch:
    inputs, missing = [], {}
    for row in rows:
        try:
            inputs.append(prepare_input(row, method, video, template))
        except MediaError as err:
            missing[row["problem_id"]] = err
    return _Batch(rows, inputs, missing)


def _with_next(batches: Iterator[_Batch]) -> Iterator[tuple[_Batch, _Batch | None]]:
    """Each batch with the one after it (``None`` after the last)."""
    current = next(batches, None)
    while current is not None:
        upcoming = next(batches, None)
        yield current, upcoming
        current = upcoming


def _run_batch(
    task: BenchmarkTask,
    method: MethodSpec,
    batch: _Batch,
    adapter: ModelAdapter,
    expected: Mapping[str, str],
    rule: AnswerRule,
) -> list[dict[str, Any]]:
    """One record per row of ``batch``, in order: generate, score."""
    outcomes: dict[str, GenerationOutput | MediaError] = dict(batch.missing)
    outcomes.update(_generate(adapter, batch.inputs))
    return [
        _record(task, method, row, expected[row["problem_id"]], outcomes[row["problem_id"]], rule)
        for row in batch.rows
    ]


def _generate(adapter: ModelAdapter, inputs: list[EvalInput]) -> dict[str, GenerationOutput | MediaError]:
    """Generate for ``inputs``; a ``MediaError`` fails only the samples it concerns.

    The samples whose media path is the error's ``path`` fail (several questions can share one
    video) and the rest are generated again; if the error names none of them, each sample is tried
    alone so that only the broken one fails.
    """
    outcomes: dict[str, GenerationOutput | MediaError] = {}
    groups = [inputs]
    while groups:
        group = groups.pop()
        if not group:
            continue
        try:
            outputs = adapter.generate(group)
        except MediaError as err:
            culprits = {
                item.problem_id for item in group if Path(item.media.path).resolve() == err.path.resolve()
            }
            if not culprits and len(group) > 1:
                groups.extend([item] for item in group)
                continue
            for item in group:
                if item.problem_id in culprits or len(group) == 1:
                    outcomes[item.problem_id] = err
            groups.append([item for item in group if item.problem_id not in outcomes])
            continue
        if len(outputs) != len(group):
            raise RuntimeError(f"adapter returned {len(outputs)} outputs for a batch of {len(group)} inputs")
        outcomes.update((item.problem_id, output) for item, output in zip(group, outputs, strict=True))
    return outcomes


def _record(
    task: BenchmarkTask,
    method: MethodSpec,
    row: Mapping[str, Any],
    hash_: str,
    outcome: GenerationOutput | MediaError,
    rule: AnswerRule,
) -> dict[str, Any]:
    record = {
        "problem_id": row["problem_id"],
        "benchmark": task.name,
        "method": method.name,
        "prompt_hash": hash_,
        "problem_type": row["problem_type"],
        "answer": row["answer"],
    }
    if isinstance(outcome, MediaError):
        logger.warning("%s/%s: problem %s failed: %s", task.name, method.name, row["problem_id"], outcome)
        return {
            **record,
            "output": None,
            "extracted": None,
            "reward": 0.0,
            "correct": False,
            "visual_tokens": None,
            "latency_s": None,
            "status": "failed",
            "error": f"{type(outcome).__name__}: {outcome}",
        }
    score = task.score(row, outcome.text, rule=rule)
    return {
        **record,
        "output": outcome.text,
        "extracted": score.extracted,
        "reward": score.reward,
        "correct": score.correct,
        "visual_tokens": outcome.visual_tokens,
        "latency_s": outcome.latency_s,
        "status": "ok",
        "error": None,
    }
