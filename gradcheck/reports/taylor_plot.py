"""Log-log Taylor-remainder curves per engine, as a PNG data URI that the HTML report inlines.

Each engine's remainder R(eps) is one color (a line per direction), beside a dashed slope-2
guide through the middle of the curves: a right gradient runs parallel to it until rounding
flattens it at small eps; a wrong one falls at slope 1.
"""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure   # no pyplot: no global state, no GUI backend

from .heatmap import _data_uri

COLORS = {"numpy": "#1f77b4", "fd": "#7f7f7f", "torch": "#d62728", "jax": "#2ca02c",
          "expect": "#9467bd"}
OTHER_COLORS = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def remainder_png(curves: dict[str, np.ndarray], rates: dict[str, float]) -> str:
    """`curves`: engine -> rows (eps, then R per direction); `rates`: engine -> rate."""
    fig = Figure(figsize=(4.2, 3.0), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (engine, curve) in enumerate(curves.items()):
        color = COLORS.get(engine, OTHER_COLORS[i % len(OTHER_COLORS)])
        label = f"{engine} (rate {rates.get(engine, float('nan')):.2f})"
        for k, remainder in enumerate(curve[1:]):
            ax.loglog(curve[0], _positive(remainder), color=color, linewidth=1.2,
                      label=label if k == 0 else None)
    _guide(ax, curves)
    ax.set_xlabel("eps", fontsize=8)
    ax.set_ylabel("R(eps)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    return _data_uri(fig)


def _positive(r: np.ndarray) -> np.ndarray:
    """An exact zero has no logarithm: leave a gap rather than a spike to -inf."""
    return np.where(np.asarray(r) > 0, r, np.nan)


def _guide(ax, curves: dict[str, np.ndarray]) -> None:
    """A dashed line of slope 2 through the median remainder at the middle eps."""
    eps = next(iter(curves.values()))[0]
    middle = len(eps) // 2
    level = np.nanmedian([_positive(c[1:, middle]) for c in curves.values()])
    if not np.isfinite(level):
        return
    ax.loglog(eps, level * (eps / eps[middle]) ** 2, "k--", linewidth=0.8, label="slope 2")
