"""Benchmarks as declarative tasks: a data spec plus small pure functions to prompt, score and aggregate.

A task is looked up by name (``vsibench``, ``videommmu``, ``mmvu``, ``mvbench``, ``tempcompass``,
``videomme``, ``synthetic``); its file is Video-R1's ``eval_<name>.json`` (the names
``src/eval_bench.py`` reads from ``src/r1-v/Evaluation/``), in the schema of SPEC section 3.

Scoring (SPEC sections 6 and 8, Video-R1 ``eval_bench.py``): a sample's reward is the Video-R1
accuracy of the text inside its first ``<answer>...</answer>``; an output without the tags scores
0 (eval_bench.py would fall back to scoring the whole output; we do not, so a model cannot earn
credit for an answer it did not format). Items whose type is in ``mra_problem_types`` score MRA
instead. A benchmark reports, in percent, the mean reward of its other items ("accuracy"), and
for VSI-Bench the mean of that and of the mean MRA ("score"). Failed samples score 0.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from marc_ops.data import LoadedManifest, load_videor1
from marc_ops.eval.prompts import VIDEO_R1_EVAL, PromptTemplate, build_prompt
from marc_ops.rewards import extract_answer, score_answer, score_mra

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleScore:
    """``reward`` in [0, 1] (accuracy or MRA); ``correct`` iff it is 1.0, as eval_bench.py; ``extracted`` the answer text."""

    reward: float
    correct: bool
    extracted: str | None


@dataclass(frozen=True)
class PaperRow:
    """One row of the MARC paper's results tables, as printed (Table 1, 2 or 3).

    ``key`` is our method name where we run the same method (``baseline-64f``, ``marc@0.6``, ...),
    else a label for a model we only quote. ``reported_mean`` is the paper's printed mean.
    """

    key: str
    label: str
    frames: int
    table: str
    reported_mean: float


# The paper's numbers, laid out as printed so they can be checked against it line by line.
# Column order: VSI-Bench, VideoMMMU, MMVU (mc), MVBench, TempCompass, VideoMME (w/o sub).
# fmt: off
_PAPER_ROWS: tuple[tuple[PaperRow, tuple[float, ...]], ...] = (
    (PaperRow("baseline-64f", "Qwen2.5-VL-3B", 64, "Table 1", 42.21), (32.93, 35.33, 48.64, 44.77, 38.05, 53.55)),
    (PaperRow("baseline-16f", "Qwen2.5-VL-3B", 16, "Table 1", 38.32), (27.63, 30.78, 45.28, 43.89, 37.95, 44.37)),
    (PaperRow("internvl3.5-2b", "InternVL3.5-2B", 64, "Table 1", 15.95), (14.65, 15.56, 22.88, 14.71, 23.63, 4.26)),
    (PaperRow("internvl3.5-4b", "InternVL3.5-4B", 64, "Table 1", 42.00), (28.96, 33.33, 47.51, 44.71, 58.34, 39.15)),
    (PaperRow("gemma-3-4b", "Gemma-3-4B", 64, "Table 1", 38.87), (26.83, 26.78, 41.76, 36.82, 55.04, 46.0)),
    (PaperRow("bytevideollm", "ByteVideoLLM-3B", 64, "Table 1", 25.52), (21.33, 22.33, 28.63, 22.56, 35.55, 22.7)),
    (PaperRow("moviechat", "MovieChat-3B", 1, "Table 1", 32.10), (25.14, 25.78, 39.35, 37.1, 38.79, 26.41)),
    (PaperRow("vidcom2", "VidCom2-3B", 64, "Table 1", 27.84), (25.5, 23.89, 31.08, 29.88, 35.23, 21.48)),
    (PaperRow("marc@0.6", "MARC-3B", 1, "Table 1", 42.20), (27.55, 33.11, 51.99, 45.82, 55.34, 39.44)),
    (PaperRow("vmr-64f", "Qwen2.5-VL-3B(VMR)", 64, "Table 2", 45.56), (34.02, 34.33, 55.52, 57.24, 40.38, 51.85)),
    (PaperRow("sft-vmr-1f", "Qwen2.5-VL-3B(SFT+VMR)", 1, "Table 2", 40.16), (26.71, 31.00, 47.83, 43.91, 53.76, 37.77)),
    (PaperRow("sft-1f", "Qwen2.5-VL-3B(SFT)", 1, "Table 2", 38.50), (25.70, 28.33, 45.76, 39.48, 54.05, 37.72)),
    (PaperRow("marc@0.4", "MARC-3B", 1, "Table 3", 41.34), (28.27, 31.66, 49.12, 45.21, 54.72, 39.07)),
    (PaperRow("marc@0.8", "MARC-3B", 1, "Table 3", 41.40), (28.23, 31.78, 49.34, 45.89, 54.12, 39.03)),
)
# fmt: on
PAPER_ROWS: tuple[PaperRow, ...] = tuple(row for row, _ in _PAPER_ROWS)

# Paper Table 4: mean visual tokens per sample at 64 frames, 16 frames and one frame's worth.
_PAPER_VISUAL_TOKENS: dict[str, tuple[float, ...]] = {
    "64f": (3917.61, 3849.23, 2364.87, 1005.06, 668.84, 3733.96),
    "16f": (1040, 963.70, 937.60, 640.28, 609.79, 959.82),
    "1f": (130, 120.46, 121.51, 124.07, 120, 120.08),
}

# The benchmarks of the paper's tables, in their column order.
PAPER_BENCHMARKS: tuple[str, ...] = ("vsibench", "videommmu", "mmvu", "mvbench", "tempcompass", "videomme")


def _paper_column(name: str) -> tuple[dict[str, float], dict[str, float]]:
    column = PAPER_BENCHMARKS.index(name)
    scores = {row.key: values[column] for row, values in _PAPER_ROWS}
    tokens = {frames: float(values[column]) for frames, values in _PAPER_VISUAL_TOKENS.items()}
    return scores, tokens


class BenchmarkTask(BaseModel):
    """One benchmark: where its file is, how to prompt and score a row, how to aggregate records.

    Attributes:
        name: registry key, also the ``eval_<name>.json`` stem.
        display_name: the column header of the paper's tables.
        file_name: the Video-R1 eval file, e.g. ``eval_vsibench.json``.
        mra_problem_types: problem types scored by MRA and averaged separately (VSI-Bench's
            numerical-answer items); empty for benchmarks that report accuracy only.
        paper_scores: the MARC paper's reported score per :class:`PaperRow` key, in percent.
        paper_visual_tokens: the paper's Table 4 mean visual tokens per sample ("64f", "16f", "1f").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    display_name: str
    file_name: str
    description: str
    mra_problem_types: tuple[str, ...] = ()
    paper_scores: dict[str, float] = {}
    paper_visual_tokens: dict[str, float] = {}

    def prompt(self, row: Mapping[str, Any], template: PromptTemplate = VIDEO_R1_EVAL) -> str:
        return build_prompt(row, template)

    def score(self, row: Mapping[str, Any], output: str | None) -> SampleScore:
        """Score one model output against the row's tagged ``solution``."""
        if row["problem_type"] in self.mra_problem_types:
            reward = score_mra(output, row["solution"])
        else:
            reward = score_answer(output, row["solution"], row["problem_type"])
        return SampleScore(reward=reward, correct=reward == 1.0, extracted=extract_answer(output))

    def aggregate(self, records: pl.DataFrame) -> dict[str, Any]:
        """Benchmark figures from per-sample records (``marc_ops.eval.scoring.RECORD_SCHEMA``), percent.

        Keys: ``score`` (the headline number of the paper's tables), ``accuracy`` (mean reward of
        items not scored by MRA), ``mra`` (mean MRA, ``None`` for tasks without MRA items), ``n``,
        ``n_failed``, ``n_accuracy_items``, ``n_mra_items``, ``visual_tokens_mean`` and
        ``latency_s_mean`` (over samples that ran). ``score`` is the accuracy, or for a task with
        MRA types the mean of accuracy and MRA over the parts that have items (both, on a full run).
        """
        duplicated = records.filter(pl.col("problem_id").is_duplicated())["problem_id"].unique().to_list()
        if duplicated:
            raise ValueError(f"{self.name}: records hold problem_id(s) more than once: {duplicated[:5]}")
        ok = pl.col("status") == "ok"
        is_mra = pl.col("problem_type").is_in(list(self.mra_problem_types))
        # A failed sample is a wrong answer: it stays in the denominator with reward 0.
        reward = pl.when(ok).then(pl.col("reward")).otherwise(0.0)
        row = records.select(
            n=pl.len(),
            n_failed=(~ok).sum(),
            n_accuracy_items=(~is_mra).sum(),
            n_mra_items=is_mra.sum(),
            accuracy=reward.filter(~is_mra).mean() * 100,
            mra=reward.filter(is_mra).mean() * 100,
            visual_tokens_mean=pl.col("visual_tokens").filter(ok).mean(),
            latency_s_mean=pl.col("latency_s").filter(ok).mean(),
        ).row(0, named=True)
        if not self.mra_problem_types:
            row["mra"] = None
        parts = [row["accuracy"], row["mra"]] if self.mra_problem_types else [row["accuracy"]]
        present = [p for p in parts if p is not None]
        row["score"] = sum(present) / len(present) if present else None
        return row


def _paper_task(name: str, display_name: str, description: str, **fields: Any) -> BenchmarkTask:
    scores, tokens = _paper_column(name)
    return BenchmarkTask(
        name=name,
        display_name=display_name,
        file_name=f"eval_{name}.json",
        description=description,
        paper_scores=scores,
        paper_visual_tokens=tokens,
        **fields,
    )


# Lookup by name is the feature: Dagster partitions and the CLI name benchmarks.
TASKS: dict[str, BenchmarkTask] = {
    task.name: task
    for task in (
        _paper_task(
            "vsibench",
            "VSI-Bench",
            "visual-spatial intelligence; multiple choice + numerical answers scored by MRA",
            # VSI-Bench scores every numerical-answer item by MRA (its official protocol).
            mra_problem_types=("regression", "numerical"),
        ),
        _paper_task(
            "videommmu", "VideoMMMU", "knowledge acquisition from professional videos; multiple choice"
        ),
        _paper_task(
            "mmvu", "MMVU (mc)", "expert-level multi-discipline video understanding, multiple-choice split"
        ),
        _paper_task("mvbench", "MVBench", "20 temporal video understanding tasks; multiple choice"),
        _paper_task("tempcompass", "TempCompass", "temporal perception; multiple choice"),
        _paper_task("videomme", "VideoMME (w/o sub)", "short to long videos, no subtitles; multiple choice"),
        BenchmarkTask(
            name="synthetic",
            display_name="Synthetic",
            file_name="eval_synthetic.json",
            description="the embedded default's held-out synthetic set (all five problem types)",
            mra_problem_types=("regression",),
        ),
    )
}


def resolve_task(name: str) -> BenchmarkTask:
    if name not in TASKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


class BenchmarkFileNotFoundError(FileNotFoundError):
    """A benchmark's ``eval_<name>.json`` is not where the profile says the eval files are."""


def load_task_rows(
    task: BenchmarkTask, eval_dir: Path | str, data_root: Path | str | None = None
) -> LoadedManifest:
    """The task's rows in file order; media paths resolve against ``data_root`` (default: ``eval_dir``).

    Video-R1's eval files sit beside their media (``Evaluation/``), hence the default. Media are
    not checked here: a missing video must reach the runner and be recorded as a failed sample
    (a wrong answer), not vanish from the denominator. Rows that break the schema are
    quarantined by the loader and returned in ``quarantine``.
    """
    eval_dir = Path(eval_dir)
    path = eval_dir / task.file_name
    if not path.is_file():
        raise BenchmarkFileNotFoundError(
            f"benchmark {task.name!r} ({task.display_name}): expected file {task.file_name!r} in {eval_dir}, "
            f"but {path} does not exist. Put Video-R1's {task.file_name} (from src/r1-v/Evaluation/) and its "
            "media there, or point data.eval_dir at the folder that holds it."
        )
    manifest = load_videor1(path, eval_dir if data_root is None else data_root, check_media=False)
    if manifest.quarantine.height:
        logger.warning(
            "%s: %d row(s) quarantined (see LoadedManifest.quarantine)", path, manifest.quarantine.height
        )
    return manifest
