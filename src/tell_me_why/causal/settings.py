"""Settings of a causal explanation, from keyword arguments or a TOML file, validated the same way.

A TOML file may be flat or use the sections of ReX's ``rex.toml`` (``[causal]``, ``[causal.distribution]``,
``[explanation]``, ``[explanation.spatial]``, ``[explanation.multi]``, ``[explanation.evaluation]``, and ``[rex]``
for the seed and batch size); section names only group keys, every key below is unique.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["CausalSettings", "MASK_VALUE_NAMES", "DISTRIBUTIONS", "STRATEGIES"]

MASK_VALUE_NAMES = ("min", "mean", "blur", "noise")
DISTRIBUTIONS = ("uniform", "betabinom")
STRATEGIES = ("global", "spatial", "multi", "contrastive")


@dataclass(frozen=True)
class CausalSettings:
    """Every setting with its default; see ``docs/causal.md`` for their meaning."""

    # landscape
    iterations: int = 20
    tree_depth: int = 10
    min_box_area: int = 10
    queue_len: int | str = 1
    distribution: str = "uniform"
    distribution_alpha: float = 1.1
    distribution_beta: float = 1.1
    max_forward_passes: int | None = None
    mask_value: float | str = 0.0
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

    def __post_init__(self) -> None:
        _check_int(self, "iterations", minimum=1)
        _check_int(self, "tree_depth", minimum=1)
        _check_int(self, "min_box_area", minimum=1)
        _check_int(self, "chunk_size", minimum=1)
        _check_int(self, "search_candidates", minimum=2)
        _check_int(self, "spatial_radius", minimum=1)
        _check_int(self, "spotlights", minimum=1)
        _check_int(self, "spotlight_expansions", minimum=0)
        _check_int(self, "curve_steps", minimum=2)
        _check_int(self, "robustness_samples", minimum=1)
        if self.batch_size != "auto":
            _check_int(self, "batch_size", minimum=1)
        if self.max_forward_passes is not None:
            _check_int(self, "max_forward_passes", minimum=1)
        if self.seed is not None:
            _check_int(self, "seed", minimum=0)
        if not (self.queue_len == "all" or (isinstance(self.queue_len, int) and self.queue_len >= 1)):
            raise ValueError(f"queue_len must be a positive integer or 'all', got {self.queue_len!r}.")
        if self.queue_len == "all" and self.max_forward_passes is None:
            raise ValueError("queue_len='all' refines every passing mutant, which grows exponentially with the "
                             "depth: set max_forward_passes (a work budget) too.")
        _check_choice(self, "distribution", DISTRIBUTIONS)
        _check_choice(self, "strategy", STRATEGIES)
        if isinstance(self.mask_value, str):
            _check_choice(self, "mask_value", MASK_VALUE_NAMES)
        elif not isinstance(self.mask_value, (int, float)) or isinstance(self.mask_value, bool):
            raise ValueError(f"mask_value must be a number or one of {MASK_VALUE_NAMES}, got {self.mask_value!r}.")
        for name in ("distribution_alpha", "distribution_beta", "spatial_eta"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}.")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold!r}.")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "keyword arguments") -> CausalSettings:
        """Build from a flat mapping; an unknown key is an error naming it and the valid ones."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"Unknown causal setting(s) {unknown} in {source}; valid settings: {cls.names()}.")
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> CausalSettings:
        """Read a TOML file (flat or sectioned), then apply ``overrides``."""
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"Cannot read causal settings from {str(path)!r}: {error}") from error
        flat: dict[str, Any] = {}
        _flatten(document, flat, str(path))
        return cls.from_mapping({**flat, **overrides}, source=str(path))

    def replace(self, **changes: Any) -> CausalSettings:
        return self.from_mapping({**asdict(self), **changes})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flatten(table: dict[str, Any], out: dict[str, Any], source: str, prefix: str = "") -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            _flatten(value, out, source, f"{prefix}{key}.")
        elif key in out:
            raise ValueError(f"Causal setting {key!r} is given twice in {source} (last in section {prefix!r}).")
        else:
            out[key] = value


def _check_int(settings: CausalSettings, name: str, minimum: int) -> None:
    value = getattr(settings, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def _check_choice(settings: CausalSettings, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(settings, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
