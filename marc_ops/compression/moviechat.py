"""MovieChat's short-/long-term memory merge (Song et al., CVPR 2024; BASELINES.md section 1).

Algorithm [V] (``MovieChat/models/moviechat.py::encode_short_memory_frame``, the OneVision evaluator):
one frame is one temporal group, of P tokens.

1. *Short-term memory.* The groups are cut into windows of ``m = short_memory_length -
   merge_frame_length`` consecutive groups (16 by default); the last window holds what is left
   (a partial window is flushed the same way [O]; a window of at most ``short_memory_merge``
   frames passes through).
2. Inside a window, the adjacent pair with the largest similarity ``sim(A, B) = dot(mean A, mean B)``
   (the mean over all token pairs of the raw dot product: no normalisation, tokens not matched by
   patch) is replaced by the equal-weight mean ``(S_j + S_j+1) / 2``, the first pair winning ties;
   the similarities are recomputed and the merge repeats until ``short_memory_merge`` frames remain.
   The survivors of every window, in order, form the long-term memory.
3. *Long-term memory* (MARC's setting [P]+[O]): the same greedy adjacent merge runs on the
   long-term memory until F frames remain; if it already holds at most F, nothing more merges.
   MovieChat's video Q-Former and its frame position embeddings are Q-Former-specific and left out.

Budget (our mapping): F = max(1, round(retention · T)) frames of P tokens each, with the rounding
half up, on retention's shortest decimal form. MARC's setting, a budget of about one group's P
tokens, is one frame. The output is ``min(F, frames after step 1) · P`` tokens.

Positions [O] (section 1d's default re-grid): output frame k is placed at ``t = k`` with every
token's (row, col) unchanged (merging is patch-aligned); ``kept`` is the flat index of the same
(row, col) in the earliest group that frame k merged.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from marc_ops.compression.base import CompressedVideo, Compressor


class MovieChatOptions(BaseModel):
    """MovieChat's memory sizes (defaults: the original model's and its OneVision evaluator's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    short_memory_length: int = Field(
        default=18,
        ge=1,
        description="the short-term buffer's size; a window holds short_memory_length - merge_frame_length groups",
    )
    merge_frame_length: int = Field(
        default=2,
        ge=0,
        description="subtracted from short_memory_length to give the window m (the OneVision evaluator's 18 - 2 = 16)",
    )
    short_memory_merge: int = Field(
        default=2,
        ge=1,
        description="frames each short-term window is merged down to before it joins long-term memory",
    )

    @model_validator(mode="after")
    def _window_holds_a_frame(self) -> MovieChatOptions:
        if self.short_memory_length - self.merge_frame_length < 1:
            raise ValueError(
                f"a short-term window is short_memory_length - merge_frame_length = {self.short_memory_length} - "
                f"{self.merge_frame_length} groups; make it at least 1 (the defaults 18 and 2 give 16)"
            )
        return self

    @property
    def window(self) -> int:
        """m, the groups in one short-term window."""
        return self.short_memory_length - self.merge_frame_length


def frames_kept(n_groups: int, retention: float) -> int:
    """F = max(1, round(retention · T)), rounded half up on retention's shortest decimal form."""
    return max(1, math.floor(Fraction(repr(float(retention))) * n_groups + Fraction(1, 2)))


def _windows(n_groups: int, window: int) -> list[range]:
    return [range(start, min(start + window, n_groups)) for start in range(0, n_groups, window)]


def _merge_adjacent(frames: list[torch.Tensor], earliest: list[int], keep: int) -> None:
    """Merge the most similar adjacent pair of ``frames`` ((P, d) each) until ``keep`` remain, in place.

    ``earliest[j]`` is the first group frame j holds; a merged pair keeps its left member's.
    """
    means = [frame.mean(dim=0) for frame in frames]
    while len(frames) > keep:
        sims = [torch.dot(means[j], means[j + 1]).item() for j in range(len(frames) - 1)]
        j = max(range(len(sims)), key=sims.__getitem__)  # max() keeps the first maximum: the earliest pair
        frames[j : j + 2] = [(frames[j] + frames[j + 1]) / 2]
        means[j : j + 2] = [frames[j].mean(dim=0)]
        del earliest[j + 1]


def _moviechat_run(
    tokens: torch.Tensor, grid: tuple[int, int], retention: float, options: MovieChatOptions
) -> CompressedVideo:
    """tokens (T, P, d) -> min(F, frames after the short-term phase) · P tokens (module docstring)."""
    n_groups, per_group, width = tokens.shape
    compute = tokens.to(torch.promote_types(tokens.dtype, torch.float32))

    long_term: list[torch.Tensor] = []
    earliest: list[int] = []
    for span in _windows(n_groups, options.window):
        frames = list(compute[span.start : span.stop].unbind(0))
        firsts = list(span)
        _merge_adjacent(frames, firsts, options.short_memory_merge)
        long_term += frames
        earliest += firsts
    _merge_adjacent(long_term, earliest, frames_kept(n_groups, retention))

    n_frames = len(long_term)
    within = torch.arange(per_group, device=tokens.device)
    first_group = torch.tensor(earliest, dtype=torch.long, device=tokens.device)
    kept = (first_group[:, None] * per_group + within[None, :]).reshape(-1)
    frame_index = torch.arange(n_frames, device=tokens.device).repeat_interleave(per_group)
    positions = torch.stack([frame_index, (kept % per_group) // grid[1], kept % grid[1]], dim=1)
    return CompressedVideo(
        tokens=torch.stack(long_term).reshape(n_frames * per_group, width).to(tokens.dtype),
        positions=positions,
        kept=kept,
        source_tokens=n_groups * per_group,
        method="moviechat",
    )


def _moviechat_count(
    n_groups: int, grid: tuple[int, int], retention: float, options: MovieChatOptions
) -> int:
    after_windows = sum(
        min(len(span), options.short_memory_merge) for span in _windows(n_groups, options.window)
    )
    return min(frames_kept(n_groups, retention), after_windows) * grid[0] * grid[1]


MOVIECHAT = Compressor(
    name="moviechat",
    run=_moviechat_run,
    options=MovieChatOptions,
    count=_moviechat_count,
    description="MovieChat: short-term windows merged to 2 frames each, then long-term memory merged to the budget",
)
