"""A write that runs out of space leaves the previous version of its output byte for byte, leaves no temporary
file behind, and raises DiskFullError naming the output and saying the previous version is kept.

Two real kernel failures, each test run under both: a small tmpfs filled to the last page (ENOSPC; mounting
needs root, as on this project's CI machines), and a file size limit (``RLIMIT_FSIZE``, EFBIG) set in this
process around the write (no privilege needed).
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import save_file

from marc_ops.cli import main
from marc_ops.compression.score import ScorePolicy, save_policy
from marc_ops.errors import MarcError
from marc_ops.io import DiskFullError, append_jsonl, atomic_dir, write_json, write_parquet, write_text

FILLER = "filler"
BIG = 512 << 10  # larger than the tmpfs, the size limit and any page slack


@dataclass(frozen=True)
class Disk:
    """A folder where writes can be made to fail for lack of space."""

    root: Path
    kind: str  # "tmpfs" (ENOSPC) or "fsize" (EFBIG)

    @property
    def errno(self) -> int:
        return errno.ENOSPC if self.kind == "tmpfs" else errno.EFBIG

    @property
    def reason(self) -> str:
        return (
            "no space left on the device"
            if self.kind == "tmpfs"
            else "the file would exceed a file size limit (the file system's, or ulimit -f)"
        )

    @contextmanager
    def full(self, limit: int = 64 << 10) -> Iterator[None]:
        """No room for another page (tmpfs), or no file may grow past ``limit`` bytes (fsize)."""
        if self.kind == "tmpfs":
            fd = os.open(self.root / FILLER, os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"\0" * (16 << 10))
            except OSError as error:
                assert error.errno == errno.ENOSPC
            finally:
                os.close(fd)
            try:
                yield
            finally:
                (self.root / FILLER).unlink()
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)


@pytest.fixture(params=["tmpfs", "fsize"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    root = tmp_path / "disk"
    root.mkdir()
    if request.param == "fsize":
        yield Disk(root, "fsize")
        return
    mount = shutil.which("mount")
    done = (
        subprocess.run(
            [mount, "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(root)], capture_output=True, text=True
        )
        if mount
        else None
    )
    if done is None or done.returncode != 0:
        why = "no mount command" if done is None else done.stderr.strip()
        pytest.skip(f"cannot mount a tmpfs here ({why}; needs root): the fsize variant covers a failed write")
    try:
        yield Disk(root, "tmpfs")
    finally:
        subprocess.run(["umount", str(root)], check=True)


def _contents(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden temporary siblings included) and its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _blob(n: int) -> str:
    return np.random.default_rng(0).bytes(n).hex()[:n]


def _policy(path: Path, d_model: int) -> None:
    save_policy(policy := ScorePolicy(d_model), policy.config, path)


def _checkpoint(path: Path, n: int) -> None:
    """A folder written whole, as the SCORE and retriever checkpoints are: safetensors plus JSON."""
    with atomic_dir(path) as tmp:
        save_file({"w": torch.arange(n, dtype=torch.float32)}, str(tmp / "policy.safetensors"))
        write_json(tmp / "trainer_state.json", {"step": n})


def _frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"x": np.random.default_rng(n).random(n)})


# name: (output, write the previous version, the write that runs out of space)
WRITERS: dict[str, tuple[str, Callable[[Path], None], Callable[[Path], None]]] = {
    "write_text": ("dvc.yaml", lambda p: write_text(p, "stages: {}\n"), lambda p: write_text(p, _blob(BIG))),
    "write_json": (
        "source.json",
        lambda p: write_json(p, {"v": 1}),
        lambda p: write_json(p, {"v": _blob(BIG)}),
    ),
    "write_parquet": (
        "rows.parquet",
        lambda p: write_parquet(p, _frame(4)),
        lambda p: write_parquet(p, _frame(BIG)),
    ),
    "safetensors": ("policy.safetensors", lambda p: _policy(p, 4), lambda p: _policy(p, 512)),
    "atomic_dir": ("checkpoint", lambda p: _checkpoint(p, 4), lambda p: _checkpoint(p, BIG)),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_write_out_of_space_keeps_the_previous_version(disk: Disk, writer: str):
    name, write_previous, write_big = WRITERS[writer]
    target = disk.root / name
    write_previous(target)
    before = _contents(disk.root)
    with disk.full(), pytest.raises(DiskFullError) as failed:
        write_big(target)
    assert _contents(disk.root) == before  # byte for byte, and no temporary file left
    assert isinstance(failed.value, MarcError) and failed.value.errno == disk.errno
    assert str(failed.value) == (
        f"{target}: not written, {disk.reason}"
        + "; the previous version is kept. Free space (or raise the limit) and rerun"
    )


def test_a_first_write_out_of_space_leaves_nothing(disk: Disk):
    with (
        disk.full(),
        pytest.raises(DiskFullError, match="nothing was written \\(there was no previous version\\)"),
    ):
        write_parquet(disk.root / "rows.parquet", _frame(BIG))
    assert _contents(disk.root) == {}


def test_an_append_out_of_space_is_cut_back_to_the_records_it_held(disk: Disk):
    records = disk.root / "marc@0.6.jsonl"
    with open(records, "a", encoding="utf-8") as sink:
        append_jsonl(sink, [{"problem_id": "1", "status": "ok"}, {"problem_id": "2", "status": "ok"}])
    before = records.read_bytes()
    with disk.full(), open(records, "a", encoding="utf-8") as sink, pytest.raises(DiskFullError) as failed:
        append_jsonl(sink, [{"problem_id": "3", "answer": _blob(BIG)}])
    assert records.read_bytes() == before
    assert [json.loads(line)["problem_id"] for line in before.decode().splitlines()] == ["1", "2"]
    assert str(failed.value).startswith(
        f"{records}: 1 record(s) not appended, {disk.reason}; the file is cut back to the {len(before)} bytes"
    )


def test_the_command_says_so_in_one_line(disk: Disk, small_project: Path, capsys: pytest.CaptureFixture[str]):
    """``marc dvc-yaml`` into a full project: status 3, one line naming dvc.yaml, the old one kept."""
    project = disk.root
    shutil.copy(small_project / "params.yaml", project / "params.yaml")
    (project / "dvc.yaml").write_text("stages: {}\n")
    before = _contents(project)
    with disk.full(limit=1 << 10):
        status = main(["--project-dir", str(project), "dvc-yaml"])
    err = capsys.readouterr().err
    assert status == 3
    assert _contents(project) == before
    assert err.splitlines() == [
        f"marc dvc-yaml: error: {project / 'dvc.yaml'}: not written, {disk.reason}"
        + "; the previous version is kept. Free space (or raise the limit) and rerun"
    ]
