"""The ``base_model`` stage: the initial policy every training and evaluation stage starts from.

Tiny profile: build the tiny Qwen2.5-VL (tokenizer trained here, processor, random-init model)
into ``assets/base_model/checkpoint``; with ``model.align``, caption-train it on the synthetic corpus
(:mod:`marc_ops.model.align`) into ``assets/base_model/aligned/model``, which is then the base model.
Paper profile: resolve ``Qwen/Qwen2.5-VL-3B-Instruct`` (or a local path) in the HF cache, offline,
and record where it is. Either way downstream stages
read ``assets/base_model/model.json`` and load the model the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import polars as pl

from marc_ops.config import ModelConfig, Params, ProjectPaths
from marc_ops.io import atomic_dir, write_json
from marc_ops.model.builders import build_tiny_checkpoint
from marc_ops.model.loading import resolve_model_source
from marc_ops.stage import StageResult


def _tiny_stamp(model: ModelConfig) -> str:
    return hashlib.sha256(model.tiny.model_dump_json().encode()).hexdigest()[:16]


def base_model_path(paths: ProjectPaths) -> Path:
    """Where the base model's files are, as recorded by the ``base_model`` stage."""
    record = paths.asset("base_model") / "model.json"
    if not record.is_file():
        raise FileNotFoundError(f"{record} not found: materialize the base_model asset first")
    return Path(json.loads(record.read_text())["path"])


# The trainers (SFT, C-GRPO) save their final weights in ``<asset dir>/model``.
FINAL_MODEL_DIR = "model"


def initial_policy_path(paths: ProjectPaths, params: Params) -> Path:
    """The weights the teacher, C-GRPO and the ``base`` methods start from (``train.init``).

    ``base``: the ``base_model`` asset; ``sft``: the ``sft_checkpoint`` asset's final model.
    """
    if params.train.init == "base":
        return base_model_path(paths)
    path = paths.asset("sft_checkpoint") / FINAL_MODEL_DIR
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"train.init is 'sft' but {path} holds no config.json: materialize the sft_checkpoint asset first"
        )
    return path


def base_model(paths: ProjectPaths, params: Params) -> StageResult:
    out_dir = paths.asset("base_model")
    model = params.model
    built = False
    metadata: dict[str, object] = {}
    tables: dict[str, pl.DataFrame] = {}
    if model.source == "tiny":
        checkpoint = out_dir / "checkpoint"
        stamp = checkpoint / "marc_tiny_stamp.txt"
        if not (stamp.is_file() and stamp.read_text() == _tiny_stamp(model)):
            if checkpoint.exists():
                shutil.rmtree(checkpoint)
            with atomic_dir(checkpoint) as tmp:
                build_tiny_checkpoint(tmp, model.tiny)
                (tmp / "marc_tiny_stamp.txt").write_text(_tiny_stamp(model))
            built = True
        location = checkpoint
        if model.align is not None:
            location, metadata, tables = _align(paths, params, checkpoint, out_dir / "aligned")
    else:
        location = Path(resolve_model_source(model.model_id))
    n_bytes = sum(p.stat().st_size for p in location.rglob("*.safetensors"))
    write_json(out_dir / "model.json", {"source": model.source, "model_id": model.model_id, "path": str(location)})
    return StageResult(
        outputs={"model": out_dir / "model.json", "checkpoint": location},
        metadata={
            "source": model.source,
            "model_id": model.model_id if model.source == "pretrained" else "tiny (built from config)",
            "built_now": built,
            "weights_mb": round(n_bytes / 2**20, 2),
            **metadata,
        },
        tables=tables,
    )


def _align(
    paths: ProjectPaths, params: Params, checkpoint: Path, out_dir: Path
) -> tuple[Path, dict[str, object], dict[str, pl.DataFrame]]:
    """Caption-train the tiny model (resuming), then measure it on the held-out captions."""
    from marc_ops.model.align import align_tiny_model, caption_accuracy, caption_rows
    from marc_ops.train.dataset import training_log

    assert params.model.align is not None
    started = time.perf_counter()
    corpus = params.data.root(paths.project_dir)
    final = align_tiny_model(checkpoint, corpus, out_dir, params.model.align, params.video)
    global_step, steps = training_log(out_dir, "loss")
    measured = caption_accuracy(final, caption_rows(corpus, params.video, split="eval"), params.video)
    metadata: dict[str, object] = {
        "align_steps": global_step,
        "align_first_loss": float(steps["loss"][0]) if steps.height else None,
        "align_last_loss": float(steps["loss"][-1]) if steps.height else None,
        "heldout_background_accuracy": round(measured["background_accuracy"], 4),
        "heldout_shape_colour_accuracy": round(measured["shape_colour_accuracy"], 4),
        "heldout_caption_exact_match": round(measured["exact_match"], 4),
        "heldout_captions": int(measured["captions"]),
        "align_seconds": round(time.perf_counter() - started, 1),
    }
    return final, metadata, {"align_steps": steps}
