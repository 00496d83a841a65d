"""Fault injection: kill a stage with SIGKILL at a chosen moment of its work, resume it, and fingerprint what it
wrote, to compare with an uninterrupted run of the same stage.

A stage runs as DVC runs it, ``python -m marc_ops.cli stage NAME [--partition KEY]``, in its own process group
(its worker processes go down with it, as on a preempted node). Its work starts at the ``[NAME] started`` line
the command prints once everything is imported; a kill moment is counted from that line, so it lands in the
stage's work rather than in Python's imports.

:func:`run_child` does the same to a child process of the test (a fork server's, started in a tenth of a second),
for checks that must stay fast.

What a stage wrote is the files under its declared outputs (``marc_ops.registry.dvcfile.outputs``) less what
``.dvcignore`` leaves out of DVC's hashes (TensorBoard events, pickled training arguments, model cards): the
files DVC would hash. A temporary file a killed write left behind is among them, as DVC would see it.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path

import lancedb
import pathspec
import polars as pl
import yaml
from safetensors import safe_open
from tests_support import REPO_ROOT

from marc_ops.registry.dvcfile import outputs

# Each kill waits at most this long for the stage's "started" line.
START_TIMEOUT_S = 300.0


def stage_env() -> dict[str, str]:
    """The environment of a stage subprocess: this checkout's code first, offline, one thread, no progress bars."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "DVC_NO_ANALYTICS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def stage_label(name: str, partition: str | None) -> str:
    return name if partition is None else f"{name}[{partition}]"


@dataclass
class StageRun:
    """One launch of a stage: when its work started and ended (seconds from launch), and how it ended."""

    name: str
    partition: str | None
    returncode: int | None = None
    started_s: float | None = None
    ended_s: float | None = None
    killed_at_s: float | None = None  # seconds after "started" when SIGKILL was sent; None: not killed
    output: list[str] = field(default_factory=list)

    @property
    def work_s(self) -> float:
        """Seconds from the "started" line to the exit: the stage's work, without the imports."""
        assert self.started_s is not None and self.ended_s is not None, self.tail()
        return self.ended_s - self.started_s

    @property
    def killed(self) -> bool:
        return self.killed_at_s is not None

    def tail(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])


def run_stage(
    project: Path,
    name: str,
    partition: str | None = None,
    *,
    kill_after_s: float | None = None,
    kill_when: Callable[[], bool] | None = None,
    timeout_s: float = 1800.0,
) -> StageRun:
    """Run one stage in ``project``; SIGKILL its process group ``kill_after_s`` seconds after its work started,
    or as soon as ``kill_when()`` holds after it started (polled every few milliseconds), if it is still
    running then. Returns when every process of the group is gone."""
    command = [sys.executable, "-m", "marc_ops.cli", "stage", name]
    if partition is not None:
        command += ["--partition", partition]
    marker = f"[{stage_label(name, partition)}] started"
    run = StageRun(name, partition)
    started = threading.Event()
    launched = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=project,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches its workers too
    )

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            run.output.append(line)
            if run.started_s is None and line.startswith(marker):
                run.started_s = time.perf_counter() - launched
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if kill_after_s is not None or kill_when is not None:
            _kill_during_work(process, run, started, launched, kill_after_s, kill_when)
        run.returncode = process.wait(timeout=timeout_s)
        run.ended_s = time.perf_counter() - launched
    finally:
        _kill_group(process)
        reader.join(timeout=10)
    return run


def _kill_during_work(
    process: subprocess.Popen[str],
    run: StageRun,
    started: threading.Event,
    launched: float,
    kill_after_s: float | None,
    kill_when: Callable[[], bool] | None,
) -> None:
    while not started.wait(0.05):
        if process.poll() is not None:
            return  # it failed (or finished) before its work began: the caller sees the return code
        if time.perf_counter() - launched > START_TIMEOUT_S:
            raise TimeoutError(f"{run.name}: no 'started' line after {START_TIMEOUT_S} s\n{run.tail()}")
    assert run.started_s is not None
    deadline = launched + run.started_s + (kill_after_s if kill_after_s is not None else float("inf"))
    while process.poll() is None:
        now = time.perf_counter()
        if now >= deadline or (kill_when is not None and kill_when()):
            _kill_group(process)
            run.killed_at_s = now - launched - run.started_s
            return
        time.sleep(min(0.005, max(deadline - now, 0.0)))


def _kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL every process of ``process``'s group, reap it, and wait until no process of the group is left."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait()
    for _ in range(1000):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise RuntimeError(f"process group {process.pid} survived SIGKILL for 10 s")


@dataclass(frozen=True)
class ChildRun:
    """One run of a child process (:func:`run_child`): seconds from its start to its work, and to its end."""

    started_s: float
    ended_s: float
    killed_at_s: float | None  # seconds after its work started when it was killed; None: it ran to its end
    exitcode: int | None

    @property
    def work_s(self) -> float:
        return self.ended_s - self.started_s

    @property
    def killed(self) -> bool:
        return self.killed_at_s is not None


def run_child(
    start: Callable[[], tuple[multiprocessing.Process, Event]],
    *,
    kill_after_s: float | None = None,
    timeout_s: float = 120.0,
) -> ChildRun:
    """Start a child process (``start`` returns it and the event it sets when its work starts) and SIGKILL it
    ``kill_after_s`` seconds into its work if it is still running then; else wait for its end."""
    launched = time.perf_counter()
    process, started = start()
    assert started.wait(timeout_s), "the child never started its work"
    started_s = time.perf_counter() - launched
    killed_at_s = None
    if kill_after_s is not None:
        process.join(kill_after_s)
        if process.is_alive():
            killed_at_s = time.perf_counter() - launched - started_s
            process.kill()
    process.join(timeout_s)
    assert not process.is_alive(), "the child outlived its timeout"
    return ChildRun(started_s, time.perf_counter() - launched, killed_at_s, process.exitcode)


def kill_moments(rng: random.Random, work_s: float) -> Iterator[float]:
    """Kill moments drawn uniformly within an uninterrupted run's ``work_s`` seconds of work: seconds after a run's
    work started (its "started" line), without end."""
    while True:
        yield rng.uniform(0.0, work_s)


@dataclass(frozen=True)
class FaultTrial:
    """One run of the work, meant to be killed, and what its outputs held right after."""

    planned_s: float  # seconds into its work
    killed_at_s: float | None  # None: it finished before that moment
    held: str  # e.g. "5 files, 18145 B"


def kill_then_resume(
    kills: int,
    moments: Iterator[float],
    run: Callable[[float | None], float | None],
    *,
    held: Callable[[], str],
    check: Callable[[], None],
    start_over: Callable[[], None],
    max_runs: int,
) -> list[FaultTrial]:
    """Kill the work ``kills`` times, each run at the next of ``moments`` (each run resumes what the killed ones
    left), then run it to the end and ``check`` what it wrote.

    ``run(moment)`` runs the work once, SIGKILLed ``moment`` seconds into it (``None``: not at all) and returns when
    it was killed (``None``: it finished). A resumed run has less left to do than the uninterrupted one the moments
    are drawn from: one that finishes before its moment is checked too, and the work starts over from nothing
    (``start_over``), so that every kill counted lands while the work runs.
    """
    trials: list[FaultTrial] = []
    while sum(trial.killed_at_s is not None for trial in trials) < kills:
        assert len(trials) < max_runs, f"only {len(trials)} runs for {kills} kills: {trials}"
        moment = next(moments)
        killed_at = run(moment)
        trials.append(FaultTrial(moment, killed_at, held()))
        if killed_at is None:
            check()
            start_over()
    assert run(None) is None
    check()
    return trials


def stage_runs(project: Path, name: str, partition: str | None) -> Callable[[float | None], float | None]:
    """:func:`kill_then_resume`'s ``run`` for a stage: ``marc stage`` in ``project``, which must succeed unless
    killed."""

    def run(kill_after_s: float | None) -> float | None:
        done = run_stage(project, name, partition, kill_after_s=kill_after_s)
        assert done.killed or done.returncode == 0, f"{stage_label(name, partition)} failed:\n{done.tail()}"
        return done.killed_at_s

    return run


def stage_holds(project: Path, name: str, partition: str | None) -> str:
    """How many files and bytes a stage's outputs hold (everything, what DVC ignores included)."""
    files = output_files(project, name, partition, include_ignored=True)
    return f"{len(files)} files, {sum(path.stat().st_size for path in files.values())} B"


# --- what a stage wrote ----------------------------------------------------------------------------------


# What DVC leaves out of its hashes (the repository's .dvcignore, gitignore patterns).
DVCIGNORE = pathspec.PathSpec.from_lines("gitignore", (REPO_ROOT / ".dvcignore").read_text().splitlines())


def output_files(
    project: Path, name: str, partition: str | None, *, include_ignored: bool = False
) -> dict[str, Path]:
    """Every file under the declared outputs of one stage partition, by project-relative path (hidden files
    included: a temporary file a kill left is an output DVC would hash); without what ``.dvcignore`` leaves out
    of DVC's hashes unless ``include_ignored``."""
    found: dict[str, Path] = {}
    for _, declared in outputs(name, partition):
        root = project / declared
        paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in paths:
            rel = path.relative_to(project).as_posix()
            if path.is_file() and (include_ignored or not DVCIGNORE.match_file(rel)):
                found[rel] = path
    return found


def remove_outputs(project: Path, name: str, partition: str | None) -> None:
    """Delete the declared outputs of one stage partition (to run it from nothing)."""
    for _, declared in outputs(name, partition):
        path = project / declared
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unreadable(files: dict[str, Path]) -> dict[str, str]:
    """The files that do not parse as what their name says (a torn file), with the error: parquet, JSON, JSON
    lines (every line, the last one ended), YAML, safetensors (every tensor), torch's zip files (every member's
    CRC). LanceDB's files are checked by opening the table (:func:`lancedb_rows`)."""
    errors: dict[str, str] = {}
    for rel, path in files.items():
        try:
            _check_file(path)
        except Exception as error:  # noqa: BLE001 - any failure to parse is the finding
            errors[rel] = f"{type(error).__name__}: {error}"
    return errors


def _check_file(path: Path) -> None:
    suffix = path.suffix
    if suffix == ".parquet":
        pl.read_parquet(path)
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".jsonl":
        data = path.read_text()
        if data and not data.endswith("\n"):
            raise ValueError("torn last line (no final newline)")
        for line in data.splitlines():
            json.loads(line)
    elif suffix in (".yaml", ".yml"):
        yaml.safe_load(path.read_text())
    elif suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                handle.get_tensor(key)
    elif suffix in (".pt", ".pth", ".bin"):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} fails its CRC")


def jsonl_keys(path: Path, key: str = "problem_id") -> list[str]:
    """The ``key`` of every line of a JSON-lines file, in order (repeats kept: a duplicate is a finding)."""
    return [str(json.loads(line)[key]) for line in path.read_text().splitlines()]


def lancedb_rows(project: Path) -> list[tuple[str, int]]:
    """``(video_id, clip_index)`` of every row of the clip table (the one table of the project's LanceDB), sorted,
    repeats kept."""
    db = lancedb.connect(str(project / "assets/clip_embeddings/lancedb"))
    (name,) = db.list_tables().tables
    rows = db.open_table(name).to_arrow().select(["video_id", "clip_index"]).to_pylist()
    return sorted((row["video_id"], row["clip_index"]) for row in rows)
