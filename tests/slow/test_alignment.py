"""Caption pretraining teaches the random tiny model to read the pixels (``model.align``).

The run of ``benchmarks/alignment.py`` (docs/benchmarks.md, "Caption pretraining"): the tiny profile's
corpus and model, 400 steps of batch 8 (~3 minutes on 2 cores). Before, the model names no held-out
background; after, it names most of them, far above the 10 % of guessing among the 10 colours.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests_support import REPO_ROOT

from marc_ops.config import load_params
from marc_ops.config.train import AlignConfig
from marc_ops.train.align import alignment_check

pytestmark = pytest.mark.slow


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model is fastest on one thread
    yield
    torch.set_num_threads(threads)


def test_caption_pretraining_teaches_held_out_backgrounds(tmp_path: Path, one_thread) -> None:
    params = load_params(REPO_ROOT / "configs" / "tiny.yaml")
    config = AlignConfig(max_steps=400, per_device_train_batch_size=8, save_steps=400, save_total_limit=1)

    check = alignment_check(params.synthetic, params.model.tiny, params.video, config, tmp_path)

    before, after = check.before["background_accuracy"], check.after["background_accuracy"]
    assert check.after["captions"] >= 100
    assert before <= 0.2
    assert after >= 0.75, (before, after)
