"""Training rows with quarantine: rows whose media cannot be read (or that lack an input) are skipped, by id.

A bad sample never stops a run: it is left out of the dataset, logged with its reason, and listed
in ``skipped_samples.json`` next to the run's outputs, so the skip is visible in the artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl
from transformers.trainer_utils import get_last_checkpoint

from marc_ops.io import write_json
from marc_ops.model.stages import FINAL_MODEL_DIR
from marc_ops.train.inputs import check_media
from marc_ops.video import MediaError

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"

SKIPPED_FILE = "skipped_samples.json"


@dataclass(frozen=True)
class SkippedSample:
    problem_id: str
    reason: str


def as_rows(rows: pl.DataFrame | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain dict rows from a polars frame (manifest schema) or any iterable of mappings."""
    if isinstance(rows, pl.DataFrame):
        return list(rows.iter_rows(named=True))
    return [dict(row) for row in rows]


def usable_rows(
    rows: pl.DataFrame | Iterable[Mapping[str, Any]],
    *,
    missing_input: Callable[[Mapping[str, Any]], str | None] = lambda row: None,
) -> tuple[list[dict[str, Any]], list[SkippedSample]]:
    """Split ``rows`` into the usable ones and the skipped ones, each skip logged with its reason.

    A row is skipped when ``missing_input(row)`` names something it lacks (e.g. a video without a
    teacher reward) or its media file cannot be opened (:func:`~marc_ops.train.inputs.check_media`).
    """
    kept, skipped = [], []
    for row in as_rows(rows):
        reason = missing_input(row)
        if reason is None:
            try:
                check_media(row)
            except MediaError as err:
                reason = f"media cannot be read: {err}"
        if reason is None:
            kept.append(row)
        else:
            logger.warning("skipping sample %s: %s", row["problem_id"], reason)
            skipped.append(SkippedSample(problem_id=str(row["problem_id"]), reason=reason))
    if skipped:
        logger.warning(
            "skipped %d of %d samples: %s",
            len(skipped),
            len(skipped) + len(kept),
            ", ".join(s.problem_id for s in skipped),
        )
    return kept, skipped


def write_skipped(out_dir: Path, skipped: list[SkippedSample]) -> Path:
    """``out_dir/skipped_samples.json``: the skipped ids and reasons (an empty list when none)."""
    path = Path(out_dir) / SKIPPED_FILE
    write_json(path, [asdict(s) for s in skipped])
    return path


def train_and_save(trainer: Any, out_dir: Path, skipped: list[SkippedSample], *, label: str) -> Path:
    """Run ``trainer`` to the end, resuming from the last ``checkpoint-N`` in ``out_dir`` if there is
    one; save the final model to ``out_dir/model`` and the trainer state; record the skipped samples.

    Shared by C-GRPO and SFT: both are TRL trainers that resume and finish the same way.
    """
    if trainer.accelerator.is_main_process:
        write_skipped(out_dir, skipped)
    last_checkpoint = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
    if last_checkpoint is not None:
        logger.info("resuming %s from %s", label, last_checkpoint)
    trainer.train(resume_from_checkpoint=last_checkpoint)
    final = out_dir / FINAL_MODEL_DIR
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        trainer.state.save_to_json(str(out_dir / STATE_FILE))
    return final
