"""`make demo`'s driver: every run waits for what it reads, and a failure stops what depends on it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from marc_ops.config import load_params
from pipelines import demo
from pipelines.defs.resources import REPO_ROOT


def test_every_run_waits_for_what_it_reads():
    runs = demo.lineage_runs(load_params(REPO_ROOT / "configs" / "tiny.yaml"))
    by_label = {run.label: run for run in runs}
    assert len(by_label) == len(runs)
    assert all(after in by_label for run in runs for after in run.after)
    assert by_label["benchmark_job [synthetic|marc@0.6]"].after == ("model_job", "vmr_job", "cgrpo_job [0.6]")
    assert by_label["benchmark_job [synthetic|baseline-64f]"].after == ("model_job",)
    assert "score_job" in by_label["benchmark_job [synthetic|score@0.25]"].after
    benchmarks = {run.label for run in runs if run.job == "benchmark_job"}
    assert benchmarks <= set(by_label["report_job"].after)


def _fake_runs(monkeypatch, fail: set[str]) -> list[str]:
    started: list[str] = []

    def fake(job, key=None):
        label = demo.Run(job, key).label
        started.append(label)
        return 0.0, label not in fail

    monkeypatch.setattr(demo, "_run", fake)
    return started


def test_runs_start_in_dependency_order(monkeypatch):
    started = _fake_runs(monkeypatch, fail=set())
    runs = demo.lineage_runs(load_params(REPO_ROOT / "configs" / "tiny.yaml"))
    with ThreadPoolExecutor(2) as pool:
        demo.run_lineage(pool, runs, workers=2)
    position = {label: i for i, label in enumerate(started)}
    assert set(position) == {run.label for run in runs}
    for run in runs:
        assert all(position[after] < position[run.label] for after in run.after), run.label


def test_a_failed_run_skips_what_depends_on_it_and_fails_the_demo(monkeypatch):
    started = _fake_runs(monkeypatch, fail={"teacher_job"})
    runs = demo.lineage_runs(load_params(REPO_ROOT / "configs" / "tiny.yaml"))
    with ThreadPoolExecutor(2) as pool, pytest.raises(SystemExit, match="teacher_job failed"):
        demo.run_lineage(pool, runs, workers=2)
    assert not any(label.startswith("cgrpo_job") or "marc@" in label for label in started)
    assert "benchmark_job [synthetic|baseline-64f]" in started  # it does not read the teacher's output


def test_an_unset_or_missing_instance_folder_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(SystemExit, match="DAGSTER_HOME is not set: run `make demo`"):
        demo.main()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "absent"))
    with pytest.raises(SystemExit, match="is not a folder"):
        demo.main()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert demo.instance_home() == str(tmp_path)
