"""VidCom2 (Liu et al., EMNLP 2025): per-frame pruning of the tokens most distinct from the video and the frame.

BASELINES.md section 2. Source [V]: ``xuyang-liu16/VidCom2@944a17d``
``token_compressor/vidcom2/vidcom2.py`` (the same maths in the ``qwen`` branch and in the first release
``llava/model/vidcom2.py``); applied, as in the official Qwen2.5-VL port, to the merger output at prefill.
"Frame" means one temporal group of ``P`` tokens.

1. Channel subset [V]: the variance of each of the d channels over all ``N = T·P`` tokens (population
   variance), and the ``floor(d/2)`` channels with the *lowest* variance are kept (ties: lower channel).
2. Each token is L2-normalised on those channels: ``x̂_{t,i}`` [V].
3. Centres [V]: the video centre ``c_v`` = mean of all ``x̂``, the frame centre ``c_t`` = mean of group t's
   ``x̂`` (neither is renormalised).
4. Kernel [V]: ``G(x, c) = Σ_α exp(-‖x - c‖² / (2α))`` over α in {1/8, 1/4, 1/2, 1, 2}; global score
   ``v_{t,i} = G(x̂_{t,i}, c_v)``, local score ``f_{t,i} = G(x̂_{t,i}, c_t)``.
5. Frame uniqueness ``u_t = -mean_i v_{t,i}``; ``π = softmax((u - max u) / temperature)`` over the T
   groups (temperature 0.01 [V]); frame ratio ``r_t = min(1, R·(1 + π_t - 1/T))`` [V].
6. ``k_t = max(1, round(r_t·P))`` [V]; group t keeps its ``k_t`` tokens with the smallest ``v + f`` (the
   ones most distinct both globally and locally; ties: lower index), full width, in original order.

Rounding [O]: ``π`` is formed in float64 and ``k_t`` with Python's ``round`` (half to even, the same rule
as the official ``torch.round``), so that identical groups give ``π_t - 1/T = 0`` exactly and
``k_t = round(R·P)`` with no float drift at a ``.5``. The scores themselves are computed in float32 (float64
for float64 input); the official code works in the model's dtype.

Budget: ``Σ_t r_t = R·T`` while no ``r_t`` clamps at 1 (always for ``R <= 0.5``), so ``N' = Σ_t k_t`` is
``R·N`` up to ±½ per group from rounding and the floor of 1 per group: ``|N' - R·N| <= T``. The achieved
ratio is ``CompressedVideo.retention``.

Positions [V]: pure pruning, each kept token keeps its own (t, row, col) and flat index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression.base import CompressedVideo, Compressor, select

# The kernel's bandwidths α = 2^k for k = -3 .. 1 [V]; the method has no knob for them.
BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)


class VidCom2Options(BaseModel):
    """VidCom2's hyperparameters besides the retention R (the call's ``retention``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    temperature: float = Field(
        default=0.01,
        gt=0.0,
        description="softmax temperature of the frame uniqueness u_t that shares the budget over groups",
    )


def token_scores(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-4: the global and local kernel scores of every token.

    Args:
        tokens: (T, P, d) floating.

    Returns:
        ``(v, f)``, each (T, P) in float32 (float64 for float64 input): similarity of each token to the
        video centre and to its own group's centre on the lowest-variance half of the channels.
    """
    x = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    flat = x.reshape(-1, x.shape[-1])
    variance = flat.var(dim=0, unbiased=False)
    # A stable sort gives the lower channel on equal variance (torch.topk leaves ties unspecified).
    channels = torch.sort(variance, stable=True).indices[: x.shape[-1] // 2]
    unit = F.normalize(x[..., channels], dim=-1)
    video_centre = unit.mean(dim=(0, 1), keepdim=True)
    frame_centre = unit.mean(dim=1, keepdim=True)
    return _kernel(unit, video_centre), _kernel(unit, frame_centre)


def frame_budgets(global_scores: torch.Tensor, retention: float, temperature: float) -> list[int]:
    """Steps 5-6: ``k_t`` for each group from the global scores ``v`` (T, P)."""
    n_groups, n_tokens = global_scores.shape
    uniqueness = -global_scores.to(torch.float64).mean(dim=1)
    share = torch.softmax((uniqueness - uniqueness.max()) / temperature, dim=0).tolist()
    # π_t - 1/T first: exactly 0 for a uniform π, so that identical groups get exactly r_t = R.
    ratios = [min(1.0, retention * (1.0 + (p - 1.0 / n_groups))) for p in share]
    return [max(1, round(r * n_tokens)) for r in ratios]


def vidcom2_keep(tokens: torch.Tensor, retention: float, temperature: float = 0.01) -> torch.Tensor:
    """The flat indices ``t·P + i`` VidCom2 keeps, ascending.

    Args:
        tokens: (T, P, d) floating.
        retention: R in (0, 1).
        temperature: the softmax temperature of step 5.

    Returns:
        (N',) long on ``tokens.device``.
    """
    global_scores, local_scores = token_scores(tokens)
    budgets = frame_budgets(global_scores, retention, temperature)
    n_tokens = tokens.shape[1]
    # Ascending stable sort: the most distinct tokens first, the lower index first among equals.
    order = torch.sort(global_scores + local_scores, dim=1, stable=True).indices
    kept = [order[t, :k] + t * n_tokens for t, k in enumerate(budgets)]
    return torch.sort(torch.cat(kept)).values


def _kernel(points: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """``Σ_α exp(-‖x - c‖² / (2α))`` over the last dimension."""
    squared = ((points - centre) ** 2).sum(dim=-1)
    return sum(torch.exp(-squared / (2 * alpha)) for alpha in BANDWIDTHS)


def _vidcom2_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: VidCom2Options
) -> CompressedVideo:
    kept = vidcom2_keep(tokens, retention, options.temperature)
    return select(tokens, grid, kept, "vidcom2")


VIDCOM2 = Compressor(
    name="vidcom2",
    run=_vidcom2_run,
    options=VidCom2Options,
    description="VidCom2: per-group budgets from frame uniqueness, keep the tokens least like the video and frame",
)
