"""The Video-R1 sample schema (SPEC section 3) and its validation rules.

A raw record is a JSON object from ``Video-R1-260k.json``, ``Video-R1-COT-165k.json`` or an
``eval_<name>.json`` benchmark file. :func:`validate_record` turns one into a normalised row
or says, in one sentence, why it cannot be used; the loader quarantines the latter.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

PROBLEM_TYPES = ("multiple choice", "numerical", "OCR", "free-form", "regression")
DATA_TYPES = ("image", "video")
REQUIRED_FIELDS = ("problem_id", "problem", "data_type", "problem_type", "solution", "path")
ANSWER_PATTERN = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# A multiple-choice answer is one letter, so a question has at most one option per letter A-Z. The
# bound also keeps one row from turning its prompt into thousands of option lines.
MAX_OPTIONS = 26

# One normalised row per usable sample. `problem_id` is kept as text: the real files mix
# integers and strings across sources, and a join key must have one type.
MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "problem_id": pl.String(),
    "problem": pl.String(),
    "data_type": pl.String(),
    "problem_type": pl.String(),
    "options": pl.List(pl.String()),
    "solution": pl.String(),
    "answer": pl.String(),
    "path": pl.String(),
    "data_source": pl.String(),
    "process": pl.String(),
    "category": pl.String(),
    "media_path": pl.String(),
    "evidence_shots": pl.List(pl.Int64()),
    "evidence_spans": pl.List(pl.List(pl.Int64())),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
}

QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "problem_id": pl.String(),
    "reason_code": pl.String(),
    "reason": pl.String(),
}


@dataclass(frozen=True)
class Rejection:
    """Why a record cannot be used: a stable code plus a sentence for people."""

    code: str
    message: str


def category_of(path: str) -> str:
    """The first component of a Video-R1 relative path: ``./LLaVA-Video-178K/a/b.mp4`` → ``LLaVA-Video-178K``."""
    parts = [p for p in Path(path).parts if p not in (".", "")]
    return parts[0] if len(parts) > 1 else ""


def extract_tagged_answer(text: str) -> str | None:
    match = ANSWER_PATTERN.search(text)
    return match.group(1).strip() if match else None


@functools.lru_cache(maxsize=16)
def _real_root(data_root: Path) -> Path:
    # Resolved once per root, not once per row: a release has 260K rows and one root.
    return data_root.resolve()


def resolve_media(data_root: Path, path: str) -> Path | Rejection:
    """The file a record's relative ``path`` names under ``data_root``, or why it may not be read.

    A path that cannot name a file (a NUL byte, a name too long for the file system) is rejected with code
    ``bad_path``. A path must stay inside the data root: an absolute path, one whose ``..`` climb out of it, or
    one that leaves it through a symlink (inside the root, pointing elsewhere) is rejected with code
    ``path_escapes_root``. The first two are caught on the path's text, before the file system is
    asked anything about them; a symlink is followed (not opened) to see where it lands.
    """
    data_root = Path(data_root)
    unnameable = _unnameable(path)
    if unnameable is not None:
        return Rejection("bad_path", f"media path {path!r} cannot name a file: {unnameable}")
    lexical = os.path.abspath(data_root / path)  # normalised on the text: ".." removed, no symlink followed
    if not _is_under(lexical, os.path.abspath(data_root)):
        return Rejection(
            "path_escapes_root", f"media path {path!r} leaves the data root {os.path.abspath(data_root)}"
        )
    root = _real_root(data_root)
    media_path = Path(lexical).resolve()
    if not media_path.is_relative_to(root):
        return Rejection(
            "path_escapes_root",
            f"media path {path!r} resolves through a symlink to {media_path}, outside the data root {root}",
        )
    return media_path


# The longest file name Linux's file systems take (NAME_MAX, in bytes); read on the text, so that a
# loader with check_media off never asks the file system about it.
NAME_MAX = 255


def _unnameable(path: str) -> str | None:
    """Why ``path`` can name no file (a NUL byte, a component over :data:`NAME_MAX` bytes), else None."""
    if "\x00" in path:
        return "it holds a NUL byte"
    longest = max((len(os.fsencode(part)) for part in Path(path).parts), default=0)
    return (
        f"a name of {longest} bytes, over the {NAME_MAX} a file system takes" if longest > NAME_MAX else None
    )


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _evidence(raw: Any) -> tuple[list[int] | None, list[list[int]] | None] | Rejection:
    """The synthetic corpus's ``evidence`` field (``{"shots": [int], "spans": [[int, int]]}``); absent in
    Video-R1's files, where it reads as (None, None)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("shots"), list):
        return None, None
    spans = raw.get("spans") or []
    shots_ok = all(isinstance(s, int) for s in raw["shots"])
    spans_ok = isinstance(spans, list) and all(
        isinstance(span, list) and len(span) == 2 and all(isinstance(f, int) for f in span) for span in spans
    )
    if not (shots_ok and spans_ok):
        return Rejection(
            "bad_type", "field 'evidence' must be {'shots': [int, ...], 'spans': [[first, last], ...]}"
        )
    return list(raw["shots"]), [list(span) for span in spans]


def validate_record(raw: Any, data_root: Path, *, check_media: bool = True) -> dict[str, Any] | Rejection:
    """Normalise one raw record into a manifest row, or return why it is rejected.

    Fields the schema does not name are ignored (the released files carry source-specific extras).
    """
    if not isinstance(raw, dict):
        return Rejection("not_an_object", f"expected a JSON object, got {type(raw).__name__}")
    missing = [name for name in REQUIRED_FIELDS if raw.get(name) in (None, "")]
    if missing:
        return Rejection("missing_field", f"missing required field(s): {', '.join(missing)}")
    for name in ("problem", "data_type", "problem_type", "solution", "path"):
        if not isinstance(raw[name], str):
            return Rejection("bad_type", f"field {name!r} must be a string, got {type(raw[name]).__name__}")
    if not raw["problem"].strip():
        return Rejection("empty_problem", "the question text ('problem') is empty")
    if raw["data_type"] not in DATA_TYPES:
        return Rejection(
            "unknown_data_type", f"data_type {raw['data_type']!r} is not one of {list(DATA_TYPES)}"
        )
    if raw["problem_type"] not in PROBLEM_TYPES:
        return Rejection(
            "unknown_problem_type",
            f"problem_type {raw['problem_type']!r} is not one of {list(PROBLEM_TYPES)}",
        )
    options = raw.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        return Rejection("bad_type", "field 'options' must be a list of strings")
    if raw["problem_type"] == "multiple choice" and not options:
        return Rejection("mc_without_options", "a multiple-choice question has no options")
    if len(options) > MAX_OPTIONS:
        return Rejection(
            "too_many_options",
            f"{len(options)} options; at most {MAX_OPTIONS} are accepted (one per answer letter A-Z)",
        )
    answer = extract_tagged_answer(raw["solution"])
    if answer is None:
        return Rejection("solution_without_answer", "solution has no <answer>...</answer> tag")
    process = raw.get("process")
    if process is not None and not isinstance(process, str):
        return Rejection("bad_type", "field 'process' must be a string")
    evidence = _evidence(raw.get("evidence"))
    if isinstance(evidence, Rejection):
        return evidence
    evidence_shots, evidence_spans = evidence
    media_path = resolve_media(data_root, raw["path"])
    if isinstance(media_path, Rejection):
        return media_path
    if check_media:
        if not media_path.is_file():
            return Rejection("missing_media", f"media file not found: {media_path}")
        if media_path.stat().st_size == 0:
            return Rejection("empty_media", f"media file is empty (0 bytes): {media_path}")
    return {
        "problem_id": str(raw["problem_id"]),
        "problem": raw["problem"],
        "data_type": raw["data_type"],
        "problem_type": raw["problem_type"],
        "options": options,
        "solution": raw["solution"],
        "answer": answer,
        "path": raw["path"],
        "data_source": str(raw.get("data_source") or ""),
        "process": process,
        "category": category_of(raw["path"]),
        "media_path": str(media_path),
        "evidence_shots": evidence_shots,
        "evidence_spans": evidence_spans,
    }
