"""Environment for the assets: where the project is, which params file is active, and the client that
launches trainers through Dagster Pipes."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from marc_ops.config import Params, ProjectPaths

REPO_ROOT = Path(__file__).resolve().parents[2]


class MarcResource(dg.ConfigurableResource):
    """The project root (``params.yaml`` + ``assets/``) and the params file the run reads.

    ``MARC_PROJECT_DIR`` and ``MARC_PARAMS`` override the defaults, so a deployment can point
    the same code at another checkout or profile without editing anything.
    """

    project_dir: str = str(REPO_ROOT)
    params_file: str = "params.yaml"

    def paths(self) -> ProjectPaths:
        return ProjectPaths(self.project_dir, self.params_file)

    def params(self) -> Params:
        return self.paths().params()


def build_resources() -> dict[str, object]:
    return {
        "marc": MarcResource(
            project_dir=os.environ.get("MARC_PROJECT_DIR", str(REPO_ROOT)),
            params_file=os.environ.get("MARC_PARAMS", "params.yaml"),
        ),
        # Starts the trainers the profile launches (train.launch): pipelines/defs/launch.py.
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    }


def active_params() -> Params:
    """The profile the code location loads (``MARC_PROJECT_DIR``, ``MARC_PARAMS``): what the definitions
    follow (deps, partitions, GPU placement, retraining conditions)."""
    return build_resources()["marc"].params()
