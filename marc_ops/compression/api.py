"""One API for every video-token compressor: ``compress(method, tokens, grid, ...) -> CompressedVideo``.

A compressor takes one video's merger output ``tokens`` ``(T, P, d)`` (Qwen2.5-VL: ``T`` temporal
groups of two frames each, ``P = H'·W'`` merged patches per group, row-major over ``grid = (H', W')``)
and a budget, given either as ``retention`` (a fraction of ``N = T·P``) or as ``budget`` (a token
count, turned into ``retention = budget / N``). It returns the tokens the language model sees, with
the (t, row, col) each one is placed at for mRoPE and the source token each one is (or stands for).

Methods are looked up by name (``list_methods()``); each declares its own options as a typed model
whose field names are those of ``BASELINES.md`` (defaults from there), so an option a method does not
take is an error that lists the ones it does. A retention of 1 (or a budget of at least ``N``)
returns the input unchanged, for every method.

Some methods' output count is a function of the shape and the budget alone (``output_count``
answers it before any feature exists, so a processor can emit the right number of placeholders);
for the others (``output_count`` returns ``None``) it depends on the features.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from marc_ops.compression import (
    bytevideollm,
    dycoke,
    fastvid,
    holitom,
    memory_aware,
    moviechat,
    score,
    vidcom2,
)
from marc_ops.compression.base import CompressedVideo, Compressor, check_tokens, identity, resolve_retention

# Lookup by name is the feature: a model config, an evaluation method and the CLI name a compressor.
COMPRESSORS: dict[str, Compressor] = {
    spec.name: spec
    for spec in (
        memory_aware.MARC,
        moviechat.MOVIECHAT,
        vidcom2.VIDCOM2,
        bytevideollm.BYTEVIDEOLLM,
        fastvid.FASTVID,
        dycoke.DYCOKE,
        holitom.HOLITOM,
        score.SCORE,
    )
}


def list_methods() -> list[str]:
    """The compression methods by name, in registry order."""
    return list(COMPRESSORS)


def compressor(method: str) -> Compressor:
    """The registered method ``method``; an unknown name is an error that lists the known ones."""
    if method not in COMPRESSORS:
        raise ValueError(f"unknown compression method {method!r}; known: {', '.join(COMPRESSORS)}")
    return COMPRESSORS[method]


def method_options(method: str, options: dict[str, Any]) -> BaseModel:
    """``options`` validated against ``method``'s option model; an unknown option names the known ones."""
    spec = compressor(method)
    unknown = sorted(set(options) - set(spec.options.model_fields))
    if unknown:
        raise ValueError(
            f"compression method {method!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(spec.options.model_fields) or 'none'}"
        )
    try:
        return spec.options.model_validate(options)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"compression method {method!r}: {problems}") from err


def compress(
    method: str,
    tokens: torch.Tensor,
    grid: tuple[int, int],
    *,
    retention: float | None = None,
    budget: int | None = None,
    **options: Any,
) -> CompressedVideo:
    """Compress one video's merger output with ``method``.

    Args:
        method: a name of ``list_methods()``.
        tokens: (T, P, d) floating, T temporal groups of P = H'·W' tokens, row-major over ``grid``.
        grid: (H', W'), the merged-patch grid of one group.
        retention: the fraction of the T·P tokens to keep, in (0, 1].
        budget: the number of tokens to keep (``retention = budget / (T·P)``, at most 1).
        **options: the method's own hyperparameters (``compressor(method).options``).

    Returns:
        The compressed video; at retention 1 the input itself, in order, at its own positions.
    """
    spec = compressor(method)
    checked = method_options(method, options)
    n_groups, n_tokens = check_tokens(tokens, grid)
    ratio = resolve_retention(n_groups * n_tokens, retention=retention, budget=budget)
    if ratio >= 1.0:
        return identity(tokens, grid, method)
    return spec.run(tokens, (int(grid[0]), int(grid[1])), ratio, checked)


def output_count(
    method: str,
    n_groups: int,
    grid: tuple[int, int],
    *,
    retention: float | None = None,
    budget: int | None = None,
    **options: Any,
) -> int | None:
    """N', the number of tokens ``compress`` returns for a video of ``n_groups`` × ``grid``, when the
    shape and budget decide it; ``None`` when it depends on the features."""
    spec = compressor(method)
    checked = method_options(method, options)
    source = n_groups * int(grid[0]) * int(grid[1])
    ratio = resolve_retention(source, retention=retention, budget=budget)
    if ratio >= 1.0:
        return source
    if spec.count is None:
        return None
    return spec.count(n_groups, (int(grid[0]), int(grid[1])), ratio, checked)
