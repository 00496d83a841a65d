"""`make demo`: materialize the whole lineage of the active profile, recorded in the Dagster instance.

Every step is an ordinary Dagster run in `$DAGSTER_HOME` (so `make ui` shows them afterwards). A run
starts as soon as the runs it reads from have finished, `MARC_DEMO_WORKERS` at a time (default: the
number of cores), each in its own process, the runs on the critical path first:

- `data_job` (the source corpus, the manifest, the training subset), then side by side `vmr_job`
  (shots, retriever, LanceDB clips, VMR selection) and `model_job` (the base model, its caption
  pretraining in the tiny profile, its SFT checkpoint);
- `teacher_job` (needs both), `score_job` (SCORE's pseudo-videos, CE on full inputs and its policy:
  needs the model) and `efficiency_job` (after SCORE's policy, which it profiles);
- `cgrpo_job`, one run per τ of `train.taus` (after the teacher);
- `benchmark_job`, one run per benchmark × method of the profile's `eval` section, as soon as what the
  method answers with exists (the initial policy, the VMR selection, SCORE's policy or its C-GRPO
  checkpoint); the 64-frame methods first, as they take the longest;
- `report_job` last.

Each process gets an equal share of the cores for torch (`OMP_NUM_THREADS`), which is also fastest
for the tiny models (their matrices are too small for several threads). The same assets in one
`lineage_job` run (the UI's "materialize all") give the same results, one step at a time.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

WORKERS = max(1, int(os.environ.get("MARC_DEMO_WORKERS", os.cpu_count() or 1)))
# Set before torch is imported here or in any child (spawned workers and step processes inherit it).
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))

import dagster as dg  # noqa: E402

from marc_ops.config import Params  # noqa: E402
from marc_ops.config.methods import resolve_method  # noqa: E402
from pipelines.definitions import defs  # noqa: E402
from pipelines.defs.resources import active_params  # noqa: E402


@dataclass(frozen=True)
class Run:
    """One Dagster run of the lineage: a job (a partition of it), what it waits for, and its priority."""

    job: str
    key: str | dict[str, str] | None = None
    after: tuple[str, ...] = ()
    priority: int = 0  # higher starts first among the runs that are ready

    @property
    def label(self) -> str:
        if self.key is None:
            return self.job
        return f"{self.job} [{'|'.join(self.key.values()) if isinstance(self.key, dict) else self.key}]"


def lineage_runs(params: Params) -> list[Run]:
    """Every run of the profile's lineage with the runs it reads from."""
    cgrpo = [Run("cgrpo_job", f"{tau:g}", ("teacher_job",), priority=3) for tau in params.train.taus]
    benchmarks = []
    for benchmark in params.eval.benchmarks:
        for method in params.eval.methods:
            spec = resolve_method(method)
            after = ["model_job", "vmr_job"] if spec.use_vmr else ["model_job"]
            if spec.tau is not None:
                after.append(f"cgrpo_job [{spec.tau:g}]")
            if spec.compression.method == "score":
                after.append("score_job")
            costly = spec.max_frames == 64 and not spec.use_vmr
            key = {"benchmark": benchmark, "method": method}
            benchmarks.append(Run("benchmark_job", key, tuple(after), priority=2 if costly else 1))
    return [
        Run("data_job"),
        Run("vmr_job", after=("data_job",)),
        Run("model_job", after=("data_job",), priority=1),
        Run("teacher_job", after=("vmr_job", "model_job"), priority=4),
        Run("score_job", after=("model_job",), priority=3),
        Run("efficiency_job", after=("score_job",)),
        *cgrpo,
        *benchmarks,
        Run("report_job", after=("efficiency_job", *(run.label for run in benchmarks))),
    ]


def _run(job_name: str, key: str | dict[str, str] | None = None) -> tuple[float, bool]:
    """One run of ``job_name`` (a partition of it, if ``key``); returns its seconds and success."""
    partition_key = dg.MultiPartitionKey(key) if isinstance(key, dict) else key
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = defs.get_job_def(job_name).execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False
        )
    return time.perf_counter() - started, result.success


def run_lineage(pool: Executor, runs: list[Run], *, workers: int = WORKERS) -> None:
    """Each run once its ``after`` runs succeeded, `WORKERS` at a time; fails after the others finished if any
    failed (a run waiting on a failed one is skipped)."""
    pending, running, done, failed = list(runs), {}, set(), []
    while pending or running:
        ready = sorted(
            (run for run in pending if all(label in done for label in run.after)),
            key=lambda run: -run.priority,
        )
        for run in ready[: workers - len(running)]:
            pending.remove(run)
            print(f"==> {run.label}", flush=True)
            running[pool.submit(_run, run.job, run.key)] = run
        if not running:
            break  # what is left waits on a failed run
        finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
        for future in finished:
            run = running.pop(future)
            seconds, success = future.result()
            print(f"<== {run.label}: {seconds:.0f} s{'' if success else '  FAILED'}", flush=True)
            (done.add if success else failed.append)(run.label)
    skipped = [run.label for run in pending]
    if failed:
        raise SystemExit(
            f"{', '.join(failed)} failed{f' ({len(skipped)} runs after them skipped)' if skipped else ''}; "
            "see the runs in the Dagster UI (make ui)"
        )


def instance_home() -> str:
    """``$DAGSTER_HOME``, where every run is recorded; one line when it is unset or not a folder."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise SystemExit(
            "DAGSTER_HOME is not set: run `make demo` (it uses .dagster_home/), or export DAGSTER_HOME=<a folder>"
        )
    if not os.path.isdir(home):
        raise SystemExit(
            f"DAGSTER_HOME={home} is not a folder: create it (make install does) or point it at one"
        )
    return home


def main() -> int:
    instance_home()
    params = active_params()
    started = time.perf_counter()
    # One pool for the whole lineage: its processes import torch and the definitions once.
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=get_context("spawn")) as pool:
        run_lineage(pool, lineage_runs(params))
    print(f"whole lineage of profile {params.profile!r}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
