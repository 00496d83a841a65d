"""Qwen2.5-VL for MARC: offline tiny builders, one loader, and the video-token compression patch.

- ``builders``: the embedded default's tokenizer (trained here), processor and tiny model.
- ``loading``: ``load_qwen2_5_vl`` / ``load_qwen2_5_vl_processor`` for the real or the tiny checkpoint.
- ``patch``: ``apply_compression`` (model side: compress the vision tower's output, place it for mRoPE).
- ``video_compression``: the compression layer without the model (MARC's merge or any method).
- ``importance``: per-token importance from the vision tower's last block (FastVID, HoliTom).
- ``processing``: ``prepare_model_inputs`` (processor side: count the compressed video placeholders).
- ``generation``: greedy decoding of a batch.
- ``qwen2_5_vl_3b``: the real Qwen2.5-VL-3B architecture with random weights and a processor for it
  (Qwen's token ids), for timing the real shapes offline.
"""

from marc_ops.model.builders import (
    TinyQwen2_5_VLConfig,
    build_tiny_checkpoint,
    build_tiny_processor,
    build_tiny_qwen2_5_vl,
)
from marc_ops.model.loading import (
    ModelNotAvailableError,
    default_attn_implementation,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
    refuse_float32_flash_attention,
    resolve_model_source,
)
from marc_ops.model.patch import apply_compression, compression_of, is_compression_patched
from marc_ops.model.processing import (
    compressed_video_token_count,
    prepare_model_inputs,
    temporal_group_clip_ids,
)
from marc_ops.model.qwen2_5_vl_3b import (
    QWEN2_5_VL_3B_NAME,
    build_qwen2_5_vl_3b_processor,
    build_qwen2_5_vl_3b_random,
    parameter_count,
    qwen2_5_vl_3b_config,
    qwen_vocabulary_tokenizer,
)
from marc_ops.model.tokenizer import build_tiny_tokenizer
from marc_ops.model.video_compression import (
    CompressedVideoOutput,
    compress_video_features,
    merge_video_features,
    video_token_count,
)

__all__ = [
    "compress_video_features",
    "video_token_count",
    "QWEN2_5_VL_3B_NAME",
    "CompressedVideoOutput",
    "ModelNotAvailableError",
    "TinyQwen2_5_VLConfig",
    "apply_compression",
    "build_qwen2_5_vl_3b_processor",
    "build_qwen2_5_vl_3b_random",
    "build_tiny_checkpoint",
    "build_tiny_processor",
    "build_tiny_qwen2_5_vl",
    "build_tiny_tokenizer",
    "compressed_video_token_count",
    "compression_of",
    "default_attn_implementation",
    "is_compression_patched",
    "load_qwen2_5_vl",
    "load_qwen2_5_vl_processor",
    "merge_video_features",
    "prepare_model_inputs",
    "parameter_count",
    "qwen2_5_vl_3b_config",
    "qwen_vocabulary_tokenizer",
    "refuse_float32_flash_attention",
    "resolve_model_source",
    "temporal_group_clip_ids",
]
