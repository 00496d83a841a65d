"""What every compressor takes and returns: ``CompressedVideo``, the ``Compressor`` record, shared helpers.

The methods (one module each) build on these; :mod:`.api` looks them up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel


@dataclass(frozen=True)
class CompressedVideo:
    """One video after compression.

    Attributes:
        tokens: (N', d) the features that replace the video's placeholders, in LLM order.
        positions: (N', 3) long, (t, row, col) of each output token in the uncompressed grid's
            units (temporal group, merged-patch row, merged-patch column): what mRoPE gets.
        kept: (N',) long, the flat source index ``t·P + row·W' + col`` of each output token, or of
            the token that represents it when it is a merge of several.
        source_tokens: N = T·P, the uncompressed count.
        method: the registry name that produced it.
        variant: which of a method's documented variants ran (e.g. how importance was scored);
            empty when the method has one.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    kept: torch.Tensor
    source_tokens: int
    method: str
    variant: str = ""

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.ndim != 2 or self.positions.shape != (n, 3) or self.kept.shape != (n,):
            raise ValueError(
                f"{self.method}: a compressed video needs tokens (N', d), positions (N', 3) and kept (N',); got "
                f"{tuple(self.tokens.shape)}, {tuple(self.positions.shape)}, {tuple(self.kept.shape)}"
            )

    @property
    def retention(self) -> float:
        """The achieved ratio N'/N (FastVID, HoliTom and VidCom2 land near, not on, the requested one)."""
        return self.tokens.shape[0] / self.source_tokens


# run(tokens (T, P, d), (H', W'), retention, options) -> CompressedVideo
CompressorFn = Callable[[torch.Tensor, tuple[int, int], float, Any], CompressedVideo]
# count(T, (H', W'), retention, options) -> N'; a method whose count depends on the features has none
CountFn = Callable[[int, tuple[int, int], float, Any], int]


@dataclass(frozen=True)
class Compressor:
    """A compression method: how it runs, its options, and (where the shape decides it) its output count."""

    name: str
    run: CompressorFn
    options: type[BaseModel]
    count: CountFn | None = None
    description: str = ""


def resolve_retention(source_tokens: int, *, retention: float | None, budget: int | None) -> float:
    """The retention a call asks for: ``retention`` as given, or ``budget / N`` (at most 1); exactly one of them."""
    if (retention is None) == (budget is None):
        raise ValueError(
            "give exactly one of retention (a fraction of the T·P tokens, e.g. 0.25) or budget (a token count, "
            f"e.g. 120); got retention={retention!r}, budget={budget!r}"
        )
    if retention is not None:
        if not 0.0 < retention <= 1.0:
            raise ValueError(f"retention={retention!r} must be in (0, 1]: it is the fraction of tokens kept")
        return float(retention)
    if budget is None or budget < 1:
        raise ValueError(f"budget={budget!r} must be a positive token count")
    return min(1.0, budget / source_tokens)


def check_tokens(tokens: torch.Tensor, grid: tuple[int, int]) -> tuple[int, int]:
    """(T, P) of a ``(T, P, d)`` floating tensor whose P matches ``grid``; an error says what is wrong."""
    if tokens.ndim != 3 or not tokens.is_floating_point():
        raise ValueError(
            f"tokens must be a floating (T, P, d) tensor (one video's merger output); got dtype {tokens.dtype} "
            f"and shape {tuple(tokens.shape)}"
        )
    if len(grid) != 2 or int(grid[0]) * int(grid[1]) != tokens.shape[1] or min(grid) < 1:
        raise ValueError(
            f"grid {tuple(grid)} (H', W') must have H'·W' = P = {tokens.shape[1]} tokens per group"
        )
    if tokens.shape[0] < 1:
        raise ValueError("tokens hold no temporal group (T = 0); a video has at least one")
    return tokens.shape[0], tokens.shape[1]


def grid_positions(kept: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N', 3) long (t, row, col) of flat source indices ``kept`` (N',) on a ``(H', W')`` grid."""
    height, width = int(grid[0]), int(grid[1])
    per_group = height * width
    return torch.stack([kept // per_group, (kept % per_group) // width, kept % width], dim=1)


def identity(tokens: torch.Tensor, grid: tuple[int, int], method: str) -> CompressedVideo:
    """Every token, in order, at its own position (what every method returns at retention 1)."""
    n_groups, n_tokens = check_tokens(tokens, grid)
    kept = torch.arange(n_groups * n_tokens, device=tokens.device)
    return CompressedVideo(
        tokens=tokens.reshape(n_groups * n_tokens, -1),
        positions=grid_positions(kept, grid),
        kept=kept,
        source_tokens=n_groups * n_tokens,
        method=method,
    )


def select(
    tokens: torch.Tensor, grid: tuple[int, int], kept: torch.Tensor, method: str, variant: str = ""
) -> CompressedVideo:
    """The tokens at flat indices ``kept`` (sorted here), at their own positions: a pruning method's output."""
    n_groups, n_tokens = check_tokens(tokens, grid)
    kept = torch.sort(kept.to(device=tokens.device, dtype=torch.long)).values
    if kept.numel() and (kept[1:] == kept[:-1]).any():
        raise ValueError(f"{method}: a token was kept twice")
    return CompressedVideo(
        tokens=tokens.reshape(n_groups * n_tokens, -1)[kept],
        positions=grid_positions(kept, grid),
        kept=kept,
        source_tokens=n_groups * n_tokens,
        method=method,
        variant=variant,
    )
