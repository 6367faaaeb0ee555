"""Does an explanation deserve trust? The checks of every explanation family in one place, apart from the methods
(as captum keeps ``captum.metrics`` apart from ``captum.attr``).

- :func:`deletion_insertion`: the target probability as the most relevant pixels are removed or revealed, read
  against random orderings of the pixels (:func:`random_ordering_gaps`, :func:`against_chance`);
- :func:`pointing_game`: does the map's peak fall on known evidence?
- :func:`model_randomisation`: does the map change when the model's weights are randomised?
- :func:`responsibility_entropy`, :func:`robustness`: how spread a responsibility map is, and whether a mask's
  pixels alone keep the decision under noise.

All checks take maps of any method: (B, C, H, W) maps are summed over channels, layer-resolution maps (CAMs)
upsampled to the input size (:func:`pixel_relevance`).
"""

from .._utils.images import pixel_relevance
from .causal import responsibility_entropy, robustness
from .curves import (
    BASELINES,
    ChanceComparison,
    CurveResult,
    against_chance,
    deletion_insertion,
    random_ordering_gaps,
    relevance_order,
)
from .pointing import pointing_game
from .randomisation import RandomisationStep, model_randomisation

__all__ = [
    "pixel_relevance",
    "BASELINES",
    "CurveResult",
    "deletion_insertion",
    "relevance_order",
    "random_ordering_gaps",
    "against_chance",
    "ChanceComparison",
    "pointing_game",
    "RandomisationStep",
    "model_randomisation",
    "responsibility_entropy",
    "robustness",
]
