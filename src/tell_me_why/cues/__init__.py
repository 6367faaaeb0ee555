"""Pixel cues and the decision axis: simple image statistics per image (brightness, colour, symmetry, texture,
frequency ...), the model's decision axis in latent space (cross-fitted, sign-anchored, permutation-tested), and
which cues line up with it (signed r2, bootstrap intervals, permutation p-values, false-discovery control)."""

from .alignment import run_pls_feature_figures
from .axis import AxisFit, fit_decision_axis
from .decoding import DecodedImage, ImageDecodeError, decode_image
from .definitions import BUILTIN_CUES, ORIGINAL_SCORE_NAMES, ImageBatch, PixelCue
from .statistics import benjamini_hochberg, feature_axis_statistics
from .table import (
    available_feature_scores,
    compute_feature_score_table,
    describe_feature_scores,
    load_feature_scores,
    register_feature_score,
    unregister_feature_score,
)

__all__ = [
    "DecodedImage",
    "ImageDecodeError",
    "decode_image",
    "ImageBatch",
    "PixelCue",
    "BUILTIN_CUES",
    "ORIGINAL_SCORE_NAMES",
    "available_feature_scores",
    "describe_feature_scores",
    "load_feature_scores",
    "register_feature_score",
    "unregister_feature_score",
    "compute_feature_score_table",
    "AxisFit",
    "fit_decision_axis",
    "feature_axis_statistics",
    "benjamini_hochberg",
    "run_pls_feature_figures",
]
