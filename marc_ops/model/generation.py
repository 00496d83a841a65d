"""Greedy decoding of a batch, as evaluation and caption scoring both answer."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor


def greedy_decode(
    batch: Mapping[str, torch.Tensor],
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    *,
    max_new_tokens: int,
) -> list[str]:
    """Decode a left-padded batch greedily; return only the new text of each sample.

    ``batch``: the model's keyword inputs (``input_ids`` (B, P), ``attention_mask`` (B, P), the
    visual tensors or videos compressed up front as ``mm_encoder_outputs``), left-padded so that
    every sample's prompt ends at the same column.
    """
    inputs = {
        key: value.to(model.device) if isinstance(value, torch.Tensor) else value
        for key, value in batch.items()
    }
    generated = model.generate(
        **inputs,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        max_new_tokens=max_new_tokens,
        pad_token_id=processor.tokenizer.pad_token_id,
        # A placeholder in the answer would announce visual input that does not exist (the batch's
        # features are all spent on the prompt), and no real answer contains one.
        suppress_tokens=[processor.image_token_id, processor.video_token_id],
    )
    new_tokens = generated[:, inputs["input_ids"].shape[1] :]
    return processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
