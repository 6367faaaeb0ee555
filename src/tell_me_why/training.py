"""The original ``tell_me_why.training`` module: three-phase xAAEnet training and the names it exported.

Kept for the original API; training lives in :mod:`tell_me_why.xaaenet.training`."""

from .xaaenet.callbacks import (
    AddGaussianNoise,
    BatchGradientAccumulation,
    CorruptionCallback,
    GetLatentSpace,
    LossAttrMetric,
    RandomMasking,
    UnfreezeFcCritAdaptative,
)
from .xaaenet.figures import save_latent_pls_figure, save_latent_tsne_figure
from .xaaenet.model import ExplainableModel
from .xaaenet.training import STATE_FILE, train_xaaenet

__all__ = [
    "ExplainableModel",
    "AddGaussianNoise", "RandomMasking", "CorruptionCallback", "UnfreezeFcCritAdaptative", "GetLatentSpace",
    "LossAttrMetric", "BatchGradientAccumulation",
    "save_latent_tsne_figure", "save_latent_pls_figure",
    "train_xaaenet", "STATE_FILE",
]
