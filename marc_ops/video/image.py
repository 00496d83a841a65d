"""Loading still images (the image half of Video-R1) with the same size rule as video frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from marc_ops.config.video import DEFAULT_VIDEO_CONFIG, VideoConfig
from marc_ops.video.errors import ImageLoadError
from marc_ops.video.resize import MAX_SOURCE_PIXELS, resize_frames, smart_resize


def load_image(path: str | Path, config: VideoConfig = DEFAULT_VIDEO_CONFIG) -> np.ndarray:
    """Read an image as RGB, resized by `smart_resize` with `config`'s pixel bounds.

    Returns (H, W, 3) uint8, H and W multiples of 28, H*W <= config.max_pixels. Transparent
    pixels are composited onto white (as qwen-vl-utils does); the filter is the antialiased
    bicubic of `resize_frames`. Raises ImageLoadError naming the file if it is missing, empty,
    not a readable image, or larger than `MAX_SOURCE_PIXELS` (checked on the header, before any
    pixel is decoded).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            _check_size(path, image)
            rgb = _to_rgb(image)
    except OSError as error:  # PIL's UnidentifiedImageError and truncated-file errors are OSErrors
        raise ImageLoadError(path, f"not a readable image: {error}") from error
    except Image.DecompressionBombError as error:  # PIL's own, far higher limit, checked on opening
        raise ImageLoadError(path, f"image is too large to decode: {error}") from error
    pixels = np.asarray(rgb)
    height, width = smart_resize(
        pixels.shape[0], pixels.shape[1], min_pixels=config.min_pixels, max_pixels=config.max_pixels
    )
    return resize_frames(pixels[None], height, width)[0]


def _check_size(path: Path, image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_SOURCE_PIXELS:
        raise ImageLoadError(
            path,
            f"image is {width}x{height} ({width * height / 1e6:.1f} megapixels), above the "
            f"{MAX_SOURCE_PIXELS / 1e6:.1f}-megapixel limit on what is decoded and resized",
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
