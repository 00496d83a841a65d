"""Train the embedded default's image-text retriever: a tiny open_clip model, on the synthetic corpus.

No image-text weights can be downloaded offline, so the embedded default builds a small open_clip
CLIP (a ViT and a text transformer, :func:`tiny_model_config`) and trains it contrastively on the
synthetic corpus's training videos:

- every shot's frames ↔ its scene description (``shots.json``), and
- every training question (its query text: question + options, as retrieval embeds it) ↔ the
  frames of its evidence shot, since the queries the retriever answers at run time are questions.

The result is a checkpoint folder in open_clip's own format, which
:class:`~marc_ops.vmr.embedding.ClipEmbedder` loads with ``pretrained=<that folder>``::

    open_clip_config.json          {"model_name", "model_cfg", "preprocess_cfg"}
    open_clip_model.safetensors    the state dict
    training.json                  the training config, data counts, loss curve, seconds

Held-out (eval) videos are never trained on. ``steps=0`` writes the seeded initialisation: the
untrained baseline of the same architecture.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from tqdm import tqdm

from marc_ops.config.vmr import RetrieverTrainingConfig
from marc_ops.data.synthetic import CorpusFiles
from marc_ops.io import atomic_dir, write_json
from marc_ops.video import open_video
from marc_ops.vmr.embedding import (
    CHECKPOINT_CONFIG,
    ClipEmbedder,
    VideoClips,
    clip_frame_indices,
    query_text,
    torch_threads,
)
from marc_ops.vmr.retrieval import retrieve_clips

WEIGHTS_FILE = "open_clip_model.safetensors"
TRAINING_FILE = "training.json"


def tiny_model_config(config: RetrieverTrainingConfig) -> dict[str, Any]:
    """The open_clip ``model_cfg`` of the tiny CLIP (the schema of open_clip's ``model_configs/*.json``)."""
    return {
        "embed_dim": config.embed_dim,
        "vision_cfg": {
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "width": config.vision_width,
            "layers": config.vision_layers,
            "head_width": config.head_width,
        },
        "text_cfg": {
            "context_length": config.context_length,
            "vocab_size": 49408,  # open_clip's SimpleTokenizer (shipped with the package)
            "width": config.text_width,
            "heads": config.text_width // config.head_width,
            "layers": config.text_layers,
        },
    }


@dataclass(frozen=True)
class TrainingPairs:
    """What the retriever learns from.

    shots: (video path, (first_frame, last_frame)) per training shot;
    texts: the distinct training texts; pair_shot, pair_text: (P,) int64, pair p says
    "text ``texts[pair_text[p]]`` describes shot ``shots[pair_shot[p]]``".
    """

    shots: list[tuple[Path, tuple[int, int]]]
    texts: list[str]
    pair_shot: np.ndarray
    pair_text: np.ndarray


def train_retriever(corpus_dir: Path | str, out_dir: Path | str, config: RetrieverTrainingConfig) -> Path:
    """Train the tiny retriever on the corpus in ``corpus_dir``; write its checkpoint folder to ``out_dir``.

    The folder replaces ``out_dir`` only once complete. Its files, weights included, are the same
    bytes for the same corpus and config. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    pairs = collect_training_pairs(corpus_dir, with_questions=config.train_on_questions)
    with atomic_dir(out_dir) as tmp, torch_threads(config.num_threads):
        torch.manual_seed(config.seed)
        write_json(
            tmp / CHECKPOINT_CONFIG,
            {
                "model_name": config.model_name,
                "model_cfg": tiny_model_config(config),
                "preprocess_cfg": {"resize_mode": "squash", "interpolation": "bicubic"},
            },
        )
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp}")
        tokens = open_clip.get_tokenizer(f"local-dir:{tmp}")(pairs.texts)
        losses = _optimise(model, preprocess, tokens, pairs, config)
        save_file(
            {name: tensor.contiguous() for name, tensor in model.state_dict().items()}, tmp / WEIGHTS_FILE
        )
        write_json(
            tmp / TRAINING_FILE,
            {
                "config": config.model_dump(),
                "shots": len(pairs.shots),
                "texts": len(pairs.texts),
                "pairs": len(pairs.pair_shot),
                "loss_last": losses[-1] if losses else None,
                "loss_curve": losses[:: max(1, len(losses) // 50)],
            },
        )
    return out_dir


def collect_training_pairs(corpus_dir: Path | str, *, with_questions: bool) -> TrainingPairs:
    """(shot, text) pairs from the training split: descriptions, and questions ↔ their evidence shots."""
    files = CorpusFiles.under(corpus_dir)
    shots_json: dict[str, dict[str, Any]] = json.loads(files.shots_json.read_text())
    rows = [row for row in json.loads(files.train_json.read_text()) if row["data_type"] == "video"]
    shots: list[tuple[Path, tuple[int, int]]] = []
    shot_of: dict[tuple[str, int], int] = {}
    texts: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for video in dict.fromkeys(row["path"] for row in rows):  # training videos, in file order
        truth = shots_json[video]
        for index, (span, description) in enumerate(zip(truth["spans"], truth["descriptions"], strict=True)):
            shot_of[video, index] = len(shots)
            shots.append((files.root / video, (int(span[0]), int(span[1]))))
            pairs.append((shot_of[video, index], texts.setdefault(description, len(texts))))
    if with_questions:
        for row in rows:
            text = query_text(row["problem"], row["options"], sample_id=str(row["problem_id"]))
            for shot in row["evidence"]["shots"]:
                pairs.append((shot_of[row["path"], shot], texts.setdefault(text, len(texts))))
    pair_shot, pair_text = np.asarray(pairs, dtype=np.int64).T
    return TrainingPairs(shots=shots, texts=list(texts), pair_shot=pair_shot, pair_text=pair_text)


def _shot_frames(
    pairs: TrainingPairs, preprocess: Callable[[Image.Image], torch.Tensor], fps: float
) -> tuple[torch.Tensor, np.ndarray]:
    """Every training shot's frames, preprocessed once: (M, 3, S, S) float32 and the shot of each, (M,) int64."""
    by_video: dict[Path, list[int]] = {}
    for shot, (video, _) in enumerate(pairs.shots):
        by_video.setdefault(video, []).append(shot)
    images, owners = [], []
    for video, shots in tqdm(by_video.items(), desc="retriever frames", unit="video"):
        reader = open_video(video)
        per_shot = [clip_frame_indices(*pairs.shots[shot][1], reader.fps, fps) for shot in shots]
        wanted = np.concatenate(per_shot)
        decoded = np.concatenate(list(reader.read(wanted, chunk_size=64)))
        images.extend(preprocess(Image.fromarray(frame)) for frame in decoded)
        owners.extend(np.repeat(shots, [len(indices) for indices in per_shot]))
    return torch.stack(images), np.asarray(owners, dtype=np.int64)


def _optimise(
    model: torch.nn.Module,
    preprocess: Callable[[Image.Image], torch.Tensor],
    tokens: torch.Tensor,
    pairs: TrainingPairs,
    config: RetrieverTrainingConfig,
) -> list[float]:
    """``config.steps`` AdamW steps of the multi-positive CLIP loss; returns the loss per step.

    tokens: (len(pairs.texts), context_length). Each step draws ``batch_size`` pairs (every pair
    once per epoch) and one random frame of each pair's shot.
    """
    if config.steps == 0:
        return []
    frames, frame_shot = _shot_frames(pairs, preprocess, config.frames_per_second)
    rng = np.random.default_rng(config.seed)
    frames_of_shot = [np.flatnonzero(frame_shot == shot) for shot in range(len(pairs.shots))]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    batch_size = min(config.batch_size, len(pairs.pair_shot))
    order = np.zeros(0, dtype=np.int64)
    losses: list[float] = []
    model.train()
    progress = tqdm(range(config.steps), desc="retriever training", unit="step")
    for _ in progress:
        if len(order) < batch_size:  # epochs: every pair once before any pair twice
            order = np.concatenate([order, rng.permutation(len(pairs.pair_shot))])
        batch, order = order[:batch_size], order[batch_size:]
        shots, text_ids = pairs.pair_shot[batch], pairs.pair_text[batch]
        picks = [frames_of_shot[shot][rng.integers(len(frames_of_shot[shot]))] for shot in shots]
        loss = _contrastive_loss(model, frames[picks], tokens[text_ids], shots, text_ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(round(loss.item(), 4))
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def _contrastive_loss(
    model: torch.nn.Module,
    images: torch.Tensor,
    tokens: torch.Tensor,
    shots: np.ndarray,
    text_ids: np.ndarray,
) -> torch.Tensor:
    """Symmetric CLIP loss where every (frame, text) of the same shot, or with the same text, is a positive.

    images: (B, 3, S, S); tokens: (B, L); shots, text_ids: (B,). Plain CLIP loss would call two
    frames of one shot (a description and a question about it) or two shots with the same text
    ("Describe the scene with the pink background.") negatives of each other.
    """
    image_features = F.normalize(model.encode_image(images), dim=-1)
    text_features = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * image_features @ text_features.T  # (B, B)
    shots_t, texts_t = torch.from_numpy(shots), torch.from_numpy(text_ids)
    positive = (shots_t[:, None] == shots_t[None, :]) | (texts_t[:, None] == texts_t[None, :])
    target = positive.float() / positive.sum(dim=1, keepdim=True)  # symmetric mask: rows = columns
    return 0.5 * (
        torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
        + torch.sum(-target * F.log_softmax(logits.T, dim=1), dim=1).mean()
    )


def _lr_factor(step: int, config: RetrieverTrainingConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to zero at ``steps``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass(frozen=True)
class RetrievalRecall:
    """How often the evidence shot of a question is among the top 1 / top k clips of its video.

    Clips are the ground-truth shots (``shots.json``), so the number measures the embedder alone.
    """

    questions: int
    k: int
    recall_at_1: float
    recall_at_k: float


def ground_truth_recall(
    embedder: ClipEmbedder, corpus_dir: Path | str, *, split: Literal["train", "eval"], k: int
) -> RetrievalRecall:
    """Recall@1 and recall@k of the evidence shot over the video questions of one corpus split."""
    files = CorpusFiles.under(corpus_dir)
    shots_json: dict[str, dict[str, Any]] = json.loads(files.shots_json.read_text())
    annotation = files.train_json if split == "train" else files.eval_json
    rows = [row for row in json.loads(annotation.read_text()) if row["data_type"] == "video"]
    clips_of: dict[str, VideoClips] = {}
    hits_1 = hits_k = 0
    for row in rows:
        # Media paths resolve against the annotation file's folder; shots.json keys against the corpus root.
        video = annotation.parent / row["path"]
        key = "./" + video.relative_to(files.root).as_posix()
        if key not in clips_of:
            clips_of[key] = embedder.embed_clips(video, [tuple(span) for span in shots_json[key]["spans"]])
        query = embedder.embed_query(row["problem"], row["options"], sample_id=str(row["problem_id"]))
        evidence = set(row["evidence"]["shots"])
        top_k = retrieve_clips(query, clips_of[key], k=k)
        best = max(top_k, key=lambda clip: clip.score)
        hits_1 += best.clip_index in evidence
        hits_k += bool(evidence & {clip.clip_index for clip in top_k})
    if not rows:
        raise ValueError(f"{annotation} has no video questions to measure retrieval on")
    return RetrievalRecall(
        questions=len(rows), k=k, recall_at_1=hits_1 / len(rows), recall_at_k=hits_k / len(rows)
    )
