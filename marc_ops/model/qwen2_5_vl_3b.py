"""The real Qwen2.5-VL-3B architecture with random weights, and a processor for it, built offline.

``build_qwen2_5_vl_3b_random`` builds Qwen/Qwen2.5-VL-3B-Instruct's architecture from its published
config with cheap deterministic weights, so that timings on this machine are those of the real
shapes; ``build_qwen2_5_vl_3b_processor`` is a processor for it whose tokenizer has Qwen's token ids
(``qwen_vocabulary_tokenizer``).
"""

from __future__ import annotations

import json

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
)
from transformers.initialization import no_init_weights

from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.model.builders import build_tiny_processor
from marc_ops.model.tokenizer import build_tiny_tokenizer

# Qwen/Qwen2.5-VL-3B-Instruct's config.json and generation_config.json, written out here because
# nothing can be downloaded on this machine.
QWEN2_5_VL_3B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "attention_dropout": 0.0,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "tie_word_embeddings": True,
}
QWEN2_5_VL_3B_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "in_chans": 3,
    "out_hidden_size": 2048,
    "hidden_act": "silu",
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "initializer_range": 0.02,
}
QWEN2_5_VL_3B_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
QWEN_FIRST_ADDED_TOKEN_ID = 151643  # <|endoftext|>; the BPE vocabulary fills the ids below it
QWEN2_5_VL_3B_NAME = "Qwen2.5-VL-3B architecture, random weights"

# The deterministic fill: a pool of N(0, initializer_range) values, tiled over each weight from an offset
# that depends on the parameter's index. A prime pool length keeps rows of different widths out of step.
_POOL_SIZE = 1_000_003
_POOL_STRIDE = 7_919


def qwen2_5_vl_3b_config() -> Qwen2_5_VLConfig:
    """The transformers config of Qwen/Qwen2.5-VL-3B-Instruct (3.75 B parameters), from its published values."""
    return Qwen2_5_VLConfig(
        text_config=dict(QWEN2_5_VL_3B_TEXT),
        vision_config=dict(QWEN2_5_VL_3B_VISION),
        tie_word_embeddings=True,
        **QWEN2_5_VL_3B_TOKEN_IDS,
    )


def parameter_count(config: Qwen2_5_VLConfig) -> int:
    """The parameters of the model ``config`` describes (tied embeddings counted once), built on the meta
    device: shapes only, no memory, no initialisation."""
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    return sum(p.numel() for p in model.parameters())


def build_qwen2_5_vl_3b_random(
    dtype: torch.dtype = torch.bfloat16, *, device: str | torch.device = "cpu", seed: int = 0
) -> Qwen2_5_VLForConditionalGeneration:
    """The real Qwen2.5-VL-3B architecture with cheap deterministic random weights, built directly in ``dtype``.

    The modules are created under transformers' ``no_init_weights`` (parameters are allocated in
    ``dtype`` and left uninitialised: no fp32 copy, no per-module random init), then filled once:
    linear, convolution and embedding weights tile a seeded pool of N(0, 0.02) values, norms get 1,
    biases 0. 7.0 GiB of bf16 weights; on this 2-core VM about 40 s, nearly all of it the first touch of
    those pages (the naive build, fp32 init then bf16: 88 s and a 16.7 GB peak). Timing does not depend
    on the values; the fill only keeps activations finite and out of the subnormal range.

    Args:
        dtype: the parameters' dtype (bf16 as the released checkpoint).
        device: where to allocate; ``"meta"`` allocates nothing (shapes and config only, for tests).
        seed: seeds the value pool.
    """
    config = qwen2_5_vl_3b_config()
    with torch.device(device), no_init_weights():
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model.tie_weights()  # no_init_weights skips init_weights, which is also where the tying happens
    if torch.device(device).type != "meta":
        _fill_deterministic(model, std=config.text_config.initializer_range, seed=seed)
    model.generation_config = GenerationConfig(
        bos_token_id=QWEN_FIRST_ADDED_TOKEN_ID,
        eos_token_id=[QWEN2_5_VL_3B_TEXT["eos_token_id"], QWEN_FIRST_ADDED_TOKEN_ID],
        pad_token_id=QWEN_FIRST_ADDED_TOKEN_ID,
    )
    model.config.name_or_path = QWEN2_5_VL_3B_NAME
    return model.eval()


@torch.no_grad()
def _fill_deterministic(model: nn.Module, *, std: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    pool = (torch.randn(2 * _POOL_SIZE, generator=generator) * std).to(model.dtype)
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # the tied lm_head / embedding
                continue
            seen.add(id(param))
            flat = param.view(-1)
            if name == "bias":
                flat.zero_()
            elif "RMSNorm" in type(module).__name__:
                flat.fill_(1.0)
            elif isinstance(module, nn.Linear | nn.Conv3d | nn.Embedding):
                offset = (len(seen) * _POOL_STRIDE) % _POOL_SIZE
                _tile_(flat, pool[offset : offset + _POOL_SIZE].to(flat.device))
            else:
                raise TypeError(
                    f"no fill rule for parameter {name!r} of a {type(module).__name__}; add one to _fill_deterministic"
                )


def _tile_(flat: torch.Tensor, source: torch.Tensor) -> None:
    """Copy ``source`` over ``flat`` again and again (an expand, so no repeated copy is materialised)."""
    size = source.numel()
    whole = flat.numel() // size
    if whole:
        flat[: whole * size].view(whole, size).copy_(source.expand(whole, size))
    rest = flat.numel() - whole * size
    if rest:
        flat[whole * size :].copy_(source[:rest])


def qwen_vocabulary_tokenizer() -> Qwen2Tokenizer:
    """The embedded default's tokenizer with its added tokens moved to Qwen2.5-VL's ids (151643 onwards).

    The real Qwen tokenizer cannot be downloaded here, and the tiny one (1050 ids) puts
    ``<|video_pad|>`` at 1037, not at 151656 where the 3B config expects it. So: the tiny BPE
    (ids 0..1023, unchanged), then unused filler entries up to 151642 (no merge produces them),
    then the same added tokens in the same order, now at Qwen's ids: ``<|endoftext|>`` 151643,
    ``<|im_end|>`` 151645, ``<|vision_start|>`` 151652, ``<|video_pad|>`` 151656, ... The chat
    template, eos / pad and special-token handling are the tiny tokenizer's (which match Qwen's).
    Ordinary text encodes to the tiny BPE's tokens, so a prompt is a few dozen tokens longer or
    shorter than with Qwen's own BPE, next to thousands of visual tokens; timing does not depend on
    which ids the tokens have, only on how many there are and on the vocabulary size.
    """
    tiny = build_tiny_tokenizer()
    spec = json.loads(tiny.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    for token_id in range(len(vocab), QWEN_FIRST_ADDED_TOKEN_ID):
        vocab[f"<|marc_unused_{token_id}|>"] = token_id
    shift = QWEN_FIRST_ADDED_TOKEN_ID - min(token["id"] for token in spec["added_tokens"])
    for token in spec["added_tokens"]:
        token["id"] += shift
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        unk_token=None,
        bos_token=None,
        eos_token=tiny.eos_token,
        pad_token=tiny.pad_token,
        errors="replace",
        model_max_length=tiny.model_max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.extra_special_tokens = list(tiny.extra_special_tokens)
    tokenizer.chat_template = tiny.chat_template
    return tokenizer


def build_qwen2_5_vl_3b_processor(
    *, min_pixels: int = 4 * 28 * 28, max_pixels: int = 128 * 28 * 28
) -> Qwen2_5_VLProcessor:
    """A processor for ``build_qwen2_5_vl_3b_random``: Qwen2.5-VL's image and video processing
    (patch 14, temporal patch 2, merge 2, CLIP mean / std) with the pipeline's per-frame pixel bounds
    (SPEC section 3), and ``qwen_vocabulary_tokenizer()``."""
    bounds = TinyQwen2_5_VLConfig(min_pixels=min_pixels, max_pixels=max_pixels)
    return build_tiny_processor(qwen_vocabulary_tokenizer(), bounds)
