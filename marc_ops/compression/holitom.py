"""HoliTom's outer-LLM spatio-temporal merge (Shao et al., NeurIPS 2025; BASELINES.md section 6).

Source: ``cokeshao/HoliTom@e9b2972``, ``holitom/llava_arch.py`` (``select_static_windows``,
``get_static_dynamic_features``, ``holitom``, ``merge_tokens_*``, ``cluster_dpc_knn``). The inner-LLM merge
at decoder layer K = 18 is not part of this module: it runs inside the LLM (``marc_ops.model.inner_llm``, when
``CompressionConfig.inner_llm`` is on), with the options ``inner_layer`` and ``inner_r``, which
``_holitom_run`` ignores. For one video ``X`` (T, P, d), ``N = T·P``:

1. ``σ_t(p) = cos(x_{t,p}, x_{t+1,p})``, t = 0 … T−2; a position is static over ``[s, e]`` when
   ``σ_t(p) > τ`` for every t in ``[s, e−1]``.
2. Window gain ``G(s, e) = (e − s)·|{static positions}|``, the tokens saved by collapsing them.
3. DP over the groups: ``best[i] = max(best[i−1], best[i−W] + G(i−W+1, i))`` for W = 2 … min(i+1, W_max),
   taking a window only on a strict improvement (the shortest one wins ties); backtracking partitions
   the groups into windows, singletons allowed. ``Z = best[T−1]``.
4. ``r′ = min(1, R·N/(N − Z))``.
5. Per window: the positions S static over the whole window become one token each, the mean over the
   window's groups. Every other (group, position) is dynamic.
6. Dynamic, per group with n dynamic tokens: keep the ``⌈n·r′⌉`` with the highest importance (official
   D = 0; the D > 0 path fails on a shape bug in the official code and is not reproduced).
7. Static: ``c = round(|S|·r′)`` (half to even, as Python's ``round``; c = 0 drops them) DPC-kNN centres,
   with ``D_ij = ‖x_i − x_j‖/√d``, density ``ρ_i = exp(−mean D² to its k = min(K, c) nearest, itself
   included) + 1e-6·U(0, 1)``, ``δ_i = min D_ij`` over denser j (the largest D_ij of the window if none),
   centres = the top c of ``ρ·δ``. Every other token goes to its nearest centre (Euclidean) and a centre
   becomes ``β·centre + (1 − β)·mean(assigned)`` (``no_beta``: the plain mean of the centre and its
   tokens, the official ``NO_BETA`` variant); a centre with nothing assigned is unchanged.

Importance is the ``scores`` option (T, P), e.g. the vision tower's attention (variant
``importance=attention``), else ``‖x‖₂`` as in the VidCom2 Qwen port (``importance=norm``). The tie-break
noise comes from ``torch.Generator().manual_seed(seed)`` on the CPU, drawn as ``torch.rand(|S|)`` in the
working dtype, once per window with static tokens, in window order. Ties otherwise go to the lowest
index. Counts use R as the decimal it is written as (``Fraction(repr(R))``), so ``⌈0.07·100⌉`` is 7.

Budget: ``N_out = Σ_windows round(|S|·r′) + W·⌈n·r′⌉ ≈ r′·(N − Z) = R·N``, plus at most one token per group
from the ceilings; when r′ clamps at 1, ``N_out = N − Z > R·N``. The count depends on the features.

Positions (BASELINES.md 6d, our choice for mRoPE): a dynamic token keeps its own (t, r, c); a static
(centre) token takes (t_s, r, c) with t_s the window's first group, and ``kept`` is that source index
``t_s·P + r·W' + c``. The whole output is sorted by that index (so each window's static tokens sit among
its first group's dynamic ones, as in HoliTom's grid mode), never re-spaced as the VidCom2 port does.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from marc_ops.compression.base import CompressedVideo, Compressor, check_tokens, grid_positions


class HoliTomOptions(BaseModel):
    """HoliTom's hyperparameters (official defaults, ``llava_arch.py`` environment); the ``inner_*`` ones
    are read only by the inner-LLM stage."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    tau: float = Field(
        default=0.8,
        ge=-1.0,
        le=1.0,
        description="τ: a position is static while its cosine with the next group is above it",
    )
    beta: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="β: a centre's weight against the mean of its assigned tokens",
    )
    no_beta: bool = Field(
        default=False,
        description="the NO_BETA variant: a centre becomes the plain mean of itself and its tokens",
    )
    d: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="D: the share of each dynamic budget filled by clustering; only 0",
    )
    k: int = Field(default=7, ge=1, description="K: the DPC-kNN density uses min(K, c) nearest neighbours")
    w_max: int = Field(
        default=1024, ge=1, description="W_max: the longest window (in groups) the DP considers"
    )
    seed: int = Field(
        default=0, description="seeds the generator of the DPC-kNN tie-break noise 1e-6·U(0, 1)"
    )
    scores: torch.Tensor | None = Field(
        default=None,
        description="(T, P) importance of each token (vision attention); None: the token's L2 norm",
    )
    inner_layer: int = Field(
        default=18,
        ge=1,
        description="the inner merge's K (HOLITOM_k), used only when inner_llm is on: the merge happens at the "
        "input of decoder layer K, ranked by the attention of layer K - 1",
    )
    inner_r: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="the inner merge's r (HOLITOM_r), used only when inner_llm is on: layer K keeps "
        "round(N_v·(1 - r)) of the N_v visual tokens and folds the others into them",
    )

    @field_validator("d")
    @classmethod
    def _only_d_zero(cls, value: float) -> float:
        if value > 0:
            raise ValueError(
                f"D = {value} is not supported: the official D > 0 path (part of each dynamic budget by "
                "clustering) fails on a shape bug and is not reproduced; use D = 0 (pure top-score pruning)"
            )
        return value


def static_windows(static: torch.Tensor, w_max: int) -> tuple[list[tuple[int, int]], int]:
    """HoliTom's window DP (steps 2-3).

    Args:
        static: (T−1, P) bool, ``σ_t(p) > τ``.
        w_max: the longest window considered.

    Returns:
        The windows ``(start, end)`` (inclusive, covering 0 … T−1 in order) and Z, the tokens they save.
    """
    n_groups = static.shape[0] + 1
    # still_static[s][j]: how many positions stay static over the groups s … s + j
    still_static = [
        [0] + torch.cumprod(static[s : s + w_max - 1].int(), 0).sum(1).tolist() for s in range(n_groups)
    ]
    best, start_of = [0] * n_groups, list(range(n_groups))
    for i in range(n_groups):
        best[i] = best[i - 1] if i > 0 else 0
        for width in range(2, min(i + 1, w_max) + 1):
            start = i - width + 1
            value = (best[start - 1] if start > 0 else 0) + (width - 1) * still_static[start][width - 1]
            if value > best[i]:
                best[i], start_of[i] = value, start
    windows, end = [], n_groups - 1
    while end >= 0:
        windows.append((start_of[end], end))
        end = start_of[end] - 1
    return windows[::-1], best[-1]


def dpc_knn_centres(x: torch.Tensor, count: int, neighbours: int, generator: torch.Generator) -> torch.Tensor:
    """(count,) long, ascending: the DPC-kNN centres among the rows of ``x`` (n, d) (step 7)."""
    exact = "donot_use_mm_for_euclid_dist"  # true distances: zero to itself, no matmul cancellation
    dist = torch.cdist(x[None], x[None], compute_mode=exact)[0] / math.sqrt(x.shape[1])
    nearest = torch.topk(dist, neighbours, dim=1, largest=False).values
    noise = torch.rand(x.shape[0], generator=generator, dtype=x.dtype).to(x.device)
    density = torch.exp(-(nearest**2).mean(1)) + 1e-6 * noise
    denser = density[None, :] > density[:, None]
    parent = torch.where(denser, dist, dist.max()).min(1).values
    order = torch.sort(parent * density, descending=True, stable=True).indices
    return torch.sort(order[:count]).values


def merge_into_centres(
    x: torch.Tensor, centres: torch.Tensor, beta: float, no_beta: bool = False
) -> torch.Tensor:
    """(c, d): each row of ``x`` (n, d) not a centre joins its nearest centre; centres updated as in step 7."""
    others = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    others[centres] = False
    assign = torch.cdist(x[others], x[centres], compute_mode="donot_use_mm_for_euclid_dist").argmin(1)
    sums = torch.zeros_like(x[centres]).index_add_(0, assign, x[others])
    counts = torch.bincount(assign, minlength=centres.numel()).to(x.dtype)[:, None]
    if no_beta:
        return (x[centres] + sums) / (counts + 1)
    merged = beta * x[centres] + (1 - beta) * sums / counts.clamp(min=1)
    return torch.where(counts > 0, merged, x[centres])


def _importance(work: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
    if scores is None:
        return work.norm(dim=-1)
    if tuple(scores.shape) != tuple(work.shape[:2]):
        raise ValueError(
            f"holitom: scores must be (T, P) = {tuple(work.shape[:2])}, one importance per token; "
            f"got shape {tuple(scores.shape)}"
        )
    return scores.to(device=work.device, dtype=work.dtype)


def _compress_window(
    work: torch.Tensor,
    importance: torch.Tensor,
    static_mask: torch.Tensor,
    window: tuple[int, int],
    ratio: Fraction,
    options: HoliTomOptions,
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Steps 5-7 for the groups ``start … end``: (token blocks, their flat source indices)."""
    (start, end), per_group = window, work.shape[1]
    positions = torch.arange(per_group, device=work.device)
    static = static_mask[start:end].all(0) if end > start else torch.zeros_like(positions, dtype=torch.bool)
    tokens, kept = [], []
    static_count = round(int(static.sum()) * ratio)
    if static_count > 0:
        merged = work[start : end + 1, static].mean(0)
        centres = dpc_knn_centres(merged, static_count, min(options.k, static_count), generator)
        tokens.append(merge_into_centres(merged, centres, options.beta, options.no_beta))
        kept.append(start * per_group + positions[static][centres])
    dynamic = positions[~static]
    keep = math.ceil(dynamic.numel() * ratio)
    for group in range(start, end + 1):
        chosen = dynamic[torch.sort(importance[group, dynamic], descending=True, stable=True).indices[:keep]]
        tokens.append(work[group, chosen])
        kept.append(group * per_group + chosen)
    return tokens, kept


def _holitom_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: HoliTomOptions
) -> CompressedVideo:
    n_groups, per_group = check_tokens(tokens, grid)
    work = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    importance = _importance(work, options.scores)
    static_mask = F.cosine_similarity(work[:-1], work[1:], dim=-1) > options.tau
    windows, saved = static_windows(static_mask, options.w_max)
    source = n_groups * per_group
    ratio = min(Fraction(1), Fraction(repr(float(retention))) * source / (source - saved))
    generator = torch.Generator().manual_seed(options.seed)
    blocks, kept_blocks = [], []
    for window in windows:
        window_tokens, window_kept = _compress_window(
            work, importance, static_mask, window, ratio, options, generator
        )
        blocks += window_tokens
        kept_blocks += window_kept
    kept, order = torch.sort(torch.cat(kept_blocks))
    return CompressedVideo(
        tokens=torch.cat(blocks)[order].to(tokens.dtype),
        positions=grid_positions(kept, grid),
        kept=kept,
        source_tokens=source,
        method="holitom",
        variant=("importance=norm" if options.scores is None else "importance=attention")
        + (", no_beta" if options.no_beta else ""),
    )


HOLITOM = Compressor(
    name="holitom",
    run=_holitom_run,
    options=HoliTomOptions,
    description="HoliTom's outer merge: static windows by DP, DPC-kNN merge of static tokens, top-score dynamic",
)
