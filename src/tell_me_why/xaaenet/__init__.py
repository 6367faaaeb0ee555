"""xAAEnet, the explainable-by-design model: encoder -> latent ``z`` -> linear classifier, with a decoder that
rebuilds the image from ``z`` and a critic that pushes ``z`` toward N(0, I); its three-phase training on fastai;
the latent vectors it writes and their figures."""

from .encoders import available_encoders, build_encoder, register_encoder
from .latents import extract_latents, latent_table, map_learner_predictions
from .model import AAE, PARAMETER_GROUPS, EncoderWithAAEBlocks, ExplainableModel, add_xaae_blocks
from .training import TrainSettings, train_xaaenet

__all__ = [
    "AAE",
    "EncoderWithAAEBlocks",
    "ExplainableModel",
    "add_xaae_blocks",
    "PARAMETER_GROUPS",
    "available_encoders",
    "build_encoder",
    "register_encoder",
    "train_xaaenet",
    "TrainSettings",
    "extract_latents",
    "latent_table",
    "map_learner_predictions",
]
