"""The tiny Qwen2.5-VL's sizes (``model.tiny`` of a profile): what the embedded default builds from config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TinyQwen2_5_VLConfig(BaseModel):
    """Sizes of the tiny Qwen2.5-VL the embedded default trains (all defaults are TRL-tiny-like)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(default=1024, description="BPE vocabulary before the 26 added tokens")
    text_hidden_size: int = 32
    text_intermediate_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    mrope_section: tuple[int, ...] = Field(
        default=(2, 1, 1), description="rotary frequencies for (time, height, width); sums to head_dim / 2"
    )
    max_position_embeddings: int = 32768
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_heads: int = 4
    vision_fullatt_block_indexes: tuple[int, ...] = (1,)
    tokens_per_second: int = Field(
        default=2, description="mRoPE time steps per second of video (Qwen2.5-VL-3B: 2)"
    )
    min_pixels: int = Field(
        default=4 * 28 * 28, description="processor lower bound on H*W of an image or frame"
    )
    max_pixels: int = Field(
        default=128 * 28 * 28, description="processor upper bound on H*W (SPEC section 3)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _shapes_fit(self) -> TinyQwen2_5_VLConfig:
        if self.text_hidden_size % self.text_heads or self.text_heads % self.text_kv_heads:
            raise ValueError(
                f"text_hidden_size={self.text_hidden_size} must divide by text_heads={self.text_heads}, "
                f"which must divide by text_kv_heads={self.text_kv_heads}"
            )
        head_dim = self.text_hidden_size // self.text_heads
        if head_dim % 2 or sum(self.mrope_section) != head_dim // 2:
            raise ValueError(
                f"mrope_section={list(self.mrope_section)} must sum to head_dim/2 = {head_dim // 2} "
                f"(head_dim = text_hidden_size / text_heads = {head_dim}, which must be even)"
            )
        if self.vision_hidden_size % self.vision_heads or (self.vision_hidden_size // self.vision_heads) % 4:
            raise ValueError(
                f"vision_hidden_size={self.vision_hidden_size} / vision_heads={self.vision_heads} must be a "
                "multiple of 4 (the vision rotary embedding splits each head into height and width halves)"
            )
        if any(not 0 <= i < self.vision_depth for i in self.vision_fullatt_block_indexes):
            raise ValueError(
                f"vision_fullatt_block_indexes={list(self.vision_fullatt_block_indexes)} must index blocks "
                f"0..{self.vision_depth - 1}"
            )
        if not 28 * 28 <= self.min_pixels <= self.max_pixels:
            raise ValueError(
                f"need 784 <= min_pixels ({self.min_pixels}) <= max_pixels ({self.max_pixels}): one merged "
                "28x28 patch is the smallest input"
            )
        return self
