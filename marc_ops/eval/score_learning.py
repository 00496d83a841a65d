"""SCORE's learning check on the tiny profile: does the trained policy keep what the frozen LLM needs?

One experiment, end to end on a synthetic corpus generated here, with sizes fixed in
:class:`ScoreLearningConfig` (the defaults are the check's, decided before it was run):

1. build the tiny Qwen2.5-VL and caption-train it (:func:`frozen_model`): the frozen LLM whose caption
   cross-entropy is the reward, and which has learnt to read the frames;
2. SCORE's two stages on the training split (pseudo-videos, then the training videos), with
   :mod:`marc_ops.train.score`;
3. on held-out videos (the eval split, captioned by their shots' scripted captions in order), the
   caption CE with the ``⌊ρ·T·N⌋`` tokens the trained policy ranks highest, with a uniform-random
   selection of the same count (seeded per video), and with the untrained policy's top-K.

The claim holds when, per held-out video (paired), the trained policy's CE is below each of the other
two with a 95 % bootstrap interval of the mean difference entirely below zero. It can only hold for a
frozen model that needs its tokens: :func:`check_frozen_model` measures, before any policy trains, whether
its CE with every token is below its CE with the random selection.

Used by ``benchmarks/score_learning.py`` (numbers in ``docs/benchmarks.md``) and the slow test
``tests/slow/test_score_learning.py``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from datasets import Dataset
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression import CompressionConfig
from marc_ops.compression.score import ScorePolicy, ScorePolicyConfig, keep_count, select_topk, surprise_state
from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.config.score import ScoreDataConfig, ScoreTrainConfig
from marc_ops.config.synthetic import SyntheticConfig
from marc_ops.config.train import AlignConfig
from marc_ops.config.video import VideoConfig
from marc_ops.data.score import uniform_even_frame_indices, video_caption_samples, write_pseudo_videos
from marc_ops.data.synthetic import CorpusFiles, generate_corpus
from marc_ops.eval.learning import paired_bootstrap
from marc_ops.model import build_tiny_checkpoint, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.align import align_tiny_model, caption_builder, caption_rows
from marc_ops.train.dataset import run_fingerprint, train_and_save
from marc_ops.train.inputs import SampleBuilder, TrainingSample
from marc_ops.train.score import (
    CaptionClip,
    ce_base_table,
    encode_caption,
    masked_ce,
    train_policy,
    video_tokens,
)
from marc_ops.train.score_clips import pseudo_video_clips, video_clips
from marc_ops.train.sft import build_sft_trainer
from marc_ops.video import open_video
from marc_ops.vmr.retrieval import decode_frames


class ScoreLearningConfig(BaseModel):
    """Everything the check runs with. The corpus has the tiny profile's training split; the model is
    ``TinyQwen2_5_VLConfig()``'s, narrower than the profile's ``model.tiny`` (width 32 against 96)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synthetic: SyntheticConfig = SyntheticConfig(
        n_train_videos=96, n_eval_videos=48, n_train_images=16, n_eval_images=0
    )
    model: TinyQwen2_5_VLConfig = TinyQwen2_5_VLConfig()
    align: AlignConfig = AlignConfig(per_device_train_batch_size=8, max_steps=400)
    align_videos: bool = Field(
        default=False,
        description=(
            "caption-train the frozen model on the training videos as stage 2 and the held-out CE show them "
            "(``data.stage2_max_frames`` frames, ``data.prompt``, the shots' captions in order), besides the "
            "shots and images"
        ),
    )
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
    # sample_id; ce_trained and ce_untrained (the whole check only); ce_random, ce_full, ce_none
    items: pl.DataFrame
    summary: dict[str, float]
    seconds: dict[str, float]


def _timed_frozen_model(
    config: ScoreLearningConfig, out_dir: Path, seconds: dict[str, float], log: Callable[[str], None]
) -> Path:
    """The frozen model (:func:`frozen_model`) with this run's torch threads; its time in
    ``seconds["corpus_model_align"]``."""
    torch.set_num_threads(config.torch_threads)
    started = time.perf_counter()
    aligned = frozen_model(config, out_dir)
    seconds["corpus_model_align"] = round(time.perf_counter() - started, 1)
    log(f"corpus, model and caption alignment: {seconds['corpus_model_align']} s")
    return aligned


def run_score_learning_check(
    config: ScoreLearningConfig, out_dir: Path | str, *, log: Callable[[str], None] = print
) -> ScoreLearningResult:
    """Run the whole check in ``out_dir`` (finished phases are reused on a rerun)."""
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    aligned = _timed_frozen_model(config, out_dir, seconds, log)

    started = time.perf_counter()
    model, processor = _load_frozen(aligned)
    corpus = out_dir / "corpus"
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
    policies = {"trained": policy, "untrained": ScorePolicy(d_model, config.policy)}
    items = heldout_ce(model, processor, corpus, config, policies)
    seconds["heldout"] = round(time.perf_counter() - started, 1)
    summary = summarize_score_learning(items)
    items.write_parquet(out_dir / "heldout.parquet")
    (out_dir / "summary.json").write_text(json.dumps({"summary": summary, "seconds": seconds}, indent=2))
    return ScoreLearningResult(items=items, summary=summary, seconds=seconds)


def check_frozen_model(
    config: ScoreLearningConfig, out_dir: Path | str, *, log: Callable[[str], None] = print
) -> ScoreLearningResult:
    """The check's precondition, on its own: the frozen model's held-out caption CE with every token, with
    the check's uniform-random selections and with no visual token, and the paired interval of
    (every − random). ``items``: sample_id, ce_random, ce_full, ce_none. The same ``out_dir`` serves the
    whole check afterwards (the frozen model is reused)."""
    out_dir = Path(out_dir)
    seconds: dict[str, float] = {}
    aligned = _timed_frozen_model(config, out_dir, seconds, log)
    started = time.perf_counter()
    model, processor = _load_frozen(aligned)
    items = heldout_ce(model, processor, out_dir / "corpus", config, {})
    seconds["heldout"] = round(time.perf_counter() - started, 1)
    summary = {"items": float(items.height)} | {
        f"{column}_mean": float(items[column].mean()) for column in ("ce_full", "ce_random", "ce_none")
    }
    summary |= _full_minus_random(items)
    return ScoreLearningResult(items=items, summary=summary, seconds=seconds)


def frozen_model(config: ScoreLearningConfig, out_dir: Path) -> Path:
    """Generate the corpus and build the tiny model in ``out_dir`` (kept if there), and caption-train it:
    on the training shots and images, and with ``config.align_videos`` on the training videos as the check
    shows them too. Returns the frozen model's directory."""
    corpus = out_dir / "corpus"
    if not (corpus / "Video-R1-260k.json").is_file():
        generate_corpus(config.synthetic, corpus)
    # One folder per model configuration: a work folder reused with another --frozen-model builds its own.
    base = out_dir / f"base-{hashlib.sha256(config.model.model_dump_json().encode()).hexdigest()[:12]}"
    if not (base / "config.json").is_file():
        build_tiny_checkpoint(base, config.model)
    if not config.align_videos:
        return align_tiny_model(base, corpus, out_dir / "aligned", config.align, config.video)
    rows = [{**row, "fps": None} for row in caption_rows(corpus, config.video)]
    rows += video_caption_rows(config, corpus)
    sft = config.align.as_sft()
    trainer = build_sft_trainer(
        sft, Dataset.from_list(rows), base, out_dir / "aligned", sample_builder=frozen_caption_builder(config.video)
    )  # fmt: skip
    fingerprint = run_fingerprint(
        sft,
        base,
        [f"{r['media_path']}:{r['frame_indices']}:{r['fps']}:{r['target']}" for r in rows],
    )
    return train_and_save(trainer, out_dir / "aligned", [], label="alignment", fingerprint=fingerprint)


def video_caption_rows(config: ScoreLearningConfig, corpus: Path) -> list[dict]:
    """Stage 2's training videos as caption rows (:func:`~marc_ops.train.align.caption_rows`' layout plus
    ``fps``): ``data.stage2_max_frames`` frames spread uniformly, at their own rate, ``data.prompt``, and
    the shots' captions in order: the format of :func:`heldout_clips`, on training videos."""
    rows = []
    for sample in video_caption_samples(config.data, corpus):
        reader = open_video(sample.video, config.video.backend)
        indices = sample.frame_indices(reader.num_frames)
        rows.append(
            {
                "problem_id": f"video-caption-{sample.sample_id}",
                "data_type": "video",
                "media_path": str(sample.video),
                "frame_indices": indices.tolist(),
                "prompt": [
                    {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": sample.prompt}]}
                ],
                "target": sample.caption,
                "fps": len(indices) / (reader.num_frames / reader.fps),
            }
        )
    return rows


def frozen_caption_builder(video: VideoConfig) -> SampleBuilder:
    """Pixels of a caption row: a shot or an image as caption pretraining takes them (``fps`` None), or a
    whole video's ``frame_indices`` at its ``fps``."""
    shots_and_images = caption_builder(video)

    def build(row: Mapping) -> TrainingSample:
        if row["fps"] is None:
            return shots_and_images(row)
        reader = open_video(row["media_path"], video.backend)
        frames = decode_frames(reader, np.asarray(row["frame_indices"], dtype=np.int64), video)
        return TrainingSample(
            row=row, frames=frames, clip_ids=np.zeros(len(frames), dtype=np.int64), fps=row["fps"]
        )

    return build


def _load_frozen(aligned: Path):
    model = load_qwen2_5_vl(aligned, compression=CompressionConfig(), dtype="float32", device="cpu").eval()
    model.requires_grad_(False)
    return model, load_qwen2_5_vl_processor(aligned)


def heldout_ce(
    model, processor, corpus: Path, config: ScoreLearningConfig, policies: Mapping[str, ScorePolicy]
) -> pl.DataFrame:
    """Per held-out video (``sample_id``): the caption CE with each policy's top-K (``ce_<name>``), with a
    uniform-random selection of the same count seeded by the video's index (``ce_random``), with every
    token (``ce_full``) and with none (``ce_none``)."""
    columns = [f"ce_{name}" for name in policies] + ["ce_random", "ce_full", "ce_none"]
    rows = []
    for index, clip in enumerate(heldout_clips(corpus, config)):
        encoded = encode_caption(processor, clip, max_target_tokens=config.train.max_target_tokens)
        tokens = video_tokens(model, encoded)
        n_tokens = tokens.shape[0] * tokens.shape[1]
        state = surprise_state(tokens, state=config.policy.state)
        random_kept = torch.from_numpy(
            np.sort(np.random.default_rng(index).choice(n_tokens, keep_count(config.retention, n_tokens), replace=False))
        )  # fmt: skip
        masks = torch.stack(
            [
                _mask(select_topk(policy.logits(state), config.retention), tokens)
                for policy in policies.values()
            ]
            + [
                _mask(random_kept, tokens),
                torch.ones(tokens.shape[:2], dtype=torch.bool),
                torch.zeros(tokens.shape[:2], dtype=torch.bool),
            ]
        )
        ce = masked_ce(model, processor, encoded, tokens, masks).tolist()
        rows.append(dict(zip(columns, ce, strict=True)) | {"sample_id": clip.sample_id})
    return pl.DataFrame(rows).select("sample_id", *columns)


def _mask(kept: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(tokens.shape[0] * tokens.shape[1], dtype=torch.bool)
    mask[kept] = True
    return mask.reshape(tokens.shape[:2])


def summarize_score_learning(items: pl.DataFrame) -> dict[str, float]:
    """Mean CEs and the paired differences (trained − random, trained − untrained) with their 95 % intervals."""
    trained = items["ce_trained"].to_numpy()
    summary = {"items": float(items.height)}
    for column in ("ce_trained", "ce_random", "ce_untrained", "ce_full", "ce_none"):
        summary[f"{column}_mean"] = float(items[column].mean())
    for other in ("random", "untrained"):
        # paired_bootstrap(a, b) is the mean of b - a: trained minus the other, negative when trained is lower
        mean, low, high = paired_bootstrap(items[f"ce_{other}"].to_numpy(), trained)
        summary |= {f"diff_{other}_mean": mean, f"diff_{other}_ci_low": low, f"diff_{other}_ci_high": high}
    return summary | _full_minus_random(items)


def _full_minus_random(items: pl.DataFrame) -> dict[str, float]:
    """The precondition: every token minus the random selection, negative when the frozen model needs its tokens."""
    mean, low, high = paired_bootstrap(items["ce_random"].to_numpy(), items["ce_full"].to_numpy())
    return {
        "full_minus_random_mean": mean,
        "full_minus_random_ci_low": low,
        "full_minus_random_ci_high": high,
    }


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
