"""ByteVideoLLM's dynamic spatial pooling (Wang et al., 2024, "Dynamic-VLM"; BASELINES.md section 3).

Algorithm [V] (``models/adapter/dynamic_spatial_pooling.py``): every frame's tokens are reshaped to
their 2-D grid and adaptively average-pooled to a smaller grid, then flattened row-major. Output cell
(i, j) averages input rows ``floor(i·H'/s_h) … ceil((i+1)·H'/s_h) − 1`` and the same for columns
(PyTorch's adaptive bins, ``torch.nn.functional.adaptive_avg_pool2d``). The original runs between its
ViT and projector and was trained with it; here it runs training-free on each temporal group's
merger output grid (H', W') [O].

Budget: B = retention · T · P tokens, so B/T = retention · P per group. Two rules for the side s
(the option ``rounding``; ``CompressedVideo.variant`` is ``"rounding=floor"`` or ``"rounding=round"``):

- ``floor`` [V], the official rule: n = min(floor(B/T), out_token_num), s = max(1, floor(sqrt(n))).
  At MARC's T = 32, B = 120 this gives s = 1, 32 tokens.
- ``round`` [O], MARC's "adjusted the pooling ratio": s = max(1, round(sqrt(B/T))), rounded half up.
  At T = 32, B = 120 it gives s = 2, 128 tokens (about MARC's 120). The default.

Both are computed exactly on retention's shortest decimal form. For a grid that is not square the
frame is pooled to (s_h, s_w) with s_h·s_w ≈ s² and s_h/s_w ≈ H'/W' [O], never above the grid:
s_h = max(1, min(H', round(s·sqrt(H'/W')))), s_w = max(1, min(W', round(s²/s_h))), both rounded half
up. On a square grid that is (min(s, H'), min(s, W')); a frame whose pooled grid is its own grid
passes through unchanged (the official pass-through at n = in_token_num). The output is T·s_h·s_w
tokens, group-major, row-major inside a group.

Positions [O] (section 3d's default): a pooled cell keeps its group's t and takes the floored centre
of its bin in the original grid, row = floor((floor(i·H'/s_h) + ceil((i+1)·H'/s_h) − 1) / 2) and the
column likewise; ``kept`` is the flat index of that (t, row, col). The centres strictly increase with
i, so the kept indices are unique and ascending.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression.base import CompressedVideo, Compressor, grid_positions


class ByteVideoLLMOptions(BaseModel):
    """How the per-group token budget becomes the pooled grid's side."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rounding: Literal["floor", "round"] = Field(
        default="round",
        description="'floor': the official n = min(floor(B/T), out_token_num), s = floor(sqrt(n)); "
        "'round': s = round(sqrt(B/T)), MARC's adjusted pooling ratio",
    )
    out_token_num: int = Field(
        default=576, ge=1, description="n_max, the most tokens per frame under the 'floor' rule"
    )


def pooled_side(per_group: int, retention: float, options: ByteVideoLLMOptions) -> int:
    """s, the side of the square pooled grid for a per-group budget of ``retention · P`` tokens."""
    per_frame = Fraction(repr(float(retention))) * per_group  # B / T
    if options.rounding == "floor":
        return max(1, math.isqrt(min(math.floor(per_frame), options.out_token_num)))
    # round(sqrt(x)) half up is the largest s with (2s - 1)² <= 4x, and floor(sqrt(y)) = isqrt(floor(y)).
    return max(1, (math.isqrt(math.floor(4 * per_frame)) + 1) // 2)


def pooled_shape(grid: tuple[int, int], side: int) -> tuple[int, int]:
    """(s_h, s_w): about side² cells in the grid's aspect ratio, at most the grid itself."""
    height, width = grid
    rows = max(1, min(height, math.floor(side * math.sqrt(height / width) + 0.5)))
    cols = max(1, min(width, math.floor(Fraction(side * side, rows) + Fraction(1, 2))))
    return rows, cols


def bin_centres(size: int, bins: int) -> list[int]:
    """The floored centre of each of PyTorch's ``bins`` adaptive pooling bins over ``size`` cells."""
    centres = []
    for i in range(bins):
        first = i * size // bins
        end = -(-(i + 1) * size // bins)  # ceil((i + 1) · size / bins), one past the bin's last cell
        centres.append((first + end - 1) // 2)
    return centres


def _bytevideollm_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: ByteVideoLLMOptions
) -> CompressedVideo:
    """tokens (T, P, d) -> (T·s_h·s_w, d), each group pooled to (s_h, s_w) (module docstring)."""
    n_groups, per_group, width = tokens.shape
    height, grid_width = grid
    rows, cols = pooled_shape(grid, pooled_side(per_group, retention, options))

    frames = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    frames = frames.reshape(n_groups, height, grid_width, width).permute(0, 3, 1, 2)
    pooled = F.adaptive_avg_pool2d(frames, (rows, cols)).permute(0, 2, 3, 1).reshape(-1, width)

    device = tokens.device
    group = torch.arange(n_groups, device=device)[:, None, None]
    row = torch.tensor(bin_centres(height, rows), device=device)[None, :, None]
    col = torch.tensor(bin_centres(grid_width, cols), device=device)[None, None, :]
    kept = (group * per_group + row * grid_width + col).reshape(-1)
    return CompressedVideo(
        tokens=pooled.to(tokens.dtype),
        positions=grid_positions(kept, grid),
        kept=kept,
        source_tokens=n_groups * per_group,
        method="bytevideollm",
        variant=f"rounding={options.rounding}",
    )


def _bytevideollm_count(
    n_groups: int, grid: tuple[int, int], retention: float, options: ByteVideoLLMOptions
) -> int:
    rows, cols = pooled_shape(grid, pooled_side(grid[0] * grid[1], retention, options))
    return n_groups * rows * cols


BYTEVIDEOLLM = Compressor(
    name="bytevideollm",
    run=_bytevideollm_run,
    options=ByteVideoLLMOptions,
    count=_bytevideollm_count,
    description="ByteVideoLLM: each group adaptively average-pooled to about (B/T) tokens",
)
