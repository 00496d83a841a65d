"""The report's view of method names: their order in tables and plots, MARC's τ, the paper's Frames column."""

from __future__ import annotations

import re
from collections.abc import Sequence

from marc_ops.config.methods import METHODS, resolve_method
from marc_ops.eval.report.cells import MISSING


def method_order(methods: Sequence[str]) -> list[str]:
    """Registry order first (the paper's), then other ``marc@τ`` by τ, then the rest as first seen."""
    registry = list(METHODS)

    def key(item: tuple[int, str]) -> tuple[int, float, int]:
        seen, name = item
        if name in registry:
            return (0, registry.index(name), seen)
        tau = method_tau(name)
        return (1, tau, seen) if tau is not None else (2, 0.0, seen)

    unique = list(dict.fromkeys(methods))
    return [name for _, name in sorted(enumerate(unique), key=key)]


def method_tau(method: str) -> float | None:
    """τ of a ``marc@τ`` method; ``None`` for any other name."""
    match = re.fullmatch(r"marc@(\d+(?:\.\d+)?)", method)
    return float(match[1]) if match else None


def method_frames(method: str) -> str:
    """The paper's "Frames" column: frames fed, or the temporal blocks left after compression."""
    if method not in METHODS and method_tau(method) is None:
        return MISSING
    spec = resolve_method(method)
    if not spec.compression.enabled:
        return str(spec.max_frames)
    return MISSING if spec.compression.target_blocks is None else str(spec.compression.target_blocks)
