"""Load Video-R1 annotation files (JSON array or JSONL) into a validated manifest.

Bad rows never stop a run: each is quarantined with the file, the row number and the reason,
and the rest load. Only a file that cannot be read at all raises.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from marc_ops.data.schema import MANIFEST_SCHEMA, QUARANTINE_SCHEMA, Rejection, validate_record
from marc_ops.errors import MarcError


class DataFileError(MarcError):
    """An annotation file that cannot be read at all (missing, not JSON, wrong top-level shape)."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


@dataclass(frozen=True)
class LoadedManifest:
    rows: pl.DataFrame  # MANIFEST_SCHEMA
    quarantine: pl.DataFrame  # QUARANTINE_SCHEMA


def _read_records(json_path: Path) -> list[tuple[int, Any]]:
    """(row number, parsed record) pairs; rows are 0-based array indices or 0-based JSONL lines.

    A JSONL line that is not UTF-8 or does not parse is returned as a ``Rejection`` in place of the
    record. Raises ``DataFileError`` for a file that is missing, empty, a JSON array that is not
    UTF-8 or does not parse, or one JSON value that is not an array (an object, a number, ...).
    """
    if not json_path.is_file():
        raise DataFileError(json_path, "annotation file not found")
    data = json_path.read_bytes().removeprefix(codecs.BOM_UTF8)  # editors on Windows write one
    if not data.strip():
        raise DataFileError(json_path, "annotation file is empty")
    if data.lstrip().startswith(b"["):
        return list(enumerate(_json_array(json_path, data)))
    # Split on b"\n" only: str.splitlines would also break a line at a U+2028 inside a string.
    lines = data.split(b"\n")
    _refuse_a_single_value(json_path, data, one_line=sum(1 for line in lines if line.strip()) == 1)
    records: list[tuple[int, Any]] = []
    offset = 0
    for line_no, line in enumerate(lines):
        line_start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            problem = f"line is not UTF-8 ({_bad_byte(line, err)} at file offset {line_start + err.start})"
            records.append((line_no, Rejection("not_utf8", problem)))
            continue
        try:
            records.append((line_no, json.loads(text)))
        except json.JSONDecodeError as err:
            records.append((line_no, Rejection("malformed_json", f"line is not valid JSON ({err.msg})")))
        except RecursionError:
            records.append((line_no, Rejection("malformed_json", "line is nested too deeply to parse")))
    return records


def _json_array(json_path: Path, data: bytes) -> list[Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataFileError(
            json_path,
            f"not UTF-8 ({_bad_byte(data, err)} at byte offset {err.start}, line {line}); "
            "re-encode the file as UTF-8",
        ) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFileError(
            json_path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    except RecursionError as err:
        raise DataFileError(json_path, "JSON nested too deeply to parse") from err


def _refuse_a_single_value(json_path: Path, data: bytes, *, one_line: bool) -> None:
    """Raise when the whole file is one JSON value other than a record on one line (valid JSON lines)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return  # several values (JSON lines) or broken lines: judged line by line
    if not (one_line and isinstance(value, dict)):
        raise DataFileError(
            json_path,
            f"holds one JSON {_json_type(value)}; expected an array of records or JSON lines (one record per line)",
        )


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names[type(value)]


def _bad_byte(data: bytes, err: UnicodeDecodeError) -> str:
    return f"byte 0x{data[err.start]:02x}: {err.reason}"


def load_videor1(json_path: Path | str, data_root: Path | str, *, check_media: bool = True) -> LoadedManifest:
    """Load one Video-R1 annotation file; relative media paths resolve against ``data_root``.

    Accepts the released files (``Video-R1-260k.json``, ``Video-R1-COT-165k.json``: one JSON
    array), JSONL, and the benchmark files ``eval_<name>.json``. Quarantined (never dropped
    silently), each with its file, row and a reason code: a missing or empty media file, a media
    path that leaves ``data_root`` (``path_escapes_root``: absolute, ``..``, or a symlink out), an
    unknown ``problem_type`` or ``data_type``, a multiple-choice question without options, more
    than 26 options, a solution without ``<answer>``, a missing field or one of the wrong type, a
    JSONL line that is not UTF-8 or not JSON, a duplicate ``problem_id`` (the first occurrence is
    kept; the reason names its row). Raises ``DataFileError`` naming the file when it cannot be
    read at all (see ``_read_records``).
    """
    return load_many([Path(json_path)], Path(data_root), check_media=check_media)


def load_many(json_paths: list[Path], data_root: Path, *, check_media: bool = True) -> LoadedManifest:
    """Load several annotation files into one manifest; ``problem_id`` must be unique across them."""
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    first_seen: dict[str, str] = {}
    for json_path in json_paths:
        for row_no, raw in _read_records(Path(json_path)):
            result = (
                raw
                if isinstance(raw, Rejection)
                else validate_record(raw, data_root, check_media=check_media)
            )
            if not isinstance(result, Rejection):
                where = f"{Path(json_path).name} row {row_no}"
                if result["problem_id"] in first_seen:
                    result = Rejection(
                        "duplicate_problem_id",
                        f"problem_id {result['problem_id']!r} already used at {first_seen[result['problem_id']]}",
                    )
                else:
                    first_seen[result["problem_id"]] = where
            if isinstance(result, Rejection):
                pid = raw.get("problem_id") if isinstance(raw, dict) else None
                bad.append(
                    {
                        "source_file": str(json_path),
                        "source_row": row_no,
                        "problem_id": None if pid is None else str(pid),
                        "reason_code": result.code,
                        "reason": f"{Path(json_path).name} row {row_no}: {result.message}",
                    }
                )
            else:
                good.append({**result, "source_file": str(json_path), "source_row": row_no})
    return LoadedManifest(
        rows=pl.DataFrame(good, schema=MANIFEST_SCHEMA),
        quarantine=pl.DataFrame(bad, schema=QUARANTINE_SCHEMA),
    )
