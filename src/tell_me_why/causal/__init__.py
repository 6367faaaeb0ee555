"""Causal responsibility explanations (the ReX method), batched: maps, minimal sufficient explanations, plots and a
results store. Importing this package registers ``"causal"`` in the explanation registry."""

from .attribution import CausalResponsibility
from .explainer import CausalExplainer
from .explanation import CausalExplanation
from .settings import CausalSettings
from .store import ResultsStore

__all__ = ["CausalExplainer", "CausalExplanation", "CausalResponsibility", "CausalSettings", "ResultsStore"]
