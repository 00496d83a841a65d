"""A benchmark's rows: Video-R1's ``eval_<name>.json`` read with the training loader's schema and quarantine."""

from __future__ import annotations

import logging
from pathlib import Path

from marc_ops.config.tasks import BenchmarkTask
from marc_ops.data.videor1 import LoadedManifest, load_videor1
from marc_ops.errors import MarcError

logger = logging.getLogger(__name__)


class BenchmarkFileNotFoundError(MarcError, FileNotFoundError):
    """A benchmark's ``eval_<name>.json`` is not where the profile says the eval files are."""


def load_task_rows(
    task: BenchmarkTask, eval_dir: Path | str, data_root: Path | str | None = None
) -> LoadedManifest:
    """The task's rows in file order; media paths resolve against ``data_root`` (default: ``eval_dir``).

    Video-R1's eval files sit beside their media (``Evaluation/``), hence the default. Media are
    not checked here: a missing video must reach the runner and be recorded as a failed sample
    (a wrong answer), not vanish from the denominator. Rows that break the schema are
    quarantined by the loader and returned in ``quarantine``.
    """
    eval_dir = Path(eval_dir)
    path = eval_dir / task.file_name
    if not path.is_file():
        raise BenchmarkFileNotFoundError(
            f"benchmark {task.name!r} ({task.display_name}): expected file {task.file_name!r} in {eval_dir}, "
            f"but {path} does not exist. Put Video-R1's {task.file_name} (from src/r1-v/Evaluation/) and its "
            "media there, or point data.eval_dir at the folder that holds it."
        )
    manifest = load_videor1(path, eval_dir if data_root is None else data_root, check_media=False)
    if manifest.quarantine.height:
        logger.warning(
            "%s: %d row(s) quarantined (see LoadedManifest.quarantine)", path, manifest.quarantine.height
        )
    return manifest
