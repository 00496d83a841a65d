"""What a stage returns to its driver (Dagster or DVC): files written, facts and tables worth showing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl


@dataclass(frozen=True)
class StageResult:
    """Files written, scalar facts and tables worth showing (Dagster metadata, CLI summary)."""

    outputs: dict[str, Path]
    metadata: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
