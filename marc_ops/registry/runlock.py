"""One run at a time per asset partition: a second materialization of the same asset (or partition) fails at
once, naming the run that holds it.

Every driver runs a stage through :class:`~marc_ops.registry.declare.Stage` (``marc stage``, which DVC calls,
and the Dagster assets); ``marc eval`` writes a ``benchmark_scores`` partition's files and takes the same
lock. The lock is an ``fcntl.flock`` on ``assets/.locks/<asset>[<partition>].lock``, held while the stage
runs. The file records its holder (pid, host, start, command) for the second run's message; the kernel
releases the lock when the holder's process ends, however it ends, so a killed run leaves no stale lock.
The locks lie outside every asset's folder: they are no DVC output and no stage reads them.

Failing fast rather than waiting: a stage runs for minutes to hours, and the second run would redo the
same work; ``dvc repro`` refuses a second run in one repository the same way.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from marc_ops.errors import MarcError

LOCKS_DIR = Path("assets") / ".locks"

# The locks this process holds: a driver may hold one around its own bookkeeping (Dagster records the run in
# dvc.lock after the stage) and run the stage, which takes it again.
_HELD: set[Path] = set()

# A holder writes its details right after it takes the lock; a second run that finds the lock taken in
# between waits this long for them before it reports the lock without them.
DETAILS_WAIT_S = 2.0


class AssetBusyError(MarcError):
    """Another run is materializing the same asset (partition); the message names it."""


def lock_path(project_dir: Path | str, asset: str, partition_key: str | None) -> Path:
    """``assets/.locks/<asset>.lock``, or ``<asset>[<partition key>].lock`` for one partition."""
    name = asset if partition_key is None else f"{asset}[{partition_key}]"
    return Path(project_dir) / LOCKS_DIR / f"{name.replace('/', '%2F')}.lock"


@contextmanager
def running(project_dir: Path | str, asset: str, partition_key: str | None) -> Iterator[None]:
    """Hold the lock of ``asset`` (partition ``partition_key``) for the block.

    Raises:
        AssetBusyError: another process holds it; the message names that run and the lock file.
    """
    path = lock_path(project_dir, asset, partition_key).resolve()
    if path in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(
        path, os.O_RDWR | os.O_CREAT, 0o666
    )  # never truncated before it is ours: it names the holder
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AssetBusyError(_busy(path, asset, partition_key)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        _HELD.add(path)
        try:
            yield
        finally:
            _HELD.discard(path)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _holder() -> dict[str, object]:
    """This run, as a second one's message names it: the process's command line as it was started
    (``python -m marc_ops.cli stage NAME`` under DVC, a Dagster step's command under Dagster)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(sys.orig_argv)[:200],
    }


def _busy(path: Path, asset: str, partition_key: str | None) -> str:
    what = asset if partition_key is None else f"{asset}[{partition_key}]"
    holder = _read_holder(path)
    who = (
        f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        if holder
        else "it has not written its details yet"
    )
    return (
        f"{what} is being materialized by another run ({who}); wait for it to finish, or stop it, then run "
        f"again (lock: {path})"
    )


def _read_holder(path: Path) -> dict[str, object]:
    """The holder's details, waiting up to :data:`DETAILS_WAIT_S` for a holder that has just taken the lock
    to write them; empty when they never appear (the holder ended, or cannot write)."""
    deadline = time.monotonic() + DETAILS_WAIT_S
    while True:
        try:
            holder = json.loads(path.read_text() or "{}")
        except (json.JSONDecodeError, OSError):
            holder = {}
        if holder or time.monotonic() >= deadline:
            return holder
        time.sleep(0.01)
