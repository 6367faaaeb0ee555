"""Pixel cues: simple, named image statistics computed on a batch of same-size images at once.

Every cue is a function ``cue(batch: ImageBatch) -> Tensor (B,)``; ``grey`` (G) and ``rgb`` (R, G, B) are in
[0, 1] and ``var``/``std`` are unbiased unless the definition says otherwise. The first eleven cues are the original
Tell Me Why scores with their names and definitions (see ``docs/interpretation.md``); the others are
cues practitioners use for colour, texture and sharpness, and subject-neutral region and shape cues: brightness,
foreground coverage and texture per band and per cell of a 3x3 grid, and the area, centroid, extent and orientation
of the Otsu foreground. Colour cues are NaN on grey images (R = G = B), where they would only restate a grey
statistic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from .decoding import DecodedImage

__all__ = ["ImageBatch", "PixelCue", "BUILTIN_CUES", "ORIGINAL_SCORE_NAMES", "REGION_NAMES", "SHAPE_CUE_NAMES",
           "otsu_levels"]

# The original scored frequencies on a 200x200 resize with a low-frequency disk of radius 30.
FFT_SIZE = (200, 200)
FFT_LOW_FREQUENCY_RADIUS = 30
# Sobel magnitude is divided by 4, so a black-to-white step scores 1; an edge is a step of at least 10 %.
EDGE_THRESHOLD = 0.1
GLCM_LEVELS = 16
ENTROPY_BINS = 256
# Otsu's threshold is searched on the entropy's 256-level histogram (the pixel values of 8-bit images).
OTSU_BINS = ENTROPY_BINS
# Guards of the original definitions (kept so that values match).
_RATIO_EPS = 1e-6
_FLAT_STD = 1e-6


@dataclass
class ImageBatch:
    """Decoded images of one size and bit depth, scored together.

    ``grey`` (B, H, W) and ``rgb`` (B, 3, H, W) are float32 in [0, 1], built on first use (a grey image's RGB
    repeats its grey plane); ``fft_magnitude`` is shared by the frequency cues, ``foreground``, the region grids
    and ``object_shape`` by the region and shape cues (each computed once per batch, whichever cue asks first).
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
    def is_grey(self) -> torch.Tensor:
        """(B,) bool: the image is grey, decoded without colour planes or with R = G = B at every pixel."""
        return torch.tensor([image.is_grey for image in self.images], dtype=torch.bool)

    @cached_property
    def grey_histogram(self) -> torch.Tensor:
        """(B, 256) pixel counts (int64) of :meth:`quantised_grey` at 256 levels (entropy, Otsu's threshold)."""
        levels = self.quantised_grey(ENTROPY_BINS).long()
        b = len(self)
        offsets = torch.arange(b).view(b, 1, 1) * ENTROPY_BINS
        return torch.bincount((levels + offsets).reshape(-1), minlength=b * ENTROPY_BINS).view(b, -1)

    @cached_property
    def foreground(self) -> torch.Tensor:
        """(B, H, W) bool: the pixels brighter than the image's own Otsu threshold (see :func:`otsu_levels`)."""
        return self.quantised_grey(OTSU_BINS) > otsu_levels(self.grey_histogram).view(-1, 1, 1)

    @cached_property
    def region_brightness(self) -> torch.Tensor:
        """(B, 4, 4) mean G per region: rows top/middle/bottom/all x columns left/center/right/all."""
        return _region_means(self.grey_levels) / self.max_value

    @cached_property
    def region_coverage(self) -> torch.Tensor:
        """(B, 4, 4) foreground fraction per region (as :attr:`region_brightness`)."""
        return _region_means(self.foreground)

    @cached_property
    def region_texture(self) -> torch.Tensor:
        """(B, 4, 4) mean |horizontal diff| + mean |vertical diff| of G per region, over the neighbour pairs that
        lie inside the region (as :attr:`region_brightness`)."""
        return _region_texture(self.grey_levels) / self.max_value

    @cached_property
    def object_shape(self) -> dict[str, torch.Tensor]:
        """Area, centroid, bounding-box extent and orientation of :attr:`foreground` (see :func:`_object_shape`)."""
        return _object_shape(self.foreground)

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
    """A named cue, its category, a one-line definition and the label the report and figures show (default: the
    name; the built-in cues say what they measure in subject-neutral words, then their name)."""

    name: str
    fn: CueFunction
    category: str
    description: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


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


def _colour_cue(fn: CueFunction) -> CueFunction:
    """Make ``fn`` NaN on grey images: there R = G = B, so a colour cue only restates a grey statistic (the
    red-blue covariance is the variance, the redness is about 1/2) and would be read as colour evidence."""

    @functools.wraps(fn)
    def cue(batch: ImageBatch) -> torch.Tensor:
        grey = batch.is_grey
        if bool(grey.all()):  # a grey dataset: nothing to compute
            return torch.full((len(batch),), math.nan)
        return torch.where(grey, math.nan, fn(batch))

    return cue


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


@_colour_cue
def color_covariance_red_blue(batch: ImageBatch) -> torch.Tensor:
    red, blue = _centred(batch.rgb[:, 0]), _centred(batch.rgb[:, 2])
    return (red * blue).sum(1) / (red.shape[1] - 1)


@_colour_cue
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
    counts = batch.grey_histogram.double()
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log2(torch.where(p > 0, p, 1.0))).sum(1)


@_colour_cue
def colorfulness(batch: ImageBatch) -> torch.Tensor:
    r, g, b = batch.rgb[:, 0], batch.rgb[:, 1], batch.rgb[:, 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    spread = (_var(rg, correction=0) + _var(yb, correction=0)).sqrt()
    offset = (_mean(rg) ** 2 + _mean(yb) ** 2).sqrt()
    return spread + 0.3 * offset


@_colour_cue
def saturation_mean(batch: ImageBatch) -> torch.Tensor:
    top, bottom = batch.rgb.amax(1), batch.rgb.amin(1)
    return _mean(_safe_ratio(top - bottom, top))


@_colour_cue
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


# -- region and shape cues ----------------------------------------------------------------------------------
# Subject-neutral: they say where in the frame brightness, foreground and texture lie, whatever the images show.
# Thirds of H rows (W columns) end at H//3, 2H//3 and H; index ALL is the whole side, so that one (B, 4, 4) grid
# per statistic holds the three horizontal bands (row r, ALL), the three vertical bands (ALL, column c) and the
# nine cells (r, c).

ALL = 3
REGION_STATISTICS = ("brightness", "coverage", "texture")
_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "center", "right")
_ROW_PIXELS = ("0:H//3", "H//3:2H//3", "2H//3:H")
_COLUMN_PIXELS = ("0:W//3", "W//3:2W//3", "2W//3:W")
_BAND_WORDS = {"top": "top band", "middle": "middle horizontal band", "bottom": "bottom band",
               "left": "left band", "center": "middle vertical band", "right": "right band"}
_FOREGROUND = ("the Otsu foreground: pixels brighter than the image's own Otsu threshold on G (256 levels); always "
               "the brighter side, so that values compare across images and signs read the same way (a dark object "
               "on a light ground shows as the background)")


def _thirds(n: int) -> tuple[slice, ...]:
    """The three thirds of ``n`` rows or columns (boundaries rounded down), then all ``n`` (index ALL)."""
    bounds = (0, n // 3, 2 * n // 3, n)
    return (*(slice(bounds[k], bounds[k + 1]) for k in range(3)), slice(0, n))


def _pairs(span: slice) -> slice:
    """The neighbour pairs (k, k + 1) with both pixels in ``span``, indexed by k (as a difference map is)."""
    return slice(span.start, max(span.start, span.stop - 1))


def _region_sums(x: torch.Tensor, rows: Sequence[slice], columns: Sequence[slice]) -> torch.Tensor:
    """Sums of ``x`` (B, H, W) over every rectangle ``rows[r] x columns[c]``, accumulated in float64: (B, R, C).

    Each region is a contiguous block, so one pass of slice sums per column span does it (no per-region masks)."""
    per_row = torch.stack([x[..., span].sum(-1, dtype=torch.float64) for span in columns], -1)  # (B, H, C)
    return torch.stack([per_row[:, span].sum(1) for span in rows], 1)


def _counts(rows: Sequence[slice], columns: Sequence[slice]) -> torch.Tensor:
    return torch.tensor([[(r.stop - r.start) * (c.stop - c.start) for c in columns] for r in rows],
                        dtype=torch.float64)


def _region_means(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, H, W) per region of the grid: (B, 4, 4), float64."""
    rows, columns = _thirds(x.shape[1]), _thirds(x.shape[2])
    return _region_sums(x, rows, columns) / _counts(rows, columns)


def _region_texture(levels: torch.Tensor) -> torch.Tensor:
    """Mean |horizontal diff| + mean |vertical diff| of ``levels`` per region, over the pairs inside the region (as
    ``jaw_texture`` on its band): (B, 4, 4). A region one pixel wide (or tall) has no pair: NaN."""
    rows, columns = _thirds(levels.shape[1]), _thirds(levels.shape[2])
    pair_rows, pair_columns = [_pairs(r) for r in rows], [_pairs(c) for c in columns]
    horizontal = (levels[..., 1:] - levels[..., :-1]).abs()
    vertical = (levels[:, 1:] - levels[:, :-1]).abs()
    return (_region_sums(horizontal, rows, pair_columns) / _counts(rows, pair_columns)
            + _region_sums(vertical, pair_rows, columns) / _counts(pair_rows, columns))


def otsu_levels(histogram: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold per image from (B, L) level counts: the level t that maximises the between-class variance
    of {<= t} and {> t}, the first such t on ties (as scikit-image's ``threshold_otsu``), and L - 1 (no foreground)
    for an image of a single level.

    Computed on the integer counts: ``(s0 n - s n0)**2 / (n0 n1)`` is n**2 times the between-class variance, and
    its integer part is exact in int64, so equal splits compare equal and the result does not depend on the batch.
    """
    counts = histogram.long()
    levels = torch.arange(counts.shape[1])
    below, below_sum = counts.cumsum(1), (counts * levels).cumsum(1)
    total, total_sum = below[:, -1:], below_sum[:, -1:]
    above = total - below
    valid = (below > 0) & (above > 0)
    gap = (below_sum * total - total_sum * below).double()
    between = torch.where(valid, gap * gap / (below * above).clamp_min(1).double(), -1.0)
    return torch.where(valid.any(1), between.argmax(1), counts.shape[1] - 1)


def _object_shape(foreground: torch.Tensor) -> dict[str, torch.Tensor]:
    """Area (fraction of the image), centroid ((row + 0.5) / H, (column + 0.5) / W), bounding-box extent (height
    and width fractions) and orientation of ``foreground`` (B, H, W); NaN but the area (0) where it is empty.

    Orientation: the angle of the principal axis of the second central moments, in degrees counter-clockwise from
    the horizontal as the image is displayed (rows point down), in (-90, 90]: 0 for a shape wider than tall, 90 for
    one taller than wide, 0 for an isotropic one."""
    _, h, w = foreground.shape
    rows = foreground.sum(2, dtype=torch.float64)  # foreground pixels per row (B, H)
    columns = foreground.sum(1, dtype=torch.float64)  # per column (B, W)
    area = rows.sum(1)
    i, j = torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64)
    mean_i, mean_j = rows @ i / area, columns @ j / area
    di, dj = i - mean_i[:, None], j - mean_j[:, None]
    var_i, var_j = (rows * di * di).sum(1) / area, (columns * dj * dj).sum(1) / area
    # Sum of (i - mean_i)(j - mean_j) over the foreground, row by row: each row adds (i - mean_i) times the sum
    # of its columns minus mean_j times its count.
    column_sums = foreground.double() @ j
    cov = (di * (column_sums - mean_j[:, None] * rows)).sum(1) / area
    # Displayed axes: x = column, y = -row, so the xy moment is -cov.
    angle = torch.rad2deg(0.5 * torch.atan2(-2 * cov, var_j - var_i))
    angle = torch.where(angle <= -90, angle + 180, angle) + 0.0  # + 0.0: no -0.0
    empty = area == 0

    def extent(present: torch.Tensor) -> torch.Tensor:
        n = present.shape[1]
        first, last = present.int().argmax(1), n - 1 - present.flip(1).int().argmax(1)
        return torch.where(empty, math.nan, (last - first + 1).double() / n)

    return {
        "area": area / (h * w),
        "centroid_row": (mean_i + 0.5) / h,
        "centroid_col": (mean_j + 0.5) / w,
        "extent_height": extent(rows > 0),
        "extent_width": extent(columns > 0),
        "orientation": angle,
    }


def _regions() -> list[tuple[str, int, int, str, str]]:
    """(name, row third, column third, words, pixels) of the three horizontal bands, the three vertical bands and
    the nine cells of the 3x3 grid."""
    regions = [(f"band_{row}", r, ALL, _BAND_WORDS[row], f"G[{_ROW_PIXELS[r]}, :]") for r, row in enumerate(_ROWS)]
    regions += [(f"band_{column}", ALL, c, _BAND_WORDS[column], f"G[:, {_COLUMN_PIXELS[c]}]")
                for c, column in enumerate(_COLUMNS)]
    for r, row in enumerate(_ROWS):
        for c, column in enumerate(_COLUMNS):
            words = "central cell" if (row, column) == ("middle", "center") else \
                f"{row}-{'middle' if column == 'center' else column} cell"
            regions.append((f"cell_{row}_{column}", r, c, words, f"G[{_ROW_PIXELS[r]}, {_COLUMN_PIXELS[c]}]"))
    return regions


REGION_NAMES: tuple[str, ...] = tuple(name for name, *_ in _regions())
_STATISTIC_WORDS = {"brightness": "brightness", "coverage": "foreground coverage", "texture": "texture"}


def _region_cue(statistic: str, region: tuple[str, int, int, str, str]) -> PixelCue:
    region_name, row, column, words, pixels = region

    def cue(batch: ImageBatch) -> torch.Tensor:
        return getattr(batch, f"region_{statistic}")[:, row, column]

    name = f"{region_name}_{statistic}"
    cue.__name__ = cue.__qualname__ = name
    description = {
        "brightness": f"mean of {pixels}",
        "coverage": f"fraction of {pixels} brighter than the image's Otsu threshold (the foreground, always the "
                    f"brighter side: see object_area)",
        "texture": f"{pixels}: mean |horizontal diff| + mean |vertical diff| over the neighbour pairs inside it",
    }[statistic]
    return PixelCue(name, cue, "region", description, f"{words} {_STATISTIC_WORDS[statistic]} ({name})")


_SHAPE_CUES = {
    "area": ("foreground area", f"fraction of the image in {_FOREGROUND}"),
    "centroid_row": ("foreground vertical position", "(mean row of the foreground + 0.5) / H: 0 top, 1 bottom"),
    "centroid_col": ("foreground horizontal position", "(mean column of the foreground + 0.5) / W: 0 left, 1 right"),
    "extent_height": ("foreground bounding-box height", "(last - first foreground row + 1) / H"),
    "extent_width": ("foreground bounding-box width", "(last - first foreground column + 1) / W"),
    "orientation": ("foreground orientation", "angle of the foreground's principal axis (second central moments), "
                    "degrees counter-clockwise from horizontal as displayed, in (-90, 90]: 0 wide, 90 tall"),
}
SHAPE_CUE_NAMES: tuple[str, ...] = tuple(f"object_{key}" for key in _SHAPE_CUES)


def _shape_cue(key: str) -> PixelCue:
    def cue(batch: ImageBatch) -> torch.Tensor:
        return batch.object_shape[key]

    name = f"object_{key}"
    cue.__name__ = cue.__qualname__ = name
    words, description = _SHAPE_CUES[key]
    return PixelCue(name, cue, "shape", f"{description}; NaN when there is no foreground" if key != "area"
                    else description, f"{words} ({name})")


def _cue(fn: CueFunction, category: str, description: str, words: str) -> PixelCue:
    return PixelCue(fn.__name__, fn, category, description, f"{words} ({fn.__name__})")


BUILTIN_CUES: tuple[PixelCue, ...] = (
    _cue(brightness, "intensity", "mean(G)", "overall brightness"),
    _cue(variance, "intensity", "var(G), unbiased", "grey-level variance"),
    _cue(skewness, "intensity", "mean((G - mean)^3) / std^3; 0 when std <= 1e-6", "grey-level skewness"),
    _cue(rms_contrast, "intensity", "population std(G)", "RMS contrast"),
    _cue(entropy, "intensity", "Shannon entropy (bits) of the 256-bin histogram of the grey levels",
         "grey-level entropy"),
    _cue(color_covariance_red_blue, "color", "covariance of R and B over pixels, unbiased; NaN on grey images",
         "red-blue covariance"),
    _cue(redness_dominance, "color", "mean(R) / (mean(G) + mean(B) + 1e-6); NaN on grey images",
         "red over green and blue"),
    _cue(colorfulness, "color", "Hasler-Suesstrunk colourfulness on the [0, 1] scale; NaN on grey images",
         "colourfulness"),
    _cue(saturation_mean, "color", "mean HSV saturation (max - min) / max; NaN on grey images", "mean saturation"),
    _cue(hue_concentration, "color", "chroma-weighted mean resultant length of hue (0 balanced, 1 one hue); NaN on "
         "grey images", "single-hue concentration"),
    _cue(symmetry_error, "spatial", "mean |G - left-right mirror of G|", "left-right asymmetry"),
    _cue(top_bottom_brightness_ratio, "spatial", "mean(top half of G) / (mean(bottom half) + 1e-6)",
         "top/bottom brightness ratio"),
    _cue(center_texture, "spatial", "var of G[H/4:3H/4, W/4:3W/4]", "central-crop variance"),
    _cue(eye_region_contrast, "spatial", "var of the band G[0.3H:0.5H]", "upper-middle band contrast"),
    _cue(jaw_texture, "spatial", "band G[0.7H:]: mean |horizontal diff| + mean |vertical diff|", "lower-band texture"),
    _cue(center_surround_brightness, "spatial", "mean of the central crop - mean of the rest",
         "centre minus surround brightness"),
    _cue(laplacian_variance, "texture", "sharpness: var of the 4-neighbour Laplacian of G", "sharpness"),
    _cue(edge_density, "texture", "fraction of interior pixels with Sobel magnitude / 4 > 0.1", "edge density"),
    _cue(glcm_contrast, "texture", "GLCM contrast, 16 levels, distance 1, mean of 0 and 90 degrees",
         "grey-level co-occurrence contrast"),
    _cue(glcm_homogeneity, "texture", "GLCM homogeneity, 16 levels, distance 1, mean of 0 and 90 degrees",
         "grey-level co-occurrence homogeneity"),
    _cue(fft_high_frequency_ratio, "frequency", "1 - |FFT| in a radius-30 disk (DC included) / total, 200x200",
         "high-frequency share"),
    _cue(high_frequency_ratio_ac, "frequency", "as fft_high_frequency_ratio with the DC term left out of both sums",
         "high-frequency share without the mean"),
    *(_region_cue(statistic, region) for statistic in REGION_STATISTICS for region in _regions()),
    *(_shape_cue(key) for key in _SHAPE_CUES),
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
