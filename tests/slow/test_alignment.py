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
from marc_ops.data.synthetic import generate_corpus
from marc_ops.model.align import align_tiny_model, caption_accuracy, caption_rows
from marc_ops.model.builders import build_tiny_checkpoint
from marc_ops.model.loading import load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.config import AlignConfig

pytestmark = pytest.mark.slow


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model is fastest on one thread
    yield
    torch.set_num_threads(threads)


def test_caption_pretraining_teaches_held_out_backgrounds(tmp_path: Path, one_thread) -> None:
    params = load_params(REPO_ROOT / "configs" / "tiny.yaml")
    generate_corpus(params.synthetic, tmp_path / "corpus")
    build_tiny_checkpoint(tmp_path / "base", params.model.tiny)
    held_out = caption_rows(tmp_path / "corpus", params.video, split="eval")

    def background_accuracy(path: Path) -> float:
        model = load_qwen2_5_vl(path, dtype=torch.float32, device="cpu", attn_implementation="sdpa")
        return caption_accuracy(model, load_qwen2_5_vl_processor(path), held_out, params.video)["background_accuracy"]

    before = background_accuracy(tmp_path / "base")
    config = AlignConfig(max_steps=400, per_device_train_batch_size=8, save_steps=400, save_total_limit=1)
    aligned = align_tiny_model(tmp_path / "base", tmp_path / "corpus", tmp_path / "aligned", config, params.video)
    after = background_accuracy(aligned)

    assert len(held_out) >= 100
    assert before <= 0.2
    assert after >= 0.75, (before, after)
