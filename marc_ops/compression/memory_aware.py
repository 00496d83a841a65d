"""The memory-aware temporal merge (MARC paper 3.2.1, eqs 1-5; SPEC section 5).

A video arrives as N temporal blocks (for Qwen2.5-VL: the temporal groups after the patch
merger), each tagged with the VMR clip it came from. The merge runs in two phases:

1. *Short-term windows.* The sequence is cut into windows of contiguous blocks of one clip,
   at most ``window`` blocks each (counted from the start of each clip, so a clip of 19
   blocks with ``window=8`` gives windows of 8, 8 and 3). Inside a window the most similar
   consecutive pair is merged again and again until ``max(1, floor((1 - ratio) * |S_j|))``
   blocks remain (eq 5). A window never crosses a clip boundary: redundancy is removed where
   it is most common, inside one event, while the events VMR chose stay apart.
2. *Global consolidation.* The windows are concatenated; while more than ``N_target`` blocks
   remain, the most similar consecutive pair of the whole sequence is merged, across clips
   if need be. ``N_target`` is ``target_blocks`` when given, else
   ``max(1, floor((1 - ratio) * N))``.

Both phases use one rule. Similarity is eq 3, the mean over the P aligned patches of their
cosine similarity, computed in (at least) float32 whatever the input dtype. A merged pair is
replaced by the plain mean of the two *current* blocks, ``(H_a + H_b) / 2`` (eq 4) - not a
mean weighted by how many frames each side already holds. Ties go to the earliest pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from marc_ops.compression.base import CompressedVideo, Compressor, grid_positions


@dataclass(frozen=True)
class MergeResult:
    """What ``memory_aware_merge`` returns.

    Attributes:
        blocks: (N', P, d) the merged blocks, in the input's dtype and device.
        groups: for each output block, the input block indices it merged (ascending,
            always a contiguous run).
        positions: (N',) long, the temporal position of each output block for mRoPE: the mean
            of its member indices rounded half to even (Python's ``round``). Strictly
            increasing: two neighbouring groups ``[a..b]`` and ``[b+1..c]`` have means at
            least 1 apart, exactly 1 only when both are single indices (integer means), and
            otherwise at least 1.5 apart, which two roundings of at most 0.5 each cannot close.
    """

    blocks: torch.Tensor
    groups: list[list[int]]
    positions: torch.Tensor


def block_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq 3: the mean over aligned patches of the cosine similarity of two blocks.

    Args:
        a, b: (..., P, d) blocks of any floating dtype.

    Returns:
        (...) similarities in float32 (float64 for float64 inputs).
    """
    compute_dtype = torch.promote_types(a.dtype, torch.float32)
    return F.cosine_similarity(a.to(compute_dtype), b.to(compute_dtype), dim=-1).mean(dim=-1)


def memory_aware_merge(
    blocks: torch.Tensor,
    clip_ids: torch.Tensor | Sequence[int],
    *,
    ratio: float,
    window: int = 8,
    target_blocks: int | None = None,
) -> MergeResult:
    """Merge temporally redundant blocks, first inside clip windows, then globally.

    Args:
        blocks: (N, P, d) floating tensor, one block of P patch tokens per time step.
        clip_ids: (N,) int tensor or sequence, the VMR clip of each block; a window only
            holds a contiguous run of one clip id.
        ratio: ρ in [0, 1), the fraction of blocks each window removes (eq 5).
        window: m >= 1, the most blocks in a short-term window.
        target_blocks: the block budget of the whole sequence; ``None`` means
            ``max(1, floor((1 - ratio) * N))``.

    Returns:
        A ``MergeResult`` with N' blocks, N' == ``merged_block_count(clip_ids, ...)``.
        With ``ratio=0`` and no ``target_blocks`` the blocks are the input's values unchanged
        and every group is a single index.

    Counts use ``floor((1 - ratio) * n)`` computed exactly, reading ``ratio`` as its
    shortest decimal form (0.3 is 3/10), so that float error never drops a block:
    ``ratio=0.3, n=10`` keeps 7.
    """
    check_merge_parameters(ratio, window, target_blocks)
    n_blocks = _check_blocks(blocks)
    clips = _clip_list(clip_ids, n_blocks)

    # Phase 1: inside each window. All consecutive similarities are computed in one batch;
    # a window uses the slice of pairs that lie inside it.
    rows = list(blocks.unbind(0))
    pair_sims = block_similarity(blocks[:-1].detach(), blocks[1:].detach()).tolist()
    merged: list[torch.Tensor] = []
    groups: list[list[int]] = []
    for span in _clip_windows(clips, window):
        window_blocks = rows[span.start : span.stop]
        window_groups = [[index] for index in span]
        window_sims = pair_sims[span.start : span.stop - 1]
        _merge_consecutive(window_blocks, window_groups, window_sims, _kept_count(len(span), ratio))
        merged += window_blocks
        groups += window_groups

    # Phase 2: across the whole sequence, clip boundaries included.
    target = _target_count(n_blocks, ratio, target_blocks)
    if len(merged) > target:
        stacked = torch.stack(merged).detach()
        sims = block_similarity(stacked[:-1], stacked[1:]).tolist()
        _merge_consecutive(merged, groups, sims, target)

    positions = torch.tensor(
        [round(sum(group) / len(group)) for group in groups], dtype=torch.long, device=blocks.device
    )
    return MergeResult(blocks=torch.stack(merged), groups=groups, positions=positions)


def merged_block_count(
    clip_ids: torch.Tensor | Sequence[int],
    *,
    ratio: float,
    window: int = 8,
    target_blocks: int | None = None,
) -> int:
    """N', the number of blocks ``memory_aware_merge`` returns, without the features.

    The processor needs it to emit the right number of video placeholder tokens before the
    vision tower runs. Phase 1 always reaches each window's budget exactly, and phase 2 only
    ever lowers the count to ``N_target``, so N' = min(sum_j n_j, N_target).

    Args:
        clip_ids: (N,) int tensor or sequence, the VMR clip of each block.
        ratio, window, target_blocks: as in ``memory_aware_merge``.
    """
    check_merge_parameters(ratio, window, target_blocks)
    clips = _clip_list(clip_ids, None)
    after_windows = sum(_kept_count(len(span), ratio) for span in _clip_windows(clips, window))
    return min(after_windows, _target_count(len(clips), ratio, target_blocks))


def check_merge_parameters(ratio: float, window: int, target_blocks: int | None) -> None:
    """The merge's parameters, each checked with an error that says what to change."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(
            f"ratio={ratio!r} is outside [0, 1): it is the fraction of temporal blocks to remove; "
            "use 0 to keep every block and e.g. 0.5 to halve them (1 would remove everything)"
        )
    if window < 1:
        raise ValueError(
            f"window={window!r} must be >= 1: it is the most temporal blocks of one clip merged "
            "together in the first phase (the paper's m; the default is 8)"
        )
    if target_blocks is not None and target_blocks < 1:
        raise ValueError(
            f"target_blocks={target_blocks!r} must be >= 1 or None: it is the number of "
            "temporal blocks left after merging (1 = one frame's worth of tokens); "
            "use None to derive it from ratio"
        )


def _merge_consecutive(
    blocks: list[torch.Tensor], groups: list[list[int]], sims: list[float], keep: int
) -> None:
    """Merge the most similar consecutive pair until ``keep`` blocks remain, in place.

    ``sims[i]`` is the similarity of ``blocks[i]`` and ``blocks[i + 1]``. After merging pair
    ``i`` only its two neighbouring entries change, so only those are recomputed.
    """
    while len(blocks) > keep:
        i = max(range(len(sims)), key=sims.__getitem__)  # max() keeps the first maximum: earliest pair
        blocks[i : i + 2] = [_pair_mean(blocks[i], blocks[i + 1])]
        groups[i : i + 2] = [groups[i] + groups[i + 1]]
        del sims[i]
        if i > 0:
            sims[i - 1] = block_similarity(blocks[i - 1].detach(), blocks[i].detach()).item()
        if i < len(blocks) - 1:
            sims[i] = block_similarity(blocks[i].detach(), blocks[i + 1].detach()).item()


def _pair_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq 4, (a + b) / 2, in the input dtype; half-precision sums are formed in float32 so they cannot overflow."""
    compute_dtype = torch.promote_types(a.dtype, torch.float32)
    return ((a.to(compute_dtype) + b.to(compute_dtype)) / 2).to(a.dtype)


def _kept_count(n: int, ratio: float) -> int:
    """``max(1, floor((1 - ratio) * n))`` in exact arithmetic on ratio's decimal form (eq 5)."""
    return max(1, math.floor((1 - Fraction(repr(float(ratio)))) * n))


def _target_count(n: int, ratio: float, target_blocks: int | None) -> int:
    return _kept_count(n, ratio) if target_blocks is None else target_blocks


def _clip_windows(clips: list[int], window: int) -> list[range]:
    """Cut the block indices into runs of one clip id, at most ``window`` long each."""
    spans = []
    start = 0
    for end in range(1, len(clips) + 1):
        if end == len(clips) or clips[end] != clips[start] or end - start == window:
            spans.append(range(start, end))
            start = end
    return spans


def _check_blocks(blocks: torch.Tensor) -> int:
    if blocks.ndim != 3 or not blocks.is_floating_point():
        raise ValueError(
            f"blocks must be a floating (N, P, d) tensor; got dtype {blocks.dtype} and shape "
            f"{tuple(blocks.shape)}"
        )
    if blocks.shape[0] == 0:
        raise ValueError("blocks holds no temporal block (N = 0); a video has at least one")
    return blocks.shape[0]


def _clip_list(clip_ids: torch.Tensor | Sequence[int], n_blocks: int | None) -> list[int]:
    if isinstance(clip_ids, torch.Tensor):
        if clip_ids.ndim != 1:
            raise ValueError(f"clip_ids must be 1-D (N,); got shape {tuple(clip_ids.shape)}")
        clips = [int(c) for c in clip_ids.tolist()]
    else:
        clips = [int(c) for c in clip_ids]
    if not clips:
        raise ValueError("clip_ids is empty; a video has at least one temporal block")
    if n_blocks is not None and len(clips) != n_blocks:
        raise ValueError(f"clip_ids has {len(clips)} entries but blocks has {n_blocks}; give one per block")
    return clips


# --- as a compressor (``compress("marc", ...)``) -------------------------------------------------------------


class MARCOptions(BaseModel):
    """The memory-aware merge through the common API: the retention sets the global block budget.

    Attributes:
        clip_ids: the VMR clip of each temporal group (T,); ``None``: the whole video is one clip.
        ratio: ρ, the fraction of blocks each short-term window removes (eq 5).
        window: m, the most blocks of one clip in a short-term window.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    clip_ids: tuple[int, ...] | None = None
    ratio: float = Field(default=0.5, ge=0.0, lt=1.0)
    window: int = Field(default=8, ge=1)


def _marc_target(n_groups: int, retention: float) -> int:
    """The blocks kept at ``retention``: ``max(1, floor(retention · T))``, one frame's worth at least."""
    return max(1, math.floor(Fraction(repr(float(retention))) * n_groups))


def _marc_clips(n_groups: int, options: MARCOptions) -> list[int]:
    return [0] * n_groups if options.clip_ids is None else _clip_list(list(options.clip_ids), n_groups)


def _marc_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: MARCOptions
) -> CompressedVideo:
    n_groups, per_group = tokens.shape[0], tokens.shape[1]
    result = memory_aware_merge(
        tokens,
        _marc_clips(n_groups, options),
        ratio=options.ratio,
        window=options.window,
        target_blocks=_marc_target(n_groups, retention),
    )
    # Each merged block sits at its members' rounded mean group; its token at (row, col) stands for
    # the source token at that group, row and col.
    within = torch.arange(per_group, device=tokens.device)
    kept = (result.positions.to(tokens.device)[:, None] * per_group + within[None, :]).reshape(-1)
    return CompressedVideo(
        tokens=result.blocks.reshape(-1, tokens.shape[2]),
        positions=grid_positions(kept, grid),
        kept=kept,
        source_tokens=n_groups * per_group,
        method="marc",
    )


def _marc_count(n_groups: int, grid: tuple[int, int], retention: float, options: MARCOptions) -> int:
    blocks = merged_block_count(
        _marc_clips(n_groups, options),
        ratio=options.ratio,
        window=options.window,
        target_blocks=_marc_target(n_groups, retention),
    )
    return blocks * grid[0] * grid[1]


MARC = Compressor(
    name="marc",
    run=_marc_run,
    options=MARCOptions,
    count=_marc_count,
    description="MARC's memory-aware temporal merge: clip windows, then a global merge to the block budget",
)
