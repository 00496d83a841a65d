"""The ``efficiency:`` section of a profile: which samples ``efficiency_profile`` measures each method on.

Checked against the declared benchmarks (:mod:`.tasks`) when a profile is loaded.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marc_ops.config.tasks import TASKS

# The sample source that copies one video: the eval set's longest.
LONGEST_VIDEO = "longest"


class EfficiencyConfig(BaseModel):
    """The profile's ``efficiency`` section: the measured batch and how often it is timed (paper App. A.3).

    Attributes:
        source: ``longest`` (the default): the first question of the longest video of all the eval
            files, copied ``batch_size`` times; or a benchmark name (``marc_ops.config.tasks.TASKS``):
            the first ``batch_size`` video samples of its eval file, in file order (the paper: MMVU,
            ``mmvu``). The prompt is answer-only either way.
        batch_size: samples per profiled batch (the paper: 15); times are reported per sample, peak
            memory for the whole batch.
        repeats: timed runs per method; the run with the median end-to-end time is reported.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        default=LONGEST_VIDEO,
        description="'longest': the eval set's longest video, copied batch_size times; or a benchmark name: "
        "its first batch_size video samples",
    )
    batch_size: int = Field(default=1, ge=1, description="samples per profiled batch (paper App. A.3: 15)")
    repeats: int = Field(default=1, ge=1, description="timed runs per method; the median run is reported")

    @field_validator("source")
    @classmethod
    def _known_source(cls, source: str) -> str:
        if source != LONGEST_VIDEO and source not in TASKS:
            raise ValueError(
                f"unknown efficiency source {source!r}; use {LONGEST_VIDEO!r} or a benchmark: {', '.join(TASKS)}"
            )
        return source
