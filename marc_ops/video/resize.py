"""Qwen2.5-VL's frame-size rule (`smart_resize`) and the one resize used for frames and images."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from qwen_vl_utils.vision_process import smart_resize as qwen_smart_resize

from marc_ops.config.video import PATCH_FACTOR

# Qwen2.5-VL refuses images more elongated than this.
MAX_ASPECT_RATIO = 200
# Frames and images above this are refused, not resized: the largest frame of the H.264 and HEVC levels
# (8192x4352, level 6.2), so 8K UHD (7680x4320) passes. Decoding and resizing one 8K frame peaks at
# ~0.7 GB (measured: the frame, its float32 copy, the decoder's buffers), ~21 bytes a pixel; a crafted
# 16384x16384 frame would need ~6 GB.
MAX_SOURCE_PIXELS = 8192 * 4352


def smart_resize(
    height: int, width: int, *, factor: int = PATCH_FACTOR, min_pixels: int, max_pixels: int
) -> tuple[int, int]:
    """Target (height, width) for a frame: both multiples of `factor`, area within the bounds.

    Qwen2.5-VL's rule, as qwen-vl-utils computes it (``qwen_vl_utils.smart_resize``, the code
    Video-R1 samples frames with):
    1. round each side to the nearest multiple of `factor` (Python's `round`, so exact ties
       go to the even multiple), at least `factor`;
    2. if that area exceeds `max_pixels`, scale the *original* sides by
       sqrt(max_pixels / (height*width)) and round each side *down* to a multiple of `factor`;
    3. else if it is below `min_pixels`, scale by sqrt(min_pixels / (height*width)) and round
       each side *up*.
    The aspect ratio is kept up to the rounding. On top of it, `H*W <= max_pixels` is a hard
    guarantee here: where step 2 floors a very thin side to zero (aspect ratios near 200, or
    `min_pixels` close to `max_pixels`), the side becomes `factor` and the longer side is cut to
    the largest multiple of `factor` that fits. This never changes a result that already
    satisfies the bound.

    Raises ValueError for non-positive sides, an aspect ratio above 200, or min_pixels > max_pixels.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got height={height}, width={width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"aspect ratio of {height}x{width} is {max(height, width) / min(height, width):.1f}, "
            f"Qwen2.5-VL accepts at most {MAX_ASPECT_RATIO}; crop or pad the frame first"
        )
    if min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) must be <= max_pixels ({max_pixels})")
    h, w = qwen_smart_resize(height, width, factor, min_pixels=min_pixels, max_pixels=max_pixels)
    h, w = max(factor, h), max(factor, w)
    if h * w > max_pixels:
        if h >= w:
            h = max(factor, math.floor(max_pixels / w / factor) * factor)
        else:
            w = max(factor, math.floor(max_pixels / h / factor) * factor)
    return h, w


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize RGB frames with antialiased bicubic interpolation.

    frames: (T, H, W, 3) uint8  ->  (T, height, width, 3) uint8.

    Antialiased bicubic in torch (Keys a=-0.5, kernel widened when shrinking), rounded and
    clamped back to uint8: bit-identical to torchvision's `resize(..., BICUBIC, antialias=True)`
    on uint8 tensors, which is what qwen-vl-utils (and so Video-R1) applies to video frames,
    and within 2 levels of PIL's BICUBIC. Images go through the same filter. Frames already at
    the target size are returned unchanged.
    """
    if frames.shape[1:3] == (height, width):
        return frames
    pixels = torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2)
    resized = F.interpolate(pixels, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
