"""The report's view of method names: their order in tables and plots, what each one is (MARC's τ, the
compared compressor and its retention, the family it is drawn with), the paper's Frames column."""

from __future__ import annotations

import re
from collections.abc import Sequence

from marc_ops.config.methods import METHODS, MethodSpec, resolve_method
from marc_ops.eval.report.cells import MISSING


def method_order(methods: Sequence[str]) -> list[str]:
    """The report's order: the registry's own methods (baselines, then MARC with every ``marc@τ`` by τ,
    then SFT), then the compared compressors grouped by family (in the registry's order) and budget
    (frames' worth, then tokens per video, then retention from the largest), then the rest as first seen.
    """
    registry = list(METHODS)
    marc_index = next(i for i, name in enumerate(registry) if method_tau(name) is not None)
    families = list(dict.fromkeys(c for c in map(method_compressor, registry) if c is not None))

    def key(item: tuple[int, str]) -> tuple:
        seen, name = item
        compressor = method_compressor(name)
        if compressor is not None:
            family = families.index(compressor) if compressor in families else len(families)
            return (1, family, compressor, _budget_key(name), seen)
        tau = method_tau(name)
        if tau is not None:
            return (0, marc_index, tau, seen)
        if name in registry:
            return (0, registry.index(name), 0.0, seen)
        return (2, seen)

    unique = list(dict.fromkeys(methods))
    return [name for _, name in sorted(enumerate(unique), key=key)]


def _budget_key(method: str) -> tuple[int, float]:
    """Frames' worth first, then tokens per video (ascending), then retention (descending)."""
    compression = resolve_method(method).compression
    if compression.budget_groups is not None:
        return (0, float(compression.budget_groups))
    if compression.budget is not None:
        return (1, float(compression.budget))
    return (2, -(compression.retention or 0.0))


def method_spec(method: str) -> MethodSpec | None:
    """The method's spec; ``None`` for a name the registry does not resolve (``prior-answer``)."""
    try:
        return resolve_method(method)
    except ValueError:  # not an evaluation method: a reference such as the prior answer
        return None


def method_tau(method: str) -> float | None:
    """τ of a ``marc@τ`` method; ``None`` for any other name."""
    match = re.fullmatch(r"marc@(\d+(?:\.\d+)?)", method)
    return float(match[1]) if match else None


def method_compressor(method: str) -> str | None:
    """The compared compressor a method runs (``vidcom2`` for ``vidcom2@0.25``); ``None`` for the base
    model uncompressed, MARC's own merge and names outside the registry."""
    spec = method_spec(method)
    if spec is None or not spec.compression.enabled or spec.compression.method == "marc":
        return None
    return spec.compression.method


def method_retention(method: str) -> float | None:
    """The retention a compared compressor runs at (SCORE's setting: ``0.25`` for ``fastvid@0.25``);
    ``None`` for a token or frames' worth budget (MARC's setting) and for every other method."""
    if method_compressor(method) is None:
        return None
    return resolve_method(method).compression.retention


def method_family(method: str) -> str:
    """What a method is drawn as in the plots: one colour per family, one marker per member.

    ``uncompressed`` (the base model without compression), ``marc`` (C-GRPO checkpoints), ``sft``,
    the compressor's name for a compared compressor, else the method's own name.
    """
    spec = method_spec(method)
    if spec is None:
        return method
    if not spec.compression.enabled:
        return "uncompressed"
    if spec.compression.method != "marc":
        return spec.compression.method
    return "marc" if spec.tau is not None else spec.checkpoint


def method_frames(method: str) -> str:
    """The paper's "Frames" column: frames fed, or the frames' worth of tokens left after compression
    (MARC's temporal blocks, a compressor's ``budget_groups``). A compressor with a token budget or a
    retention shows the frames fed, as the paper prints 64 for ByteVideoLLM and VidCom2."""
    spec = method_spec(method)
    if spec is None:
        return MISSING
    compression = spec.compression
    if not compression.enabled:
        return str(spec.max_frames)
    if compression.method != "marc":
        return str(compression.budget_groups or spec.max_frames)
    return MISSING if compression.target_blocks is None else str(compression.target_blocks)
