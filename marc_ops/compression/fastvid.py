"""FastVID (Shen et al., NeurIPS 2025): dynamic segments, then salient tokens plus density-peak anchors.

BASELINES.md section 4. Source [V]: the official Qwen2.5-VL code, ``LunarShen/FastVID@a40a109``
``fastvid_qwen25vl/lmms-eval/lmms_eval/models/qwenvlutils/modeling_qwen2_5_vl.py`` (forward, about
l.1885-2090); defaults from ``fastvid_qwen25vl/scripts/eval.sh``. "Frame" means one temporal group.

0. Importance ``a_{t,i}`` (T, P): the option ``scores``, FastVID's pseudo-CLS attention of the last vision
   block (each group sums to 1; the model computes it and passes it in) [V]. Without it, ``‖x_{t,i}‖₂``, the
   variant of the VidCom2 Qwen port (``qwen:token_compressor/fastvid/core.py``) [V]. ``variant`` says which.
1. DySeg [V]: ``g_t`` = the normalised mean token of group t, ``s_t = <g_t, g_{t+1}>``. Cut after group t
   for the ``c - 1`` smallest ``s_t`` (clamped to the T - 1 there are [V, port]; ties: lower t [O]) and for
   every ``s_t < τ``.
2. Segment budget [V]: for a segment of L groups, ``q = floor(P·R)``, ``S = q·L``, context
   ``C_s = max(floor(d·S), 1)``, salient ``A_s = S - C_s``.
3. Allocation [V]: L = 1: the group takes ``A_s`` salient and ``C_s`` context tokens. L > 1: split again
   wherever ``s_t < ε``; only the last group of each of the n sub-segments gets tokens. Salient: ``A_s``
   evenly over the sub-segments, the remainder one each to the first ones. Context: ``C_s`` evenly over
   the ``ceil(n/p)`` anchor sub-segments, every p-th counted back from the last, the remainder one each to
   the last ones. Caps: context ``<= floor(P/2)``, an anchor's salient ``<= P -`` its context, other
   salient ``<= P``.
4. Per budgeted group [V]: salient = the top-A tokens by ``a`` (ties: lower index [O]). Anchors by
   DPC-kNN over the group's other tokens (in index order): ``D_ij = ‖x_i - x_j‖ / sqrt(d)``; density
   ``ρ_i = exp(-mean D²`` to its 4 nearest, self included``)`` (``min(4, n)`` for n < 4 [O]) plus
   ``1e-6·U(0, 1)`` tie noise drawn from a generator seeded with ``seed`` [O]; ``δ_i = min D_ij`` over
   ``ρ_j > ρ_i`` (the largest D when there is none); anchors = top-C by ``ρ·δ`` (ties: lower index [O]).
5. DTM merge [V]: per anchor group, the pool is every segment token that is neither salient nor one of
   its own anchors (other groups' anchors included); each pooled token goes to the anchor of highest
   cosine (ties: first anchor); ``anchor <- w·anchor + (1 - w)·mean(assigned)``, ``w = max(1/(n + 1), β)``.
   All anchor groups read the segment's original features; an anchor that receives nothing is unchanged.
6. Output [V]: salient tokens and updated anchors, sorted by original index.

Arithmetic [O]: ``floor(P·R)`` and ``floor(d·S)`` are exact on the decimal forms of R and d (the official
``int(P * R)`` in floats drops a token at e.g. R = 0.29, P = 100); features are handled in float32 (float64
for float64 input), the official code in the model dtype. A segment whose salient budget is 0 (q = 1)
keeps only its anchors (the official code fails there); ``q = 0`` (``P·R < 1``) is an error.

Budget: ``N' <= Σ_seg q·L = floor(P·R)·T``, equal unless the caps bind (long static segments, where few
sub-segments must hold the whole budget). The achieved ratio is ``CompressedVideo.retention``.

Positions [V]: salient tokens and anchors at their own (t, row, col); ``kept`` is each one's flat index.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression.base import CompressedVideo, Compressor, grid_positions


class FastVIDOptions(BaseModel):
    """FastVID's hyperparameters besides the retention R (the call's ``retention``); defaults: the Qwen script."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    c: int = Field(
        default=8, ge=1, description="DySeg: the c - 1 least similar adjacent groups are always cut"
    )
    tau: float = Field(default=0.84, description="DySeg: also cut wherever adjacent-group similarity < tau")
    epsilon: float = Field(
        default=0.95,
        description="sub-segments inside a segment: split wherever adjacent similarity < epsilon",
    )
    d: float = Field(
        default=0.4, ge=0.0, le=1.0, description="share of a segment's budget given to context anchors"
    )
    p: int = Field(
        default=4, ge=1, description="DTM: every p-th sub-segment, counted back from the last, holds anchors"
    )
    beta: float = Field(
        default=0.6, ge=0.0, le=1.0, description="DTM: least weight an anchor keeps in its merge"
    )
    scores: torch.Tensor | None = Field(
        default=None,
        description="importance a (T, P), the last vision block's pseudo-CLS attention; None: token L2 norm",
    )
    seed: int = Field(default=0, description="seed of the 1e-6 tie-break noise on the DPC-kNN densities")


def dyseg_cuts(similarity: list[float], c: int, tau: float) -> list[int]:
    """Step 1: the groups t to cut after, ascending, from the T - 1 adjacent similarities ``s_t``."""
    n_smallest = min(c - 1, len(similarity))
    smallest = sorted(range(len(similarity)), key=similarity.__getitem__)[:n_smallest]
    return sorted(set(smallest) | {t for t, s in enumerate(similarity) if s < tau})


def segment_sizes(cuts: list[int], n_groups: int) -> list[int]:
    """The lengths of the runs of groups that cutting after each ``t`` in ``cuts`` (ascending) leaves."""
    bounds = [-1, *cuts, n_groups - 1]
    return [end - start for start, end in zip(bounds, bounds[1:], strict=False)]


def segment_allocation(
    similarity: list[float], per_group: int, n_tokens: int, options: FastVIDOptions
) -> list[tuple[int, int]]:
    """Steps 2-3: (salient, context) token counts for each group of one segment.

    Args:
        similarity: the segment's L - 1 adjacent-group similarities ``s_t``.
        per_group: q = floor(P·R).
        n_tokens: P.
        options: d, epsilon, p.
    """
    length = len(similarity) + 1
    total = per_group * length
    context = max(math.floor(Fraction(repr(options.d)) * total), 1)
    salient = total - context
    if length == 1:
        return [(salient, context)]
    sub_sizes = segment_sizes([t for t, s in enumerate(similarity) if s < options.epsilon], length)
    n_sub = len(sub_sizes)
    salient_shares = _split_evenly(salient, n_sub)
    context_shares = [0] * n_sub
    for j, share in enumerate(_split_evenly(context, (n_sub + options.p - 1) // options.p)):
        context_shares[n_sub - 1 - j * options.p] = min(share, n_tokens // 2)
    budgets: list[tuple[int, int]] = []
    for size, n_salient, n_context in zip(sub_sizes, salient_shares, context_shares, strict=True):
        budgets += [(0, 0)] * (size - 1)
        budgets.append((min(n_salient, n_tokens - n_context), n_context))
    return budgets


def density_peak_anchors(points: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Step 4's DPC-kNN: the ``count`` rows of ``points`` (n, d) with the largest ``ρ·δ``, ascending (count,)."""
    n_points, width = points.shape
    distance = torch.cdist(points, points) / math.sqrt(width)
    nearest = torch.topk(distance, k=min(4, n_points), dim=1, largest=False).values
    density = torch.exp(-(nearest**2).mean(dim=1))
    noise = torch.rand(n_points, generator=generator, dtype=density.dtype).to(density.device)
    density = density + noise * 1e-6
    denser = density[None, :] > density[:, None]  # [i, j]: ρ_j > ρ_i
    delta = torch.where(denser, distance, distance.max()).min(dim=1).values
    chosen = torch.sort(delta * density, descending=True, stable=True).indices[:count]
    return torch.sort(chosen).values


def merge_into_anchors(
    flat: torch.Tensor, salient: torch.Tensor, anchors: torch.Tensor, beta: float
) -> torch.Tensor:
    """Step 5, one anchor group: the updated anchors (C, d).

    Args:
        flat: (L·P, d) the segment's features.
        salient: (A,) the segment's salient indices into ``flat``.
        anchors: (C,) this group's anchor indices into ``flat``.
        beta: the least weight an anchor keeps.
    """
    pooled = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
    pooled[salient] = False
    pooled[anchors] = False
    unit = F.normalize(flat, dim=-1)
    assignment = (unit[pooled] @ unit[anchors].T).argmax(dim=1)  # argmax: the first anchor on ties
    # A one-hot matmul rather than index_add_: the sums are deterministic on GPU too.
    one_hot = F.one_hot(assignment, anchors.shape[0]).to(flat.dtype)
    counts = one_hot.sum(dim=0)[:, None]
    mean = (one_hot.T @ flat[pooled]) / counts.clamp(min=1)
    weight = (1 / (counts + 1)).clamp(min=beta)
    return weight * flat[anchors] + (1 - weight) * mean


def fastvid_select(
    tokens: torch.Tensor, retention: float, options: FastVIDOptions
) -> tuple[torch.Tensor, torch.Tensor]:
    """FastVID on one video.

    Args:
        tokens: (T, P, d) floating.
        retention: R in (0, 1).
        options: the hyperparameters (``scores``, when given, must be (T, P)).

    Returns:
        ``(kept, features)``: (N',) long flat indices ``t·P + i``, ascending, and (N', d) the salient
        tokens and updated anchors in float32 (float64 for float64 input).
    """
    x = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    n_groups, n_tokens, _ = x.shape
    importance = _importance(x, options.scores)
    per_group = math.floor(Fraction(repr(float(retention))) * n_tokens)
    if per_group < 1:
        raise ValueError(
            f"fastvid: retention {retention} leaves floor(P·R) = 0 tokens per group (P = {n_tokens}); "
            f"FastVID needs retention >= 1/P = {1 / n_tokens:.4g}"
        )
    centres = F.normalize(x.mean(dim=1), dim=-1)
    similarity = (centres[:-1] * centres[1:]).sum(dim=-1).tolist()
    generator = torch.Generator().manual_seed(options.seed)
    kept, features = [], []
    start = 0
    for length in segment_sizes(dyseg_cuts(similarity, options.c, options.tau), n_groups):
        budgets = segment_allocation(similarity[start : start + length - 1], per_group, n_tokens, options)
        segment = slice(start, start + length)
        indices, values = _compress_segment(x[segment], importance[segment], budgets, options.beta, generator)
        kept.append(indices + start * n_tokens)
        features.append(values)
        start += length
    return torch.cat(kept), torch.cat(features)


def _compress_segment(
    x: torch.Tensor,
    importance: torch.Tensor,
    budgets: list[tuple[int, int]],
    beta: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 4-6 on one segment x (L, P, d): its kept indices into the segment (ascending) and features."""
    n_tokens = x.shape[1]
    salient, anchor_groups = [], []
    for t, (n_salient, n_context) in enumerate(budgets):
        ranked = torch.sort(importance[t], descending=True, stable=True).indices
        salient.append(ranked[:n_salient] + t * n_tokens)
        if n_context > 0:
            rest = torch.sort(ranked[n_salient:]).values
            anchor_groups.append(rest[density_peak_anchors(x[t, rest], n_context, generator)] + t * n_tokens)
    flat = x.reshape(-1, x.shape[2])
    salient_all = torch.cat(salient)
    merged = [merge_into_anchors(flat, salient_all, anchors, beta) for anchors in anchor_groups]
    kept = torch.cat([salient_all, *anchor_groups])
    order = torch.argsort(kept)
    return kept[order], torch.cat([flat[salient_all], *merged])[order]


def _importance(x: torch.Tensor, scores: torch.Tensor | None) -> torch.Tensor:
    """a (T, P): the given attention scores, or the token norms."""
    if scores is None:
        return x.norm(dim=-1)
    if tuple(scores.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"fastvid: scores must be (T, P) = {tuple(x.shape[:2])}, one importance per token of each group "
            f"(the vision tower's pseudo-CLS attention); got shape {tuple(scores.shape)}"
        )
    return scores.to(device=x.device, dtype=x.dtype)


def _split_evenly(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares differing by at most one, the larger ones first."""
    share, remainder = divmod(total, parts)
    return [share + (1 if i < remainder else 0) for i in range(parts)]


def _fastvid_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: FastVIDOptions
) -> CompressedVideo:
    kept, features = fastvid_select(tokens, retention, options)
    return CompressedVideo(
        tokens=features.to(tokens.dtype),
        positions=grid_positions(kept, grid),
        kept=kept,
        source_tokens=tokens.shape[0] * tokens.shape[1],
        method="fastvid",
        variant="importance=norm" if options.scores is None else "importance=attention",
    )


FASTVID = Compressor(
    name="fastvid",
    run=_fastvid_run,
    options=FastVIDOptions,
    description="FastVID: DySeg segments, top-attention salient tokens plus DPC-kNN anchors merged by DTM",
)
