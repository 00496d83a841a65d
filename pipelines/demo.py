"""`make demo`: materialize the whole lineage of the active profile, recorded in the Dagster instance.

Runs, in order: the unpartitioned lineage (`lineage_job`), every C-GRPO partition τ of
`train.taus`, every benchmark × method pair of the profile's `eval` section, and the report.
Each is an ordinary Dagster run in `$DAGSTER_HOME`, so `make ui` shows them afterwards.
"""

from __future__ import annotations

import sys
import time

import dagster as dg

from pipelines.definitions import defs
from pipelines.defs.resources import build_resources


def _run(job_name: str, partition_key: str | dg.MultiPartitionKey | None, instance: dg.DagsterInstance) -> None:
    label = job_name if partition_key is None else f"{job_name} [{partition_key}]"
    started = time.perf_counter()
    print(f"==> {label}", flush=True)
    result = defs.get_job_def(job_name).execute_in_process(instance=instance, partition_key=partition_key)
    if not result.success:
        raise SystemExit(f"{label} failed; see the run in the Dagster UI (make ui)")
    print(f"<== {label}: {time.perf_counter() - started:.0f} s", flush=True)


def main() -> int:
    params = build_resources()["marc"].params()
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        _run("lineage_job", None, instance)
        for tau in params.train.taus:
            _run("cgrpo_job", f"{tau:g}", instance)
        for benchmark in params.eval.benchmarks:
            for method in params.eval.methods:
                _run("benchmark_job", dg.MultiPartitionKey({"benchmark": benchmark, "method": method}), instance)
        _run("report_job", None, instance)
    print(f"whole lineage of profile {params.profile!r}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
