"""How a training stage runs its trainer (``train.launch``): in the stage's own process, or as
``accelerate launch`` of the trainer's entry point on the ``run.yaml`` the stage wrote.

There is one path for both drivers: the stage decides from the profile and builds the command
(:func:`accelerate_command`); a *launcher* only runs it. ``marc stage`` (so ``dvc repro``) runs it as a
plain child process whose output passes through (:func:`run_command`); the Dagster assets run it through
Dagster Pipes (``pipelines/defs/launch.py``), so the trainer's logs, step metrics and final checkpoint come
back into the materialization (``pipelines/pipes_trainer.py``). Either way the stage then reads the same
files (``trainer_state.json``, ``model/``) for its result.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from marc_ops.config import FINAL_MODEL_DIR, ConfigError
from marc_ops.config.train import LaunchConfig
from marc_ops.errors import MarcError
from marc_ops.io import project_relative
from marc_ops.train.dataset import RunFile
from marc_ops.train.progress import TrainingProgress, configure_logging

R = TypeVar("R", bound=RunFile)

logger = logging.getLogger(__name__)

# Runs a command (argv) in a folder, returns when it has exited, raises if it failed. A launcher may name a
# `wrapper`: a module that `accelerate launch -m` starts instead of the trainer's, with the trainer's module
# as its first argument (it calls the trainer's `main(argv, progress)` with a progress of its own).
Launcher = Callable[[Sequence[str], Path], None]


class TrainingLaunchError(MarcError, RuntimeError):
    """A launched training run failed, or ended without its final model."""


def read_run_file(argv: Sequence[str] | None, *, prog: str, run_type: type[R], description: str) -> R:
    """The ``--config RUN_FILE`` of an entry point ``prog`` that ``accelerate launch -m`` starts: a ``run_type``
    YAML file (the ``run.yaml`` a stage writes), validated, with the run's logging configured. A missing file
    is one usage line."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config",
        required=True,
        type=Path,
        help=f"a {run_type.__name__} YAML file (the run.yaml of a stage)",
    )
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    configure_logging()
    return run_type.model_validate(yaml.safe_load(args.config.read_text()))


def trainer_main(
    argv: Sequence[str] | None,
    progress: TrainingProgress | None,
    *,
    prog: str,
    run_type: type[RunFile],
    run_in_process: Callable[..., Path],
    description: str,
) -> int:
    """A trainer's entry point ``prog`` (``python -m <module>``, the module ``accelerate launch -m`` starts):
    ``--config RUN_FILE`` (:func:`read_run_file`), trained by ``run_in_process(run, callbacks)``. ``progress``
    watches the run (a driver's subclass of :class:`TrainingProgress` that reports it as it happens; by
    default nothing is reported)."""
    run = read_run_file(argv, prog=prog, run_type=run_type, description=description)
    progress = TrainingProgress() if progress is None else progress
    final = run_in_process(run, callbacks=[progress])
    logger.info("final model: %s", final)
    progress.saved(final)
    return 0


def accelerate_command(
    module: str, run_file: Path | str, launch: LaunchConfig, *, wrapper: str | None = None
) -> list[str]:
    """``accelerate launch --config_file <file> --num_processes N -m <module> --config <run_file>``, with this
    interpreter (``-m <wrapper> <module>`` given a ``wrapper``); run it from the project folder (the
    accelerate file, the DeepSpeed file it names and the run file are relative to it)."""
    if launch.accelerate_config is None:
        raise ValueError("an in-process launch has no command")
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(launch.accelerate_config),
        "--num_processes",
        str(launch.processes),
        "-m",
        *([module] if wrapper is None else [wrapper, module]),
        "--config",
        str(run_file),
    ]


def run_command(command: Sequence[str], cwd: Path) -> None:
    """The launcher of ``marc stage``: the command as a child process, its output passed through."""
    completed = subprocess.run(list(command), cwd=cwd, check=False)
    if completed.returncode != 0:
        raise TrainingLaunchError(
            f"`{shlex.join(command)}` (in {cwd}) exited with status {completed.returncode}; its output is above"
        )


def train(
    run: RunFile,
    run_file: Path,
    run_in_process: Callable[..., Path],
    launch: LaunchConfig,
    launcher: Launcher = run_command,
) -> tuple[Path, dict[str, Any]]:
    """Train ``run`` (written to ``run_file``) as ``launch`` says; the final model's folder and, when it
    trained in this process, what :class:`TrainingProgress` recorded (a launched trainer reports that to
    its launcher itself).

    ``run_in_process`` is the trainer's ``run_<trainer>(run, callbacks)``; its module is the entry point
    that ``accelerate launch -m`` starts.
    """
    if launch.in_process:
        progress = TrainingProgress()
        final = run_in_process(run, callbacks=[progress])
        return final, progress.summary(final)
    project_dir = run.project_dir.resolve()
    assert launch.accelerate_config is not None
    if not (project_dir / launch.accelerate_config).is_file():
        raise ConfigError(
            f"train.launch: accelerate_config {launch.accelerate_config} is not a file in {project_dir}; name "
            "one of configs/accelerate/ (cpu_2proc.yaml on a CPU, zero2.yaml or zero3.yaml on GPUs)"
        )
    module = run_in_process.__module__
    command = accelerate_command(
        module, project_relative(run_file, project_dir), launch, wrapper=getattr(launcher, "wrapper", None)
    )
    launcher(command, project_dir)
    final = run.resolved().output_dir / FINAL_MODEL_DIR
    if not (final / "config.json").is_file():
        raise TrainingLaunchError(f"the launched run of {module} ended without its final model at {final}")
    return final, {}
