"""The original ``tell_me_why.callbacks`` module: the fastai callbacks and metrics of xAAEnet training.

Kept for the original API; they live in :mod:`tell_me_why.xaaenet.callbacks`."""

from .xaaenet.callbacks import *  # noqa: F403
from .xaaenet.callbacks import __all__  # noqa: F401
