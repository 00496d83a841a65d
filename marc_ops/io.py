"""Files under ``assets/``: atomic writes, JSONL records, the content identity of files and weights, and the
check that weights are safetensors.

A stage writes into a temporary sibling and renames it into place only when it has
finished, so an interrupted materialization never leaves a half-written artifact that a
later run would mistake for a finished one. A write that runs out of space (a full disk, a quota, a
file-size limit) leaves the previous version of its output as it was and raises :class:`DiskFullError`,
which names the output and says so; a JSONL append is cut back to the records it held.

Weights load from safetensors only. The pickle-based formats of ``torch.save`` (``pytorch_model.bin``,
``*.pt``, ``*.pth``) can run any code when they are loaded, so a loader of the library checks a weights file
with :func:`check_safetensors` (or a checkpoint folder with :func:`safetensors_weights`) before it opens it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

from marc_ops.errors import MarcError


def _umask_mode(base: int) -> int:
    """``base`` filtered by the process umask: what ``open()`` would have given the file."""
    current = os.umask(0)
    os.umask(current)
    return base & ~current


# What a write that runs out of room fails with: ENOSPC on a full disk, EDQUOT over a quota, EFBIG past a
# file-size limit (the file system's, or the process's ``ulimit -f``).
_OUT_OF_SPACE = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file would exceed a file size limit (the file system's, or ulimit -f)",
}
# polars and safetensors (Rust) raise their own exception types and give the OS error only in the message.
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class DiskFullError(MarcError, OSError):
    """A write that ran out of space, or past a file size limit. The output it was writing is as it was
    before (the message says whether a previous version exists); ``errno`` is ENOSPC, EDQUOT or EFBIG."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.errno = code


def out_of_space(error: BaseException) -> int | None:
    """ENOSPC, EDQUOT or EFBIG when ``error``, or an error it was raised from, is a write that ran out of
    space; else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _OUT_OF_SPACE:
            return seen.errno
        found = _RUST_OS_ERROR.search(str(seen))
        if found is not None and int(found.group(1)) in _OUT_OF_SPACE:
            return int(found.group(1))
        seen = seen.__cause__ or seen.__context__
    return None


def _raise_if_out_of_space(error: BaseException, final: Path) -> None:
    """Raise :class:`DiskFullError` naming ``final`` (left as it was) when ``error`` ran out of space."""
    code = out_of_space(error)
    if code is None:
        return
    kept = (
        "the previous version is kept"
        if final.exists()
        else "nothing was written (there was no previous version)"
    )
    raise DiskFullError(
        f"{final}: not written, {_OUT_OF_SPACE[code]}; {kept}. Free space (or raise the limit) and rerun",
        code,
    ) from error


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is left as it was; running out of
    space raises :class:`DiskFullError` naming ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    except OSError as error:
        _raise_if_out_of_space(error, final)
        raise
    os.chmod(tmp, _umask_mode(0o777))  # mkdtemp makes 0700; the artifact should be shared like any dir
    try:
        yield tmp
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_if_out_of_space(error, final)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield the path of a temporary sibling of ``final`` to write (for writers that take a path: polars,
    safetensors); rename it into place on success.

    On an exception the temporary file is removed and ``final`` is left as it was; running out of space
    raises :class:`DiskFullError` naming ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    except OSError as error:
        _raise_if_out_of_space(error, final)
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        _raise_if_out_of_space(error, final)
        raise
    os.chmod(tmp, _umask_mode(0o666))  # mkstemp makes 0600
    os.replace(tmp, final)


@contextmanager
def atomic_file(final: Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of ``final`` for writing; rename it into place on success (as
    :func:`atomic_path`)."""
    with atomic_path(final) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: Path, payload: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def write_parquet(path: Path, frame: pl.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def append_jsonl(sink: Any, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to an open text file as JSON lines in one write, then fsync: a crash can only tear
    the final line, which :func:`parse_jsonl` reports.

    A write that runs out of space is undone (the file is cut back to its length before it, so it holds
    exactly the records it held) and raises :class:`DiskFullError`.
    """
    data = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode(sink.encoding)
    sink.flush()
    fd = sink.fileno()
    size = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as error:
        code = out_of_space(error)
        if code is None:
            raise
        os.ftruncate(fd, size)
        os.lseek(fd, size, os.SEEK_SET)
        raise DiskFullError(
            f"{sink.name}: {len(records)} record(s) not appended, {_OUT_OF_SPACE[code]}; the file is cut back to "
            f"the {size} bytes it held, every record before them kept. Free space (or raise the limit) and rerun",
            code,
        ) from error


def parse_jsonl(data: bytes, path: Path, error: type[Exception]) -> tuple[list[tuple[int, Any]], bool]:
    """``(line number, value)`` of every complete, non-blank line of ``data``, and whether the last line
    was torn (no final newline; it is left out). A complete line that is not JSON raises ``error``
    naming the file and line: only the last line can be cut short by a crash."""
    *lines, tail = data.split(b"\n")
    values = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            values.append((line_no, json.loads(line)))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise error(f"{path}:{line_no}: not a JSON record ({err}); delete the file to rerun") from err
    return values, bool(tail)


def weights_stamp(model_path: str | Path) -> str:
    """A model's identity for caches: the name and content hash of each weights file (a retrained
    checkpoint gets a new stamp; a moved clone, ``dvc checkout`` or a pulled cache keeps it); a hub id
    or a path that holds no weights files is its own stamp."""
    path = Path(model_path)
    weights = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not weights:
        return json.dumps([str(model_path)])
    return json.dumps([[p.name, content_hash(p)] for p in weights])


def file_stamp(path: Path | str) -> list[Any]:
    """A file's identity for caches: its name and content hash (never its folder, size or mtime)."""
    return [Path(path).name, content_hash(path)]


_HASHES: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path | str) -> str:
    """SHA-256 of a file's bytes, remembered for the process by (path, size, mtime): a 7 GB checkpoint is
    read once per run, however many stamps ask for it."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def project_relative(path: Path | str, project_dir: Path | str) -> str:
    """``path`` relative to the project when it lies inside it (what records store, so a clone in another folder
    writes the same bytes), else absolute."""
    path, project_dir = Path(path).resolve(), Path(project_dir).resolve()
    return path.relative_to(project_dir).as_posix() if path.is_relative_to(project_dir) else str(path)


# The columns of stored row tables that hold file paths: the media, and the annotation file a row came from.
PATH_COLUMNS = ("media_path", "source_file")


def relative_media(
    frame: pl.DataFrame, project_dir: Path | str, columns: tuple[str, ...] = PATH_COLUMNS
) -> pl.DataFrame:
    """``frame`` with its file paths as stored tables hold them: relative to the project when inside it
    (:func:`project_relative`), so a clone in another folder writes the same bytes."""
    return frame.with_columns(
        pl.col(column).map_elements(lambda p: project_relative(p, project_dir), return_dtype=pl.String)
        for column in columns
        if column in frame.columns
    )


def absolute_media(
    frame: pl.DataFrame, project_dir: Path | str, columns: tuple[str, ...] = PATH_COLUMNS
) -> pl.DataFrame:
    """``frame`` with its stored file paths resolved against the project: what a stage opens, whatever the
    working directory."""
    root = Path(project_dir).resolve().as_posix().rstrip("/") + "/"
    return frame.with_columns(
        pl.when(pl.col(column).is_null() | pl.col(column).str.starts_with("/"))
        .then(pl.col(column))
        .otherwise(pl.lit(root) + pl.col(column))
        .alias(column)
        for column in columns
        if column in frame.columns
    )


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


# torch.save's formats (a zip archive or a bare pickle) and pickle's own: loading them can run code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_MAX_SAFETENSORS_HEADER = 100 << 20  # the format's own bound on the JSON header


class UnsafeWeightsError(MarcError):
    """A weights file that is not safetensors, or a checkpoint folder whose weights are pickles only."""


def check_safetensors(path: Path | str) -> Path:
    """``path``, after checking that it is a safetensors file: an 8-byte little-endian header length, then a
    JSON header. Anything else (a ``torch.save`` zip, a bare pickle) raises :class:`UnsafeWeightsError` naming
    it; the file is never unpickled."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else -1
        header = handle.read(size) if 2 <= size <= _MAX_SAFETENSORS_HEADER else b""
    try:
        valid = header.startswith(b"{") and isinstance(json.loads(header), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        valid = False
    if not valid:
        raise UnsafeWeightsError(
            f"{path}: not a safetensors file{_format_hint(head)}; weights load from safetensors only, because "
            "pickle formats (torch.save) can run code when loaded: convert it where it was made "
            "(safetensors.torch.save_file) or use the checkpoint's .safetensors weights"
        )
    return path


def safetensors_weights(folder: Path | str) -> list[Path]:
    """The ``*.safetensors`` files of checkpoint folder ``folder``, each checked by :func:`check_safetensors`
    (``[]`` when it holds no weights at all). A folder whose only weights are pickles raises
    :class:`UnsafeWeightsError` naming them: they are never loaded, whatever a library would fall back to."""
    folder = Path(folder)
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsafeWeightsError(
                f"{folder / pickles[0]}: checkpoint folder {folder} holds no .safetensors weights, only pickle "
                f"files ({', '.join(pickles)}), which can run code when loaded and are never loaded here: "
                "convert the weights to safetensors (save_pretrained writes them by default) or point at a "
                "folder that holds them"
            )
    return [check_safetensors(path) for path in weights]


def _format_hint(head: bytes) -> str:
    if head.startswith(b"PK"):
        return " (it is a zip archive, as torch.save writes)"
    if head[:1] == b"\x80":
        return " (it is a pickle)"
    return ""
