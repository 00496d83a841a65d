"""Build the embedded default's tiny Qwen2.5-VL offline: tokenizer, processor and model (SPEC section 9).

Everything is made from config on this machine and saved the way a hub repository is laid out
(``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer files,
``processor_config.json``, ``chat_template.jinja``), so ``load_qwen2_5_vl(out_dir)`` and
``load_qwen2_5_vl_processor(out_dir)`` treat it exactly as they treat ``Qwen/Qwen2.5-VL-3B-Instruct``.

The shapes follow TRL's tiny Qwen2.5-VL (2 text layers, 2 vision blocks, a few dozen hidden units),
with the mRoPE sections scaled to the head dimension so that time, height and width each get
rotary frequencies, and the vision tower keeps Qwen2.5-VL's windowed + full attention mix
(block 1 attends fully, block 0 in windows). Patch 14, spatial merge 2 and temporal patch 2 are
Qwen2.5-VL's own, so one temporal group of an H x W frame pair gives H*W/(28*28) LLM tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.model.tokenizer import build_tiny_tokenizer

# Qwen2.5-VL's vision geometry; the real checkpoints and the tiny model share it.
PATCH_SIZE = 14
SPATIAL_MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


def build_tiny_processor(
    tokenizer: Qwen2Tokenizer, config: TinyQwen2_5_VLConfig, out_dir: Path | str | None = None
) -> Qwen2_5_VLProcessor:
    """A ``Qwen2_5_VLProcessor`` with Qwen2.5-VL's image and video processing and our tokenizer.

    Frames are resized so that ``min_pixels <= H*W <= max_pixels`` with both sides multiples of 28,
    exactly and per frame (``cap_pixels_per_frame=False``: the pipeline samples and sizes frames
    itself, SPEC section 3).
    """
    geometry = {
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": SPATIAL_MERGE_SIZE,
        "min_pixels": config.min_pixels,
        "max_pixels": config.max_pixels,
    }
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**geometry),
        video_processor=Qwen2VLVideoProcessor(**geometry, cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    if out_dir is not None:
        processor.save_pretrained(out_dir)
    return processor


def tiny_model_config(tokenizer: Qwen2Tokenizer, config: TinyQwen2_5_VLConfig) -> Qwen2_5_VLConfig:
    """The transformers config of the tiny model; every token id comes from ``tokenizer``."""
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in _MODEL_TOKENS.items()}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": config.text_hidden_size,
            "intermediate_size": config.text_intermediate_size,
            "num_hidden_layers": config.text_layers,
            "num_attention_heads": config.text_heads,
            "num_key_value_heads": config.text_kv_heads,
            "max_position_embeddings": config.max_position_embeddings,
            "max_window_layers": config.text_layers,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": list(config.mrope_section),
            },
            "bos_token_id": ids["bos_token_id"],
            "eos_token_id": ids["eos_token_id"],
            "pad_token_id": ids["pad_token_id"],
        },
        vision_config={
            "depth": config.vision_depth,
            "hidden_size": config.vision_hidden_size,
            "intermediate_size": config.vision_intermediate_size,
            "num_heads": config.vision_heads,
            "out_hidden_size": config.text_hidden_size,
            "fullatt_block_indexes": list(config.vision_fullatt_block_indexes),
            "tokens_per_second": config.tokens_per_second,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": SPATIAL_MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        },
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        tie_word_embeddings=True,  # as Qwen2.5-VL-3B
    )


# Which token each id field of the model config names (Qwen2.5-VL: bos = pad = <|endoftext|>).
_MODEL_TOKENS = {
    "bos_token_id": "<|endoftext|>",
    "eos_token_id": "<|im_end|>",
    "pad_token_id": "<|endoftext|>",
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}


def build_tiny_qwen2_5_vl(
    tokenizer: Qwen2Tokenizer, config: TinyQwen2_5_VLConfig, out_dir: Path | str | None = None
) -> Qwen2_5_VLForConditionalGeneration:
    """A randomly initialised tiny ``Qwen2_5_VLForConditionalGeneration`` (seeded, float32).

    Its generation config stops on ``<|im_end|>`` or ``<|endoftext|>`` and pads with
    ``<|endoftext|>``, as Qwen2.5-VL-Instruct's does. The global RNG is left as it was.
    """
    model_config = tiny_model_config(tokenizer, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen2_5_VLForConditionalGeneration(model_config)
    eos, pad = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=[eos, pad], pad_token_id=pad)
    model.eval()
    if out_dir is not None:
        model.save_pretrained(out_dir)
    return model


def build_tiny_checkpoint(out_dir: Path | str, config: TinyQwen2_5_VLConfig | None = None) -> Path:
    """Tokenizer, processor and model of the tiny Qwen2.5-VL, saved together in ``out_dir``.

    The directory then loads like a hub checkpoint: ``load_qwen2_5_vl(out_dir)``,
    ``load_qwen2_5_vl_processor(out_dir)``, or transformers' ``from_pretrained`` classes.
    """
    config = config or TinyQwen2_5_VLConfig()
    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer(out_dir, vocab_size=config.vocab_size)
    build_tiny_processor(tokenizer, config, out_dir)
    build_tiny_qwen2_5_vl(tokenizer, config, out_dir)
    return out_dir
