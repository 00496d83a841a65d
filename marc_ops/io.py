"""Files under ``assets/``: atomic writes, JSONL records, the content identity of files and weights, and the
check that weights are safetensors.

A stage writes into a temporary sibling and renames it into place only when it has
finished, so an interrupted materialization never leaves a half-written artifact that a
later run would mistake for a finished one.

Weights load from safetensors only. The pickle-based formats of ``torch.save`` (``pytorch_model.bin``,
``*.pt``, ``*.pth``) can run any code when they are loaded, so a loader of the library checks a weights file
with :func:`check_safetensors` (or a checkpoint folder with :func:`safetensors_weights`) before it opens it.
"""

from __future__ import annotations

import hashlib
import json
import os
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


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, _umask_mode(0o777))  # mkdtemp makes 0700; the artifact should be shared like any dir
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


@contextmanager
def atomic_file(final: Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling of ``final`` for writing; rename it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(tmp, _umask_mode(0o666))  # mkstemp makes 0600
    os.replace(tmp, final)


def write_json(path: Path, payload: Any) -> None:
    with atomic_file(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


def write_parquet(path: Path, frame: pl.DataFrame) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        frame.write_parquet(tmp_name)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    os.chmod(tmp_name, _umask_mode(0o666))
    os.replace(tmp_name, path)


def append_jsonl(sink: Any, records: list[dict[str, Any]]) -> None:
    """Append ``records`` to an open text file as JSON lines in one write, then flush and fsync:
    a crash can only tear the final line, which :func:`parse_jsonl` reports."""
    sink.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    sink.flush()
    os.fsync(sink.fileno())


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
