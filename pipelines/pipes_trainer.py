"""The entry point a training asset's ``accelerate launch`` starts: a trainer's ``main``, reporting to Dagster.

``python -m pipelines.pipes_trainer <trainer module> --config <run.yaml>`` (each process of the launch runs
it). The main process (global rank 0) of a run that Dagster Pipes started opens the Pipes context and sends
back, as they happen: its log records and one line per logged step (also a custom message ``{"step": N,
"loss": ...}``); once the final model is saved, the materialization's metadata
(:meth:`~marc_ops.train.progress.TrainingProgress.summary`). Every other process, and a run started any other
way, calls the trainer's ``main`` as ``python -m <trainer module>`` would.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes

from marc_ops.train.progress import TrainingProgress, configure_logging


def is_main_process() -> bool:
    """Whether this process is global rank 0 (``RANK`` as torchrun sets it; a process alone is rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def launched_by_dagster() -> bool:
    """Whether a Dagster Pipes client started this process (its context is in the environment)."""
    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


class PipesProgress(TrainingProgress):
    """:class:`TrainingProgress` that streams the run to the Dagster run that launched it."""

    def __init__(self, pipes: PipesContext) -> None:
        super().__init__()
        self.pipes = pipes

    def note(self, message: str) -> None:
        self.pipes.log.info(message)

    def step(self, number: int, line: str, scalars: dict[str, float]) -> None:
        self.pipes.log.info(line)
        self.pipes.report_custom_message({"step": number, **scalars})

    def saved(self, final: Path) -> None:
        self.pipes.report_asset_materialization(
            metadata={key: _typed(value) for key, value in self.summary(final).items()}
        )


def _typed(value: Any) -> dict[str, Any]:
    """``value`` as Pipes metadata with its Dagster type (a dict is JSON, which Pipes would not infer)."""
    kinds = ((type(None), "null"), (bool, "bool"), (int, "int"), (float, "float"), (str, "text"))
    kind = next((name for cls, name in kinds if isinstance(value, cls)), "json")
    return {"raw_value": value, "type": kind}


class _ToPipes(logging.Handler):
    """Forwards this process's log records (``marc_ops``, the trainer's) to the Dagster run's log."""

    def __init__(self, pipes: PipesContext) -> None:
        super().__init__(level=logging.INFO)
        self.pipes = pipes
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))  # a record's traceback follows it

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("dagster"):  # the Pipes client's own records: sending them could recurse
            return
        try:
            self.pipes.log.log(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)  # a failed send is reported on stderr, never raised into the trainer


@contextmanager
def pipes_progress() -> Iterator[TrainingProgress]:
    """The progress of this process's run: a :class:`PipesProgress` on the main process of a run Dagster
    launched (log records forwarded while it is open, an exception reported when it closes), a silent
    :class:`TrainingProgress` everywhere else."""
    if not (is_main_process() and launched_by_dagster()):
        yield TrainingProgress()
        return
    with open_dagster_pipes() as pipes:
        handler = _ToPipes(pipes)
        logging.getLogger().addHandler(handler)
        try:
            yield PipesProgress(pipes)
        finally:
            logging.getLogger().removeHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    module, *rest = sys.argv[1:] if argv is None else argv
    trainer = importlib.import_module(module)
    configure_logging()  # before the Pipes handler joins the root logger, as the trainer's main would
    with pipes_progress() as progress:
        return trainer.main(rest, progress=progress)


if __name__ == "__main__":
    raise SystemExit(main())
