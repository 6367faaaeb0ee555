"""One look for every figure of the library: light theme, colour-blind-safe class colours, save then close."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

from .files import atomic_path

__all__ = ["CLASS_A_COLOR", "CLASS_B_COLOR", "figure_style", "finish_figure", "display_array"]

# Okabe-Ito palette: class A (the class the user names) vermillion, class B blue.
CLASS_A_COLOR = "#D55E00"
CLASS_B_COLOR = "#0072B2"

_STYLE = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 13,
    "axes.labelsize": 11,
    "legend.frameon": False,
    "font.size": 10,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the library's matplotlib style inside the block."""
    with matplotlib.rc_context(_STYLE):
        yield


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _interactive_backend() -> bool:
    import matplotlib.pyplot as plt

    return plt.get_backend().lower() not in {"agg", "pdf", "svg", "ps", "cairo", "pgf", "template"}


def finish_figure(
    fig,
    save_path: str | Path | None,
    show: bool | None = None,
    formats: tuple[str, ...] = ("png",),
    close: bool = True,
):
    """Display ``fig`` when asked (``None``: only inside a notebook), save it atomically, then close it.

    Display means inline in a notebook, or a window under an interactive backend; under a file-only
    backend (Agg) ``show`` does nothing. Returns the path of the first saved format (or ``None``).
    """
    import matplotlib.pyplot as plt

    if show or (show is None and _in_notebook()):
        if _in_notebook():
            from IPython.display import display

            display(fig)
        elif _interactive_backend():
            plt.show(block=False)
    first = None
    if save_path is not None:
        base = Path(save_path)
        for fmt in formats:
            target = base.with_suffix(f".{fmt}")
            with atomic_path(target) as tmp:
                fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
            first = first or target
    if close:
        plt.close(fig)
    return first


def display_array(image, scale: bool = True):
    """An image tensor (C, H, W), in any value range, as an array for ``imshow``: (H, W) for one channel,
    (H, W, 3) otherwise, min-max scaled to [0, 1]; ``scale=False`` clips to [0, 1] instead, for images whose
    brightness is part of what they show (decoded images compared with each other)."""
    import numpy as np

    array = image.detach().cpu().float().numpy()
    if scale:
        low, high = array.min(), array.max()
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    else:
        array = np.clip(array, 0.0, 1.0)
    return array[0] if array.shape[0] == 1 else np.moveaxis(array[:3], 0, -1)
