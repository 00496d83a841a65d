"""The benchmark runner: resume, crash safety, torn lines, media failures; and the method registry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest
from scripted_eval import write_benchmark

from marc_ops.compression import CompressionConfig
from marc_ops.config.methods import METHODS, MethodSpec, resolve_method
from marc_ops.config.prompts import MARC_PAPER
from marc_ops.config.tasks import resolve_task
from marc_ops.data import load_task_rows
from marc_ops.eval import (
    EvalInput,
    GenerationOutput,
    RecordsFileError,
    read_records,
    records_path,
    run_benchmark,
)
from marc_ops.video import VideoDecodeError

N_ROWS = 7
TASK = resolve_task("mvbench")
METHOD = resolve_method("baseline-16f")


class ScriptedAdapter:
    """Answers right for even-numbered problems, wrong for odd ones, and records what it was asked.

    ``crash_after``: raise KeyboardInterrupt on the call that would take it past that many samples.
    ``broken``: problem ids whose media "fails to decode"; ``name_the_file`` says whether the
    MediaError carries that file's path (else a path the runner cannot match).
    """

    def __init__(
        self, *, crash_after: int | None = None, broken: set[str] = frozenset(), name_the_file: bool = True
    ):
        self.calls: list[list[str]] = []
        self.crash_after = crash_after
        self.broken = broken
        self.name_the_file = name_the_file

    @property
    def generated(self) -> list[str]:
        return [pid for call in self.calls for pid in call]

    def prefetch(self, batch: Sequence[EvalInput]) -> None:
        pass

    def generate(self, batch: Sequence[EvalInput]) -> list[GenerationOutput]:
        ids = [item.problem_id for item in batch]
        if self.crash_after is not None and len(self.generated) + len(ids) > self.crash_after:
            raise KeyboardInterrupt
        for item in batch:
            if item.problem_id in self.broken:
                raise VideoDecodeError(
                    item.media.path if self.name_the_file else "/elsewhere.mp4", "no frames"
                )
        self.calls.append(ids)
        outputs = []
        for item in batch:
            letter = item.row["answer"] if int(item.problem_id[1:]) % 2 == 0 else "Z"
            outputs.append(GenerationOutput(f"<think>hmm</think><answer>{letter}</answer>", 64, 0.5))
        return outputs


@pytest.fixture()
def eval_dir(tmp_path: Path) -> Path:
    """An ``eval_mvbench.json`` with N_ROWS multiple-choice rows p0..p6, each with its own (fake) video."""
    return write_benchmark(tmp_path / "Evaluation", N_ROWS)


@pytest.fixture()
def rows(eval_dir: Path) -> pl.DataFrame:
    return load_task_rows(TASK, eval_dir).rows


def _ids_in_file(path: Path) -> list[str]:
    return [json.loads(line)["problem_id"] for line in path.read_text().splitlines()]


def _run(rows: pl.DataFrame, adapter: ScriptedAdapter, path: Path, **kwargs):
    kwargs.setdefault("answer_rule", "strict")
    return run_benchmark(TASK, METHOD, rows, adapter, path, batch_size=2, progress=False, **kwargs)


class UntaggedAdapter(ScriptedAdapter):
    """Answers with the bare letter, no tags: right for even-numbered problems, wrong for odd ones."""

    def generate(self, batch: Sequence[EvalInput]) -> list[GenerationOutput]:
        self.calls.append([item.problem_id for item in batch])
        return [
            GenerationOutput(item.row["answer"] if int(item.problem_id[1:]) % 2 == 0 else "Z", 64, 0.5)
            for item in batch
        ]


def test_a_new_answer_rule_scores_the_recorded_outputs_again(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = records_path(tmp_path / "scores", TASK.name, METHOD.name)
    strict = _run(rows, UntaggedAdapter(), path, answer_rule="strict")
    assert strict.scores["accuracy"] == 0.0  # no tags, no answer
    assert read_records(path)["extracted"].is_null().all()

    again = UntaggedAdapter()
    whole = _run(rows, again, path, answer_rule="whole-output")
    assert again.generated == []  # scored again from the recorded outputs, nothing generated
    assert (whole.n_generated, whole.n_resumed) == (0, N_ROWS)
    assert whole.scores["accuracy"] == pytest.approx(4 / 7 * 100)  # p0, p2, p4, p6 of seven
    records = read_records(path)
    assert records["reward"].to_list() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert records["extracted"].to_list() == records["output"].to_list()

    back = _run(rows, UntaggedAdapter(), path, answer_rule="strict")
    assert back.scores["accuracy"] == 0.0 and read_records(path)["extracted"].is_null().all()


def test_limit_then_full_run_generates_only_the_rest(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = records_path(tmp_path / "scores", TASK.name, METHOD.name)
    first = ScriptedAdapter()
    summary = _run(rows, first, path, limit=3)
    assert first.generated == ["p0", "p1", "p2"]
    assert (summary.n_selected, summary.n_generated, summary.n_resumed) == (3, 3, 0)

    second = ScriptedAdapter()
    summary = _run(rows, second, path)
    assert second.generated == ["p3", "p4", "p5", "p6"]
    assert (summary.n_selected, summary.n_generated, summary.n_resumed, summary.n_dropped) == (7, 4, 3, 0)
    assert _ids_in_file(path) == [f"p{i}" for i in range(N_ROWS)]
    # p0, p2, p4, p6 right: 4 of 7.
    assert summary.scores["score"] == pytest.approx(400 / 7)

    third = ScriptedAdapter()
    assert _run(rows, third, path).n_generated == 0
    assert third.calls == []


def test_records_carry_what_the_report_needs(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _run(rows, ScriptedAdapter(), path, limit=2)
    records = read_records(path)
    first = records.row(0, named=True)
    assert first["benchmark"] == "mvbench" and first["method"] == "baseline-16f"
    assert first["output"] == "<think>hmm</think><answer>A</answer>"
    assert (first["extracted"], first["reward"], first["correct"], first["status"]) == ("A", 1.0, True, "ok")
    assert (first["visual_tokens"], first["latency_s"], first["error"]) == (64, 0.5, None)
    assert len(first["prompt_hash"]) == 64
    # the seconds are measured: they live beside the records, which hold only what the model computed
    on_disk = [json.loads(line) for line in path.read_text().splitlines()]
    assert on_disk and all("latency_s" not in record for record in on_disk)
    beside = [json.loads(line) for line in (tmp_path / "r.latency.jsonl").read_text().splitlines()]
    assert beside == [{"problem_id": "p0", "latency_s": 0.5}, {"problem_id": "p1", "latency_s": 0.5}]
    assert records.row(1, named=True)["reward"] == 0.0


def test_crash_then_resume_records_every_sample_exactly_once(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    crashing = ScriptedAdapter(crash_after=3)
    with pytest.raises(KeyboardInterrupt):
        _run(rows, crashing, path)
    # Batches of 2: [p0, p1] finished and was fsynced; the call for [p2, p3] was interrupted.
    assert _ids_in_file(path) == ["p0", "p1"]

    resumed = ScriptedAdapter()
    summary = _run(rows, resumed, path)
    assert resumed.generated == ["p2", "p3", "p4", "p5", "p6"]
    assert sorted(_ids_in_file(path)) == [f"p{i}" for i in range(N_ROWS)]
    assert summary.n_resumed == 2


def test_torn_last_line_is_tolerated_and_repaired(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _run(rows, ScriptedAdapter(), path, limit=4)
    data = path.read_bytes()
    path.write_bytes(data[:-25])  # killed in the middle of writing p3's line

    assert read_records(path)["problem_id"].to_list() == ["p0", "p1", "p2"]
    again = ScriptedAdapter()
    summary = _run(rows, again, path, limit=4)
    assert again.generated == ["p3"]
    assert summary.n_dropped == 1
    assert path.read_bytes() == data  # same records, whole lines again


@pytest.mark.parametrize(
    "killed",
    [
        "while writing p3's seconds",  # its record never written; the seconds' line torn
        "between p3's seconds and its record",  # seconds for a sample without a record
        "while writing p3's record",  # the seconds written, the record torn
    ],
)
def test_a_kill_at_any_point_of_a_batch_leaves_one_latency_line_per_record(
    rows: pl.DataFrame, tmp_path: Path, killed: str
) -> None:
    path = tmp_path / "r.jsonl"
    latencies = tmp_path / "r.latency.jsonl"
    _run(rows, ScriptedAdapter(), path, limit=4)
    records, seconds = (
        path.read_text().splitlines(keepends=True),
        latencies.read_text().splitlines(keepends=True),
    )
    # What the files hold after a SIGKILL at that point of writing the batch of p3 (the last one).
    if killed == "while writing p3's seconds":
        path.write_text("".join(records[:3]))
        latencies.write_text("".join(seconds[:3]) + seconds[3][:20])
    elif killed == "between p3's seconds and its record":
        path.write_text("".join(records[:3]))
    else:
        path.write_text("".join(records[:3]) + records[3][:30])

    _run(rows, ScriptedAdapter(), path)
    ids = [f"p{i}" for i in range(N_ROWS)]
    assert _ids_in_file(path) == ids
    assert _ids_in_file(latencies) == ids  # one line each: none torn, glued, orphaned or repeated
    assert read_records(path)["latency_s"].to_list() == [0.5] * N_ROWS


def test_damaged_middle_line_fails_loudly(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _run(rows, ScriptedAdapter(), path, limit=3)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    with pytest.raises(RecordsFileError, match=r"r\.jsonl:2"):
        _run(rows, ScriptedAdapter(), path)


@pytest.mark.parametrize("name_the_file", [True, False])
def test_media_error_fails_only_that_sample_and_the_run_goes_on(
    rows: pl.DataFrame, tmp_path: Path, name_the_file: bool
) -> None:
    path = tmp_path / "r.jsonl"
    adapter = ScriptedAdapter(broken={"p2"}, name_the_file=name_the_file)
    summary = _run(rows, adapter, path)
    assert sorted(adapter.generated) == ["p0", "p1", "p3", "p4", "p5", "p6"]
    records = read_records(path)
    assert records["problem_id"].to_list() == [f"p{i}" for i in range(N_ROWS)]
    failed = records.filter(pl.col("status") == "failed").row(0, named=True)
    assert failed["problem_id"] == "p2"
    assert failed["error"].startswith("VideoDecodeError: ") and "no frames" in failed["error"]
    assert (failed["reward"], failed["correct"], failed["output"], failed["visual_tokens"]) == (
        0.0,
        False,
        None,
        None,
    )
    # p2 would have been right; failed, it counts as wrong: p0, p4, p6 of 7.
    assert summary.n_failed == 1 and summary.scores["n_failed"] == 1
    assert summary.scores["score"] == pytest.approx(300 / 7)


def test_missing_media_file_is_a_failed_sample_the_adapter_never_sees(eval_dir: Path, tmp_path: Path) -> None:
    (eval_dir / "MVBench" / "v4.mp4").unlink()
    rows = load_task_rows(TASK, eval_dir).rows
    assert rows.height == N_ROWS  # not quarantined: it must stay in the denominator
    adapter = ScriptedAdapter()
    summary = _run(rows, adapter, tmp_path / "r.jsonl")
    assert "p4" not in adapter.generated
    failed = read_records(tmp_path / "r.jsonl").filter(pl.col("status") == "failed")
    assert failed["problem_id"].to_list() == ["p4"]
    assert "file not found" in failed["error"][0] and "v4.mp4" in failed["error"][0]
    assert summary.n_failed == 1


def test_failed_samples_are_kept_unless_retried(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _run(rows, ScriptedAdapter(broken={"p1"}), path)
    assert _run(rows, ScriptedAdapter(), path).n_failed == 1
    fixed = ScriptedAdapter()
    summary = _run(rows, fixed, path, retry_failed=True)
    assert fixed.generated == ["p1"]
    assert (summary.n_failed, summary.n_dropped) == (0, 1)
    assert sorted(_ids_in_file(path)) == [f"p{i}" for i in range(N_ROWS)]


def test_a_changed_prompt_invalidates_the_old_records(rows: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    _run(rows, ScriptedAdapter(), path)
    again = ScriptedAdapter()
    summary = _run(rows, again, path, template=MARC_PAPER)
    assert len(again.generated) == N_ROWS
    assert summary.n_dropped == N_ROWS
    assert len(_ids_in_file(path)) == N_ROWS


def test_other_adapter_errors_stop_the_run_and_keep_what_finished(rows: pl.DataFrame, tmp_path: Path) -> None:
    class Buggy(ScriptedAdapter):
        def generate(self, batch):
            if any(item.problem_id == "p3" for item in batch):
                raise TypeError("a bug, not bad data")
            return super().generate(batch)

    path = tmp_path / "r.jsonl"
    with pytest.raises(TypeError, match="a bug"):
        _run(rows, Buggy(), path)
    assert _ids_in_file(path) == ["p0", "p1"]


def test_adapter_must_answer_every_input(rows: pl.DataFrame, tmp_path: Path) -> None:
    class Short(ScriptedAdapter):
        def generate(self, batch):
            return super().generate(batch)[:-1]

    with pytest.raises(RuntimeError, match="1 outputs for a batch of 2"):
        _run(rows, Short(), tmp_path / "r.jsonl")


def test_limit_and_batch_size_are_checked(rows: pl.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        run_benchmark(
            TASK,
            METHOD,
            rows,
            ScriptedAdapter(),
            tmp_path / "r.jsonl",
            batch_size=0,
            answer_rule="strict",
            progress=False,
        )
    with pytest.raises(ValueError, match="limit"):
        _run(rows, ScriptedAdapter(), tmp_path / "r.jsonl", limit=-1)


def test_the_method_sets_the_frame_cap_of_the_media(rows: pl.DataFrame, tmp_path: Path) -> None:
    seen: list[EvalInput] = []

    class Spy(ScriptedAdapter):
        def generate(self, batch):
            seen.extend(batch)
            return super().generate(batch)

    _run(rows, Spy(), tmp_path / "r.jsonl", limit=1)
    assert seen[0].media.max_frames == 16 and seen[0].media.fps == 1.0
    assert seen[0].messages[0]["content"][0]["max_frames"] == 16
    assert seen[0].prompt == TASK.prompt(seen[0].row)


# --- methods -------------------------------------------------------------------------------


def test_method_registry_holds_the_papers_rows() -> None:
    assert {"baseline-64f", "baseline-16f", "vmr-64f", "marc@0.6", "sft-1f", "sft-vmr-1f"} <= set(METHODS)
    baseline = resolve_method("baseline-64f")
    assert (baseline.max_frames, baseline.use_vmr, baseline.compression.enabled, baseline.checkpoint) == (
        64,
        False,
        False,
        "base",
    )
    assert resolve_method("baseline-16f").max_frames == 16
    assert resolve_method("vmr-64f").use_vmr
    assert resolve_method("sft-1f").checkpoint == "sft" and not resolve_method("sft-1f").use_vmr
    assert resolve_method("sft-vmr-1f").use_vmr


def test_marc_is_cgrpo_with_vmr_compressed_to_one_block() -> None:
    marc = resolve_method("marc")
    assert marc.name == "marc@0.6" and marc == resolve_method("marc@0.60")
    assert marc.compression == CompressionConfig(enabled=True, ratio=0.5, window=8, target_blocks=1)
    assert (marc.max_frames, marc.use_vmr, marc.checkpoint, marc.tau) == (64, True, "cgrpo:0.6", 0.6)
    assert resolve_method("marc@0.4").checkpoint == "cgrpo:0.4"
    assert resolve_method("marc@0.75").tau == 0.75
    assert resolve_method("baseline-64f").tau is None


def test_unknown_methods_are_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'moviechat'.*baseline-64f.*marc@<tau>"):
        resolve_method("moviechat")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        resolve_method("marc@1.5")
    with pytest.raises(ValueError, match="checkpoint"):
        MethodSpec.model_validate({**METHODS["baseline-64f"].model_dump(), "checkpoint": "grpo"})


class NoReadAheadAdapter:
    """An adapter written without ``prefetch``: it reads each batch when it generates it."""

    def __init__(self) -> None:
        self.inner = ScriptedAdapter()

    def generate(self, batch: Sequence[EvalInput]) -> list[GenerationOutput]:
        return self.inner.generate(batch)


def test_an_adapter_without_prefetch_is_run_batch_by_batch(rows: pl.DataFrame, tmp_path: Path) -> None:
    adapter = NoReadAheadAdapter()
    result = _run(rows, adapter, records_path(tmp_path / "scores", TASK.name, METHOD.name))
    assert adapter.inner.calls == [["p0", "p1"], ["p2", "p3"], ["p4", "p5"], ["p6"]]
    assert result.scores["accuracy"] == pytest.approx(4 / 7 * 100)
