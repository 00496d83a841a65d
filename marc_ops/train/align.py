"""Vision-language alignment of the tiny base model: it learns to caption the corpus's shots and images.

The paper starts from Qwen2.5-VL-3B, a model pretrained to see. The tiny profile's model is built
from config with random weights; fine-tuned straight on Video-R1 questions it learns the answer
format and each question type's usual answer, and never reads the pixels (measured on 768 CoT rows:
after 400 SFT steps its vision features were one vector whatever the image, and every description it
wrote named the same background). So the ``base_model`` stage of the tiny profile aligns it first, as
a real VLM is pretrained: "Describe the image." / "Describe the video." followed by the scene's
description, for every training shot (its frames at ``video.fps``) and training image of the
synthetic corpus (``captions.json``; held-out media are never used).

Trained with the SFT machinery (TRL's ``SFTTrainer``, :class:`~marc_ops.train.sft.SFTCollator`,
checkpoints, resumption, a fingerprint of the run), without compression. :func:`caption_accuracy`
measures what it learnt on held-out captions; :func:`alignment_check` is the whole measurement.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from marc_ops.compression import CompressionConfig
from marc_ops.config.train import AlignConfig
from marc_ops.data.synthetic import SHAPE_COLOURS, SHAPE_KINDS, CorpusFiles, SyntheticConfig, generate_corpus
from marc_ops.io import file_stamp
from marc_ops.model.builders import TinyQwen2_5_VLConfig, build_tiny_checkpoint
from marc_ops.model.generation import greedy_decode
from marc_ops.model.loading import load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.dataset import run_fingerprint, train_and_save
from marc_ops.train.inputs import (
    SampleBuilder,
    TrainingSample,
    encode_prompt,
    model_inputs,
    whole_video_sample,
)
from marc_ops.train.sft import build_sft_trainer
from marc_ops.video import VideoConfig, open_video
from marc_ops.vmr.embedding import clip_frame_indices
from marc_ops.vmr.retrieval import decode_frames

PROMPTS = {"image": "Describe the image.", "video": "Describe the video."}
_BACKGROUND = re.compile(r"on an? (\w+) background")
_SHAPE_COLOUR = re.compile(rf"\b({'|'.join(SHAPE_COLOURS)}) (?:{'|'.join(SHAPE_KINDS)})")


def shape_colours(caption: str) -> set[str]:
    """The shape colours a caption names (``"a red circle and two blue squares on a ..."`` → red, blue)."""
    return set(_SHAPE_COLOUR.findall(caption.split(" background")[0]))


def caption_rows(corpus_dir: Path | str, video: VideoConfig, *, split: str = "train") -> list[dict[str, Any]]:
    """One row per shot or image of ``split`` in ``captions.json``: ``prompt`` (chat messages), ``target``
    (the caption), ``media_path`` and, for a shot, ``frame_indices`` (its frames at ``video.fps``,
    padded to an even count by repeating the last so a temporal group never spans two shots)."""
    files = CorpusFiles.under(corpus_dir)
    if not files.captions_json.is_file():
        raise FileNotFoundError(
            f"{files.captions_json} not found: the corpus predates captions; rematerialize videor1_source"
        )
    shots = json.loads(files.shots_json.read_text())
    rows = []
    for index, entry in enumerate(json.loads(files.captions_json.read_text())):
        if entry["split"] != split:
            continue
        data_type = "image" if entry["span"] is None else "video"
        frames: list[int] = []
        if data_type == "video":
            first, last = entry["span"]
            frames = clip_frame_indices(first, last, shots[entry["path"]]["fps"], video.fps).tolist()
            frames += frames[-1:] * (len(frames) % 2)
        rows.append(
            {
                "problem_id": f"caption-{index}",
                "data_type": data_type,
                "media_path": str(files.root / entry["path"]),
                "frame_indices": frames,
                "prompt": [
                    {
                        "role": "user",
                        "content": [{"type": data_type}, {"type": "text", "text": PROMPTS[data_type]}],
                    }
                ],
                "target": entry["caption"],
            }
        )
    if not rows:
        raise ValueError(f"{files.captions_json} has no {split!r} captions")
    return rows


def caption_builder(video: VideoConfig) -> SampleBuilder:
    """Pixels of a caption row: the image, or the shot's frames (one clip)."""

    def build(row: Mapping[str, Any]) -> TrainingSample:
        if row["data_type"] == "image":
            return whole_video_sample(row, video)
        reader = open_video(row["media_path"], video.backend)
        frames = decode_frames(reader, np.asarray(row["frame_indices"], dtype=np.int64), video)
        return TrainingSample(
            row=row, frames=frames, clip_ids=np.zeros(len(frames), dtype=np.int64), fps=video.fps
        )

    return build


def align_tiny_model(
    model_path: Path | str,
    corpus_dir: Path | str,
    out_dir: Path | str,
    config: AlignConfig,
    video: VideoConfig,
) -> Path:
    """Caption-train the model in ``model_path`` on the corpus's training captions; returns ``out_dir/model``.

    Resumes a checkpoint in ``out_dir``; a run with other settings, weights or captions starts over.
    """
    return align_on_captions(model_path, caption_rows(corpus_dir, video), out_dir, config, video)


def align_on_captions(
    model_path: Path | str,
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path | str,
    config: AlignConfig,
    video: VideoConfig,
) -> Path:
    """Caption-train the model in ``model_path`` on ``rows`` (:func:`caption_rows`' layout: ``prompt``,
    ``target``, ``media_path``, ``frame_indices``); returns ``out_dir/model``, resuming as
    :func:`align_tiny_model` does."""
    rows = list(rows)
    sft = config.as_sft()
    trainer = build_sft_trainer(
        sft, Dataset.from_list(rows), model_path, Path(out_dir), sample_builder=caption_builder(video)
    )
    fingerprint = caption_run_fingerprint(config, model_path, rows)
    return train_and_save(trainer, Path(out_dir), [], label="alignment", fingerprint=fingerprint)


def caption_run_fingerprint(
    config: AlignConfig, model_path: Path | str, rows: Sequence[Mapping[str, Any]]
) -> str:
    """What a caption run's checkpoints depend on (:func:`run_fingerprint`): each row is its media file's
    name and content hash, its frames and its caption, never the media's folder, so a clone in another folder
    records the same fingerprint (an output DVC hashes) and a changed video starts the run over."""
    identities = [json.dumps([file_stamp(r["media_path"]), r["frame_indices"], r["target"]]) for r in rows]
    return run_fingerprint(config.as_sft(), model_path, identities)


def greedy_texts(
    model_path: Path | str,
    rows: Sequence[Mapping[str, Any]],
    video: VideoConfig,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
) -> list[str]:
    """The model in ``model_path`` answers each row's ``prompt`` (chat messages) about its media
    (:func:`caption_builder`), greedily, uncompressed, in batches."""
    model = load_qwen2_5_vl(model_path, dtype=torch.float32, device="cpu", attn_implementation="sdpa").eval()
    processor = load_qwen2_5_vl_processor(model_path)
    build = caption_builder(video)
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        encoded = [encode_prompt(processor, CompressionConfig(), build(row), row["prompt"]) for row in chunk]
        batch = model_inputs(encoded, processor, padding_side="left")
        texts += greedy_decode(batch, model, processor, max_new_tokens=max_new_tokens)
    return texts


def caption_accuracy(
    model_path: Path | str, rows: Sequence[Mapping[str, Any]], video: VideoConfig, *, batch_size: int = 8
) -> dict[str, float]:
    """Greedy captions of ``rows`` by the model in ``model_path``: the share whose background colour is
    right, whose set of shape colours is right, and whose caption is exact."""
    background = colours = exact = 0
    for row, text in zip(rows, greedy_texts(model_path, rows, video, batch_size=batch_size), strict=True):
        said, truth = _BACKGROUND.search(text), _BACKGROUND.search(row["target"])
        background += bool(said and truth and said.group(1) == truth.group(1))
        colours += shape_colours(text) == shape_colours(row["target"])
        exact += text.strip() == row["target"]
    return {
        "background_accuracy": background / len(rows),
        "shape_colour_accuracy": colours / len(rows),
        "exact_match": exact / len(rows),
        "captions": float(len(rows)),
    }


@dataclass(frozen=True)
class AlignmentCheck:
    """Held-out caption scores of the random model and of the aligned one, and what the alignment cost."""

    before: dict[str, float]
    after: dict[str, float]
    train_captions: int
    align_seconds: float


def alignment_check(
    synthetic: SyntheticConfig,
    tiny: TinyQwen2_5_VLConfig,
    video: VideoConfig,
    config: AlignConfig,
    work_dir: Path,
) -> AlignmentCheck:
    """Generate the corpus and build the tiny model in ``work_dir``, caption-train it, and score the held-out
    captions before and after (``benchmarks/alignment.py`` and its slow test)."""
    generate_corpus(synthetic, work_dir / "corpus")
    build_tiny_checkpoint(work_dir / "base", tiny)
    held_out = caption_rows(work_dir / "corpus", video, split="eval")
    before = caption_accuracy(work_dir / "base", held_out, video)
    started = time.perf_counter()
    aligned = align_tiny_model(work_dir / "base", work_dir / "corpus", work_dir / "aligned", config, video)
    seconds = time.perf_counter() - started
    return AlignmentCheck(
        before=before,
        after=caption_accuracy(aligned, held_out, video),
        train_captions=len(caption_rows(work_dir / "corpus", video)),
        align_seconds=seconds,
    )
