"""Pixel cues: simple, named image statistics computed on a batch of same-size images at once.

Every cue is a function ``cue(batch: ImageBatch) -> Tensor (B,)``; ``grey`` (G) and ``rgb`` (R, G, B) are in
[0, 1] and ``var``/``std`` are unbiased unless the definition says otherwise. The first eleven cues are the original
Tell Me Why scores with their names and definitions (see ``docs/interpretation.md``); the others are
cues practitioners use for colour, texture and sharpness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from .decoding import DecodedImage

__all__ = ["ImageBatch", "PixelCue", "BUILTIN_CUES", "ORIGINAL_SCORE_NAMES"]

# The original scored frequencies on a 200x200 resize with a low-frequency disk of radius 30.
FFT_SIZE = (200, 200)
FFT_LOW_FREQUENCY_RADIUS = 30
# Sobel magnitude is divided by 4, so a black-to-white step scores 1; an edge is a step of at least 10 %.
EDGE_THRESHOLD = 0.1
GLCM_LEVELS = 16
ENTROPY_BINS = 256
# Guards of the original definitions (kept so that values match).
_RATIO_EPS = 1e-6
_FLAT_STD = 1e-6


@dataclass
class ImageBatch:
    """Decoded images of one size and bit depth, scored together.

    ``grey`` (B, H, W) and ``rgb`` (B, 3, H, W) are float32 in [0, 1], built on first use (a grey image's RGB
    repeats its grey plane); ``fft_magnitude`` is shared by the frequency cues.
    """

    images: Sequence[DecodedImage]
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def max_value(self) -> int:
        """The integer level of white (255 for 8-bit images, 65535 for 16-bit)."""
        return self.images[0].max_value

    @cached_property
    def grey_levels(self) -> torch.Tensor:
        """Grey as integer levels 0..max_value (float32, exact): thresholds and bins on it are exact."""
        return torch.from_numpy(np.stack([image.grey for image in self.images])).float()

    @cached_property
    def grey(self) -> torch.Tensor:
        return self.grey_levels / self.max_value

    def quantised_grey(self, levels: int) -> torch.Tensor:
        """Grey in ``levels`` equal-width integer bins (for 8-bit images and 256 bins, the pixel value)."""
        return torch.div(self.grey_levels * levels, self.max_value + 1, rounding_mode="floor")

    @cached_property
    def rgb(self) -> torch.Tensor:
        planes = [image.rgb if image.rgb is not None else np.broadcast_to(image.grey, (3, *image.shape))
                  for image in self.images]
        return torch.from_numpy(np.stack(planes)).float().div_(self.images[0].max_value)

    @cached_property
    def fft_magnitude(self) -> torch.Tensor:
        """``abs(fft2(grey resized to 200x200))`` as a real FFT (half plane), with the original's antialiased
        bilinear resize; use :attr:`half_plane_weights` to sum it over the full plane."""
        resized = F.interpolate(self.grey[:, None], size=FFT_SIZE, mode="bilinear", align_corners=False, antialias=True)
        return torch.fft.rfft2(resized[:, 0]).abs()

    @cached_property
    def half_plane_weights(self) -> torch.Tensor:
        """How many full-plane frequencies each half-plane (rfft) coefficient stands for (|F| is symmetric)."""
        cols = FFT_SIZE[1]
        weights = torch.full((cols // 2 + 1,), 2.0)
        weights[0] = 1.0
        if cols % 2 == 0:
            weights[-1] = 1.0
        return weights

    @cached_property
    def low_frequency_disk(self) -> torch.Tensor:
        """The original's disk (centred at rows//2, cols//2 after fftshift) in rfft coordinates."""
        rows, cols = FFT_SIZE
        y = torch.fft.fftfreq(rows, 1 / rows).view(-1, 1)
        x = torch.arange(cols // 2 + 1, dtype=torch.float32).view(1, -1)
        return (x**2 + y**2 <= FFT_LOW_FREQUENCY_RADIUS**2).float()


CueFunction = Callable[[ImageBatch], torch.Tensor]


@dataclass(frozen=True)
class PixelCue:
    """A named cue, its category and a one-line definition."""

    name: str
    fn: CueFunction
    category: str
    description: str = ""


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def _mean(x: torch.Tensor) -> torch.Tensor:
    # float32 sums on CPU are pairwise (accurate to ~1e-7 relative) and far faster than var()/float64 casts.
    flat = _flat(x)
    return flat.sum(1) / flat.shape[1]


def _centred(x: torch.Tensor) -> torch.Tensor:
    flat = _flat(x)
    return flat - _mean(flat)[:, None]


def _var(x: torch.Tensor, correction: int = 1) -> torch.Tensor:
    centred = _centred(x)
    return (centred * centred).sum(1) / (centred.shape[1] - correction)


def _band(grey: torch.Tensor, start: float, stop: float | None) -> torch.Tensor:
    h = grey.shape[1]
    return grey[:, int(h * start) : (None if stop is None else int(h * stop))]


def _center(grey: torch.Tensor) -> torch.Tensor:
    h, w = grey.shape[-2:]
    return grey[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]


# -- the original eleven -------------------------------------------------------------------------------------


def brightness(batch: ImageBatch) -> torch.Tensor:
    return _mean(batch.grey)


def variance(batch: ImageBatch) -> torch.Tensor:
    return _var(batch.grey)


def skewness(batch: ImageBatch) -> torch.Tensor:
    centred = _centred(batch.grey)
    squared = centred * centred
    n = centred.shape[1]
    std = (squared.sum(1) / (n - 1)).sqrt()
    skew = (squared * centred).sum(1) / n / std.clamp_min(_FLAT_STD) ** 3
    return torch.where(std <= _FLAT_STD, torch.zeros_like(skew), skew)


def color_covariance_red_blue(batch: ImageBatch) -> torch.Tensor:
    red, blue = _centred(batch.rgb[:, 0]), _centred(batch.rgb[:, 2])
    return (red * blue).sum(1) / (red.shape[1] - 1)


def redness_dominance(batch: ImageBatch) -> torch.Tensor:
    red, green, blue = (_mean(batch.rgb[:, c]) for c in range(3))
    return red / (green + blue + _RATIO_EPS)


def symmetry_error(batch: ImageBatch) -> torch.Tensor:
    # |G - mirror| is itself mirror-symmetric (and 0 on an odd middle column): sum the left half twice.
    grey = batch.grey
    half = grey.shape[-1] // 2
    left_sum = _flat((grey[..., :half] - grey[..., grey.shape[-1] - half :].flip(-1)).abs()).sum(1)
    return 2 * left_sum / grey[0].numel()


def top_bottom_brightness_ratio(batch: ImageBatch) -> torch.Tensor:
    h = batch.grey.shape[1]
    return _mean(batch.grey[:, : h // 2]) / (_mean(batch.grey[:, h // 2 :]) + _RATIO_EPS)


def center_texture(batch: ImageBatch) -> torch.Tensor:
    return _var(_center(batch.grey))


def eye_region_contrast(batch: ImageBatch) -> torch.Tensor:
    return _var(_band(batch.grey, 0.3, 0.5))


def jaw_texture(batch: ImageBatch) -> torch.Tensor:
    jaw = _band(batch.grey, 0.7, None)
    return _mean((jaw[..., 1:] - jaw[..., :-1]).abs()) + _mean((jaw[:, 1:] - jaw[:, :-1]).abs())


def _spectrum_sums(batch: ImageBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-plane sums of |F|: total, inside the low-frequency disk, and the DC term."""
    weighted = batch.fft_magnitude * batch.half_plane_weights
    total = _flat(weighted).sum(1)
    low = _flat(weighted * batch.low_frequency_disk).sum(1)
    return total, low, weighted[:, 0, 0]


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and 0 where the denominator is not positive."""
    positive = denominator > 0
    return torch.where(positive, numerator / torch.where(positive, denominator, 1.0), 0.0)


def fft_high_frequency_ratio(batch: ImageBatch) -> torch.Tensor:
    total, low, _ = _spectrum_sums(batch)
    return _safe_ratio(total - low, total)


# -- cues added by this library -------------------------------------------------------------------------------


def rms_contrast(batch: ImageBatch) -> torch.Tensor:
    return _var(batch.grey, correction=0).sqrt()


def entropy(batch: ImageBatch) -> torch.Tensor:
    levels = batch.quantised_grey(ENTROPY_BINS).long()
    b = len(batch)
    offsets = torch.arange(b).view(b, 1, 1) * ENTROPY_BINS
    counts = torch.bincount((levels + offsets).reshape(-1), minlength=b * ENTROPY_BINS).view(b, -1).double()
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log2(torch.where(p > 0, p, 1.0))).sum(1)


def colorfulness(batch: ImageBatch) -> torch.Tensor:
    r, g, b = batch.rgb[:, 0], batch.rgb[:, 1], batch.rgb[:, 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    spread = (_var(rg, correction=0) + _var(yb, correction=0)).sqrt()
    offset = (_mean(rg) ** 2 + _mean(yb) ** 2).sqrt()
    return spread + 0.3 * offset


def saturation_mean(batch: ImageBatch) -> torch.Tensor:
    top, bottom = batch.rgb.amax(1), batch.rgb.amin(1)
    return _mean(_safe_ratio(top - bottom, top))


def hue_concentration(batch: ImageBatch) -> torch.Tensor:
    # Hexagonal-hue chroma axes: alpha = R - (G + B) / 2, beta = sqrt(3) / 2 (G - B).
    r, g, b = batch.rgb[:, 0], batch.rgb[:, 1], batch.rgb[:, 2]
    alpha, beta = r - 0.5 * (g + b), (math.sqrt(3) / 2) * (g - b)
    chroma = _mean((alpha**2 + beta**2).sqrt())
    resultant = (_mean(alpha) ** 2 + _mean(beta) ** 2).sqrt()
    return _safe_ratio(resultant, chroma)


def center_surround_brightness(batch: ImageBatch) -> torch.Tensor:
    grey = batch.grey
    centre = _center(grey)
    n_all, n_centre = grey[0].numel(), centre[0].numel()
    total, centre_sum = _flat(grey).sum(1), _flat(centre).sum(1)
    return centre_sum / n_centre - (total - centre_sum) / (n_all - n_centre)


def laplacian_variance(batch: ImageBatch) -> torch.Tensor:
    g = batch.grey
    laplacian = g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4 * g[:, 1:-1, 1:-1]
    return _var(laplacian)


def edge_density(batch: ImageBatch) -> torch.Tensor:
    # On integer levels the Sobel responses and their squares are exact in float32 (8-bit), so is the threshold.
    g = batch.grey_levels.double() if batch.max_value > 255 else batch.grey_levels
    gx = (g[:, :-2, 2:] + 2 * g[:, 1:-1, 2:] + g[:, 2:, 2:]) - (g[:, :-2, :-2] + 2 * g[:, 1:-1, :-2] + g[:, 2:, :-2])
    gy = (g[:, 2:, :-2] + 2 * g[:, 2:, 1:-1] + g[:, 2:, 2:]) - (g[:, :-2, :-2] + 2 * g[:, :-2, 1:-1] + g[:, :-2, 2:])
    return _mean(((gx**2 + gy**2) > (4 * EDGE_THRESHOLD * batch.max_value) ** 2).float())


def _glcm_level_differences(batch: ImageBatch) -> tuple[torch.Tensor, torch.Tensor]:
    levels = batch.quantised_grey(GLCM_LEVELS)
    return levels[..., 1:] - levels[..., :-1], levels[:, 1:] - levels[:, :-1]


def glcm_contrast(batch: ImageBatch) -> torch.Tensor:
    horizontal, vertical = _glcm_level_differences(batch)
    return 0.5 * (_mean(horizontal**2) + _mean(vertical**2))


def glcm_homogeneity(batch: ImageBatch) -> torch.Tensor:
    horizontal, vertical = _glcm_level_differences(batch)
    return 0.5 * (_mean(1 / (1 + horizontal**2)) + _mean(1 / (1 + vertical**2)))


def high_frequency_ratio_ac(batch: ImageBatch) -> torch.Tensor:
    total, low, dc = _spectrum_sums(batch)
    return _safe_ratio(total - low, total - dc)


def _cue(fn: CueFunction, category: str, description: str) -> PixelCue:
    return PixelCue(fn.__name__, fn, category, description)


BUILTIN_CUES: tuple[PixelCue, ...] = (
    _cue(brightness, "intensity", "mean(G)"),
    _cue(variance, "intensity", "var(G), unbiased"),
    _cue(skewness, "intensity", "mean((G - mean)^3) / std^3; 0 when std <= 1e-6"),
    _cue(rms_contrast, "intensity", "population std(G)"),
    _cue(entropy, "intensity", "Shannon entropy (bits) of the 256-bin histogram of the grey levels"),
    _cue(color_covariance_red_blue, "color", "covariance of R and B over pixels, unbiased"),
    _cue(redness_dominance, "color", "mean(R) / (mean(G) + mean(B) + 1e-6)"),
    _cue(colorfulness, "color", "Hasler-Suesstrunk colourfulness on the [0, 1] scale"),
    _cue(saturation_mean, "color", "mean HSV saturation (max - min) / max"),
    _cue(hue_concentration, "color", "chroma-weighted mean resultant length of hue (0 grey or balanced, 1 one hue)"),
    _cue(symmetry_error, "spatial", "mean |G - left-right mirror of G|"),
    _cue(top_bottom_brightness_ratio, "spatial", "mean(top half of G) / (mean(bottom half) + 1e-6)"),
    _cue(center_texture, "spatial", "var of G[H/4:3H/4, W/4:3W/4]"),
    _cue(eye_region_contrast, "spatial", "var of the band G[0.3H:0.5H]"),
    _cue(jaw_texture, "spatial", "band G[0.7H:]: mean |horizontal diff| + mean |vertical diff|"),
    _cue(center_surround_brightness, "spatial", "mean of the central crop - mean of the rest"),
    _cue(laplacian_variance, "texture", "sharpness: var of the 4-neighbour Laplacian of G"),
    _cue(edge_density, "texture", "fraction of interior pixels with Sobel magnitude / 4 > 0.1"),
    _cue(glcm_contrast, "texture", "GLCM contrast, 16 levels, distance 1, mean of 0 and 90 degrees"),
    _cue(glcm_homogeneity, "texture", "GLCM homogeneity, 16 levels, distance 1, mean of 0 and 90 degrees"),
    _cue(fft_high_frequency_ratio, "frequency", "1 - |FFT| in a radius-30 disk (DC included) / total, 200x200"),
    _cue(high_frequency_ratio_ac, "frequency", "as fft_high_frequency_ratio with the DC term left out of both sums"),
)

ORIGINAL_SCORE_NAMES: tuple[str, ...] = (
    "brightness",
    "variance",
    "skewness",
    "color_covariance_red_blue",
    "redness_dominance",
    "symmetry_error",
    "top_bottom_brightness_ratio",
    "center_texture",
    "eye_region_contrast",
    "jaw_texture",
    "fft_high_frequency_ratio",
)
