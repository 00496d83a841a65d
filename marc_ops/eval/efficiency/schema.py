"""The efficiency profile's schema: the JSON the profiler writes and the report reads, validated on both sides."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MethodEfficiency(BaseModel):
    """One method's measured cost per sample; seconds, GB.

    ``frames`` and ``visual_tokens`` are per sample (the batch's mean), times are the batch's wall time
    divided by its samples, ``peak_memory_gb`` is the whole batch's.

    ``vision_s`` (the vision tower), ``merge_s`` (the memory-aware merge), ``prefill_s`` and
    ``generate_s`` are parts of ``end_to_end_s``, so none of them may exceed it.
    ``memory_kind`` says what ``peak_memory_gb`` measures: process RSS (CPU) or CUDA peak allocated.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = Field(min_length=1)
    frames: int = Field(ge=1)
    visual_tokens: float = Field(ge=0)
    vision_s: float = Field(ge=0)
    prefill_s: float = Field(ge=0)
    generate_s: float = Field(ge=0)
    end_to_end_s: float = Field(gt=0)
    merge_s: float = Field(ge=0)
    peak_memory_gb: float = Field(ge=0)
    memory_kind: Literal["rss", "cuda"]

    @model_validator(mode="after")
    def _parts_within_end_to_end(self) -> MethodEfficiency:
        for part in ("vision_s", "merge_s", "prefill_s", "generate_s"):
            value = getattr(self, part)
            if value > self.end_to_end_s:
                raise ValueError(
                    f"method {self.method!r}: {part}={value:g} exceeds end_to_end_s={self.end_to_end_s:g}; "
                    "each stage time is a part of the end-to-end time of the same sample (same unit: seconds)"
                )
        return self

    @property
    def vision_share(self) -> float:
        """The vision tower's share of end-to-end time, in [0, 1]."""
        return self.vision_s / self.end_to_end_s


class EfficiencyProfile(BaseModel):
    """What the ``efficiency_profile`` asset writes: the setting, then one entry per method.

    Attributes:
        device: where it ran, e.g. ``"NVIDIA A6000"`` or ``"cpu (2 cores)"``.
        model: the model id or path.
        dtype: e.g. ``"bfloat16"``.
        batch_size: samples per forward pass (the paper uses 15).
        repeats: timed runs per method; each method's row is its run with the median end-to-end time.
        source: where the samples came from (the profile's ``efficiency.source``): ``longest`` (the eval
            set's longest video, copied ``batch_size`` times) or a benchmark name (its first samples).
        ``repeats`` and ``source`` are None in a profile written before they were recorded: its batch was
        one video copied ``batch_size`` times, and its ``input`` names its timed runs per method.
        input: what was fed, e.g. ``"MMVU (mc), answer-only prompt, 30 samples"``.
        methods: one entry per method, unique names, all measured with the same ``memory_kind``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str
    model: str
    dtype: str
    batch_size: int = Field(ge=1)
    repeats: int | None = Field(default=None, ge=1)
    source: str | None = Field(default=None, min_length=1)
    input: str
    methods: list[MethodEfficiency] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_entry_per_method_one_memory_kind(self) -> EfficiencyProfile:
        names = [m.method for m in self.methods]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"methods {repeated} appear more than once; keep one entry per method")
        kinds = sorted({m.memory_kind for m in self.methods})
        if len(kinds) > 1:
            raise ValueError(
                f"memory_kind differs between methods ({kinds}); RSS and CUDA peaks are not comparable, "
                "profile every method on the same device"
            )
        return self

    @property
    def memory_kind(self) -> str:
        return self.methods[0].memory_kind
