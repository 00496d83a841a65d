"""How a model compresses its video features: which method, at which budget, with which options.

It travels inside a transformers model config as a plain dict, so it must survive
``CompressionConfig(**config.model_dump())`` unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from marc_ops.compression.api import compressor, list_methods, method_options
from marc_ops.compression.memory_aware import check_merge_parameters

# Options the model computes for a method itself rather than reading them from a config.
MODEL_SUPPLIED_OPTIONS = frozenset({"scores", "clip_ids"})
# The methods with a stage inside the LLM (BASELINES.md 5 and 6): DyCoke's DP, HoliTom's inner merge.
INNER_LLM_METHODS = ("dycoke", "holitom")


class CompressionConfig(BaseModel):
    """What the model does with its video features before they reach the LLM.

    The class defaults describe a layer that is switched off. ``method`` picks the compressor
    (``marc_ops.compression.list_methods()``):

    - ``marc`` (SPEC section 5): the memory-aware merge with ``ratio``, ``window`` and
      ``target_blocks``; the ``marc`` evaluation method turns it on with ``ratio=0.5, window=8,
      target_blocks=1``.
    - any other method: exactly one budget, ``retention`` (a fraction of a video's T·P tokens),
      ``budget`` (tokens per video) or ``budget_groups`` (that many temporal groups' worth of
      tokens, P each: ``1`` is "one frame's worth"), and the method's ``options``.

    Attributes:
        enabled: whether the model compresses its video features at all.
        method: the compressor's registry name.
        ratio: ρ (``marc``), the fraction of temporal blocks each window (and the whole sequence,
            when no ``target_blocks`` is given) removes, in [0, 1).
        window: m (``marc``), the most temporal blocks of one clip that a short-term window holds.
        target_blocks: (``marc``) an explicit block budget for the whole sequence; ``None`` means
            ``max(1, floor((1 - ratio) * N))``.
        retention, budget, budget_groups: the budget of any other method (one of them).
        options: the method's own hyperparameters, by the names ``BASELINES.md`` uses.
        importance: where a method that ranks tokens by importance (FastVID, HoliTom) gets it:
            ``attention`` from the vision tower's last block (the pseudo-CLS attention of FastVID's
            Qwen code), ``norm`` the token's L2 norm (the VidCom2 Qwen ports' variant).
        inner_llm: also run the method's stage inside the LLM (``marc_ops.model.inner_llm``): DyCoke's
            decode-time KV pruning (DP) or HoliTom's merge at decoder layer K, with the ``dp_*`` or
            ``inner_*`` options. Off for SCORE-style comparisons (BASELINES.md section 8).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    method: str = "marc"
    ratio: float = 0.5
    window: int = 8
    target_blocks: int | None = None
    retention: float | None = Field(default=None, gt=0.0, le=1.0)
    budget: int | None = Field(default=None, ge=1)
    budget_groups: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    importance: Literal["attention", "norm"] = "attention"
    inner_llm: bool = False

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        if method not in list_methods():
            raise ValueError(f"unknown compression method {method!r}; known: {', '.join(list_methods())}")
        return method

    @model_validator(mode="after")
    def _inner_stage_exists(self) -> CompressionConfig:
        if not self.inner_llm:
            return self
        if self.method not in INNER_LLM_METHODS:
            raise ValueError(
                f"inner_llm=True: method {self.method!r} has no stage inside the LLM; only "
                f"{' and '.join(map(repr, INNER_LLM_METHODS))} do (DyCoke's decode-time KV pruning, HoliTom's "
                "merge at decoder layer K): set inner_llm=False or pick one of those"
            )
        if not self.enabled:
            raise ValueError(
                "inner_llm=True needs enabled=True: the inner stage runs in a model that compresses its videos"
            )
        return self

    @model_validator(mode="after")
    def _budget_fits_the_method(self) -> CompressionConfig:
        check_merge_parameters(self.ratio, self.window, self.target_blocks)
        budgets = {
            name: value
            for name, value in (
                ("retention", self.retention),
                ("budget", self.budget),
                ("budget_groups", self.budget_groups),
            )
            if value is not None
        }
        if self.method == "marc":
            if budgets or self.options:
                raise ValueError(
                    f"method 'marc' takes ratio, window and target_blocks, not {', '.join([*budgets, *self.options])}"
                )
            return self
        if self.enabled and len(budgets) != 1:
            raise ValueError(
                f"method {self.method!r} needs exactly one budget: retention (e.g. 0.25), budget (tokens per "
                f"video, e.g. 120) or budget_groups (e.g. 1 for one frame's worth); got {sorted(budgets) or 'none'}"
            )
        supplied = sorted(MODEL_SUPPLIED_OPTIONS & set(self.options))
        if supplied:
            raise ValueError(f"options {supplied} are computed by the model; leave them out of the config")
        method_options(self.method, self.options)
        return self

    @property
    def counts_from_features(self) -> bool:
        """Whether the number of tokens kept depends on the features (VidCom2, FastVID, HoliTom): the
        vision tower must run before the prompt's placeholders can be counted."""
        return self.enabled and self.method != "marc" and compressor(self.method).count is None

    @property
    def takes_importance(self) -> bool:
        """Whether the method ranks tokens by importance scores the model supplies (``importance``)."""
        return "scores" in compressor(self.method).options.model_fields

    def budget_kwargs(self, tokens_per_group: int) -> dict[str, Any]:
        """``compress`` / ``output_count`` budget keywords for a video with ``tokens_per_group`` tokens a group."""
        if self.retention is not None:
            return {"retention": self.retention}
        if self.budget is not None:
            return {"budget": self.budget}
        if self.budget_groups is not None:
            return {"budget": self.budget_groups * tokens_per_group}
        raise ValueError(f"method {self.method!r} has no budget (retention, budget or budget_groups)")


def one_frame_compression() -> CompressionConfig:
    """64 frames → 32 temporal groups → 1 block (SPEC section 5 defaults for the ``marc`` method)."""
    return CompressionConfig(enabled=True, ratio=0.5, window=8, target_blocks=1)
