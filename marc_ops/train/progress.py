"""What a training run reports while it trains: the processes it ran in, each logged step, its final metrics
and the checkpoint it wrote; streamed to the Dagster run that launched it, when one did (Dagster Pipes).

A trainer that a Dagster asset launched (``train.launch``, :mod:`marc_ops.train.launch`) finds the Pipes
context in its environment. Its main process (global rank 0) opens it and sends back, as they happen: its
log records and one line per logged step (also a custom message ``{"step": N, "loss": ...}``); at the end,
the materialization's metadata (:meth:`TrainingProgress.summary`). Every other process, and a trainer started
any other way (``marc stage``, by hand, a stage training in its own process), opens nothing and trains the
same; ``dagster_pipes`` is Dagster's dependency-free client, not the orchestrator.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext, PipesEnvVarParamsLoader, open_dagster_pipes
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from marc_ops.io import content_hash, safetensors_weights

# The Trainer's last log of a run (``train_loss``, ``train_runtime``, ...) carries this key; a step's does not.
FINAL_LOG_KEY = "train_runtime"


def is_main_process() -> bool:
    """Whether this process is global rank 0 (``RANK`` as torchrun sets it; a process alone is rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def launched_by_dagster() -> bool:
    """Whether a Dagster Pipes client started this process (its context is in the environment)."""
    return PipesEnvVarParamsLoader().is_dagster_pipes_process()


class TrainingProgress(TrainerCallback):
    """A Trainer callback that records what :meth:`summary` reports and, given a Pipes context, streams each
    logged step to it."""

    def __init__(self, pipes: PipesContext | None = None) -> None:
        self.pipes = pipes
        self.world_size: int | None = None
        self.logged_steps = 0
        self.final_metrics: dict[str, float] | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.world_size = args.world_size
        self._log(
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
            self._log(f"finished at step {state.global_step}/{state.max_steps}: {shown}")
            return
        self.logged_steps += 1
        if self.pipes is not None:
            self.pipes.log.info(f"step {state.global_step}/{state.max_steps}: {shown}")
            self.pipes.report_custom_message({"step": state.global_step, **scalars})

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

    def report(self, final: Path) -> None:
        """Send :meth:`summary` to Dagster as the materialization's metadata (nothing without a Pipes context)."""
        if self.pipes is None:
            return
        summary = self.summary(final)
        self.pipes.report_asset_materialization(
            metadata={
                "world_size": _typed(summary["world_size"], "int"),
                "logged_steps": _typed(summary["logged_steps"], "int"),
                "final_metrics": _typed(summary["final_metrics"], "json"),
                "checkpoint_sha256": _typed(summary["checkpoint_sha256"], "json"),
            }
        )

    def _log(self, message: str) -> None:
        if self.pipes is not None:
            self.pipes.log.info(message)


def _typed(value: Any, kind: str) -> dict[str, Any]:
    return {"raw_value": value, "type": "null" if value is None else kind}


class _ToPipes(logging.Handler):
    """Forwards this process's log records (``marc_ops``, the entry point's) to the Dagster run's log."""

    def __init__(self, pipes: PipesContext) -> None:
        super().__init__(level=logging.INFO)
        self.pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("dagster"):  # the Pipes client's own records: sending them could recurse
            return
        self.pipes.log.log(record.levelno, f"{record.name}: {record.getMessage()}")


@contextmanager
def training_progress() -> Iterator[TrainingProgress]:
    """A :class:`TrainingProgress` for this process: connected to Dagster on the main process of a run a
    Dagster asset launched (log records forwarded while it is open, an exception reported when it closes);
    silent everywhere else."""
    if not (is_main_process() and launched_by_dagster()):
        yield TrainingProgress()
        return
    with open_dagster_pipes() as pipes:
        handler = _ToPipes(pipes)
        logging.getLogger().addHandler(handler)
        try:
            yield TrainingProgress(pipes)
        finally:
            logging.getLogger().removeHandler(handler)
