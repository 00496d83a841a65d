"""Killed mid-run, then resumed (the fast subset): the evaluation runner, with a scripted adapter, in a child
process killed with SIGKILL at random moments of its work, then run to the end, writes the records of an
uninterrupted run byte for byte, and one latency line per record. The slow tier does the same to every resumable
stage of the fast lineage (tests/slow/test_fault_kill.py).
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from faults import jsonl_keys, kill_moments, kill_then_resume, run_child, sha256, unreadable
from scripted_eval import METHOD, TASK, start_child, write_benchmark

from marc_ops.eval import records_path
from marc_ops.eval.scoring import latency_path

pytestmark = pytest.mark.integration

SEED = 20261204
KILLS = 2
N_ROWS = 12
SECONDS_PER_SAMPLE = 0.25


def test_a_killed_evaluation_resumes_to_the_records_of_an_uninterrupted_one(tmp_path: Path):
    eval_dir = write_benchmark(tmp_path / "Evaluation", N_ROWS)
    clean = records_path(tmp_path / "clean", TASK.name, METHOD.name)
    faulted = records_path(tmp_path / "faulted", TASK.name, METHOD.name)
    uninterrupted = run_child(functools.partial(start_child, str(eval_dir), str(clean), SECONDS_PER_SAMPLE))
    assert uninterrupted.exitcode == 0
    start = functools.partial(start_child, str(eval_dir), str(faulted), SECONDS_PER_SAMPLE)

    def run(kill_after_s: float | None) -> float | None:
        done = run_child(start, kill_after_s=kill_after_s)
        assert done.killed or done.exitcode == 0
        return done.killed_at_s

    def records_held() -> str:
        return f"{len(jsonl_keys(faulted)) if faulted.is_file() else 0} of {N_ROWS} records"

    def check() -> None:
        assert not unreadable({path.name: path for path in (faulted, latency_path(faulted))})
        assert jsonl_keys(faulted) == [f"p{i}" for i in range(N_ROWS)]  # none missing, none twice
        assert sha256(faulted) == sha256(clean)
        # The seconds are measured, so they differ from run to run: one line per record is what is compared.
        assert sorted(jsonl_keys(latency_path(faulted))) == sorted(jsonl_keys(faulted))

    def start_over() -> None:
        faulted.unlink()
        latency_path(faulted).unlink()

    trials = kill_then_resume(
        KILLS,
        kill_moments(random.Random(SEED), uninterrupted.work_s),
        run,
        held=records_held,
        check=check,
        start_over=start_over,
        max_runs=4 * KILLS,
    )
    killed_mid_run = [
        t for t in trials if t.killed_at_s is not None and not t.held.startswith(("0 ", f"{N_ROWS} "))
    ]
    assert killed_mid_run, trials  # a kill left some records, not all
