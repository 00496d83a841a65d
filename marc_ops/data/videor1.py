"""Load Video-R1 annotation files (JSON array or JSONL) into a validated manifest.

Bad rows never stop a run: each is quarantined with the file, the row number and the reason,
and the rest load. Only a file that cannot be read at all raises.
"""

from __future__ import annotations

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

    A JSONL line that does not parse is returned as a ``Rejection`` in place of the record.
    """
    if not json_path.is_file():
        raise DataFileError(json_path, "annotation file not found")
    text = json_path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if not stripped:
        raise DataFileError(json_path, "annotation file is empty")
    if stripped.startswith("["):
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFileError(
                json_path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
            ) from err
        return list(enumerate(payload))
    records: list[tuple[int, Any]] = []
    for line_no, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            records.append((line_no, json.loads(line)))
        except json.JSONDecodeError as err:
            records.append((line_no, Rejection("malformed_json", f"line is not valid JSON ({err.msg})")))
    if not records:
        raise DataFileError(json_path, "no records found (expected a JSON array or JSON lines)")
    return records


def load_videor1(json_path: Path | str, data_root: Path | str, *, check_media: bool = True) -> LoadedManifest:
    """Load one Video-R1 annotation file; relative media paths resolve against ``data_root``.

    Accepts the released files (``Video-R1-260k.json``, ``Video-R1-COT-165k.json``: one JSON
    array), JSONL, and the benchmark files ``eval_<name>.json``. Quarantined (never dropped
    silently): a missing media file, an unknown ``problem_type`` or ``data_type``, a multiple-
    choice question without options, a solution without ``<answer>``, a missing field, a
    duplicate ``problem_id`` (the first occurrence is kept).
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
