"""Heatmaps of element-wise error |a - b|, as PNG data URIs that the HTML report inlines.

Arrays of any rank are laid out as one 2-D picture: the last two axes form a tile (an
image H x W, a matrix), the axis before them runs across, and any earlier axes run down,
so an NCHW tensor shows as an N x C grid of H x W images.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

# matplotlib is imported by the first heatmap drawn, not with this module: a run where every
# pair agrees draws none, and the import costs about a second. No pyplot: no global state,
# no GUI backend.

WRAP_1D = 64  # a longer vector wraps into a near-square block of rows
MAX_SIDE_PX = 560
MIN_SIDE_PX = 60
MAX_CELL_PX = 40


def to_grid(x: np.ndarray) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The 2-D layout of `x` (NaN where a wrapped vector is padded) and its tile size."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        return x.reshape(1, 1), None
    if x.ndim == 1:
        return _wrap(x), None
    if x.ndim == 2:
        return x, None
    order = list(range(x.ndim - 3)) + [x.ndim - 2, x.ndim - 3, x.ndim - 1]
    h, w = x.shape[-2:]
    grid = x.transpose(order).reshape(-1, x.shape[-3] * w)
    return grid, (h, w)


def describe_layout(shape: tuple[int, ...]) -> str:
    """How `to_grid` laid out an array of `shape`, for a caption ('' when obvious)."""
    if len(shape) == 1 and shape[0] > WRAP_1D:
        return "read row by row"
    if len(shape) < 3:
        return ""
    tile = f"each tile is axes {len(shape) - 2} × {len(shape) - 1}"
    across = f"tiles run across along axis {len(shape) - 3}"
    if len(shape) == 3:
        return f"{across}; {tile}"
    down = ", ".join(str(a) for a in range(len(shape) - 3))
    return f"{across} and down along axis {down}; {tile}"


def _wrap(x: np.ndarray) -> np.ndarray:
    if x.size <= WRAP_1D:
        return x.reshape(1, -1)
    width = math.ceil(math.sqrt(x.size))
    padded = np.full(width * math.ceil(x.size / width), np.nan)
    padded[: x.size] = x
    return padded.reshape(-1, width)


def grid_position(shape: tuple[int, ...], index: tuple[int, ...]) -> tuple[int, int] | None:
    """Where element `index` of an array of `shape` lands in `to_grid`'s layout."""
    if not index or len(index) != len(shape):
        return None
    flat = np.ravel_multi_index(index, shape)
    grid, _ = to_grid(np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape))
    row, col = np.argwhere(grid == flat)[0]
    return int(row), int(col)


def heatmap_png(err: np.ndarray, worst: tuple[int, ...] = ()) -> str:
    """A `data:image/png;base64,...` URI of |a - b|, the worst element outlined."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid, tile = to_grid(err)
    fig = Figure(figsize=_figsize(grid.shape), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(grid), cmap=_cmap(), vmin=0, aspect="auto", interpolation="nearest"
    )
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).ax.tick_params(labelsize=7)
    _axes(ax, grid.shape, tile)
    _outline(ax, grid_position(np.shape(err), tuple(worst)))
    return _data_uri(fig)


def _cmap():
    from matplotlib import colormaps

    # Grey: elements that were not compared (fd checks a sample of a big input).
    return colormaps["Reds"].with_extremes(bad="#d9d9d9")


def _figsize(shape: tuple[int, int]) -> tuple[float, float]:
    rows, cols = shape
    cell = min(MAX_CELL_PX, MAX_SIDE_PX / cols, MAX_SIDE_PX / rows)
    width = min(max(cols * cell, MIN_SIDE_PX), MAX_SIDE_PX)
    height = min(max(rows * cell, MIN_SIDE_PX / 2), MAX_SIDE_PX)
    return (width + 110) / 100, (height + 60) / 100  # room for ticks and the color bar


def _axes(ax, shape: tuple[int, int], tile: tuple[int, int] | None) -> None:
    from matplotlib.ticker import NullLocator

    ax.tick_params(labelsize=7, length=2)
    if tile is None:
        for axis, n in ((ax.xaxis, shape[1]), (ax.yaxis, shape[0])):
            # A lone row (a vector) needs no row numbers: they would read -0.5, 0, 0.5.
            axis.set_major_locator(_index_locator(n) if n > 1 else NullLocator())
        return
    ax.set_xticks([])
    ax.set_yticks([])
    h, w = tile
    for y in range(h, shape[0], h):
        ax.axhline(y - 0.5, color="#444444", linewidth=0.8)
    for x in range(w, shape[1], w):
        ax.axvline(x - 0.5, color="#444444", linewidth=0.8)


def _index_locator(n: int):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=min(n, 10), integer=True)


def _outline(ax, position: tuple[int, int] | None) -> None:
    from matplotlib.patches import Rectangle

    if position is not None:
        row, col = position
        ax.add_patch(
            Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="#1f6feb", linewidth=1.6)
        )


def _data_uri(fig) -> str:
    buffer = io.BytesIO()
    # No "Software" entry: the same errors give the same bytes.
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
