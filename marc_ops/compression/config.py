"""The configuration of the memory-aware temporal compression layer (SPEC section 5).

It travels inside a transformers model config as a plain dict, so it must survive
``CompressionConfig(**config.model_dump())`` unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


class CompressionConfig(BaseModel):
    """How the video features are merged along time before they reach the LLM.

    The class defaults describe a layer that is switched off; the ``marc`` method turns it on
    with ``ratio=0.5, window=8, target_blocks=1`` (SPEC section 5).

    Attributes:
        enabled: whether the model merges its video features at all.
        ratio: ρ, the fraction of temporal blocks each window (and the whole sequence, when no
            ``target_blocks`` is given) removes, in [0, 1).
        window: m, the most temporal blocks of one clip that a short-term window holds.
        target_blocks: an explicit block budget for the whole sequence; ``None`` means
            ``max(1, floor((1 - ratio) * N))``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    ratio: float = 0.5
    window: int = 8
    target_blocks: int | None = None

    @field_validator("ratio")
    @classmethod
    def _ratio_in_unit_interval(cls, ratio: float) -> float:
        if not 0.0 <= ratio < 1.0:
            raise ValueError(
                f"ratio={ratio!r} is outside [0, 1): it is the fraction of temporal blocks to remove; "
                "use 0 to keep every block and e.g. 0.5 to halve them (1 would remove everything)"
            )
        return ratio

    @field_validator("window")
    @classmethod
    def _window_positive(cls, window: int) -> int:
        if window < 1:
            raise ValueError(
                f"window={window!r} must be >= 1: it is the most temporal blocks of one clip merged "
                "together in the first phase (the paper's m; the default is 8)"
            )
        return window

    @field_validator("target_blocks")
    @classmethod
    def _target_blocks_positive(cls, target_blocks: int | None) -> int | None:
        if target_blocks is not None and target_blocks < 1:
            raise ValueError(
                f"target_blocks={target_blocks!r} must be >= 1 or None: it is the number of "
                "temporal blocks left after merging (1 = one frame's worth of tokens); "
                "use None to derive it from ratio"
            )
        return target_blocks


def one_frame_compression() -> CompressionConfig:
    """64 frames → 32 temporal groups → 1 block (SPEC section 5 defaults for the ``marc`` method)."""
    return CompressionConfig(enabled=True, ratio=0.5, window=8, target_blocks=1)
