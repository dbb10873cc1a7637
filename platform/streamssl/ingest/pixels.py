"""Pixel depth: every decoded image reaches the model as 8 bits per channel, scaled, not clipped.

PIL's `convert("RGB")` clips 16-bit and 32-bit gray (modes `I;16*`, `I`) at 255 instead of scaling,
so a mid-grey 16-bit PNG (32768) came out white, and truncates float (`F`) images in [0, 1] to 0.
16-bit RGB(A) PNGs are already reduced to 8 bits by PIL itself (by their high byte).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

_U16_MAX = 65535


def is_high_depth(image: Image.Image) -> bool:
    """Whether PIL holds the image in a mode wider than 8 bits per channel."""
    return image.mode in ("I", "F") or image.mode.startswith("I;16")


def eight_bit(image: Image.Image) -> Image.Image:
    """The image with 8 bits per channel: high-depth gray becomes mode `L`, the rest is returned as is.

    Scaling: `I;16*` and `I` map 0..65535 to 0..255 (rounded; `I` values outside are clipped, as
    `I` images come from 16-bit PNG/TIFF files); `F` maps [0, 1] to 0..255 when every value lies
    in [0, 1], else [0, 255] (clipped, NaN as 0).
    """
    if not is_high_depth(image):
        return image
    values = np.asarray(image)
    if image.mode == "F":
        values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if values.size and values.min() >= 0.0 and values.max() <= 1.0 else 1.0
        gray = np.clip(np.rint(values * scale), 0, 255)
    else:
        wide = np.clip(values.astype(np.int64), 0, _U16_MAX)
        gray = (wide * 255 + _U16_MAX // 2) // _U16_MAX  # exact rounding of wide * 255 / 65535
    return Image.fromarray(gray.astype(np.uint8))  # 2-D uint8: mode L


def rgb_image(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB (gray replicated, alpha dropped, high depth scaled)."""
    image = eight_bit(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_failure(err: Exception) -> str:
    """Why an image did not decode, in one line (PIL's own text names an object address instead)."""
    if isinstance(err, UnidentifiedImageError):
        return "image does not decode (UnidentifiedImageError: no format PIL reads)"
    return f"image does not decode ({type(err).__name__}: {err})"
