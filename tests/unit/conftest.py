"""Fixtures of the training tests: the tiny checkpoint and a small corpus, built once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.model import build_tiny_checkpoint

TRAIN_CORPUS = SyntheticConfig(n_train_videos=4, n_eval_videos=0, n_train_images=2, n_eval_images=0)


def cached_dir(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """Built once per test session, shared by every module that asks for it."""
    path, done = factory.getbasetemp() / name, factory.getbasetemp() / f"{name}.done"
    if not done.exists():
        build(path)
        done.touch()
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # Tiny tensors: a second OpenMP thread only adds synchronisation (and stalls when the cores are shared).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_dir(tmp_path_factory, "train_tiny_qwen2_5_vl", build_tiny_checkpoint)


@pytest.fixture(scope="module")
def train_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_dir(tmp_path_factory, "train_corpus", lambda path: generate_corpus(TRAIN_CORPUS, path))
