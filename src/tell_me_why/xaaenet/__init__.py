"""xAAEnet, the explainable-by-design model: encoder -> latent ``z`` -> linear classifier, with a decoder that
rebuilds the image from ``z`` and a critic that pushes ``z`` toward N(0, I); its three-phase training on fastai;
the latent vectors it writes and their figures; the explanations only its decoder can give (the decision axis
decoded, latent counterfactuals, neighbours in latent space)."""

from .encoders import available_encoders, build_encoder, register_encoder
from .latent_explanations import (
    AxisTraversal,
    DecisionAxis,
    LatentCounterfactuals,
    LatentNeighbours,
    decision_axis,
    latent_counterfactual,
    latent_neighbours,
    traverse_class_means,
    traverse_decision_axis,
)
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
    "decision_axis",
    "DecisionAxis",
    "traverse_decision_axis",
    "traverse_class_means",
    "AxisTraversal",
    "latent_counterfactual",
    "LatentCounterfactuals",
    "latent_neighbours",
    "LatentNeighbours",
]
