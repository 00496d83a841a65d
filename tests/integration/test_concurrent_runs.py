"""Two materializations of one asset started at the same moment: one runs, the other fails at once naming it,
and the output is byte for byte what a single run writes. The same through Dagster."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from marc_ops.cli import main
from marc_ops.registry.runlock import lock_path
from pipelines.defs.assets import data as data_assets
from pipelines.defs.resources import MarcResource

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = "assets/videor1_manifest"
TRIALS = 4
# Per parquet write: the first run holds the asset two seconds; the second asks for it within milliseconds.
HOLD_S = 1.0


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture()
def project(small_project: Path) -> Path:
    assert main(["--project-dir", str(small_project), "stage", "videor1_source"]) == 0
    return small_project


def test_two_runs_at_once_one_runs_the_other_fails_naming_it(project: Path, tmp_path: Path):
    """``marc stage videor1_manifest`` (what DVC runs) twice at the same moment, TRIALS times."""
    assert main(["--project-dir", str(project), "stage", "videor1_manifest"]) == 0
    single = _outputs(project / OUTPUT)
    logs = tmp_path / "logs"
    command = ["--project-dir", str(project), "stage", "videor1_manifest"]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tests" / "run_together.py"),
            str(logs),
            str(TRIALS),
            str(HOLD_S),
            OUTPUT,
        ]
        + ["--", *command],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for trial, runs in enumerate(json.loads((logs / "runs.json").read_text())):
        folder = logs / str(trial)
        err = [(folder / f"{index}.err").read_text() for index in range(2)]
        assert sorted(run["status"] for run in runs) == [0, 4], (runs, err)
        winner, loser = (0, 1) if runs[0]["status"] == 0 else (1, 0)
        assert "[videor1_manifest] done" in (folder / f"{winner}.out").read_text()
        assert len(err[loser].splitlines()) == 1, err[loser]
        assert err[loser].startswith(
            f"marc stage: error: videor1_manifest is being materialized by another run (pid {runs[winner]['pid']} "
            f"on {socket.gethostname()}, started "
        ), err[loser]
        assert ": marc --project-dir " in err[loser] and "stage videor1_manifest); wait for it" in err[loser]
        assert _outputs(folder / "output") == single  # what one run writes, byte for byte
        assert pl.read_parquet(folder / "output" / "manifest.parquet").height > 0
    assert lock_path(project, "videor1_manifest", None).read_text() == ""  # released


def test_a_dagster_materialization_fails_at_once_while_another_run_holds_the_asset(project: Path):
    path = lock_path(project, "videor1_manifest", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    other = {"pid": 4242, "host": "gpu-07", "started": "2026-12-04T09:00:00+00:00", "command": "marc stage x"}
    assets = [data_assets.videor1_source, data_assets.videor1_manifest]
    resources = {"marc": MarcResource(project_dir=str(project))}
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(other))
        handle.flush()
        started = time.perf_counter()
        result = dg.materialize(
            assets, selection=["videor1_manifest"], resources=resources, raise_on_error=False
        )
        seconds = time.perf_counter() - started
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    cause = failure.cause if failure is not None else None
    assert cause is not None and cause.cls_name == "AssetBusyError"
    assert "videor1_manifest is being materialized by another run (pid 4242 on gpu-07" in cause.message
    assert not (project / "assets" / "videor1_manifest").exists()
    assert seconds < 30
    assert dg.materialize(assets, selection=["videor1_manifest"], resources=resources).success  # free again
