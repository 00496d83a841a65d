"""Benchmarks as declarative tasks: a data spec plus small pure functions to prompt, score and aggregate.

A task is declared here, with the configs, because a profile names benchmarks (``eval.benchmarks``)
and is checked against them when it is loaded; its rows are read by
:func:`marc_ops.data.load_task_rows`. A task is looked up by name (``vsibench``, ``videommmu``, ``mmvu``, ``mvbench``, ``tempcompass``,
``videomme``, ``synthetic``); its file is Video-R1's ``eval_<name>.json`` (the names
``src/eval_bench.py`` reads from ``src/r1-v/Evaluation/``), in the schema of SPEC section 3.

Scoring (SPEC sections 6 and 8, Video-R1 ``eval_bench.py``): a sample's reward is the Video-R1
accuracy of its answer, which the profile's ``eval.answer_rule`` takes from the output
(:func:`marc_ops.rewards.answer_text`): under ``strict`` the text inside its first
``<answer>...</answer>``, so an output without the tags scores 0 and a model earns no credit for an
answer it did not format; under ``whole-output`` (eval_bench.py's rule, which produced the paper's
figures) that text, or the whole output when it has none. Items whose type is in
``mra_problem_types`` score MRA instead. A benchmark reports, in percent, the mean reward of its other items ("accuracy"), and
for VSI-Bench the mean of that and of the mean MRA ("score"). Failed samples score 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict

from marc_ops.config.prompts import VIDEO_R1_EVAL, PromptTemplate, build_prompt
from marc_ops.errors import UsageError
from marc_ops.rewards import AnswerRule, answer_text, extract_answer, score_answer_text, score_mra_text


@dataclass(frozen=True)
class SampleScore:
    """``reward`` in [0, 1] (accuracy or MRA); ``correct`` iff it is 1.0, as eval_bench.py; ``extracted`` the
    answer text that was scored."""

    reward: float
    correct: bool
    extracted: str | None


# The benchmarks of the paper's tables, in their column order.
PAPER_BENCHMARKS: tuple[str, ...] = ("vsibench", "videommmu", "mmvu", "mvbench", "tempcompass", "videomme")


class BenchmarkTask(BaseModel):
    """One benchmark: where its file is, how to prompt and score a row, how to aggregate records.

    Attributes:
        name: registry key, also the ``eval_<name>.json`` stem.
        display_name: the column header of the paper's tables.
        file_name: the Video-R1 eval file, e.g. ``eval_vsibench.json``.
        mra_problem_types: problem types scored by MRA and averaged separately (VSI-Bench's
            numerical-answer items); empty for benchmarks that report accuracy only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    display_name: str
    file_name: str
    description: str
    mra_problem_types: tuple[str, ...] = ()

    def prompt(self, row: Mapping[str, Any], template: PromptTemplate = VIDEO_R1_EVAL) -> str:
        return build_prompt(row, template)

    def score(self, row: Mapping[str, Any], output: str | None, *, rule: AnswerRule) -> SampleScore:
        """Score one model output against the row's tagged ``solution``; ``rule`` takes the answer from
        the output (:func:`~marc_ops.rewards.answer_text`)."""
        answer, truth = answer_text(output, rule), extract_answer(row["solution"])
        if row["problem_type"] in self.mra_problem_types:
            reward = score_mra_text(answer, truth)
        else:
            reward = score_answer_text(answer, truth, row["problem_type"])
        return SampleScore(reward=reward, correct=reward == 1.0, extracted=answer)

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
    return BenchmarkTask(
        name=name, display_name=display_name, file_name=f"eval_{name}.json", description=description, **fields
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
        raise UsageError(f"unknown benchmark {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
