"""Per-token importance from the vision tower's last block: FastVID's pseudo-CLS attention.

BASELINES.md section 4, step 0 (FastVID's Qwen2.5-VL code): in the last vision block (a
full-attention block in every Qwen2.5-VL), per head, the query of a pseudo-CLS token is the mean of
the rotary-embedded queries of all patches of one temporal group; the keys are averaged over each
2x2 merge unit, so there is one key per merged token. The importance of merged token i of group t
is ``softmax(q̄_t · K_tᵀ / sqrt(d_h))_i``, averaged over heads: each group's scores sum to 1, in the
raster order of the merger output.

The block sees its tokens in Qwen2.5-VL's window order (merge units permuted window by window);
:func:`pseudo_cls_importance` undoes that permutation with the same window index the tower uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
    apply_rotary_pos_emb_vision,
)
from transformers.vision_utils import get_vision_window_index


@dataclass
class LastBlockInputs:
    """What the last vision block's attention received during one tower call."""

    hidden_states: list[torch.Tensor] = field(default_factory=list)
    position_embeddings: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


@contextlib.contextmanager
def capture_last_block(visual: Qwen2_5_VisionTransformerPretrainedModel) -> Iterator[LastBlockInputs]:
    """Record the input of the last block's attention (post-norm hidden states and rotary cos/sin)."""
    captured = LastBlockInputs()

    def record(module, args, kwargs) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.hidden_states.append(hidden.detach())
        captured.position_embeddings.append(tuple(t.detach() for t in kwargs["position_embeddings"]))

    handle = visual.blocks[-1].attn.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield captured
    finally:
        handle.remove()


@torch.no_grad()
def pseudo_cls_importance(
    visual: Qwen2_5_VisionTransformerPretrainedModel, captured: LastBlockInputs, grid_thw: torch.Tensor
) -> list[torch.Tensor]:
    """Per video, ``(T, P)`` float32 importance of each merged token; each group's row sums to 1.

    Args:
        visual: the vision tower that ran (its last block's ``qkv`` weights are used).
        captured: what :func:`capture_last_block` recorded for that one call.
        grid_thw: ``(V, 3)`` the videos' patch grids, as passed to the tower.
    """
    if len(captured.hidden_states) != 1:
        raise RuntimeError(f"expected one call of the vision tower, recorded {len(captured.hidden_states)}")
    attention = visual.blocks[-1].attn
    hidden = captured.hidden_states[0]
    cos, sin = captured.position_embeddings[0]
    length, heads = hidden.shape[0], attention.num_heads
    query, key, _ = attention.qkv(hidden).reshape(length, 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
    query, key = apply_rotary_pos_emb_vision(query, key, cos, sin)
    unit = visual.spatial_merge_unit
    window_index, _ = get_vision_window_index(
        grid_thw,
        spatial_merge_size=visual.spatial_merge_size,
        window_size=visual.window_size,
        patch_size=visual.patch_size,
        kwargs={},
    )
    order = torch.argsort(window_index.to(hidden.device))
    # Back to the processor's order: temporal group major, merge units raster over (h/2, w/2).
    query = query.float().reshape(length // unit, unit, heads, -1)[order]
    key = key.float().reshape(length // unit, unit, heads, -1)[order].mean(dim=1)  # one key per merged token
    scores, start = [], 0
    for t, h, w in grid_thw.tolist():
        per_group = h * w // unit
        q = (
            query[start : start + t * per_group].reshape(t, per_group * unit, heads, -1).mean(dim=1)
        )  # (T, H, d_h)
        k = key[start : start + t * per_group].reshape(t, per_group, heads, -1)  # (T, P, H, d_h)
        logits = torch.einsum("thd,tphd->thp", q, k) / q.shape[-1] ** 0.5
        scores.append(logits.softmax(dim=-1).mean(dim=1))  # (T, P)
        start += t * per_group
    return scores
