"""The run lock of an asset partition: a second holder fails at once naming the first; the kernel frees it
when its holder dies; the drivers' commands report it in one line with status 4."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from marc_ops.cli import main
from marc_ops.registry import STAGES, runlock
from marc_ops.registry.runlock import AssetBusyError, lock_path, running

OTHER_RUN = {"pid": 4242, "host": "gpu-07", "started": "2026-12-04T09:00:00+00:00", "command": "marc stage x"}


@contextmanager
def held_elsewhere(path: Path) -> Iterator[None]:
    """The lock held through another open file, as another process holds it, with that run's details."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(OTHER_RUN))
        handle.flush()
        yield


def test_every_stage_locks_under_its_asset_name():
    assert {name: stage.asset for name, stage in STAGES.items()} == {name: name for name in STAGES}
    assert lock_path("/p", "cgrpo_checkpoint", "0.6") == Path("/p/assets/.locks/cgrpo_checkpoint[0.6].lock")
    assert lock_path("/p", "report", None) == Path("/p/assets/.locks/report.lock")


def test_a_second_holder_fails_at_once_naming_the_first(tmp_path: Path):
    path = lock_path(tmp_path, "benchmark_scores", "synthetic|marc@0.6")
    with held_elsewhere(path), pytest.raises(AssetBusyError) as busy:
        with running(tmp_path, "benchmark_scores", "synthetic|marc@0.6"):
            pytest.fail("the lock was taken twice")
    assert str(busy.value) == (
        "benchmark_scores[synthetic|marc@0.6] is being materialized by another run (pid 4242 on gpu-07, started "
        "2026-12-04T09:00:00+00:00: marc stage x); wait for it to finish, or stop it, then run again "
        f"(lock: {path})"
    )


def test_a_second_run_between_the_holders_lock_and_its_details_waits_for_them(tmp_path: Path):
    """The holder takes the lock, then writes its details: a second run in between still names it."""
    path = lock_path(tmp_path, "report", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)

        def write_details() -> None:
            time.sleep(0.3)
            handle.write(json.dumps(OTHER_RUN))
            handle.flush()

        writer = threading.Thread(target=write_details)
        writer.start()
        with pytest.raises(AssetBusyError) as busy:
            with running(tmp_path, "report", None):
                pytest.fail("the lock was taken twice")
        writer.join()
    assert "(pid 4242 on gpu-07, started 2026-12-04T09:00:00+00:00: marc stage x)" in str(busy.value)


def test_a_holder_that_never_writes_its_details_is_reported_without_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(runlock, "DETAILS_WAIT_S", 0.2)
    path = lock_path(tmp_path, "report", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle, pytest.raises(AssetBusyError) as busy:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with running(tmp_path, "report", None):
            pytest.fail("the lock was taken twice")
    assert "report is being materialized by another run (it has not written its details yet)" in str(
        busy.value
    )


def test_the_holder_is_written_while_held_and_cleared_after(tmp_path: Path):
    path = lock_path(tmp_path, "report", None)
    with running(tmp_path, "report", None):
        holder = json.loads(path.read_text())
        with running(tmp_path, "report", None):  # the same process may take it again (Dagster's record)
            pass
        assert path.read_text()  # still held
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert path.read_text() == ""
    with running(tmp_path, "report", None):  # free again
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the holder: takes the lock, says so, and is killed holding it
        try:
            with running(tmp_path, "train_subset", None):
                os.write(ready_w, b"x")
                signal.pause()
        finally:
            os._exit(1)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    with pytest.raises(AssetBusyError, match=f"pid {pid} on "):
        with running(tmp_path, "train_subset", None):
            pass
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with running(tmp_path, "train_subset", None):
        pass


@pytest.mark.parametrize(
    ("args", "lock"),
    [
        (["stage", "videor1_manifest"], ("videor1_manifest", None)),
        (["stage", "cgrpo_checkpoint", "--partition", "0.6"], ("cgrpo_checkpoint", "0.6")),
        # another spelling of a partition takes its one lock
        (["stage", "cgrpo_checkpoint", "--partition", "0.60"], ("cgrpo_checkpoint", "0.6")),
        (
            ["stage", "benchmark_scores", "--partition", "synthetic|marc"],
            ("benchmark_scores", "synthetic|marc@0.6"),
        ),
        (
            ["eval", "--benchmark", "synthetic", "--method", "marc"],
            ("benchmark_scores", "synthetic|marc@0.6"),
        ),
    ],
    ids=["stage", "stage-partition", "stage-partition-spelt-otherwise", "stage-method-default-tau", "eval"],
)
def test_the_command_reports_a_busy_asset_in_one_line(
    small_project: Path, capsys: pytest.CaptureFixture[str], args: list[str], lock: tuple[str, str | None]
):
    with held_elsewhere(lock_path(small_project, *lock)):
        status = main(["--project-dir", str(small_project), *args])
    err = capsys.readouterr().err
    assert status == 4
    assert len(err.splitlines()) == 1, err
    what = lock[0] if lock[1] is None else f"{lock[0]}[{lock[1]}]"
    assert err.startswith(
        f"marc {args[0]}: error: {what} is being materialized by another run (pid 4242 on gpu-07"
    )
