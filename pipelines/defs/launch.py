"""The training assets' launcher: a stage's ``accelerate launch`` run through Dagster Pipes.

A training stage that the profile launches (``train.launch``, :mod:`marc_ops.train.launch`) hands its command
to this launcher instead of starting it itself. ``PipesSubprocessClient`` starts it from the project folder
with the Pipes context in its environment; the trainer's main process streams its log records and one line
per logged step into this run's log and reports the materialization's metadata when it has saved the final
model (:mod:`pipelines.pipes_trainer`, the module ``accelerate launch`` starts around the trainer's). A failed
launch fails the asset with the trainer's exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dagster as dg


class PipesLauncher:
    """A ``marc_ops`` launcher (command, folder) that runs the command with ``client`` in ``context``'s run and
    keeps what it reported."""

    wrapper = (
        "pipelines.pipes_trainer"  # what `accelerate launch -m` starts: the trainer, reporting to Dagster
    )

    def __init__(self, context: dg.AssetExecutionContext, client: dg.PipesSubprocessClient) -> None:
        self.context = context
        self.client = client
        self.invocation: dg.PipesClientCompletedInvocation | None = None

    def __call__(self, command: Sequence[str], cwd: Path) -> None:
        self.context.log.info(f"launching in {cwd}: {' '.join(command)}")
        self.invocation = self.client.run(command=list(command), context=self.context, cwd=str(cwd))

    def materialize_result(self) -> dg.MaterializeResult | None:
        """What the launched trainer reported (None when the stage trained in its own process)."""
        return None if self.invocation is None else self.invocation.get_materialize_result()
