"""Tell Me Why: why does this binary image classifier decide what it decides?

The package's rooms are the user's steps:

- :mod:`tell_me_why.xaaenet`: the explainable-by-design model and its three-phase training;
- :mod:`tell_me_why.cues`: pixel cues and the statistics that relate them to the model's decision axis;
- :mod:`tell_me_why.attribution` and :mod:`tell_me_why.causal`: local explanations of any PyTorch classifier;
- :mod:`tell_me_why.metrics`: the checks that tell whether an explanation deserves trust;
- :mod:`tell_me_why.app`: data sources, the ``tmw`` pipeline, its report and command line;
- :mod:`tell_me_why.testing`: tasks with a planted, known cause.

The names below are the short public API; they are imported on first use, so ``import tell_me_why`` stays light.
The original library's modules (``model_aae``, ``user_encoder``, ``training``, ``callbacks``, ``feature_scores``,
``visualization``) remain importable.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads spin after each parallel region, waiting for work; on a shared machine the spinning eats the time
# slices the other threads need. A ResNet-18 training step (64 px, 2 threads, 2 cores) beside three busy processes
# took 8.0x its time alone with libgomp's default spin (300,000), 3.5x with 10,000 and 2.7x with passive waiting,
# which costs 25 % alone where 10,000 costs nothing (bench/bench_threads.py, docs/benchmarks.md). OpenMP reads this
# once, when torch loads it: set here, before the import below loads torch, unless the user (either variable) or
# an earlier import of torch has settled it.
if "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from . import causal as _causal  # noqa: F401  (registers the "causal" explanation method)

try:
    __version__ = version("tell-me-why")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

_PUBLIC = {
    "AAE": "xaaenet",
    "add_xaae_blocks": "xaaenet",
    "train_xaaenet": "xaaenet",
    "TrainSettings": "xaaenet",
    "traverse_decision_axis": "xaaenet",
    "latent_counterfactual": "xaaenet",
    "latent_neighbours": "xaaenet",
    "compute_feature_score_table": "cues",
    "run_pls_feature_figures": "cues",
    "fit_decision_axis": "cues",
    "explain": "attribution",
    "METHODS": "attribution",
    "CausalExplainer": "causal",
    "deletion_insertion": "metrics",
    "pointing_game": "metrics",
    "model_randomisation": "metrics",
    "Run": "app.pipeline",
    "RunSettings": "app.pipeline",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
