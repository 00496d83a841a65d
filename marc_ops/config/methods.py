"""The methods the paper compares (Tables 1-3), as data, looked up by name.

A method says which checkpoint answers, how many frames it samples, whether the Visual Memory
Retriever picks the clips, and how the video features are compressed. The model adapter turns
it into a model; the runner only names it.

``marc@<tau>`` is the C-GRPO checkpoint trained with threshold τ; plain ``marc`` means
``marc@0.6`` (the paper's choice) and resolves to that name, so both share one records file.
The ``*-1f`` rows feed 64 frames through the same compression as MARC, down to one temporal
group ("one frame's worth" of tokens, paper Table 1 note); ``sft-1f`` without VMR, ``sft-vmr-1f``
with it (paper Table 2).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marc_ops.compression.config import CompressionConfig, one_frame_compression

_CHECKPOINT_PATTERN = re.compile(r"^(base|sft|cgrpo:(?P<tau>\d+(\.\d+)?))$")
_MARC_PATTERN = re.compile(r"^marc@(?P<tau>\d+(\.\d+)?)$")
DEFAULT_MARC_TAU = 0.6


class MethodSpec(BaseModel):
    """One evaluated configuration.

    Attributes:
        name: registry key; also names the records file of each benchmark run.
        max_frames: frames sampled at 1 fps before any compression (64 or 16).
        use_vmr: feed the VMR's top-k clips (``vmr_selection``) instead of the whole video.
        compression: the memory-aware merge applied to the video features.
        checkpoint: which weights answer: ``"base"`` (Qwen2.5-VL), ``"sft"`` or ``"cgrpo:<tau>"``.
        description: one sentence for tables and the UI.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    max_frames: int = Field(ge=1)
    use_vmr: bool
    compression: CompressionConfig = CompressionConfig()
    checkpoint: str
    description: str

    @field_validator("checkpoint")
    @classmethod
    def _known_checkpoint(cls, checkpoint: str) -> str:
        if not _CHECKPOINT_PATTERN.match(checkpoint):
            raise ValueError(
                f"checkpoint={checkpoint!r} must be 'base', 'sft' or 'cgrpo:<tau>' (e.g. 'cgrpo:0.6')"
            )
        return checkpoint

    @property
    def tau(self) -> float | None:
        """τ of a C-GRPO checkpoint, else ``None``."""
        match = _CHECKPOINT_PATTERN.match(self.checkpoint)
        return float(match["tau"]) if match and match["tau"] else None


def marc_method(tau: float = DEFAULT_MARC_TAU) -> MethodSpec:
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"marc@{tau:g}: τ must be in [0, 1) (the paper uses 0.4, 0.6 and 0.8)")
    return MethodSpec(
        name=f"marc@{tau:g}",
        max_frames=64,
        use_vmr=True,
        compression=one_frame_compression(),
        checkpoint=f"cgrpo:{tau:g}",
        description=f"MARC: C-GRPO checkpoint (τ={tau:g}), VMR top-3 clips, compressed to one frame's worth",
    )


METHODS: dict[str, MethodSpec] = {
    method.name: method
    for method in (
        MethodSpec(
            name="baseline-64f",
            max_frames=64,
            use_vmr=False,
            checkpoint="base",
            description="Qwen2.5-VL, 64 frames, no compression",
        ),
        MethodSpec(
            name="baseline-16f",
            max_frames=16,
            use_vmr=False,
            checkpoint="base",
            description="Qwen2.5-VL, 16 frames, no compression",
        ),
        MethodSpec(
            name="vmr-64f",
            max_frames=64,
            use_vmr=True,
            checkpoint="base",
            description="Qwen2.5-VL, up to 64 frames from the VMR's top-3 clips, no compression",
        ),
        marc_method(0.4),
        marc_method(0.6),
        marc_method(0.8),
        MethodSpec(
            name="sft-1f",
            max_frames=64,
            use_vmr=False,
            compression=one_frame_compression(),
            checkpoint="sft",
            description="SFT checkpoint, 64 frames compressed to one frame's worth",
        ),
        MethodSpec(
            name="sft-vmr-1f",
            max_frames=64,
            use_vmr=True,
            compression=one_frame_compression(),
            checkpoint="sft",
            description="SFT checkpoint, VMR top-3 clips compressed to one frame's worth",
        ),
    )
}


def resolve_method(name: str) -> MethodSpec:
    """The method called ``name``; ``marc`` is ``marc@0.6`` and ``marc@<tau>`` works for any τ in [0, 1)."""
    if name == "marc":
        return marc_method(DEFAULT_MARC_TAU)
    if name in METHODS:
        return METHODS[name]
    match = _MARC_PATTERN.match(name)
    if match:
        return marc_method(float(match["tau"]))
    raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}, marc (= marc@0.6), marc@<tau>")
