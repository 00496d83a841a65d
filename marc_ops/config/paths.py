"""Where the project's files are: the params file, the artifact store ``assets/<asset_name>/``, and
the model weights one stage hands to the next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from marc_ops.config.profile import Params, load_params

# The trainers (SFT, C-GRPO, caption alignment) save their final weights in ``<run dir>/model``.
FINAL_MODEL_DIR = "model"


class ProjectPaths:
    """The project's fixed locations: params file and the artifact store ``assets/<asset_name>/``."""

    def __init__(self, project_dir: Path | str, params_file: Path | str = "params.yaml") -> None:
        self.project_dir = Path(project_dir).resolve()
        self.params_file = (self.project_dir / params_file).resolve()
        self.assets_dir = self.project_dir / "assets"

    def asset(self, name: str) -> Path:
        return self.assets_dir / name

    def params(self) -> Params:
        return load_params(self.params_file)

    def base_model(self) -> Path:
        """Where the base model's files are, as recorded by the ``base_model`` stage."""
        record = self.asset("base_model") / "model.json"
        if not record.is_file():
            raise FileNotFoundError(f"{record} not found: materialize the base_model asset first")
        recorded = json.loads(record.read_text())["path"]  # relative to the project, absolute, or a hub id
        inside = self.project_dir / recorded
        return inside if inside.exists() else Path(recorded)

    def sft_model(self) -> Path:
        """The SFT run's final weights (``assets/sft_checkpoint/model``); they may not exist yet."""
        return self.asset("sft_checkpoint") / FINAL_MODEL_DIR

    def cgrpo_run(self, tau: float) -> Path:
        """The C-GRPO run of one τ partition: ``assets/cgrpo_checkpoint/tau_<tau:g>``."""
        return self.asset("cgrpo_checkpoint") / f"tau_{tau:g}"

    def cgrpo_model(self, tau: float) -> Path:
        """The final weights of one τ partition's C-GRPO run; they may not exist yet."""
        return self.cgrpo_run(tau) / FINAL_MODEL_DIR

    def score_policy(self, stage: Literal["stage1", "stage2"] = "stage2") -> Path:
        """SCORE's saved policy: stage 1's (``score_policy_stage1``) or the final one (``score_policy``)."""
        return (
            self.asset("score_policy_stage1" if stage == "stage1" else "score_policy") / "policy.safetensors"
        )

    def initial_policy(self, init: Literal["base", "sft"]) -> Path:
        """The weights the teacher, C-GRPO and the ``base`` methods start from (``train.init``).

        ``base``: the ``base_model`` asset; ``sft``: the ``sft_checkpoint`` asset's final model.
        """
        if init == "base":
            return self.base_model()
        path = self.sft_model()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"train.init is 'sft' but {path} holds no config.json: materialize the sft_checkpoint asset first"
            )
        return path
