"""The methods the paper compares (Tables 1-3), as data, looked up by name.

A method says which checkpoint answers, how many frames it samples, whether the Visual Memory
Retriever picks the clips, and how the video features are compressed. The model adapter turns
it into a model; the runner only names it.

``marc@<tau>`` is the C-GRPO checkpoint trained with threshold τ; plain ``marc`` means
``marc@0.6`` (the paper's choice) and resolves to that name, so both share one records file.
The ``*-1f`` rows feed 64 frames through the same compression as MARC, down to one temporal
group ("one frame's worth" of tokens, paper Table 1 note); ``sft-1f`` without VMR, ``sft-vmr-1f``
with it (paper Table 2).

The compared compressors (``BASELINES.md``) run on the base model's 64 frames, training-free, by
name and budget: ``<method>@<r>`` with ``r < 1`` keeps that fraction of a video's tokens (SCORE's
setting: ``fastvid@0.25``), ``<method>@<n>`` with an integer ``n >= 1`` keeps about ``n`` tokens per
video (MARC's Table 1 setting: ``vidcom2@120``), and ``moviechat-<n>f`` keeps ``n`` frames' worth
(``moviechat-1f``). Each name is also the method's records file, a Dagster partition key and a DVC
``foreach`` item, so it holds only letters, digits, ``-``, ``.`` and ``@``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marc_ops.compression.config import CompressionConfig, one_frame_compression
from marc_ops.errors import UsageError

_CHECKPOINT_PATTERN = re.compile(r"^(base|sft|cgrpo:(?P<tau>\d+(\.\d+)?))$")
_MARC_PATTERN = re.compile(r"^marc@(?P<tau>\d+(\.\d+)?)$")
_COMPRESSOR_PATTERN = re.compile(r"^(?P<method>[a-z0-9]+)@(?P<budget>\d+(\.\d+)?)$")
_FRAMES_PATTERN = re.compile(r"^(?P<method>[a-z0-9]+)-(?P<frames>\d+)f$")
# What each compared method is, for the method's description.
_COMPRESSOR_LABELS = {
    "moviechat": "MovieChat (short-term windows to 2 frames, then long-term merged)",
    "vidcom2": "VidCom2 (frame uniqueness sets each frame's share; globally and locally distinct tokens kept)",
    "bytevideollm": "ByteVideoLLM / Dynamic-VLM (adaptive spatial pooling per frame)",
    "fastvid": "FastVID (DySeg segments, salient tokens, density-peak anchors merged)",
    "dycoke": "DyCoke TTM (pairs and quads of frames, tokens least like their anchor frame kept)",
    "holitom": "HoliTom (static windows merged over time, dynamic tokens pruned by importance)",
    "score": "SCORE (a learned per-token policy on [x; Δx] keeps the tokens it rates highest)",
}
# Where a SCORE method's policy is, relative to the project (the score_policy asset); the evaluation
# binds it to the project's own path before it runs.
SCORE_POLICY = "assets/score_policy/policy.safetensors"
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


def compressor_method(
    method: str, *, retention: float | None = None, budget: int | None = None, frames: int | None = None
) -> MethodSpec:
    """A compared compressor on the base model's 64 frames at one budget (named as the module docstring says)."""
    if method not in _COMPRESSOR_LABELS:
        raise ValueError(
            f"{method!r} is not a compared compression method; known: {', '.join(_COMPRESSOR_LABELS)}"
        )
    options = {"policy": SCORE_POLICY} if method == "score" else {}
    if frames is not None:
        worth = "one frame's" if frames == 1 else f"{frames} frames'"
        name, budget_text = f"{method}-{frames}f", f"{worth} worth of tokens"
        compression = CompressionConfig(enabled=True, method=method, budget_groups=frames, options=options)
    elif budget is not None:
        name, budget_text = f"{method}@{budget}", f"about {budget} tokens per video"
        compression = CompressionConfig(enabled=True, method=method, budget=budget, options=options)
    else:
        name, budget_text = f"{method}@{retention:g}", f"{retention:.0%} of the tokens"
        compression = CompressionConfig(enabled=True, method=method, retention=retention, options=options)
    return MethodSpec(
        name=name,
        max_frames=64,
        use_vmr=False,
        compression=compression,
        checkpoint="base",
        description=f"Qwen2.5-VL, 64 frames, {_COMPRESSOR_LABELS[method]}, {budget_text}",
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
        # MARC Table 1: the compared compressors at about one frame's worth of tokens (paper App. A.2).
        compressor_method("moviechat", frames=1),
        compressor_method("vidcom2", budget=120),
        compressor_method("bytevideollm", budget=120),
        # SCORE Table 1: the compared compressors at 40 %, 25 % and 10 % of the tokens. DyCoke has no 10 %
        # row: its passes keep every anchor frame whole, so it cannot go below about 28 % at 32 groups
        # (BASELINES.md section 5c).
        *(
            compressor_method(m, retention=r)
            for m in ("vidcom2", "fastvid", "holitom")
            for r in (0.4, 0.25, 0.1)
        ),
        *(compressor_method("dycoke", retention=r) for r in (0.4, 0.25)),
        # SCORE Table 1's own rows: the trained policy at the same retentions.
        *(compressor_method("score", retention=r) for r in (0.4, 0.25, 0.1)),
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
    match = _COMPRESSOR_PATTERN.match(name)
    if match and match["method"] in _COMPRESSOR_LABELS:
        value = float(match["budget"])
        if value == 0:
            raise UsageError(f"{name}: a budget is a retention in (0, 1) or a token count >= 1, not 0")
        if value < 1:
            return compressor_method(match["method"], retention=value)
        if value.is_integer():
            return compressor_method(match["method"], budget=int(value))
    match = _FRAMES_PATTERN.match(name)
    if match and match["method"] in _COMPRESSOR_LABELS:
        return compressor_method(match["method"], frames=int(match["frames"]))
    raise UsageError(
        f"unknown method {name!r}; known: {', '.join(METHODS)}, marc (= marc@0.6), marc@<tau>, and "
        f"<compressor>@<retention below 1 or a token count> or <compressor>-<n>f for the compressors "
        f"{', '.join(_COMPRESSOR_LABELS)}"
    )
