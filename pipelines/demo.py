"""`make demo`: materialize the whole lineage of the active profile, recorded in the Dagster instance.

Every step is an ordinary Dagster run in `$DAGSTER_HOME` (so `make ui` shows them afterwards), in
phases that keep every core busy:

1. `data_job`: the source corpus, the manifest, the training subset;
2. side by side: `vmr_job` (shots, retriever, LanceDB clips, VMR selection) and `model_job` (the
   base model, its caption pretraining in the tiny profile, its SFT checkpoint);
3. side by side: `teacher_job` (the teacher's rewards: it needs both branches) and `score_job`
   (SCORE's pseudo-videos, CE on full inputs and its policy in two stages);
4. `cgrpo_job`, one run per τ of `train.taus`, beside `efficiency_job` (the efficiency profile);
5. `benchmark_job`, one run per benchmark × method of the profile's `eval` section;
6. `report_job`.

Runs of one phase go `MARC_DEMO_WORKERS` at a time (default: the number of cores), each in its own
process; each process gets an equal share of the cores for torch (`OMP_NUM_THREADS`), which is also
fastest for the tiny models (their matrices are too small for several threads). The same assets in
one `lineage_job` run (the UI's "materialize all") give the same results, one step at a time.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

WORKERS = max(1, int(os.environ.get("MARC_DEMO_WORKERS", os.cpu_count() or 1)))
# Set before torch is imported here or in any child (spawned workers and step processes inherit it).
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))

import dagster as dg  # noqa: E402

from pipelines.definitions import defs  # noqa: E402
from pipelines.defs.resources import build_resources  # noqa: E402


def _run(job_name: str, key: str | dict[str, str] | None = None) -> tuple[str, float, bool]:
    """One run of ``job_name`` (a partition of it, if ``key``); returns its label, seconds and success."""
    partition_key = dg.MultiPartitionKey(key) if isinstance(key, dict) else key
    label = job_name if key is None else f"{job_name} [{partition_key}]"
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = defs.get_job_def(job_name).execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False
        )
    return label, time.perf_counter() - started, result.success


def _run_all(pool: ProcessPoolExecutor, runs: list[tuple[str, str | dict[str, str] | None]]) -> None:
    """``(job, partition key)`` runs, `WORKERS` at a time in the pool's processes; fails after all ran if any failed."""
    print(
        "==> " + ", ".join(job if key is None else f"{job} [{_key_label(key)}]" for job, key in runs),
        flush=True,
    )
    failed = []
    for future in as_completed([pool.submit(_run, job, key) for job, key in runs]):
        label, seconds, success = future.result()
        print(f"<== {label}: {seconds:.0f} s{'' if success else '  FAILED'}", flush=True)
        if not success:
            failed.append(label)
    if failed:
        raise SystemExit(f"{', '.join(failed)} failed; see the runs in the Dagster UI (make ui)")


def _key_label(key: str | dict[str, str]) -> str:
    return "|".join(key.values()) if isinstance(key, dict) else key


def main() -> int:
    params = build_resources()["marc"].params()
    started = time.perf_counter()
    # One pool for every phase: its processes import torch and the definitions once.
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=get_context("spawn")) as pool:
        _run_all(pool, [("data_job", None)])
        _run_all(pool, [("vmr_job", None), ("model_job", None)])
        _run_all(pool, [("teacher_job", None), ("score_job", None)])
        _run_all(pool, [*(("cgrpo_job", f"{tau:g}") for tau in params.train.taus), ("efficiency_job", None)])
        pairs = [{"benchmark": b, "method": m} for b in params.eval.benchmarks for m in params.eval.methods]
        _run_all(pool, [("benchmark_job", pair) for pair in pairs])
        _run_all(pool, [("report_job", None)])
    print(f"whole lineage of profile {params.profile!r}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
