"""Video-token compression: one API for MARC's memory-aware merge and every compared method.

``compress(method, tokens, grid, retention=..., budget=..., **options)`` runs any method on one
video's merger output and returns a :class:`CompressedVideo`; ``list_methods()`` names them.
``CompressionConfig`` is what a model carries: which method, at which budget.
"""

from marc_ops.compression.api import compress, compressor, list_methods, method_options, output_count
from marc_ops.compression.base import CompressedVideo, Compressor
from marc_ops.compression.config import CompressionConfig, one_frame_compression
from marc_ops.compression.memory_aware import (
    MergeResult,
    block_similarity,
    memory_aware_merge,
    merged_block_count,
)

__all__ = [
    "CompressedVideo",
    "CompressionConfig",
    "Compressor",
    "MergeResult",
    "block_similarity",
    "compress",
    "compressor",
    "list_methods",
    "memory_aware_merge",
    "merged_block_count",
    "method_options",
    "one_frame_compression",
    "output_count",
]
