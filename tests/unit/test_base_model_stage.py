"""The base_model stage builds the tiny checkpoint once, and names a missing pretrained model."""

from pathlib import Path

import pytest
import yaml

from marc_ops.config import ProjectPaths
from marc_ops.model import ModelNotAvailableError, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.stages import base_model_stage


def test_tiny_base_model_builds_once_and_loads(small_project: Path):
    paths = ProjectPaths(small_project)
    first = base_model_stage(paths, paths.params())
    assert first.metadata["built_now"] is True
    location = paths.base_model()
    assert location == small_project / "assets/base_model/checkpoint"
    model = load_qwen2_5_vl(location)
    processor = load_qwen2_5_vl_processor(location)
    assert model.config.text_config.vocab_size == len(processor.tokenizer)
    again = base_model_stage(paths, paths.params())
    assert again.metadata["built_now"] is False


def test_pretrained_model_missing_offline_names_it(small_project: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(small_project / "hf-empty"))
    params_file = small_project / "params.yaml"
    raw = yaml.safe_load(params_file.read_text())
    raw["model"] = {"source": "pretrained", "model_id": "Qwen/Qwen2.5-VL-3B-Instruct"}
    params_file.write_text(yaml.safe_dump(raw))
    paths = ProjectPaths(small_project)
    with pytest.raises(ModelNotAvailableError, match="Qwen/Qwen2.5-VL-3B-Instruct"):
        base_model_stage(paths, paths.params())
