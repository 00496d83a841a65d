"""Test helpers: a small copy of the tiny profile in a temporary project directory."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

# Nothing in the tests may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# A corpus small enough for seconds, large enough for every category and problem type.
# A small corpus for the integration tests; the long held-out videos (SynthLong) are left out (their shots
# are tested in tests/unit/test_shots.py, the whole lineage on them by `make demo`).
SMALL_SYNTHETIC = {
    "n_train_videos": 6,
    "n_eval_videos": 3,
    "n_train_images": 4,
    "n_eval_images": 2,
    "n_eval_long_videos": 0,
}
SMALL_TRAIN_SIZE = 8


def small_tiny_params() -> dict:
    params = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    params["synthetic"] = {**params.get("synthetic", {}), **SMALL_SYNTHETIC}
    params["data"]["train_size"] = SMALL_TRAIN_SIZE
    # The caption pretraining of the tiny model takes minutes; the tests that need it switch it on.
    params["model"]["align"] = None
    return params


def write_params(project_dir: Path, params: dict) -> Path:
    path = project_dir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
