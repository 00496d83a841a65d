"""The learning check of the tiny profile: does C-GRPO on the compressed input beat SFT alone?

One experiment, end to end on a synthetic corpus generated here:

1. build the tiny Qwen2.5-VL from config (random weights);
2. SFT warm-up on the CoT rows at the one-frame budget: it learns the ``<think>``/``<answer>`` format
   and the answer each question type wants (the **SFT-only student**);
3. ``teacher_rewards``: the warm-up model, uncompressed, samples G completions per training video
   (a_full of eq 6);
4. C-GRPO from the warm-up model on the compressed input, with the eq 7 retention reward
   (the **C-GRPO student**), evaluated on held-out questions every ``eval_every`` steps (the curve);
5. held-out scores, item by item, of the SFT-only student and the C-GRPO student at the one-frame
   budget and of the 64-frame teacher (the warm-up model, uncompressed).

Decision: the warm-up and C-GRPO train on disjoint halves of the training videos
(``disjoint_rl_rows``): on the warm-up's own rows, which it has memorized, C-GRPO's reward says
nothing about held-out questions (measured: the training reward climbed while held-out scores did not).

Decision: the frames are the whole video at 1 fps (``whole_video_builder``), not the VMR's clips, so the
check measures the training objective alone and needs neither shot detection nor a retriever.

The difference between the students is judged on the same items (paired): the mean per-item score
difference and a paired bootstrap interval of it (:func:`paired_bootstrap`). A margin "noise cannot
explain" is a lower bound above zero.

Used by ``benchmarks/learning.py`` (numbers in ``docs/benchmarks.md``) and the slow test
``tests/slow/test_learning.py``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression import CompressionConfig
from marc_ops.config import load_params
from marc_ops.config.methods import MethodSpec, one_frame_compression
from marc_ops.config.prompts import prompt_template
from marc_ops.config.tasks import resolve_task
from marc_ops.config.train import CGRPOTrainConfig, SFTTrainConfig, TeacherConfig
from marc_ops.data import load_videor1
from marc_ops.data.benchmarks import load_task_rows
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.eval.qwen_adapter import QwenAdapter
from marc_ops.eval.runner import records_path, run_benchmark
from marc_ops.eval.scoring import prior_answer_records, read_records
from marc_ops.model.builders import TinyQwen2_5_VLConfig, build_tiny_checkpoint
from marc_ops.train.cgrpo import train_cgrpo
from marc_ops.train.inputs import view_builder, whole_video_builder
from marc_ops.train.sft import train_sft
from marc_ops.train.teacher import compute_teacher_rewards, read_a_full
from marc_ops.video import VideoConfig

logger = logging.getLogger(__name__)

STUDENT_SFT = "sft-only@1f"
STUDENT_CGRPO = "cgrpo@1f"
TEACHER = "teacher@64f"


class LearningConfig(BaseModel):
    """Everything the check runs with; the defaults are the tiny profile's (``configs/tiny.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synthetic: SyntheticConfig = SyntheticConfig()
    model: TinyQwen2_5_VLConfig = TinyQwen2_5_VLConfig()
    video: VideoConfig = VideoConfig(max_pixels=100352, min_pixels=3136)
    sft: SFTTrainConfig
    teacher: TeacherConfig
    cgrpo: CGRPOTrainConfig
    eval_every: int = Field(default=10, ge=1, description="C-GRPO steps between held-out evaluations")
    eval_max_new_tokens: int = Field(default=128, ge=1)
    eval_batch_size: int = Field(default=8, ge=1)
    torch_threads: int = Field(default=1, ge=1, description="the tiny model is fastest on one thread")
    disjoint_rl_rows: bool = Field(
        default=True,
        description=(
            "SFT on half the training videos (and images), the teacher and C-GRPO on the other half: "
            "C-GRPO then earns its reward on questions the warm-up has not memorized"
        ),
    )


def split_by_media(rows: pl.DataFrame) -> tuple[list[str], list[str]]:
    """The rows' media files split in two alternating halves (sorted paths: even, odd positions), so
    both questions of a video land on the same side and each side has every category."""
    media = sorted(set(rows["media_path"].to_list()))
    return media[0::2], media[1::2]


@dataclass
class LearningResult:
    """Held-out records per model (one row per item), the C-GRPO curve and the summary numbers."""

    records: pl.DataFrame  # model, problem_id, problem_type, reward, correct, extracted
    curve: pl.DataFrame  # step, heldout_score, train_reward, train_accuracy (at the evaluated steps)
    train_log: pl.DataFrame = field(
        default_factory=pl.DataFrame
    )  # step, train_reward, train_accuracy (every step)
    summary: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# The corpus of the learning check: a few hundred held-out items for the paired comparison. Fixed sizes
# (not multiples of the profile's), so a profile that grows its corpus does not grow this check with it.
# The margin is thin: with 32 training images instead of 48 the paired interval included zero (C-GRPO 33.0
# against SFT-only 31.1, from -3.4); docs/benchmarks.md, "Learning".
LARGER_CORPUS = {"n_train_videos": 192, "n_train_images": 48, "n_eval_videos": 96, "n_eval_images": 32}


def profile_learning_config(
    params_file: Path | str, *, larger_corpus: bool = True, cgrpo_steps: int | None = None
) -> LearningConfig:
    """The check with a profile's model, video and training settings (the C-GRPO run at the profile's τ).

    ``larger_corpus``: at least :data:`LARGER_CORPUS` (192 training videos and 48 images, half for SFT and
    half for C-GRPO; 96 held-out videos and 32 images: 224 paired items), the profile's own sizes where larger;
    else the profile's own corpus.
    ``cgrpo_steps``: C-GRPO's ``max_steps`` (default: the profile's, which `make demo` can afford).
    """
    params = load_params(params_file)
    synthetic = params.synthetic
    if larger_corpus:
        synthetic = SyntheticConfig(
            **{
                **synthetic.model_dump(),
                **{name: max(size, getattr(synthetic, name)) for name, size in LARGER_CORPUS.items()},
            }
        )
    cgrpo = params.train.cgrpo_for(params.train.cgrpo.tau)
    if cgrpo_steps is not None:
        cgrpo = cgrpo.model_copy(update={"max_steps": cgrpo_steps})
    return LearningConfig(
        synthetic=synthetic,
        model=params.model.tiny,
        video=params.video,
        sft=params.train.sft,
        teacher=params.train.teacher,
        cgrpo=cgrpo.model_copy(update={"save_total_limit": None}),  # keep every checkpoint for the curve
        eval_every=max(cgrpo.save_steps, cgrpo.max_steps // 6),  # about six points on the curve
        eval_max_new_tokens=params.eval.max_new_tokens,
    )


def heldout_score(records: pl.DataFrame) -> float:
    """The synthetic benchmark's score in percent: its own aggregate (accuracy and MRA, averaged)."""
    return float(resolve_task("synthetic").aggregate(records)["score"])


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``b - a`` per item and its percentile bootstrap interval (items resampled with replacement)."""
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if diff.ndim != 1 or len(diff) == 0:
        raise ValueError(
            f"paired_bootstrap needs two equal-length 1-D arrays of item scores; got {diff.shape}"
        )
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def run_learning_check(
    config: LearningConfig, out_dir: Path | str, *, log: Callable[[str], None] = logger.info
) -> LearningResult:
    """Run the whole experiment in ``out_dir`` (created; finished phases are reused on a rerun)."""
    torch.set_num_threads(config.torch_threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name: str, started: float) -> None:
        seconds[name] = round(time.perf_counter() - started, 1)
        log(f"{name}: {seconds[name]} s")

    started = time.perf_counter()
    corpus = out_dir / "corpus"
    stamp = corpus / "learning_config.json"
    if not (stamp.is_file() and stamp.read_text() == config.synthetic.model_dump_json()):
        if corpus.exists():
            shutil.rmtree(corpus)
        generate_corpus(config.synthetic, corpus)
        stamp.write_text(config.synthetic.model_dump_json())
    base = out_dir / "base"
    if not (base / "config.json").is_file():
        build_tiny_checkpoint(base, config.model)
    timed("corpus_and_model", started)

    train_rows = load_videor1(corpus / "Video-R1-260k.json", corpus, check_media=False).rows
    cot_rows = load_videor1(corpus / "Video-R1-COT-165k.json", corpus, check_media=False).rows
    if config.disjoint_rl_rows:
        sft_media = set(split_by_media(train_rows)[0])
        cot_rows = cot_rows.filter(pl.col("media_path").is_in(sft_media))
        train_rows = train_rows.filter(~pl.col("media_path").is_in(sft_media))
        log(f"SFT on {cot_rows.height} rows, teacher and C-GRPO on the other {train_rows.height}")
    task = resolve_task("synthetic")
    eval_rows = load_task_rows(task, corpus / "eval").rows
    builder = whole_video_builder(config.video)

    started = time.perf_counter()
    # the SFT rows by their view: the whole video, or (train.sft.grounded_clips) the grounded clip
    warm = train_sft(config.sft, cot_rows, base, out_dir / "sft", sample_builder=view_builder(config.video))
    timed("sft", started)

    started = time.perf_counter()
    teacher = compute_teacher_rewards(
        train_rows,
        warm,
        config.teacher,
        out_dir / "teacher",
        dtype="float32",
        sample_builder=builder,
        progress=False,
    )
    timed("teacher_rewards", started)

    started = time.perf_counter()
    student = train_cgrpo(
        config.cgrpo,
        train_rows,
        read_a_full(teacher.table_path),
        warm,
        out_dir / "cgrpo",
        sample_builder=builder,
    )
    timed("cgrpo", started)

    def evaluate(name: str, weights: Path, compression: CompressionConfig) -> pl.DataFrame:
        spec = MethodSpec(
            name=name,
            max_frames=config.video.max_frames,
            use_vmr=False,
            compression=compression,
            checkpoint="sft",
            description=f"learning check: {name}",
        )
        adapter = QwenAdapter(
            weights,
            spec,
            video=config.video,
            dtype="float32",
            device="cpu",
            attn_implementation="sdpa",
            selection_path=None,
            split="eval:synthetic",
            max_new_tokens=config.eval_max_new_tokens,
        )
        path = records_path(out_dir / "heldout", task.name, name)
        run_benchmark(
            task,
            spec,
            eval_rows,
            adapter,
            path,
            batch_size=config.eval_batch_size,
            answer_rule="strict",  # the training rewards' rule: credit only for a formatted answer
            progress=False,
            video=config.video,
            template=prompt_template("video-r1-eval"),
        )
        return read_records(path).with_columns(pl.lit(name).alias("model"))

    started = time.perf_counter()
    one_frame = one_frame_compression()
    records = [
        evaluate(STUDENT_SFT, warm, one_frame),
        evaluate(STUDENT_CGRPO, student, one_frame),
        evaluate(TEACHER, warm, CompressionConfig()),
    ]
    curve = [{"step": 0, "heldout_score": heldout_score(records[0])}]
    checkpoints = {int(path.name.split("-")[1]): path for path in (out_dir / "cgrpo").glob("checkpoint-*")}
    for step, checkpoint in sorted(checkpoints.items()):
        if step % config.eval_every == 0:
            curve.append(
                {
                    "step": step,
                    "heldout_score": heldout_score(evaluate(f"cgrpo@1f-step{step}", checkpoint, one_frame)),
                }
            )
    timed("heldout_eval", started)

    # The chance level of the whole suite: each item answered with its type's most common training answer.
    prior = prior_answer_records(task, train_rows, eval_rows)
    history = json.loads((out_dir / "cgrpo" / "trainer_state.json").read_text())["log_history"]
    train = pl.DataFrame(
        [
            {
                "step": int(h["step"]),
                "train_reward": h["reward"],
                "train_accuracy": h["rewards/accuracy_reward/mean"],
            }
            for h in history
            if "reward" in h
        ]
    )
    curve_frame = pl.DataFrame(curve).join(train, on="step", how="left").sort("step")
    all_records = pl.concat(records, how="diagonal_relaxed")
    return LearningResult(
        records=all_records,
        curve=curve_frame,
        train_log=train,
        summary={
            **summarize_learning(all_records, mean_a_full=teacher.mean_a_full),
            "prior_answer_score": heldout_score(prior),
        },
        seconds=seconds,
    )


def summarize_learning(records: pl.DataFrame, *, mean_a_full: float | None = None) -> dict[str, float]:
    """Scores of the three models, eta = C-GRPO / teacher, and the paired C-GRPO - SFT difference."""
    by_model = {
        name: records.filter(pl.col("model") == name).sort("problem_id")
        for name in (STUDENT_SFT, STUDENT_CGRPO, TEACHER)
    }
    scores = {name: heldout_score(frame) for name, frame in by_model.items()}
    # Paired per item: each item's reward (accuracy or MRA), in percent.
    sft_items, cgrpo_items = (by_model[n]["reward"].to_numpy() * 100 for n in (STUDENT_SFT, STUDENT_CGRPO))
    mean_diff, low, high = paired_bootstrap(sft_items, cgrpo_items)
    summary = {
        "items": float(by_model[STUDENT_SFT].height),
        "sft_only_score": scores[STUDENT_SFT],
        "cgrpo_score": scores[STUDENT_CGRPO],
        "teacher_score": scores[TEACHER],
        "eta": scores[STUDENT_CGRPO] / scores[TEACHER] if scores[TEACHER] > 0 else float("inf"),
        "item_diff_mean": mean_diff,
        "item_diff_ci_low": low,
        "item_diff_ci_high": high,
    }
    if mean_a_full is not None:
        summary["teacher_mean_a_full"] = mean_a_full
    return summary
