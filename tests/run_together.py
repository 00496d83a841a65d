"""Start the same ``marc`` command twice at the same moment, several times over, and record what each run did.

    python tests/run_together.py LOGS TRIALS HOLD_S OUTPUT -- ARGS...

The runs are forked from this interpreter once it has imported the library and before it has run anything
(so they start within milliseconds of each other, and no thread pool is copied mid-use), and both are released
by one write to a pipe. HOLD_S > 0 delays each parquet write of the data stages by that many seconds, so the
first run still holds the asset when the second asks for it. After each trial the project-relative folder
OUTPUT is copied to ``LOGS/<trial>/output``; each run's stdout and stderr go to ``LOGS/<trial>/<run>.out|.err``,
and ``LOGS/runs.json`` lists every trial's runs as ``{"pid", "status"}``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import polars as pl

import marc_ops.data.stages
from marc_ops.cli import main
from marc_ops.io import write_parquet


def _run(args: list[str], go: int, logs: Path, index: int) -> int:
    pid = os.fork()
    if pid != 0:
        return pid
    status = 70
    try:
        sys.stdout = open(logs / f"{index}.out", "w")  # noqa: SIM115 (the child exits below)
        sys.stderr = open(logs / f"{index}.err", "w")  # noqa: SIM115
        sys.argv = ["marc", *args]  # what the lock records as the holder's command
        os.read(go, 1)
        status = main(args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def main_together(argv: list[str]) -> int:
    logs, trials, hold_s, output = Path(argv[0]), int(argv[1]), float(argv[2]), argv[3]
    args = argv[argv.index("--") + 1 :]
    project = Path(args[args.index("--project-dir") + 1])

    def slow_write_parquet(path: Path, frame: pl.DataFrame) -> None:
        time.sleep(hold_s)
        write_parquet(path, frame)

    marc_ops.data.stages.write_parquet = slow_write_parquet
    runs = []
    for trial in range(trials):
        folder = logs / str(trial)
        folder.mkdir(parents=True)
        go_r, go_w = os.pipe()
        pids = [_run(args, go_r, folder, index) for index in range(2)]
        os.write(go_w, b"gg")
        statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        os.close(go_r)
        os.close(go_w)
        shutil.copytree(project / output, folder / "output")
        runs.append([{"pid": pid, "status": status} for pid, status in zip(pids, statuses, strict=True)])
    (logs / "runs.json").write_text(json.dumps(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main_together(sys.argv[1:]))
