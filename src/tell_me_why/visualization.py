"""The original ``tell_me_why.visualization`` module: the decision axis against pixel cues, with its figures.

Kept for the original API; the statistics live in :mod:`tell_me_why.cues`."""

from .cues.alignment import *  # noqa: F403
from .cues.alignment import __all__  # noqa: F401
