"""Decode any image Pillow reads into integer grey and RGB planes (scale to [0, 1] with ``max_value``).

Grey is the luma the original Tell Me Why used (torchvision's ``read_image(mode=GRAY)``, i.e. libpng's
fixed-point RGB-to-grey with weights 9794/19234/3740 over 2**15, rounded down to the image's integer grid),
so that scores computed on it match the original exactly on PNG files. Alpha is dropped (as the original did),
palette, bilevel and CMYK images are converted to RGB, 16-bit images are scaled by 65535 (not 255).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["DecodedImage", "ImageDecodeError", "decode_image", "DEFAULT_MAX_PIXELS"]

# libpng's RGB-to-grey weights (sum 2**15), as torchvision applies them when reading in GRAY mode.
_LUMA_WEIGHTS = (9794, 19234, 3740)
_LUMA_SHIFT = 15
_LUMA_MATRIX = (*(w / 2**_LUMA_SHIFT for w in _LUMA_WEIGHTS), -0.5)

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
# Images above this many pixels are refused unless the caller allows more: far below Pillow's decompression-bomb
# limit (179 million), and above any camera photo (a 24-megapixel one is 6000 x 4000).
DEFAULT_MAX_PIXELS = 40_000_000


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

    @property
    def is_grey(self) -> bool:
        """Decoded without colour planes (a single-channel file) or with R = G = B at every pixel: the one rule
        behind the colour cues' NaN on grey images and ``tmw run``'s choice of one input channel."""
        return self.rgb is None or bool(np.array_equal(self.rgb[0], self.rgb[1])
                                        and np.array_equal(self.rgb[1], self.rgb[2]))

    def to_uint8(self, channels: int) -> np.ndarray:
        """The pixels on the 8-bit scale, (H, W) for ``channels=1`` (the grey plane) or (H, W, 3): what a model
        sees, so that it and the cues read the same values (16-bit images are scaled, never clipped)."""
        if channels == 1:
            planes = self.grey
        else:
            planes = self.rgb if self.rgb is not None else np.broadcast_to(self.grey, (3, *self.shape))
            planes = np.moveaxis(planes, 0, -1)
        if self.max_value == 255:
            return np.ascontiguousarray(planes, dtype=np.uint8)
        return np.round(planes.astype(np.float32) * (255.0 / self.max_value)).astype(np.uint8)


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


def _reduced(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` shrunk by an integer factor (box filter) to at most ``max_pixels``; JPEGs are decoded at a reduced
    scale directly (``draft``), so the full-size pixels never exist in memory."""
    width, height = image.size
    factor = math.ceil(math.sqrt(width * height / max_pixels))
    if image.format == "JPEG":
        image.draft(image.mode, (math.ceil(width / factor), math.ceil(height / factor)))
    if image.mode in _SIXTEEN_BIT_MODES:
        image = image.convert("I")  # Pillow reduces 32-bit integer images, not 16-bit ones
    factor = math.ceil(math.sqrt(image.size[0] * image.size[1] / max_pixels))
    return image.reduce(factor) if factor > 1 else image


def decode_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 reduce_above: int | None = None) -> DecodedImage:
    """Read one image file (first frame of an animation) into integer grey and RGB planes.

    ``max_pixels``: a larger image is refused from its header, before any pixel is decoded (a decompression bomb
    costs nothing). ``reduce_above``: a larger image is shrunk by an integer factor (box filter) to at most that
    many pixels, so that memory stays bounded whatever the file.

    Raises :class:`ImageDecodeError` naming the file when it is missing, truncated, not an image, too large, or
    has no defined scale.
    """
    try:
        with Image.open(path) as image:
            image.seek(0)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ValueError(f"{width} x {height} = {width * height:,} pixels, more than the {max_pixels:,} "
                                 f"allowed (max_pixels): downscale it, or raise max_pixels if it is meant")
            if reduce_above is not None and width * height > reduce_above:
                image = _reduced(image, reduce_above)
            return _decode_planes(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"Cannot read image {str(path)!r}: {error}") from error
