"""Memory-aware temporal compression of video features (paper 3.2.1, SPEC section 5)."""

from marc_ops.compression.config import CompressionConfig, one_frame_compression
from marc_ops.compression.memory_aware import (
    MergeResult,
    block_similarity,
    memory_aware_merge,
    merged_block_count,
)

__all__ = [
    "one_frame_compression",
    "CompressionConfig",
    "MergeResult",
    "block_similarity",
    "memory_aware_merge",
    "merged_block_count",
]
