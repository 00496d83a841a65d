"""SCORE's learning check on the tiny profile: does the trained policy keep what the frozen LLM needs?

One experiment, end to end on a synthetic corpus generated here, with sizes fixed in
:class:`ScoreLearningConfig` (the defaults are the check's, decided before it was run):

1. build the tiny Qwen2.5-VL and caption-train it (``model.align`` of the tiny profile): the frozen LLM
   whose caption cross-entropy is the reward, and which has learnt to read the frames;
2. SCORE's two stages on the training split (pseudo-videos, then the training videos), with
   :mod:`marc_ops.train.score`;
3. on held-out videos (the eval split, captioned by their shots' scripted captions in order), the
   caption CE with the ``⌊ρ·T·N⌋`` tokens the trained policy ranks highest, with a uniform-random
   selection of the same count (seeded per video), and with the untrained policy's top-K.

The claim holds when, per held-out video (paired), the trained policy's CE is below each of the other
two with a 95 % bootstrap interval of the mean difference entirely below zero.

Used by ``benchmarks/score_learning.py`` (numbers in ``docs/benchmarks.md``) and the slow test
``tests/slow/test_score_learning.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression import CompressionConfig
from marc_ops.compression.score import ScorePolicy, ScorePolicyConfig, keep_count, select_topk, surprise_state
from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.config.score import ScoreDataConfig, ScoreTrainConfig
from marc_ops.config.synthetic import SyntheticConfig
from marc_ops.config.train import AlignConfig
from marc_ops.config.video import VideoConfig
from marc_ops.data.score import uniform_even_frame_indices, write_pseudo_videos
from marc_ops.data.synthetic import CorpusFiles, generate_corpus
from marc_ops.eval.learning import paired_bootstrap
from marc_ops.model import build_tiny_checkpoint, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.align import align_tiny_model
from marc_ops.train.score import (
    CaptionClip,
    ce_base_table,
    encode_caption,
    masked_ce,
    train_policy,
    video_tokens,
)
from marc_ops.train.score_clips import pseudo_video_clips, video_clips
from marc_ops.video import open_video
from marc_ops.vmr.retrieval import decode_frames


class ScoreLearningConfig(BaseModel):
    """Everything the check runs with; the defaults are the tiny profile's model and corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synthetic: SyntheticConfig = SyntheticConfig(
        n_train_videos=96, n_eval_videos=48, n_train_images=16, n_eval_images=0
    )
    model: TinyQwen2_5_VLConfig = TinyQwen2_5_VLConfig()
    align: AlignConfig = AlignConfig(per_device_train_batch_size=8, max_steps=400)
    video: VideoConfig = VideoConfig(max_pixels=100352, min_pixels=3136)
    data: ScoreDataConfig = ScoreDataConfig(
        stage1_size=48, stage2_max_videos=96, frame_size=112, stage2_max_frames=16
    )
    policy: ScorePolicyConfig = ScorePolicyConfig(hidden=64)
    train: ScoreTrainConfig = ScoreTrainConfig(
        rollouts=8,
        videos_per_step=4,
        optimizer="adam",
        learning_rate=1e-3,
        max_target_tokens=64,
        stage1_steps=24,
        stage2_steps=48,
        save_steps=24,
        cache_video_tokens=True,
    )
    retention: float = Field(default=0.25, gt=0, lt=1)
    heldout_videos: int = Field(default=48, ge=4, description="held-out videos the CE is compared on")
    torch_threads: int = Field(default=1, ge=1)


@dataclass
class ScoreLearningResult:
    items: pl.DataFrame  # sample_id, ce_trained, ce_random, ce_untrained, ce_full
    summary: dict[str, float]
    seconds: dict[str, float]


def run_score_learning_check(
    config: ScoreLearningConfig, out_dir: Path | str, *, log: Callable[[str], None] = print
) -> ScoreLearningResult:
    """Run the whole check in ``out_dir`` (finished phases are reused on a rerun)."""
    torch.set_num_threads(config.torch_threads)
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    corpus = out_dir / "corpus"
    if not (corpus / "Video-R1-260k.json").is_file():
        generate_corpus(config.synthetic, corpus)
    if not (out_dir / "base" / "config.json").is_file():
        build_tiny_checkpoint(out_dir / "base", config.model)
    aligned = align_tiny_model(out_dir / "base", corpus, out_dir / "aligned", config.align, config.video)
    seconds["corpus_model_align"] = round(time.perf_counter() - started, 1)
    log(f"corpus, model and caption alignment: {seconds['corpus_model_align']} s")

    started = time.perf_counter()
    model = load_qwen2_5_vl(aligned, compression=CompressionConfig(), dtype="float32", device="cpu").eval()
    model.requires_grad_(False)
    processor = load_qwen2_5_vl_processor(aligned)
    write_pseudo_videos(config.data, corpus, out_dir / "pseudo_videos")
    stages = {
        "stage1": (lambda: pseudo_video_clips(out_dir / "pseudo_videos"), config.train.tau_stage1, config.train.stage1_steps),
        "stage2": (lambda: video_clips(config.data, corpus, config.video), config.train.tau_stage2, config.train.stage2_steps),
    }  # fmt: skip
    d_model = model.config.text_config.hidden_size
    policy = ScorePolicy(d_model, config.policy)
    for stage, (clips, tau, steps) in stages.items():
        ce_base = ce_base_table(
            model,
            processor,
            clips,
            out_dir / "ce_base.jsonl",
            stage=stage,
            max_target_tokens=config.train.max_target_tokens,
        )
        train_policy(
            model, processor, list(clips()), ce_base, policy, config.train, tau=tau, steps=steps, out_dir=out_dir / stage, log=log
        )  # fmt: skip
    seconds["score_training"] = round(time.perf_counter() - started, 1)
    log(f"SCORE's two stages: {seconds['score_training']} s")

    started = time.perf_counter()
    untrained = ScorePolicy(d_model, config.policy)
    rows = []
    for index, clip in enumerate(heldout_clips(corpus, config)):
        encoded = encode_caption(processor, clip, max_target_tokens=config.train.max_target_tokens)
        tokens = video_tokens(model, encoded)
        n_tokens = tokens.shape[0] * tokens.shape[1]
        count = keep_count(config.retention, n_tokens)
        random_kept = torch.from_numpy(
            np.sort(np.random.default_rng(index).choice(n_tokens, count, replace=False))
        )
        masks = torch.stack(
            [
                _mask(select_topk(policy.logits(surprise_state(tokens, state=config.policy.state)), config.retention), tokens),
                _mask(random_kept, tokens),
                _mask(select_topk(untrained.logits(surprise_state(tokens, state=config.policy.state)), config.retention), tokens),
                torch.ones(tokens.shape[:2], dtype=torch.bool),
            ]
        )  # fmt: skip
        ce = masked_ce(model, processor, encoded, tokens, masks).tolist()
        rows.append(
            dict(zip(("ce_trained", "ce_random", "ce_untrained", "ce_full"), ce, strict=True))
            | {"sample_id": clip.sample_id}
        )
    items = pl.DataFrame(rows).select("sample_id", "ce_trained", "ce_random", "ce_untrained", "ce_full")
    seconds["heldout"] = round(time.perf_counter() - started, 1)
    summary = summarize_score_learning(items)
    items.write_parquet(out_dir / "heldout.parquet")
    (out_dir / "summary.json").write_text(json.dumps({"summary": summary, "seconds": seconds}, indent=2))
    return ScoreLearningResult(items=items, summary=summary, seconds=seconds)


def _mask(kept: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(tokens.shape[0] * tokens.shape[1], dtype=torch.bool)
    mask[kept] = True
    return mask.reshape(tokens.shape[:2])


def summarize_score_learning(items: pl.DataFrame) -> dict[str, float]:
    """Mean CEs and the paired differences (trained − random, trained − untrained) with their 95 % intervals."""
    trained = items["ce_trained"].to_numpy()
    summary = {"items": float(items.height)}
    for column in ("ce_trained", "ce_random", "ce_untrained", "ce_full"):
        summary[f"{column}_mean"] = float(items[column].mean())
    for other in ("random", "untrained"):
        # paired_bootstrap(a, b) is the mean of b - a: trained minus the other, negative when trained is lower
        mean, low, high = paired_bootstrap(items[f"ce_{other}"].to_numpy(), trained)
        summary |= {f"diff_{other}_mean": mean, f"diff_{other}_ci_low": low, f"diff_{other}_ci_high": high}
    return summary


def heldout_clips(corpus: Path, config: ScoreLearningConfig) -> Iterator[CaptionClip]:
    """The eval split's videos, captioned by their shots' scripted captions in order, frames as stage 2 takes them."""
    files = CorpusFiles.under(corpus)
    shots: dict[str, list[tuple[int, str]]] = {}
    for entry in json.loads(files.captions_json.read_text()):
        if entry["split"] == "eval" and entry["span"] is not None:
            shots.setdefault(entry["path"], []).append((entry["span"][0], entry["caption"]))
    for index, path in enumerate(sorted(shots)[: config.heldout_videos]):
        reader = open_video(corpus / path, config.video.backend)
        indices = uniform_even_frame_indices(reader.num_frames, config.data.stage2_max_frames)
        yield CaptionClip(
            sample_id=f"heldout-{index:04d}",
            frames=decode_frames(reader, indices, config.video),
            fps=len(indices) / (reader.num_frames / reader.fps),
            caption=" ".join(caption for _, caption in sorted(shots[path])),
            prompt=config.data.prompt,
        )
