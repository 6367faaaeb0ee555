"""Settings of a causal explanation, from keyword arguments or a TOML file, validated the same way.

A TOML file may be flat or use the sections of ReX's ``rex.toml`` (``[causal]``, ``[causal.distribution]``,
``[explanation]``, ``[explanation.spatial]``, ``[explanation.multi]``, ``[explanation.evaluation]``, and ``[rex]``
for the seed and batch size); section names only group keys, every key below is unique.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._utils.settings import Settings, SettingsError, check_choice, check_int

__all__ = ["CausalSettings", "MASK_VALUE_NAMES", "DISTRIBUTIONS", "STRATEGIES", "FALLBACKS"]

MASK_VALUE_NAMES = ("neutral", "min", "mean", "blur", "noise")
DISTRIBUTIONS = ("uniform", "betabinom")
STRATEGIES = ("global", "spatial", "multi", "contrastive")
FALLBACKS = ("contrastive", "none")


@dataclass(frozen=True)
class CausalSettings(Settings):
    """Every setting with its default; see ``docs/causal.md`` for their meaning."""

    # landscape
    iterations: int | str = "auto"
    max_iterations: int = 20
    convergence: float = 0.9
    tree_depth: int = 10
    min_box_area: int = 10
    queue_len: int | str = 1
    distribution: str = "uniform"
    distribution_alpha: float = 1.1
    distribution_beta: float = 1.1
    max_forward_passes: int | None = None
    mask_value: float | str = "neutral"
    fallback: str = "contrastive"
    # extraction
    strategy: str = "global"
    confidence_threshold: float = 0.0
    chunk_size: int = 10
    search_candidates: int = 16
    spatial_radius: int = 25
    spatial_eta: float = 0.2
    spotlights: int = 10
    spotlight_expansions: int = 4
    # evaluation
    curve_steps: int = 50
    robustness_samples: int = 20
    # run
    batch_size: int | str = "auto"
    seed: int | None = 0
    progress: bool = False

    _label = "causal setting"

    def __post_init__(self) -> None:
        self.check_types()
        if isinstance(self.iterations, str) and self.iterations != "auto":
            raise SettingsError(f"iterations must be 'auto' or an integer >= 1, got {self.iterations!r}.")
        if self.iterations != "auto":
            check_int(self, "iterations", minimum=1)
        check_int(self, "max_iterations", minimum=1)
        check_int(self, "tree_depth", minimum=1)
        check_int(self, "min_box_area", minimum=1)
        check_int(self, "chunk_size", minimum=1)
        check_int(self, "search_candidates", minimum=2)
        check_int(self, "spatial_radius", minimum=1)
        check_int(self, "spotlights", minimum=1)
        check_int(self, "spotlight_expansions", minimum=0)
        check_int(self, "curve_steps", minimum=2)
        check_int(self, "robustness_samples", minimum=1)
        if self.batch_size != "auto":
            check_int(self, "batch_size", minimum=1)
        if self.max_forward_passes is not None:
            check_int(self, "max_forward_passes", minimum=1)
        if self.seed is not None:
            check_int(self, "seed", minimum=0)
        if not (self.queue_len == "all" or (isinstance(self.queue_len, int) and self.queue_len >= 1)):
            raise SettingsError(f"queue_len must be a positive integer or 'all', got {self.queue_len!r}.")
        if self.queue_len == "all" and self.max_forward_passes is None:
            raise SettingsError("queue_len='all' refines every passing mutant, which grows exponentially with the "
                             "depth: set max_forward_passes (a work budget) too.")
        check_choice(self, "distribution", DISTRIBUTIONS)
        check_choice(self, "strategy", STRATEGIES)
        check_choice(self, "fallback", FALLBACKS)
        if not 0.0 < self.convergence <= 1.0:
            raise SettingsError(f"convergence must be in (0, 1], got {self.convergence!r}.")
        if isinstance(self.mask_value, str):
            check_choice(self, "mask_value", MASK_VALUE_NAMES)
        elif not isinstance(self.mask_value, (int, float)) or isinstance(self.mask_value, bool):
            raise SettingsError(f"mask_value must be a number or one of {MASK_VALUE_NAMES}, got {self.mask_value!r}.")
        for name in ("distribution_alpha", "distribution_beta", "spatial_eta"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be a positive number, got {getattr(self, name)!r}.")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise SettingsError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold!r}.")
