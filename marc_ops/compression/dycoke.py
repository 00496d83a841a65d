"""DyCoke's temporal token merging, TTM (Tao et al., CVPR 2025; BASELINES.md section 5).

Only the outer-LLM stage runs here. DyCoke's decode-time KV pruning (DP) runs inside the LLM
(``marc_ops.model.inner_llm``, when ``CompressionConfig.inner_llm`` is on); its hyperparameters
``dp_layer``, ``dp_p`` and ``dp_similarity`` are options of this method and ``_dycoke_run`` ignores them.

Algorithm [V] (``llava/model/llava_arch.py::dycole_ttm``, ported unchanged to the VidCom2 ``qwen``
branch's ``token_compressor/dycoke/temporal_token_merging.py``). Over groups F_0 … F_{T−1}, every
pruned group keeps k = floor((1 − K)·P) of its P tokens: the k whose cosine similarity with the
same-position token of a reference group is *lowest* (the stable order of the similarities, so
ties keep the lowest index).

- Pass 1, pairs: for i = 0, 2, 4, … while i + 1 <= T − 1, F_i stays whole and F_{i+1} is pruned
  against F_i. With an odd T the last group is dropped entirely.
- Pass 2, quads: for i = 0, 4, 8, … while i < T − 4, F_{i+2} is replaced by its k tokens least
  similar to F_i. The final quad (i >= T − 4) is not revisited, so its third group stays whole.
- A single group (T = 1) passes through whole, as in the Qwen port.

"Merging" is pure dropping: no features are averaged, every output token is an input token at its
own position [V, Qwen port], in ascending flat order (the Qwen port sorts the kept indices).

The count is a function of the shape alone: with T_e = 2·floor(T/2) and n4 = |{i in 0, 4, … : i < T − 4}|,
N_out = P·(T_e/2 − n4) + k·(T_e/2 + n4) (P for T = 1).

Budget (our mapping): with the option ``K`` given, k = floor((1 − K)·P) in the official code's
float arithmetic, ``int((1.0 - K) * P)``, and the retention is not used. That is not always the
exact decimal result (K = 0.81, P = 100 gives 18, not 19) but it is what DyCoke ran, and it gives
section 5c's 39.8 % at T = 64. With ``K=None`` (the default) k is solved from
the retention: the k in [0, P] whose N_out is closest to retention·T·P, the larger k on a tie.
TTM cannot go below k = 0, so under the minimum retention (T_e/2 − n4)/T (31.3 % at T = 16,
28.1 % at T = 32) the achieved ratio is that minimum. DyCoke's own default is K = 0.7.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression.base import CompressedVideo, Compressor, select


class DyCokeOptions(BaseModel):
    """TTM's pruning strength: ``K`` as DyCoke sets it, or solved from the retention; and DP's
    hyperparameters, read only by the inner-LLM stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    K: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="the merging ratio K, each pruned group keeps floor((1 - K)·P) tokens (DyCoke's default 0.7); "
        "None: the kept count is solved from the retention",
    )
    dp_layer: int = Field(
        default=3,
        ge=1,
        description="DP's L, used only when inner_llm is on: decoder layers >= L attend to the pruned cache, "
        "ranked by the attention of layer L - 1",
    )
    dp_p: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="DP's pruning ratio p, used only when inner_llm is on: a pruning step keeps "
        "floor(N_v·(1 - p)) of the N_v visual tokens",
    )
    dp_similarity: float = Field(
        default=0.9,
        ge=-1.0,
        le=1.0,
        description="DP's threshold, used only when inner_llm is on: a decoding step prunes when the cosine "
        "between its visual attention and the previous step's is below it (always at the first step)",
    )


def pruned_group_counts(n_groups: int) -> tuple[int, int]:
    """(whole groups, pruned groups) after TTM of T groups: (T_e/2 − n4, T_e/2 + n4); T = 1 is one whole."""
    if n_groups == 1:
        return 1, 0
    pairs = n_groups // 2
    quads = len(range(0, n_groups - 4, 4))
    return pairs - quads, pairs + quads


def ttm_count(n_groups: int, per_group: int, k: int) -> int:
    """N_out = P·(T_e/2 − n4) + k·(T_e/2 + n4), the tokens TTM keeps with k per pruned group."""
    whole, pruned = pruned_group_counts(n_groups)
    return per_group * whole + k * pruned


def kept_per_pruned_group(n_groups: int, per_group: int, retention: float, options: DyCokeOptions) -> int:
    """k: floor((1 − K)·P) for a given K; otherwise the k in [0, P] that brings N_out closest to retention·T·P."""
    if options.K is not None:
        return int((1.0 - options.K) * per_group)  # the official float rule, on purpose (module docstring)
    whole, pruned = pruned_group_counts(n_groups)
    if pruned == 0:
        return per_group
    target = Fraction(repr(float(retention))) * n_groups * per_group
    exact = (target - per_group * whole) / pruned
    # N_out grows with k, so the closest k in [0, P] is exact's floor or ceiling, clamped.
    candidates = {min(per_group, max(0, math.floor(exact))), min(per_group, max(0, math.ceil(exact)))}
    return min(candidates, key=lambda k: (abs(ttm_count(n_groups, per_group, k) - target), -k))


def _least_similar(frame: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """(k,) indices of the tokens of ``frame`` (P, d) least cosine-similar to ``reference``'s at the same position."""
    similarity = F.cosine_similarity(frame, reference, dim=-1)
    return torch.sort(similarity, stable=True).indices[:k]


def _dycoke_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: DyCokeOptions
) -> CompressedVideo:
    """tokens (T, P, d) -> the N_out tokens TTM keeps, sorted by flat index (module docstring)."""
    n_groups, per_group, _ = tokens.shape
    k = kept_per_pruned_group(n_groups, per_group, retention, options)
    variant = f"K={options.K}" if options.K is not None else f"K solved, k={k}"
    all_tokens = torch.arange(per_group, device=tokens.device)
    if n_groups == 1:
        return select(tokens, grid, all_tokens, "dycoke", variant)

    frames = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
    kept_in_group: dict[int, torch.Tensor] = {}
    for i in range(0, n_groups - 1, 2):  # pass 1: pairs; an odd T's last group is never visited
        kept_in_group[i] = all_tokens
        kept_in_group[i + 1] = _least_similar(frames[i + 1], frames[i], k)
    for i in range(0, n_groups - 4, 4):  # pass 2: quads, the final one left as pass 1 made it
        kept_in_group[i + 2] = _least_similar(frames[i + 2], frames[i], k)

    kept = torch.cat([group * per_group + within for group, within in kept_in_group.items()])
    return select(tokens, grid, kept, "dycoke", variant)


def _dycoke_count(n_groups: int, grid: tuple[int, int], retention: float, options: DyCokeOptions) -> int:
    per_group = grid[0] * grid[1]
    return ttm_count(n_groups, per_group, kept_per_pruned_group(n_groups, per_group, retention, options))


DYCOKE = Compressor(
    name="dycoke",
    run=_dycoke_run,
    options=DyCokeOptions,
    count=_dycoke_count,
    description="DyCoke TTM: pairs and quads of groups, pruned groups keep their least similar tokens",
)
