"""Causal responsibility explanations (the ReX method), batched: maps, minimal sufficient explanations, metrics,
plots and a results store."""

from .explainer import CausalExplainer
from .explanation import CausalExplanation
from .settings import CausalSettings
from .store import ResultsStore

__all__ = ["CausalExplainer", "CausalExplanation", "CausalSettings", "ResultsStore"]
