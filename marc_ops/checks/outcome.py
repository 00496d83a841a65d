"""What one check of an asset's files found."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from marc_ops.config import Params, ProjectPaths


@dataclass(frozen=True)
class CheckOutcome:
    """Whether the files pass, one sentence saying what was found, the figures behind it, and the rows that
    fail (the first ones; or, where every row tells, the whole table: a check's evidence)."""

    passed: bool
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    evidence: pl.DataFrame | None = None


# (project paths, active params, partition key in Dagster's form or None) -> outcome
CheckFn = Callable[[ProjectPaths, Params, str | None], CheckOutcome]


def plural(count: int, noun: str) -> str:
    """``plural(1, "video")`` → ``"1 video"``; ``"3 videos"``, ``"3 losses"``, ``"3 categories"``."""
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith("s"):
        return f"{count} {noun}es"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "o", "u"):
        return f"{count} {noun[:-1]}ies"
    return f"{count} {noun}s"


def one_per_id(
    expected: Iterable[str], counts: Mapping[str, int], known: set[str], *, unit: str, foreign: str
) -> list[dict[str, str]]:
    """The ids that do not hold exactly one ``unit`` (``counts``: per id): each ``expected`` id without one
    (``"no row"``), each id with several (``"2 rows"``), and each id not in ``known`` (``foreign``)."""
    return (
        [{"problem_id": pid, "problem": f"no {unit}"} for pid in expected if pid not in counts]
        + [{"problem_id": pid, "problem": plural(n, unit)} for pid, n in sorted(counts.items()) if n > 1]
        + [{"problem_id": pid, "problem": foreign} for pid in sorted(set(counts) - known)]
    )
