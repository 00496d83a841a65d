"""What a training run reports while it trains: the processes it ran in, each logged step, its final metrics
and the checkpoint it wrote.

:class:`TrainingProgress` is a Trainer callback that records them; :meth:`~TrainingProgress.summary` is what
a training stage returns as metadata. Its hooks :meth:`~TrainingProgress.note`,
:meth:`~TrainingProgress.step` and :meth:`~TrainingProgress.saved` do nothing here: a driver that wants the
run's progress as it happens subclasses it (the Dagster assets stream it through Dagster Pipes,
``pipelines/pipes_trainer.py``) and hands it to the trainer's ``main(argv, progress)``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from marc_ops.io import content_hash, safetensors_weights


def configure_logging() -> None:
    """The log a trainer's entry point writes to stderr: INFO and up, timed (a no-op once the process has a
    handler, so the first caller's choice stands)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# The last log of a run carries this key and a step's does not: the Trainer's (``train_loss``, ``train_runtime``,
# ...) and the one a run killed after its last checkpoint ends with (``train_loss``, ``total_flos``: nothing
# timed, as no time was measured), while a step logs ``loss``.
FINAL_LOG_KEY = "train_loss"


class TrainingProgress(TrainerCallback):
    """A Trainer callback that records what :meth:`summary` reports and passes each event to its hooks."""

    def __init__(self) -> None:
        self.world_size: int | None = None
        self.logged_steps = 0
        self.final_metrics: dict[str, float] | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.world_size = args.world_size
        self.note(
            f"training from step {state.global_step} to {state.max_steps} in {args.world_size} "
            f"process(es) on {args.device.type}"
        )

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        scalars = {
            key: float(value)
            for key, value in (logs or {}).items()
            if isinstance(value, int | float) and math.isfinite(value)
        }
        shown = ", ".join(f"{key}={value:.4g}" for key, value in scalars.items())
        if FINAL_LOG_KEY in scalars:
            self.final_metrics = scalars
            self.note(f"finished at step {state.global_step}/{state.max_steps}: {shown}")
            return
        self.logged_steps += 1
        self.step(state.global_step, f"step {state.global_step}/{state.max_steps}: {shown}", scalars)

    def summary(self, final: Path) -> dict[str, Any]:
        """What this run reports: ``world_size`` (the processes it trained in; None when nothing was left to
        train), ``logged_steps`` (step logs it wrote), ``final_metrics`` (the Trainer's last log: train_loss,
        runtime, ...) and ``checkpoint_sha256`` (each safetensors file of the final model, by name)."""
        return {
            "world_size": self.world_size,
            "logged_steps": self.logged_steps,
            "final_metrics": self.final_metrics,
            "checkpoint_sha256": {path.name: content_hash(path) for path in safetensors_weights(final)},
        }

    def note(self, message: str) -> None:
        """A line about the run (its start, its end)."""

    def step(self, number: int, line: str, scalars: dict[str, float]) -> None:
        """A logged step: its number, a line that shows it, and its finite scalars (loss, learning rate, ...)."""

    def saved(self, final: Path) -> None:
        """The run saved its final model to ``final`` (the trainer's ``main`` calls it last)."""
