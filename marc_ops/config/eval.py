"""The ``eval:`` section of a profile: which benchmarks and methods the pipeline evaluates, and how.

Checked against the declared benchmarks (:mod:`.tasks`), methods (:mod:`.methods`) and prompt
templates (:mod:`.prompts`) when a profile is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marc_ops.config.methods import METHODS, resolve_method
from marc_ops.config.prompts import PROMPT_TEMPLATES, VIDEO_R1_EVAL
from marc_ops.config.tasks import PAPER_BENCHMARKS, TASKS
from marc_ops.rewards import AnswerRule


class EvalConfig(BaseModel):
    """The profile's ``eval`` section: which benchmark × method pairs run, and how.

    Attributes:
        benchmarks: task names (``marc_ops.config.tasks.TASKS``): the ``benchmark_scores`` partitions.
        methods: method names (``marc_ops.config.methods``); ``marc`` is stored as ``marc@0.6``.
        batch_size: samples per ``generate`` call (left-padded); the records file is fsynced after each.
        max_new_tokens: the longest answer (SPEC section 8: 1024).
        limit: only the first ``limit`` rows of each benchmark file (``None``: all of them).
        prompt_template: ``video-r1-eval`` (Video-R1's eval_bench.py, the default) or ``marc-paper``.
        answer_rule: how an output becomes the answer that is scored (``marc_ops.rewards.answer_text``):
            ``strict`` (the default) scores the text inside ``<answer>...</answer>`` and an output without
            it 0; ``whole-output`` is Video-R1's eval_bench.py, which produced the paper's figures: the
            tagged text, or the whole output when there is none.
        decode_workers: threads that read the next batch's frames while a batch generates (0: read them
            in turn, inside each batch).
        sort_by_length: answer the samples longest first by expected visual tokens (from the files'
            headers), so each batch holds inputs of similar length and pads little. Like ``batch_size``, it
            decides which samples share a batch, not what a sample is answered with: the tiny model's
            records are the same in either order (``tests/unit/test_eval_adapter.py``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmarks: list[str] = Field(default=list(PAPER_BENCHMARKS), min_length=1)
    methods: list[str] = Field(default=list(METHODS), min_length=1)
    batch_size: int = Field(default=4, ge=1, description="samples per generate call")
    max_new_tokens: int = Field(default=1024, ge=1, description="the longest answer, tokens")
    limit: int | None = Field(default=None, ge=0, description="first N rows of each benchmark (None: all)")
    prompt_template: str = Field(default=VIDEO_R1_EVAL.name, description="a name in PROMPT_TEMPLATES")
    decode_workers: int = Field(
        default=0, ge=0, description="threads reading the next batch's frames while one generates (0: none)"
    )
    sort_by_length: bool = Field(
        default=False, description="answer longest inputs first, batching similar visual lengths together"
    )
    answer_rule: AnswerRule = Field(
        default="strict",
        description=(
            "'strict': only the text inside <answer>...</answer> is scored, an output without it scores 0; "
            "'whole-output': Video-R1's eval_bench.py (the paper's figures), the whole output when it has no "
            "tagged answer"
        ),
    )

    @field_validator("benchmarks")
    @classmethod
    def _known_benchmarks(cls, benchmarks: list[str]) -> list[str]:
        unknown = [name for name in benchmarks if name not in TASKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {unknown}; known: {', '.join(TASKS)}")
        _no_repeats("benchmarks", benchmarks)
        return benchmarks

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        # resolve_method names the known methods when one is unknown
        canonical = [resolve_method(name).name for name in methods]
        _no_repeats("methods", canonical)
        return canonical

    @field_validator("prompt_template")
    @classmethod
    def _known_template(cls, name: str) -> str:
        if name not in PROMPT_TEMPLATES:
            raise ValueError(f"unknown prompt_template {name!r}; known: {', '.join(PROMPT_TEMPLATES)}")
        return name


def _no_repeats(field: str, names: Sequence[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{field} lists {repeated} more than once ('marc' is 'marc@0.6'); keep one of each")
