"""The inner-LLM stages of DyCoke and HoliTom, behind ``CompressionConfig.inner_llm`` (off by default).

BASELINES.md section 5 ("DP") and section 6 ("Inner merge"). ``inner_llm_stage(inner, compression,
input_ids)`` installs the configured method's stage on the language model of one patched
``Qwen2_5_VLModel`` for the length of one ``forward`` call, with forward hooks on that instance's
modules (no transformers file is copied or edited, other instances are untouched), and removes it
afterwards. ``marc_ops.model.patch`` enters it around every call of the model's ``forward``, so
``generate`` runs the stage at its prefill and at each of its decoding steps. With ``inner_llm``
off nothing is installed and every output is bit-identical to the outer-only model's.

One call is a *prefill* when the cache is empty (or absent) and a *decoding step* when one new
token arrives on a filled cache. A prefill finds the video tokens (``video_token_id`` in
``input_ids``; several videos count as one visual set) and starts a new :class:`InnerLLMRecord`,
kept on the instance so that the decoding steps that follow (with the cache that prefill filled)
can continue it, and so that a caller can read it afterwards (:func:`inner_llm_record`). Batch size
1 at prefill, as the official code; a larger batch is an error.

DyCoke DP (decoding steps only; ``dp_layer`` L, ``dp_p`` p, ``dp_similarity`` s)
    After layer L − 1's attention, the new token's attention probabilities over the visual tokens,
    averaged over heads, are recomputed from that layer's query (its input hidden state through
    ``q_proj`` and the rotary embedding) and the keys in its cache, rather than by forcing eager
    attention on the model. Their cosine with the previous step's vector decides: below s (always
    at the first step) the kept set is every non-visual cache entry (the prompt's text and every
    generated token) plus the top ``int(N_v·(1 − p))`` visual tokens by that attention, and layers
    >= L attend only to it, through their attention mask (the KV cache stays full, so a pruned
    token can come back at a later step). At or above s, the step attends to the *full* cache:
    the official code resets the subset at every step and only sets it when it prunes, and this
    quirk is reproduced. The previous vector is the previous step's, whether or not it pruned.
HoliTom inner merge (prefill only; ``inner_layer`` K, ``inner_r`` r)
    After layer K − 1's attention, the last prompt token's head-mean attention over the visual
    tokens is recomputed the same way (keys from ``k_proj`` of the layer's input). At the input
    of layer K the top ``round(N_v·(1 − r))`` visual tokens by it are kept; every other visual
    token, in index order, is folded into its most cosine-similar kept token (similarities of
    the unmodified hidden states, computed once) by ``kept ← (kept + other) / 2``, and dropped.
    Layers >= K see the shortened sequence: the hidden states, the rotary embeddings, the position
    ids and the attention mask are gathered at the surviving positions, which keep their original
    mRoPE positions. With a cache, layers >= K store the shortened prompt, and at each decoding step
    their attention mask (when transformers materialises one: eager attention, or padding) is cut
    to the same positions plus the generated tokens, so ``generate`` works: decoding continues at
    the original positions (the cache length of layer 0 is the full prompt's). A plain ``forward``
    returns hidden states and logits for the surviving positions only
    (``inner_llm_record(model).merge.survivors`` says which), so a loss against full-length labels
    fails on the shapes.

Exact relative to the official code (DyCoke ``llava/model/language_model/modeling_qwen2.py``,
HoliTom ``holitom/modeling_qwen2.py``): the layer choice, the ranking (head-mean attention of the
last query row), the kept counts (``int(N_v·(1 − p))`` and Python's ``round``), the similarity rule
and its first step, the full-cache quirk, the visiting order of the folds, the similarity argmax
over the kept tokens in ``topk`` order (ties go to the first of them, as ``torch.max``), dropping the
rest and keeping positions. Approximate: the attention probabilities and the similarities are
computed in float32 (the official code uses the model dtype, bf16 in practice, so near-ties can
rank differently); the folds are evaluated in closed form in float32 and cast once
(``kept/2^c + Σ_j o_j/2^(c−j+1)``, equal to the sequential loop up to rounding, where the official
loop rounds to the model dtype after each fold); DP masks the pruned entries instead of gathering
the kept ones (the same attention up to summation order). Our choices: the visual span is every
video placeholder of the prompt (the official code has one contiguous span, its first image), and
a DP or merge with no video tokens does nothing.

Limitations: batch size 1 at prefill; ``attn_implementation`` ``sdpa`` or ``eager`` (both take a
dense mask; ``flash_attention_2``, the loader's default on CUDA when flash-attn is installed, is
refused with an error naming the fix); a ``DynamicCache`` (generate's default); no chunked prefill
and no continuing a cache with a multi-token input; decoding steps only with the cache of this
model's own latest prefill. With ``r`` so large that no visual token is kept, they are all dropped
(the official code fails on an empty similarity matrix there).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import DynamicCache
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VLAttention,
    Qwen2_5_VLModel,
    Qwen2_5_VLTextModel,
    repeat_kv,
    rotate_half,
)

from marc_ops.compression import CompressionConfig, method_options
from marc_ops.compression.dycoke import DyCokeOptions
from marc_ops.compression.holitom import HoliTomOptions

# Attention implementations whose masks are dense tensors (or None) that the stages can restrict.
DENSE_MASK_ATTENTION = ("sdpa", "eager")
_STATE = "_marc_inner_llm"


@dataclass
class DecodingStep:
    """One decoding step of DyCoke's DP.

    Attributes:
        attention: (N_v,) float32, the new token's head-mean attention over the visual tokens at layer L − 1.
        similarity: its cosine with the previous step's vector; ``None`` at the first step.
        kept_visual: (int(N_v·(1 − p)),) ascending prompt indices of the visual tokens layers >= L attend
            to, besides every non-visual entry; ``None`` when the step attends to the full cache.
    """

    attention: torch.Tensor
    similarity: float | None
    kept_visual: torch.Tensor | None


@dataclass
class InnerMerge:
    """HoliTom's merge at the input of layer K (prefill).

    Attributes:
        attention: (N_v,) float32, the last prompt token's head-mean attention over the visual tokens at
            layer K − 1.
        kept_visual: (n_keep,) ascending prompt indices of the visual tokens kept, n_keep = round(N_v·(1 − r)).
        folded: (N_v − n_keep,) ascending prompt indices of the other visual tokens, folded in this order.
        folded_into: (N_v − n_keep,) the prompt index of the kept token each of them was folded into.
        survivors: (L',) ascending prompt indices of the positions that enter layer K.
    """

    attention: torch.Tensor
    kept_visual: torch.Tensor
    folded: torch.Tensor
    folded_into: torch.Tensor
    survivors: torch.Tensor


@dataclass
class InnerLLMRecord:
    """What the inner stage did in the latest prefill and the decoding steps that followed it.

    Attributes:
        method: ``dycoke`` or ``holitom``.
        visual: (N_v,) ascending prompt indices of the video tokens.
        prompt_length: the prefill's sequence length.
        steps: DyCoke, one entry per decoding step.
        merge: HoliTom, the merge at layer K (``None`` without video tokens or before layer K ran).
    """

    method: str
    visual: torch.Tensor
    prompt_length: int
    steps: list[DecodingStep] = field(default_factory=list)
    merge: InnerMerge | None = None


@dataclass
class _Prefilled:
    """The record of a prefill and the cache it filled (decoding steps must bring back that one)."""

    record: InnerLLMRecord
    cache: weakref.ref | None = None


def inner_llm_record(model: torch.nn.Module) -> InnerLLMRecord | None:
    """The inner stage's record of ``model``'s latest prefill (and its decoding steps); ``None`` before any.

    ``model``: the ``Qwen2_5_VLForConditionalGeneration`` or its ``Qwen2_5_VLModel``.
    """
    inner = model if isinstance(model, Qwen2_5_VLModel) else model.model
    prefilled = vars(inner).get(_STATE)
    return None if prefilled is None else prefilled.record


@contextlib.contextmanager
def inner_llm_stage(
    inner: Qwen2_5_VLModel, compression: CompressionConfig, input_ids: torch.Tensor | None
) -> Iterator[None]:
    """Install the inner-LLM stage of ``compression.method`` on ``inner.language_model`` for one call.

    Args:
        inner: the patched model's ``Qwen2_5_VLModel``.
        compression: the model's compression; nothing is installed unless ``inner_llm`` is on.
        input_ids: (1, L) the call's input ids (at a prefill they locate the video tokens).
    """
    if not compression.inner_llm:
        yield
        return
    text_model = inner.language_model
    attention = text_model.config._attn_implementation
    if attention not in DENSE_MASK_ATTENTION:
        raise ValueError(
            f"inner_llm needs an attention implementation with a dense mask ({' or '.join(DENSE_MASK_ATTENTION)}), "
            f"the model uses {attention!r}: load it with attn_implementation='sdpa'"
        )
    options = method_options(compression.method, compression.options)
    call = _Call(inner, compression.method, input_ids)
    stage = _DyCokeDP(call, options) if isinstance(options, DyCokeOptions) else _HoliTomMerge(call, options)
    layer = options.dp_layer if isinstance(options, DyCokeOptions) else options.inner_layer
    _check_layer(text_model, compression.method, layer)
    handles = [
        text_model.register_forward_pre_hook(call.start, with_kwargs=True),
        text_model.layers[layer - 1].self_attn.register_forward_hook(stage.rank, with_kwargs=True),
        # prepend: the change must reach each layer before any other pre-hook reads its inputs
        *(
            decoder_layer.register_forward_pre_hook(stage.restrict, with_kwargs=True, prepend=True)
            for decoder_layer in text_model.layers[layer:]
        ),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_layer(text_model: Qwen2_5_VLTextModel, method: str, layer: int) -> None:
    option = "dp_layer" if method == "dycoke" else "inner_layer"
    n_layers = text_model.config.num_hidden_layers
    if not 1 <= layer < n_layers:
        raise ValueError(
            f"inner_llm ({method}): {option}={layer} must be in 1 … {n_layers - 1} for a model with {n_layers} "
            f"decoder layers (the stage ranks by layer {option} − 1 and acts on the layers from {option} on)"
        )


# ---------------------------------------------------------------------------------------------
# One call: its phase, the record it continues, the cache it fills. Built for one forward call;
# what must outlive the call (the record, the cache it belongs to) lives in _Prefilled.
# ---------------------------------------------------------------------------------------------


class _Call:
    """Whether one forward call is a prefill or a decoding step, and the record and cache it works on."""

    def __init__(self, inner: Qwen2_5_VLModel, method: str, input_ids: torch.Tensor | None) -> None:
        self.inner, self.method, self.input_ids = inner, method, input_ids
        self.decoding = False
        self.prefilled: _Prefilled | None = None

    def start(self, module: Qwen2_5_VLTextModel, args: tuple, kwargs: dict[str, Any]) -> None:
        """The language model's pre-hook: decide the phase; a prefill starts a new record."""
        cache = kwargs.get("past_key_values")
        length = kwargs["inputs_embeds"].shape[1]
        if cache is None or cache.get_seq_length() == 0:
            self.decoding = False
            self.prefilled = _Prefilled(self._new_record())
            setattr(self.inner, _STATE, self.prefilled)
        elif length == 1:
            self.decoding = True
            self.prefilled = self._prefill_of(cache)
        else:
            raise ValueError(
                f"inner_llm ({self.method}): {length} new tokens on a filled cache (chunked prefill, or a "
                "cache continued with a new prompt) is not supported; prefill the whole prompt at once"
            )

    @property
    def record(self) -> InnerLLMRecord:
        return self.prefilled.record

    def bind_cache(self, cache: DynamicCache | None) -> None:
        """At prefill, remember the cache the layers fill (the language model creates one if none was given)."""
        if cache is None or self.prefilled.cache is not None:
            return
        if not isinstance(cache, DynamicCache):
            raise ValueError(
                f"inner_llm ({self.method}) needs a DynamicCache (generate's default), got {type(cache).__name__}"
            )
        self.prefilled.cache = weakref.ref(cache)

    def _new_record(self) -> InnerLLMRecord:
        if self.input_ids is None:
            raise ValueError(f"inner_llm ({self.method}) needs input_ids at prefill to find the video tokens")
        if self.input_ids.shape[0] != 1:
            raise ValueError(
                f"inner_llm ({self.method}) runs on batch size 1, as the official code does; got a batch of "
                f"{self.input_ids.shape[0]}: call the model once per sample"
            )
        visual = torch.nonzero(self.input_ids[0] == self.inner.config.video_token_id).flatten()
        return InnerLLMRecord(method=self.method, visual=visual, prompt_length=self.input_ids.shape[1])

    def _prefill_of(self, cache: DynamicCache) -> _Prefilled:
        prefilled = vars(self.inner).get(_STATE)
        if prefilled is None or prefilled.cache is None or prefilled.cache() is not cache:
            raise RuntimeError(
                f"inner_llm ({self.method}): a decoding step must continue the cache of this model's latest "
                "prefill (as generate does); this cache was filled elsewhere"
            )
        return prefilled


# ---------------------------------------------------------------------------------------------
# The two stages: ``rank`` runs after the attention of the layer before the stage's layer,
# ``restrict`` before each layer from the stage's layer on.
# ---------------------------------------------------------------------------------------------


class _DyCokeDP:
    """DyCoke's decode-time KV pruning (module docstring)."""

    def __init__(self, call: _Call, options: DyCokeOptions) -> None:
        self.call, self.options = call, options
        self.keep: torch.Tensor | None = None  # (S,) bool over the cache, this step's kept set

    def rank(self, module: Qwen2_5_VLAttention, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        """After layer L − 1's attention: this step's visual attention, its similarity, and the kept set."""
        self.keep = None
        if not self.call.decoding:
            self.call.bind_cache(kwargs.get("past_key_values"))
            return
        visual = self.call.record.visual
        if visual.numel() == 0:
            return
        cache = kwargs["past_key_values"]
        cos, sin = kwargs["position_embeddings"]
        keys = cache.layers[module.layer_idx].keys  # (1, kv_heads, S, head_dim), the new token's included
        attention = last_query_attention(
            module, kwargs["hidden_states"], cos, sin, keys, kwargs.get("attention_mask")
        )[visual]
        steps = self.call.record.steps
        similarity = (
            None
            if not steps
            else float(torch.nn.functional.cosine_similarity(attention, steps[-1].attention, dim=0))
        )
        kept_visual = None
        if similarity is None or similarity < self.options.dp_similarity:
            kept_count = int(visual.numel() * (1.0 - self.options.dp_p))  # the official float rule
            kept_visual = torch.sort(visual[torch.topk(attention, kept_count).indices]).values
            self.keep = torch.ones(keys.shape[2], dtype=torch.bool, device=keys.device)
            self.keep[visual] = False
            self.keep[kept_visual] = True
        steps.append(DecodingStep(attention=attention, similarity=similarity, kept_visual=kept_visual))

    def restrict(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple | None:
        """Before each layer >= L at a pruning step: mask every visual entry outside the kept set."""
        if self.keep is None:
            return None
        attention = self.call.inner.language_model.config._attn_implementation
        kwargs["attention_mask"] = _attend_only(
            kwargs.get("attention_mask"), self.keep, attention, args[0].dtype
        )
        return args, kwargs


class _HoliTomMerge:
    """HoliTom's merge at decoder layer K (module docstring)."""

    def __init__(self, call: _Call, options: HoliTomOptions) -> None:
        self.call, self.options = call, options
        self.attention: torch.Tensor | None = None  # (N_v,) layer K − 1's ranking, at prefill
        self.shortened: dict[str, Any] | None = None  # the gathered layer inputs for layers > K, at prefill

    def rank(self, module: Qwen2_5_VLAttention, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        """After layer K − 1's attention at prefill: the last prompt token's attention over the visual tokens."""
        if self.call.decoding:
            return
        self.call.bind_cache(kwargs.get("past_key_values"))
        visual = self.call.record.visual
        if visual.numel() == 0:
            return
        hidden = kwargs["hidden_states"]  # (1, L, hidden), layer K − 1's normed input
        cos, sin = kwargs["position_embeddings"]
        keys = module.k_proj(hidden).view(*hidden.shape[:2], -1, module.head_dim).transpose(1, 2)
        keys = _rotate(keys, cos, sin)
        attention = last_query_attention(module, hidden, cos, sin, keys, kwargs.get("attention_mask"))
        self.attention = attention[visual]

    def restrict(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple | None:
        """Before each layer >= K: merge and shorten (layer K at prefill), reuse the shortened inputs
        (layers > K at prefill), or cut the decoding mask to the stored positions."""
        record = self.call.record
        if self.call.decoding:
            mask = kwargs.get("attention_mask")
            if record.merge is None or mask is None:
                return None
            generated = torch.arange(record.prompt_length, mask.shape[-1], device=mask.device)
            kwargs["attention_mask"] = mask[
                ..., torch.cat([record.merge.survivors.to(mask.device), generated])
            ]
            return args, kwargs
        if self.attention is None:
            return None
        if self.shortened is None:  # layer K
            hidden, record.merge = holitom_inner_merge(
                args[0], record.visual, self.attention, self.options.inner_r
            )
            self.shortened = _gather_layer_inputs(kwargs, record.merge.survivors)
            return (hidden, *args[1:]), {**kwargs, **self.shortened}
        return args, {**kwargs, **self.shortened}


# ---------------------------------------------------------------------------------------------
# The computations, as functions of tensors.
# ---------------------------------------------------------------------------------------------


def last_query_attention(
    attention: Qwen2_5_VLAttention,
    hidden: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """(S,) float32: the last query's attention probabilities in ``attention``'s layer, averaged over heads.

    Args:
        attention: the layer's attention module (its ``q_proj``, head sizes and scaling).
        hidden: (1, q, hidden) the layer's normed input; only the last row is used.
        cos, sin: (1, q, head_dim) the rotary embedding of those positions.
        keys: (1, kv_heads, S, head_dim) the layer's keys (rotary applied), the last query's own included.
        mask: the layer's attention mask, (1, 1, q, S) bool (True = attend) or additive float, or None
            (no padding, so the last query sees every key).
    """
    query = attention.q_proj(hidden[:, -1:]).view(1, 1, -1, attention.head_dim).transpose(1, 2)
    query = _rotate(query, cos[:, -1:], sin[:, -1:])
    keys = repeat_kv(keys, attention.num_key_value_groups)
    scores = torch.matmul(query.float(), keys.float().transpose(2, 3)) * attention.scaling  # (1, H, 1, S)
    if mask is not None:
        row = mask[:, :, -1:, :]
        scores = scores.masked_fill(~row, float("-inf")) if row.dtype == torch.bool else scores + row.float()
    return scores.softmax(dim=-1).mean(dim=1)[0, 0]


def holitom_inner_merge(
    hidden: torch.Tensor, visual: torch.Tensor, attention: torch.Tensor, r: float
) -> tuple[torch.Tensor, InnerMerge]:
    """HoliTom's merge at layer K: keep the top visual tokens, fold the others into them, drop those.

    Args:
        hidden: (1, L, hidden) the input of layer K.
        visual: (N_v,) ascending sequence indices of the visual tokens.
        attention: (N_v,) the last prompt token's head-mean attention over them (layer K − 1).
        r: the share of visual tokens removed; round(N_v·(1 − r)) stay.

    Returns:
        The (1, L', hidden) input of layer K at the surviving positions, and the merge's record.
    """
    # in topk order (by attention), as the official code orders the similarity's columns
    top = torch.topk(attention, round(visual.numel() * (1 - r))).indices
    is_other = torch.ones_like(visual, dtype=torch.bool)
    is_other[top] = False
    kept, others = visual[top], visual[is_other]
    merged = hidden.clone()
    folded_into = kept[:0]
    if kept.numel() and others.numel():
        work = hidden[0].float()
        similarity = _cosine_matrix(work[others], work[kept])  # (n_others, n_kept), before any fold
        target = similarity.argmax(dim=1)  # the first of equal maxima in topk order, as torch.max
        merged[0, kept] = fold_in_order(work[kept], work[others], target).to(hidden.dtype)
        folded_into = kept[target]
    survivors = torch.ones(hidden.shape[1], dtype=torch.bool, device=hidden.device)
    survivors[others] = False
    survivors = torch.nonzero(survivors).flatten()
    record = InnerMerge(
        attention=attention,
        kept_visual=torch.sort(kept).values,
        folded=others,
        folded_into=folded_into,
        survivors=survivors,
    )
    return merged[:, survivors], record


def fold_in_order(kept: torch.Tensor, others: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``kept[target[i]] ← (kept[target[i]] + others[i]) / 2`` for i = 0, 1, … in turn, in closed form.

    A kept row that receives o_1 … o_c (in that order) ends as ``kept/2^c + Σ_j o_j/2^(c − j + 1)``.

    Args:
        kept: (n, d) the rows folded into.
        others: (m, d) the rows folded, in folding order.
        target: (m,) long in [0, n), the kept row each one goes into.

    Returns:
        (n, d) the kept rows after every fold.
    """
    counts = torch.bincount(target, minlength=kept.shape[0])
    order = torch.sort(target, stable=True).indices  # grouped by target, each group in folding order
    grouped = target[order]
    rank = torch.arange(target.numel(), device=target.device) - (torch.cumsum(counts, 0) - counts)[grouped]
    folds_after = counts[grouped] - rank  # c − j + 1 for the j-th fold (1-based) into its row
    half = torch.tensor(0.5, dtype=kept.dtype, device=kept.device)
    result = kept * half.pow(counts)[:, None]
    return result.index_add(0, grouped, others[order] * half.pow(folds_after)[:, None])


def _cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m): cos(a_i, b_j) as the official code computes it, a·b / (‖a‖·‖b‖)."""
    return (a @ b.T) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True).T)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Qwen2.5-VL's rotary embedding of ``x`` (1, heads, q, head_dim) with ``cos``, ``sin`` (1, q, head_dim)."""
    return x * cos[:, None] + rotate_half(x) * sin[:, None]


def _attend_only(
    mask: torch.Tensor | None, keep: torch.Tensor, attention: str, dtype: torch.dtype
) -> torch.Tensor:
    """A decoding step's mask (1, 1, 1, S) restricted to the cache entries where ``keep`` (S,) is True."""
    keep = keep.view(1, 1, 1, -1)
    if mask is None:
        if attention == "sdpa":
            return keep
        mask = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    if mask.dtype == torch.bool:
        return mask & keep
    return mask.masked_fill(~keep, torch.finfo(mask.dtype).min)


def _gather_layer_inputs(kwargs: dict[str, Any], survivors: torch.Tensor) -> dict[str, Any]:
    """The position-dependent inputs of a decoder layer at the surviving positions only."""
    cos, sin = kwargs["position_embeddings"]
    gathered: dict[str, Any] = {"position_embeddings": (cos[:, survivors], sin[:, survivors])}
    mask = kwargs.get("attention_mask")
    if mask is not None:
        gathered["attention_mask"] = mask[:, :, survivors][..., survivors]
    position_ids = kwargs.get("position_ids")
    if position_ids is not None:
        gathered["position_ids"] = position_ids[..., survivors]
    return gathered
