"""Atomic writes: all or nothing, and files readable like any other."""

import multiprocessing
import os
import signal
import stat
from pathlib import Path

import polars as pl
import pytest
from dvc.fs import LocalFileSystem
from dvc.ignore import DvcIgnorePatterns
from tests_support import REPO_ROOT

from marc_ops.io import (
    absolute_media,
    atomic_dir,
    atomic_file,
    atomic_path,
    file_stamp,
    relative_media,
    weights_stamp,
    write_json,
    write_parquet,
)


def test_atomic_file_replaces_only_on_success(tmp_path: Path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with atomic_file(target) as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_dir_replaces_only_on_success(tmp_path: Path):
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(final) as tmp:
        (tmp / "x").write_text("2")
        raise KeyboardInterrupt
    assert (final / "x").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_written_files_follow_the_umask(tmp_path: Path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"k": 1})
        write_parquet(tmp_path / "a.parquet", pl.DataFrame({"a": [1]}))
        with atomic_dir(tmp_path / "d"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "a.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_stamps_follow_content_not_path_or_mtime(tmp_path: Path):
    """A moved clone or a checkout (new path, new mtime) keeps a cache valid; new bytes do not."""
    first, second = tmp_path / "a" / "model", tmp_path / "b" / "model"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"weights")
    assert weights_stamp(first) == weights_stamp(second)
    assert file_stamp(first / "model.safetensors") == file_stamp(second / "model.safetensors")
    os.utime(second / "model.safetensors", ns=(1, 10**18))
    assert weights_stamp(first) == weights_stamp(second)
    (second / "model.safetensors").write_bytes(b"retrained")
    assert weights_stamp(first) != weights_stamp(second)
    assert file_stamp(first / "model.safetensors") != file_stamp(second / "model.safetensors")
    assert str(tmp_path) not in weights_stamp(first)
    assert weights_stamp("Qwen/Qwen2.5-VL-3B-Instruct") == '["Qwen/Qwen2.5-VL-3B-Instruct"]'


def test_media_paths_are_stored_relative_to_the_project_and_opened_absolute(tmp_path: Path):
    project, elsewhere = tmp_path / "project", tmp_path / "data"
    inside = project / "data" / "synthetic" / "v.mp4"
    frame = pl.DataFrame({"media_path": [str(inside), str(elsewhere / "w.mp4"), None], "n": [1, 2, 3]})

    stored = relative_media(frame, project)

    assert stored["media_path"].to_list() == ["data/synthetic/v.mp4", str(elsewhere / "w.mp4"), None]
    assert stored["n"].to_list() == [1, 2, 3]
    # the same table from a clone in another folder: the same cells
    moved = tmp_path / "clone"
    assert (
        relative_media(frame.with_columns(pl.col("media_path").str.replace(str(project), str(moved))), moved)[
            "media_path"
        ].to_list()[0]
        == "data/synthetic/v.mp4"
    )
    # and back: what a stage opens, whatever its working directory
    assert absolute_media(stored, project).equals(frame)
    assert relative_media(pl.DataFrame({"x": [1]}), project).equals(pl.DataFrame({"x": [1]}))


def _killed_while_writing(final: Path, kind: str) -> None:
    """Start an atomic write of ``final`` and die with SIGKILL before it is renamed into place."""
    if kind == "file":
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    else:
        with atomic_dir(final) as tmp:
            (tmp / "weights.safetensors").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_what_a_write_killed_mid_way_leaves_is_outside_every_dvc_hash(tmp_path: Path, kind: str):
    """A SIGKILL inside an atomic write leaves its temporary sibling, not the output; the repository's
    ``.dvcignore`` keeps that sibling out of the output's DVC hash, as DVC itself reads the file."""
    final = tmp_path / "assets" / "sft_checkpoint" / ("run.json" if kind == "file" else "model")
    child = multiprocessing.get_context("fork").Process(target=_killed_while_writing, args=(final, kind))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    assert not final.exists()
    (left,) = final.parent.iterdir()
    assert left.name.startswith(f".{final.name}.tmp-")
    ignore = DvcIgnorePatterns.from_file(str(REPO_ROOT / ".dvcignore"), LocalFileSystem(), ".dvcignore")
    # DvcIgnorePatterns matches paths under the folder holding .dvcignore: the repository root.
    inside = REPO_ROOT / left.relative_to(tmp_path)
    assert ignore.matches(str(inside.parent), inside.name, is_dir=left.is_dir())
    assert not ignore.matches(str(inside.parent), final.name, is_dir=kind == "dir")  # the output is hashed
