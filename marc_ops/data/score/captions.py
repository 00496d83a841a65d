"""The caption files both SCORE stages read: :func:`load_caption_file` loads JSON lines ``{"image"|"video":
path, "caption": text}``, keeping every usable row and quarantining each bad one with its file, row and reason
(never dropping it silently), and :func:`synthetic_captions` reads the synthetic corpus's scripted captions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from marc_ops.data.schema import Rejection, resolve_media
from marc_ops.data.synthetic import CorpusFiles
from marc_ops.data.videor1 import DataFileError

# One usable caption row: the media path as written, resolved, and the caption (outer whitespace removed).
CAPTION_SCHEMA: dict[str, pl.DataType] = {
    "media": pl.String(),
    "media_path": pl.String(),
    "caption": pl.String(),
    "source_file": pl.String(),
    "source_row": pl.Int64(),
}

CAPTION_QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    "media": pl.String(),
    "reason_code": pl.String(),
    "reason": pl.String(),
}

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class LoadedCaptions:
    rows: pl.DataFrame  # CAPTION_SCHEMA
    quarantine: pl.DataFrame  # CAPTION_QUARANTINE_SCHEMA


def load_caption_file(
    path: Path | str, media_root: Path | str, kind: MediaKind = "image", *, check_media: bool = True
) -> LoadedCaptions:
    """Load a JSON-lines caption file, ``{kind: path, "caption": text}`` per line, paths under ``media_root``.

    Rows are 0-based line numbers. Quarantined (the rest load): a line that is not UTF-8 or not JSON, not an
    object, a missing or empty media path or caption field, a field that is not a string, a caption of only
    whitespace, a media path that leaves ``media_root`` (``path_escapes_root``), a missing media file
    (``check_media``), a media path captioned before (the first is kept).
    Raises :class:`DataFileError` naming the file when it cannot be read at all.
    """
    path, media_root = Path(path), Path(media_root)
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    for row_no, raw in _read_json_lines(path):
        result = raw if isinstance(raw, Rejection) else _caption_row(raw, kind, media_root, check_media)
        if not isinstance(result, Rejection):
            if result["media_path"] in first_seen:
                result = Rejection(
                    "duplicate_media",
                    f"{kind} {result['media']!r} is already captioned at row {first_seen[result['media_path']]}",
                )
            else:
                first_seen[result["media_path"]] = row_no
        if isinstance(result, Rejection):
            media = raw.get(kind) if isinstance(raw, dict) else None
            bad.append(
                {
                    "source_file": str(path),
                    "source_row": row_no,
                    "media": media if isinstance(media, str) else None,
                    "reason_code": result.code,
                    "reason": f"{path.name} row {row_no}: {result.message}",
                }
            )
        else:
            good.append({**result, "source_file": str(path), "source_row": row_no})
    return LoadedCaptions(
        rows=pl.DataFrame(good, schema=CAPTION_SCHEMA),
        quarantine=pl.DataFrame(bad, schema=CAPTION_QUARANTINE_SCHEMA),
    )


def _read_json_lines(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value or the ``Rejection`` of a line that is not UTF-8 JSON) per non-blank line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DataFileError(path, "caption file not found") from err
    except OSError as err:
        raise DataFileError(path, f"caption file cannot be read ({err.strerror or err})") from err
    if not data.strip():
        raise DataFileError(path, "caption file is empty")
    if data.lstrip().startswith(b"["):
        raise DataFileError(path, "is one JSON array; expected JSON lines, one {...} object per line")
    records: list[tuple[int, Any]] = []
    # Split on b"\n" only: str.splitlines would also break a caption at a literal U+2028.
    for line_no, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            records.append(
                (line_no, Rejection("not_utf8", f"line is not UTF-8 (byte {err.start}: {err.reason})"))
            )
            continue
        try:
            records.append((line_no, json.loads(text)))
        except json.JSONDecodeError as err:
            records.append((line_no, Rejection("malformed_json", f"line is not valid JSON ({err.msg})")))
    return records


def _caption_row(
    raw: Any, kind: MediaKind, media_root: Path, check_media: bool
) -> dict[str, Any] | Rejection:
    if not isinstance(raw, dict):
        return Rejection("not_an_object", f"expected a JSON object, got {type(raw).__name__}")
    missing = [name for name in (kind, "caption") if raw.get(name) in (None, "")]
    if missing:
        other = "video" if kind == "image" else "image"
        hint = f" (the row has {other!r}: a file of the other stage?)" if other in raw else ""
        return Rejection("missing_field", f"missing required field(s): {', '.join(missing)}{hint}")
    for name in (kind, "caption"):
        if not isinstance(raw[name], str):
            return Rejection("bad_type", f"field {name!r} must be a string, got {type(raw[name]).__name__}")
    if not raw["caption"].strip():
        return Rejection("empty_caption", "the caption is only whitespace")
    media_path = resolve_media(media_root, raw[kind])
    if isinstance(media_path, Rejection):
        return media_path
    if check_media and not media_path.is_file():
        return Rejection("missing_media", f"media file not found: {media_path}")
    return {"media": raw[kind], "media_path": str(media_path), "caption": raw["caption"].strip()}


def synthetic_captions(corpus: CorpusFiles) -> list[dict[str, Any]]:
    """The synthetic corpus's scripted captions, one entry per shot or image of either split."""
    if not corpus.captions_json.is_file():
        raise DataFileError(
            corpus.captions_json,
            "not found: generate the synthetic corpus (videor1_source) into the data root",
        )
    return json.loads(corpus.captions_json.read_text(encoding="utf-8"))
