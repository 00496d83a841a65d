"""No loader of the library unpickles a weights file.

Each test plants a pickle whose loading would run code (it writes a marker file) where a loader looks for
weights: a Qwen2.5-VL checkpoint folder, a trainer checkpoint being resumed, SCORE's policy and its training
checkpoint, the retriever's open_clip folder. The loader refuses it with an error naming the file, and the
marker is never written. A static check keeps every ``torch.load`` and ``from_pretrained`` of the code safe.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from transformers import Trainer

from marc_ops.compression.score import ScorePolicy, load_policy, save_policy
from marc_ops.config.vmr import EmbedderConfig
from marc_ops.io import UnsafeWeightsError
from marc_ops.model import build_tiny_checkpoint, load_qwen2_5_vl
from marc_ops.train.dataset import CheckpointWeightsMixin
from marc_ops.train.score import _resume
from marc_ops.vmr.embedding import ClipEmbedder

REPO_ROOT = Path(__file__).resolve().parents[2]
Plant = Callable[[Path], Path]


class _RunsCode:
    """Unpickling this calls ``exec``: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran"


@pytest.fixture()
def plant(marker: Path) -> Plant:
    """Write a ``torch.save`` archive whose loading runs code to a path; return the path."""

    def write(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"weight": torch.zeros(2), "hook": _RunsCode(marker)}, path)
        return path

    return write


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


def test_the_planted_file_runs_code_when_unpickled(plant: Plant, marker: Path, tmp_path: Path):
    """The plant is armed: an unsafe load (``weights_only=False``, or pickle itself) does run its code."""
    planted = plant(tmp_path / "pytorch_model.bin")
    torch.load(planted, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.is_file()


def test_torch_load_refuses_it_by_default(plant: Plant, marker: Path, tmp_path: Path):
    """torch's own default (``weights_only=True``), which the trainers' resume relies on, is in force."""
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(plant(tmp_path / "x.pt"))
    assert not marker.exists()


def test_a_model_folder_of_pickle_weights_is_refused(
    tiny_checkpoint: Path, plant: Plant, marker: Path, tmp_path: Path
):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", folder)
    plant(folder / "pytorch_model.bin")
    with pytest.raises(
        UnsafeWeightsError, match=rf"{folder}/pytorch_model\.bin: .*holds no \.safetensors weights"
    ):
        load_qwen2_5_vl(folder)
    assert not marker.exists()


def test_a_pickle_named_safetensors_is_refused(
    tiny_checkpoint: Path, plant: Plant, marker: Path, tmp_path: Path
):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    plant(folder / "model.safetensors")
    with pytest.raises(
        UnsafeWeightsError, match=r"model\.safetensors: not a safetensors file \(it is a zip archive"
    ):
        load_qwen2_5_vl(folder)
    assert not marker.exists()


def test_a_pickle_beside_safetensors_weights_is_never_opened(
    tiny_checkpoint: Path, plant: Plant, marker: Path, tmp_path: Path
):
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "model")
    plant(folder / "pytorch_model.bin")
    model = load_qwen2_5_vl(folder)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert not marker.exists()


def test_a_trainer_checkpoint_of_pickle_weights_is_not_resumed(plant: Plant, marker: Path, tmp_path: Path):
    checkpoint = tmp_path / "checkpoint-2"
    plant(checkpoint / "pytorch_model.bin")
    (checkpoint / "config.json").write_text("{}")
    trainer = SimpleNamespace(model=None)
    with pytest.raises(UnsafeWeightsError, match=r"checkpoint-2/pytorch_model\.bin: "):
        CheckpointWeightsMixin._load_from_checkpoint(trainer, str(checkpoint))  # type: ignore[arg-type]
    assert not marker.exists()


def test_a_trainer_checkpoints_rng_state_is_loaded_weights_only(plant: Plant, marker: Path, tmp_path: Path):
    """transformers' resume reads ``rng_state.pth`` (and ``optimizer.pt``, ``scheduler.pt``) with
    ``weights_only=True``: files our own runs write, but a planted one still runs no code."""
    checkpoint = tmp_path / "checkpoint-2"
    plant(checkpoint / "rng_state.pth")
    trainer = SimpleNamespace(args=SimpleNamespace(world_size=1))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        Trainer._load_rng_state(trainer, str(checkpoint))  # type: ignore[arg-type]
    assert not marker.exists()


def test_a_score_policy_that_is_a_pickle_is_refused(plant: Plant, marker: Path, tmp_path: Path):
    path = save_policy(
        policy := ScorePolicy(16), policy.config, tmp_path / "score_policy" / "policy.safetensors"
    )
    plant(path)
    with pytest.raises(UnsafeWeightsError, match=rf"{path}: not a safetensors file"):
        load_policy(path)
    assert not marker.exists()


def test_a_score_training_checkpoint_that_is_a_pickle_is_not_resumed(
    plant: Plant, marker: Path, tmp_path: Path
):
    checkpoint = tmp_path / "checkpoint"
    plant(checkpoint / "policy.safetensors")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 1}))
    policy = ScorePolicy(16)
    with pytest.raises(UnsafeWeightsError, match=r"checkpoint/policy\.safetensors: not a safetensors file"):
        _resume(tmp_path, policy, torch.optim.SGD(policy.parameters(), lr=0.1))
    assert not marker.exists()


@pytest.mark.parametrize("beside", [False, True], ids=["pickle-only", "pickle-beside-safetensors"])
def test_a_retriever_folder_holding_a_pickle_is_refused(
    plant: Plant, marker: Path, tmp_path: Path, beside: bool
):
    folder = tmp_path / "retriever_checkpoint" / "checkpoint"
    plant(folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_name": "marc-tiny-clip"}))
    if beside:
        (folder / "open_clip_model.safetensors").write_bytes(b"")
    with pytest.raises(UnsafeWeightsError, match=r"checkpoint/open_clip_pytorch_model\.bin: .*pickle"):
        ClipEmbedder(EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(folder)))
    assert not marker.exists()


def test_a_retriever_weights_file_that_is_a_pickle_is_refused(plant: Plant, marker: Path, tmp_path: Path):
    weights = plant(tmp_path / "ViT-B-32.pt")
    with pytest.raises(UnsafeWeightsError, match=r"ViT-B-32\.pt: not a safetensors file"):
        ClipEmbedder(EmbedderConfig(model_name="ViT-B-32", pretrained=str(weights)))
    assert not marker.exists()


def test_a_retriever_weights_file_in_safetensors_under_another_name_is_refused(tmp_path: Path):
    weights = tmp_path / "ViT-B-32.bin"
    save_file({"w": torch.zeros(2)}, str(weights))
    with pytest.raises(ValueError, match=r"ViT-B-32\.bin: a safetensors file must be named \*\.safetensors"):
        ClipEmbedder(EmbedderConfig(model_name="ViT-B-32", pretrained=str(weights)))


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def _keyword(call: ast.Call, name: str) -> object:
    return next((ast.literal_eval(k.value) for k in call.keywords if k.arg == name), None)


def test_the_code_loads_no_pickle():
    """Every ``torch.load`` passes ``weights_only=True``, nothing calls ``pickle.load(s)`` or ``np.load`` with
    ``allow_pickle=True``, and every model ``from_pretrained`` passes ``use_safetensors=True``."""
    offenders = []
    for root in ("marc_ops", "pipelines", "benchmarks"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            for call in _calls(path):
                if not isinstance(call.func, ast.Attribute):
                    continue
                receiver, name = ast.unparse(call.func.value), call.func.attr
                where = f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
                unsafe = (
                    (receiver == "torch" and name == "load" and _keyword(call, "weights_only") is not True)
                    or (receiver == "pickle" and name in ("load", "loads"))
                    or (receiver in ("np", "numpy") and name == "load" and _keyword(call, "allow_pickle"))
                    or (
                        name == "from_pretrained"
                        and not any(kind in receiver for kind in ("Processor", "Tokenizer", "Config"))
                        and _keyword(call, "use_safetensors") is not True
                    )
                )
                if unsafe:
                    offenders.append(f"{where} {receiver}.{name}")
    assert not offenders
