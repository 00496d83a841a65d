"""`make demo`: materialize the whole lineage of the active profile, recorded in the Dagster instance.

Runs, in order: the unpartitioned lineage (`lineage_job`), every C-GRPO partition τ of
`train.taus`, every benchmark × method pair of the profile's `eval` section, and the report.
Each is an ordinary Dagster run in `$DAGSTER_HOME`, so `make ui` shows them afterwards.

It keeps every core busy, the way `dagster dev` would: `lineage_job` runs on Dagster's multiprocess
executor (independent assets, e.g. the SFT warm-up and shot segmentation, run side by side), and the
partition runs go `MARC_DEMO_WORKERS` at a time (default: the number of cores), each in its own
process. Every process then gets an equal share of the cores for torch (`OMP_NUM_THREADS`), which is
also fastest for the tiny models (their matrices are too small for several threads).
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


def lineage_job() -> dg.JobDefinition:
    """`lineage_job`, reconstructable by the multiprocess executor's step processes."""
    return defs.get_job_def("lineage_job")


def _run_lineage(instance: dg.DagsterInstance) -> None:
    started = time.perf_counter()
    print(f"==> lineage_job ({WORKERS} steps at a time)", flush=True)
    run_config = {"execution": {"config": {"multiprocess": {"max_concurrent": WORKERS}}}}
    with dg.execute_job(dg.reconstructable(lineage_job), instance=instance, run_config=run_config) as result:
        if not result.success:
            raise SystemExit("lineage_job failed; see the run in the Dagster UI (make ui)")
    print(f"<== lineage_job: {time.perf_counter() - started:.0f} s", flush=True)


def _run_partition(job_name: str, key: str | dict[str, str]) -> tuple[str, float, bool]:
    """One partition run (in a worker process); returns its label, seconds and success."""
    partition_key = dg.MultiPartitionKey(key) if isinstance(key, dict) else key
    label = f"{job_name} [{partition_key}]"
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = defs.get_job_def(job_name).execute_in_process(
            instance=instance, partition_key=partition_key, raise_on_error=False
        )
    return label, time.perf_counter() - started, result.success


def _run_partitions(job_name: str, keys: list[str | dict[str, str]]) -> None:
    """Every partition of `job_name`, `WORKERS` at a time; fails after all ran if any failed."""
    failed = []
    with ProcessPoolExecutor(max_workers=min(WORKERS, len(keys)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_partition, job_name, key) for key in keys]
        for future in as_completed(futures):
            label, seconds, success = future.result()
            print(f"<== {label}: {seconds:.0f} s{'' if success else '  FAILED'}", flush=True)
            if not success:
                failed.append(label)
    if failed:
        raise SystemExit(f"{', '.join(failed)} failed; see the runs in the Dagster UI (make ui)")


def main() -> int:
    params = build_resources()["marc"].params()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        _run_lineage(instance)
        print(f"==> cgrpo_job: τ in {list(params.train.taus)}", flush=True)
        _run_partitions("cgrpo_job", [f"{tau:g}" for tau in params.train.taus])
        pairs = [{"benchmark": b, "method": m} for b in params.eval.benchmarks for m in params.eval.methods]
        print(f"==> benchmark_job: {len(pairs)} benchmark × method pairs", flush=True)
        _run_partitions("benchmark_job", pairs)
        print("==> report_job", flush=True)
        report = defs.get_job_def("report_job").execute_in_process(instance=instance)
        if not report.success:
            raise SystemExit("report_job failed; see the run in the Dagster UI (make ui)")
    print(f"whole lineage of profile {params.profile!r}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
