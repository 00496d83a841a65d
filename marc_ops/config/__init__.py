"""Every typed config of the pipeline, the profile that composes them, and the project's paths.

The bottom of the library: it imports nothing above :mod:`marc_ops.compression` and
:mod:`marc_ops.rewards`, so every layer can take its config from here. Besides the per-stage
configs (``data``/``synthetic``, ``video``, ``vmr``, ``model``, ``train``, ``eval``, ``efficiency``) it declares
everything a profile names: the benchmarks (:mod:`.tasks`), the evaluation methods
(:mod:`.methods`) and the prompt templates (:mod:`.prompts`), so a profile is checked against
them when it is loaded.
"""

from marc_ops.config.paths import FINAL_MODEL_DIR, ProjectPaths
from marc_ops.config.profile import (
    ConfigError,
    DataConfig,
    ModelConfig,
    Params,
    VMRConfig,
    expand_env,
    load_params,
    profile_path,
)

__all__ = [
    "FINAL_MODEL_DIR",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "Params",
    "ProjectPaths",
    "VMRConfig",
    "expand_env",
    "load_params",
    "profile_path",
]
