"""The original ``tell_me_why.feature_scores`` module: pixel-cue tables of image files, and the file behind each
row of a learner's inputs.

Kept for the original API; cues live in :mod:`tell_me_why.cues`."""

from .cues import table as _table
from .cues.table import *  # noqa: F403
from .xaaenet.latents import map_learner_predictions, mapping

__all__ = [*_table.__all__, "map_learner_predictions", "mapping"]
