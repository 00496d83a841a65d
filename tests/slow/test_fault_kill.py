"""Killed mid-run, then resumed: each resumable stage of the fast lineage, run as DVC runs it (`marc stage`) and
killed with SIGKILL at KILLS random moments of its work, then run to the end, writes what an uninterrupted run of
the same stage wrote.

An uninterrupted lineage runs first, each stage timed from its "started" line to its exit; a copy of that project
without one stage's outputs is then the faulted project. Each kill moment is drawn uniformly within that stage's
uninterrupted work (seeded with SEED, the stage and its partition); each successive run, resuming what the killed
ones left, is killed at its moment after its "started" line. A resumed run that finishes first (it had less left to
do) is compared too, and the stage starts over, until KILLS kills have landed; the last run goes to the end.

Compared, faulted against uninterrupted:
- every file of the stage's declared outputs that DVC hashes: the same paths (no temporary file left behind, no
  checkpoint too many) and the same bytes (sha256), except the outputs `unreproducible_outputs` lists;
- for those: the LanceDB table's rows (`table.json`'s `content_sha256`, itself compared byte for byte, and
  (video, clip) keys neither repeated nor missing); a latency file, one line per record id; a pair's summary, its
  scores less the measured seconds; the report's files byte for byte (they vary between runs only by the
  measurements they render, which both projects hold the same);
- no torn file (every parquet, JSON, JSON-lines, YAML, safetensors and torch file parses) and no repeated or
  missing row in a records file.

The training stages are also killed at the moments a random one rarely hits, as each happens: while the Trainer
saves a checkpoint, right after it saved one, and right after its last checkpoint, as it saves the final model.

Run time on 2 shared cores: docs/reliability.md.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from faults import (
    StageRun,
    jsonl_keys,
    kill_moments,
    kill_then_resume,
    lancedb_rows,
    output_files,
    remove_outputs,
    run_stage,
    sha256,
    stage_holds,
    stage_label,
    stage_runs,
    unreadable,
)
from tests_support import fast_lineage_params, write_params

from marc_ops.config import load_params
from marc_ops.registry import STAGES, partition_keys
from marc_ops.registry.dvcfile import outputs, unreproducible_outputs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SEED = 20261204
KILLS = 5
FAULTED = [
    ("shot_segments", None),
    ("clip_embeddings", None),
    ("vmr_selection", None),
    ("sft_checkpoint", None),
    ("teacher_rewards", None),
    ("cgrpo_checkpoint", "0.6"),
    ("benchmark_scores", "synthetic|marc@0.6"),
    ("report", None),
]
TRAINING = [("sft_checkpoint", None), ("cgrpo_checkpoint", "0.6")]
# The report's files that render measured seconds: both projects hold the same measurements, so the same bytes.
REPORT_RENDERINGS = ("report.md", "report.html", "efficiency.png", "metrics.json")


def fault_params() -> dict:
    """The fast lineage with more points to resume from: each video's clips are their own LanceDB commit, the
    evaluation appends one sample at a time, and C-GRPO trains two steps with a checkpoint after each."""
    params = fast_lineage_params()
    params["vmr"]["index"]["commit_every"] = 1
    params["eval"]["batch_size"] = 1
    params["train"]["cgrpo"].update(max_steps=2)
    return params


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str | None], StageRun]]:
    """The uninterrupted project: every stage of the lineage run once, in order, each run timed."""
    project = tmp_path_factory.mktemp("uninterrupted")
    write_params(project, fault_params())
    params = load_params(project / "params.yaml")
    runs = {}
    for name in STAGES:
        for key in partition_keys(name, params):
            run = run_stage(project, name, key)
            assert run.returncode == 0, f"{stage_label(name, key)} failed:\n{run.tail()}"
            runs[name, key] = run
    return project, runs


@pytest.mark.parametrize(("name", "partition"), FAULTED, ids=[stage_label(*item) for item in FAULTED])
def test_a_stage_killed_at_random_moments_resumes_to_what_an_uninterrupted_run_wrote(
    lineage: tuple[Path, dict[tuple[str, str | None], StageRun]],
    name: str,
    partition: str | None,
    tmp_path: Path,
):
    clean, runs = lineage
    faulted = tmp_path / "faulted"
    shutil.copytree(clean, faulted, symlinks=True)
    remove_outputs(faulted, name, partition)
    work_s = runs[name, partition].work_s

    trials = kill_then_resume(
        KILLS,
        kill_moments(random.Random(f"{SEED}|{name}|{partition}"), work_s),
        stage_runs(faulted, name, partition),
        held=lambda: stage_holds(faulted, name, partition),
        check=lambda: assert_same_outputs(clean, faulted, name, partition),
        start_over=lambda: remove_outputs(faulted, name, partition),
        max_runs=4 * KILLS,
    )

    print(f"\n{stage_label(name, partition)}: uninterrupted work {work_s:.1f} s")
    for trial in trials:
        outcome = "finished first" if trial.killed_at_s is None else f"killed at {trial.killed_at_s:.2f} s"
        print(f"  planned {trial.planned_s:6.2f} s: {outcome}; then {trial.held}")
    shutil.rmtree(faulted)


def _saving(run_dir: Path, step: int) -> Callable[[], bool]:
    """Whether the Trainer is saving checkpoint-<step>: its weights are written, its state file (written last) not."""
    checkpoint = run_dir / f"checkpoint-{step}"
    return lambda: (
        (checkpoint / "model.safetensors").is_file() and not (checkpoint / "trainer_state.json").exists()
    )


def _saved(run_dir: Path, step: int) -> Callable[[], bool]:
    """Whether the Trainer has saved checkpoint-<step> whole (its state file parses)."""

    def saved() -> bool:
        try:
            json.loads((run_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return True

    return saved


@pytest.mark.parametrize(("name", "partition"), TRAINING, ids=[stage_label(*item) for item in TRAINING])
def test_a_training_run_killed_as_it_saves_resumes_to_what_an_uninterrupted_run_wrote(
    lineage: tuple[Path, dict[tuple[str, str | None], StageRun]],
    name: str,
    partition: str | None,
    tmp_path: Path,
):
    """The moments a training run is most fragile at are too short for a random moment to hit: it is killed as
    each happens (polled every 5 ms), one after the other, then run to the end."""
    clean, _ = lineage
    faulted = tmp_path / "faulted"
    shutil.copytree(clean, faulted, symlinks=True)
    remove_outputs(faulted, name, partition)
    run_dir = faulted / outputs(name, partition)[0][1]
    train = load_params(clean / "params.yaml").train
    last = train.sft.max_steps if partition is None else train.cgrpo_for(float(partition)).max_steps
    moments = {
        "while it saves checkpoint-1": _saving(run_dir, 1),
        "right after checkpoint-1": _saved(run_dir, 1),
        f"right after checkpoint-{last}, its last, as it saves its final model": _saved(run_dir, last),
    }
    print(f"\n{stage_label(name, partition)}:")
    for moment, when in moments.items():
        run = run_stage(faulted, name, partition, kill_when=when)
        assert run.killed, f"{moment}: the run ended first\n{run.tail()}"
        held = {p.name: sorted(f.name for f in p.iterdir()) for p in sorted(run_dir.glob("checkpoint-*"))}
        state = "; ".join(
            f"{k}: {len(v)} files{'' if 'trainer_state.json' in v else ', no state'}" for k, v in held.items()
        )
        final = sorted(f.name for f in (run_dir / "model").iterdir()) if (run_dir / "model").is_dir() else []
        print(f"  killed {moment}, {run.killed_at_s:.2f} s in; {state}; final model: {final or 'none'}")
        if moment.startswith("while"):
            assert "trainer_state.json" not in held["checkpoint-1"]  # the kill tore the checkpoint
    resumed = run_stage(faulted, name, partition)
    assert resumed.returncode == 0, resumed.tail()
    assert_same_outputs(clean, faulted, name, partition)
    shutil.rmtree(faulted)


def _commits(lancedb: Path, at_least: int) -> Callable[[], bool]:
    """Whether the clip table has at least ``at_least`` versions (its creation, then one per commit)."""
    return lambda: len(list(lancedb.glob("*.lance/_versions/*.manifest"))) >= at_least


def test_clip_embeddings_killed_between_commits_resume_without_a_repeated_or_missing_row(
    lineage: tuple[Path, dict[tuple[str, str | None], StageRun]], tmp_path: Path
):
    """Its random kills land after the few small commits of the fast lineage: it is killed as its third version
    (the second video) is committed, then, resumed, as its sixth is."""
    clean, _ = lineage
    faulted = tmp_path / "faulted"
    shutil.copytree(clean, faulted, symlinks=True)
    remove_outputs(faulted, "clip_embeddings", None)
    lancedb = faulted / "assets/clip_embeddings/lancedb"
    print("\nclip_embeddings:")
    for versions in (3, 6):
        run = run_stage(faulted, "clip_embeddings", kill_when=_commits(lancedb, versions))
        assert run.killed, f"the run ended before version {versions}\n{run.tail()}"
        rows = lancedb_rows(faulted)
        print(
            f"  killed as version {versions} was committed, {run.killed_at_s:.2f} s in: the table held "
            f"{len(rows)} rows of {len({video for video, _ in rows})} videos"
        )
        assert not (faulted / "assets/clip_embeddings/table.json").exists()  # written last: killed before it
    resumed = run_stage(faulted, "clip_embeddings")
    assert resumed.returncode == 0, resumed.tail()
    assert_same_outputs(clean, faulted, "clip_embeddings", None)
    shutil.rmtree(faulted)


def assert_same_outputs(clean: Path, faulted: Path, name: str, partition: str | None) -> None:
    varying = unreproducible_outputs(load_params(clean / "params.yaml"))
    written = output_files(faulted, name, partition)
    lancedb = [path for _, path in outputs(name, partition) if path.endswith("/lancedb")]
    torn = unreadable({rel: path for rel, path in written.items() if not rel.startswith(tuple(lancedb))})
    assert not torn, f"torn files: {torn}"
    uninterrupted = output_files(clean, name, partition)
    for _, declared in outputs(name, partition):
        expected, found = _under(uninterrupted, declared), _under(written, declared)
        if declared in varying:
            _assert_same_content(clean, faulted, declared)
            continue
        assert sorted(found) == sorted(expected), f"{declared}: other files than the uninterrupted run's"
        differ = [rel for rel in expected if sha256(found[rel]) != sha256(expected[rel])]
        assert not differ, f"{declared}: {len(differ)} of {len(expected)} files differ: {differ}"
        for rel in expected:
            if rel.endswith(".jsonl"):
                keys = jsonl_keys(found[rel])
                assert len(keys) == len(set(keys)) and sorted(keys) == sorted(jsonl_keys(expected[rel])), rel


def _under(files: dict[str, Path], declared: str) -> dict[str, Path]:
    return {rel: path for rel, path in files.items() if rel == declared or rel.startswith(declared + "/")}


def _assert_same_content(clean: Path, faulted: Path, declared: str) -> None:
    """What an output whose bytes vary between runs must still hold."""
    if declared.endswith("/lancedb"):
        rows = lancedb_rows(faulted)
        assert len(rows) == len(set(rows)), "a clip is in the table twice"
        assert rows == lancedb_rows(clean)
        table = "assets/clip_embeddings/table.json"
        assert json.loads((faulted / table).read_text()) == json.loads((clean / table).read_text())
    elif declared.endswith(".latency.jsonl"):
        records = faulted / declared.replace(".latency.jsonl", ".jsonl")
        keys = jsonl_keys(faulted / declared)
        assert len(keys) == len(set(keys)) and sorted(keys) == sorted(jsonl_keys(records)), declared
    elif declared.endswith(".summary.json"):
        summaries = [json.loads((project / declared).read_text()) for project in (clean, faulted)]
        scores = [{k: v for k, v in s["scores"].items() if "latency" not in k} for s in summaries]
        assert scores[0] == scores[1] and summaries[0]["n_selected"] == summaries[1]["n_selected"]
    elif declared.endswith(REPORT_RENDERINGS):
        assert sha256(faulted / declared) == sha256(clean / declared), declared
    else:
        raise AssertionError(f"no comparison for the varying output {declared}")
