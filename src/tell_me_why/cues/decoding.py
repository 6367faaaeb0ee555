"""Decode any image Pillow reads into integer grey and RGB planes (scale to [0, 1] with ``max_value``).

Grey is the luma the original Tell Me Why used (torchvision's ``read_image(mode=GRAY)``, i.e. libpng's
fixed-point RGB-to-grey with weights 9794/19234/3740 over 2**15, rounded down to the image's integer grid),
so that scores computed on it match the original exactly on PNG files. Alpha is dropped (as the original did),
palette, bilevel and CMYK images are converted to RGB, 16-bit images are scaled by 65535 (not 255).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["DecodedImage", "ImageDecodeError", "decode_image"]

# libpng's RGB-to-grey weights (sum 2**15), as torchvision applies them when reading in GRAY mode.
_LUMA_WEIGHTS = (9794, 19234, 3740)
_LUMA_SHIFT = 15
_LUMA_MATRIX = (*(w / 2**_LUMA_SHIFT for w in _LUMA_WEIGHTS), -0.5)

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageDecodeError(ValueError):
    """An image file could not be read or converted; the message names the file."""


@dataclass(frozen=True)
class DecodedImage:
    """Integer pixels as decoded: ``grey`` (H, W), ``rgb`` planes (3, H, W) or ``None`` for grey images, and
    the ``max_value`` (255 or 65535) that maps them to [0, 1]."""

    grey: np.ndarray
    rgb: np.ndarray | None
    max_value: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.grey.shape


def _luma_image(rgb_image: Image.Image) -> np.ndarray:
    """Integer luma (H, W) of an RGB image: libpng's fixed-point rule rounded down, done by Pillow's matrix
    conversion (about twice as fast as NumPy). Pillow computes ``m . rgb + offset + 0.5`` and truncates; with
    weights that are multiples of 2**-15 every
    term is exact in float32, so the offset -0.5 turns its rounding into the floor (checked on all 2**24
    colours in the tests).
    """
    return np.asarray(rgb_image.convert("L", _LUMA_MATRIX))


def _decode_planes(image: Image.Image) -> DecodedImage:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return DecodedImage(np.asarray(image, dtype=np.uint16), None, 65535)
    if mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(f"32-bit integer pixels outside 0..65535 (range {values.min()}..{values.max()})")
        return DecodedImage(values.astype(np.uint16), None, 65535)
    if mode == "F":
        raise ValueError("floating-point images have no defined intensity scale; save them as 8- or 16-bit")
    if mode in {"L", "LA", "1"}:
        return DecodedImage(np.asarray(image.convert("L")), None, 255)
    # Palette, CMYK, YCbCr, LAB, HSV ... go through Pillow's conversion to RGB; alpha is dropped.
    rgb_image = image if mode == "RGB" else image.convert("RGB")
    planes = np.stack([np.asarray(band) for band in rgb_image.split()])
    return DecodedImage(_luma_image(rgb_image), planes, 255)


def decode_image(path: str | Path) -> DecodedImage:
    """Read one image file (first frame of an animation) into integer grey and RGB planes.

    Raises :class:`ImageDecodeError` naming the file when it is missing, not an image, or has no defined scale.
    """
    try:
        with Image.open(path) as image:
            image.seek(0)
            return _decode_planes(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"Cannot read image {str(path)!r}: {error}") from error
