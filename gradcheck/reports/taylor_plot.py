"""Log-log Taylor-remainder curves per engine, as an SVG data URI that the HTML report inlines.

Each engine's remainder R(eps) is one color (a line per direction), beside a dashed slope-2
guide through the middle of the curves: a right gradient runs parallel to it until rounding
flattens it at small eps; a wrong one falls at slope 1.

The SVG is written directly: a few polylines on decade axes. Drawing them with matplotlib
cost about 0.7 s per plot (text layout of log ticks), most of a catalog run's wall time.
"""

from __future__ import annotations

import base64
import math
from html import escape

import numpy as np

COLORS = {
    "numpy": "#1f77b4",
    "fd": "#7f7f7f",
    "torch": "#d62728",
    "jax": "#2ca02c",
    "expect": "#9467bd",
}
OTHER_COLORS = ["#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
WIDTH, HEIGHT = 380, 270
LEFT, RIGHT, TOP, BOTTOM = 52, 10, 10, 34  # plot margins, in pixels


def remainder_svg(curves: dict[str, np.ndarray], rates: dict[str, float]) -> str:
    """`curves`: engine -> rows (eps, then R per direction); `rates`: engine -> rate."""
    lines = [
        (_color(engine, i), curve[0], _positive(r), k == 0 and engine)
        for i, (engine, curve) in enumerate(curves.items())
        for k, r in enumerate(curve[1:])
    ]
    guide = _guide(curves)
    box = _LogBox([x for _, x, _, _ in lines], [y for _, _, y, _ in lines] + [guide[1]])
    body = [box.axes()]
    body += [box.polyline(x, y, color) for color, x, y, _ in lines]
    if guide[0] is not None:
        body.append(box.polyline(guide[0], guide[1], "#000", dashed=True))
    labels = [
        (color, f"{engine} (rate {rates.get(engine, float('nan')):.2f})")
        for color, _, _, engine in lines
        if engine
    ]
    body.append(_legend(labels + ([("#000", "slope 2")] if guide[0] is not None else [])))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="sans-serif" font-size="10">{"".join(body)}</svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _color(engine: str, i: int) -> str:
    return COLORS.get(engine, OTHER_COLORS[i % len(OTHER_COLORS)])


def _positive(r: np.ndarray) -> np.ndarray:
    """An exact zero has no logarithm: leave a gap rather than a spike to -inf."""
    return np.where(np.asarray(r, dtype=float) > 0, r, np.nan)


def _guide(curves: dict[str, np.ndarray]) -> tuple:
    """A dashed line of slope 2 through the median remainder at the middle eps."""
    eps = np.asarray(next(iter(curves.values()))[0], dtype=float)
    middle = len(eps) // 2
    remainders = np.concatenate([_positive(c[1:, middle]) for c in curves.values()])
    if not np.isfinite(remainders).any():  # every remainder 0 there: no level to draw
        return None, np.full_like(eps, np.nan)
    level = np.nanmedian(remainders)
    return eps, level * (eps / eps[middle]) ** 2


class _LogBox:
    """Maps (x, y) on decade axes spanning every finite positive value onto the plot area."""

    def __init__(self, xs: list, ys: list):
        self.x0, self.x1 = _decades(xs)
        self.y0, self.y1 = _decades(ys)

    def point(self, x: float, y: float) -> tuple[float, float]:
        return self.at(math.log10(x), math.log10(y))

    def at(self, log_x: float, log_y: float) -> tuple[float, float]:
        """Decades in, pixels out (10.0 ** -324 is 0: the axes stay in decades)."""
        fx = (log_x - self.x0) / (self.x1 - self.x0)
        fy = (log_y - self.y0) / (self.y1 - self.y0)
        return LEFT + fx * (WIDTH - LEFT - RIGHT), TOP + (1 - fy) * (HEIGHT - TOP - BOTTOM)

    def polyline(self, xs, ys, color: str, dashed: bool = False) -> str:
        """One polyline per unbroken run of finite points: a NaN leaves a gap."""
        runs, current = [], []
        # as Python floats: numpy's per-scalar calls made this loop the plot's main cost
        for x, y in zip(_floats(xs), _floats(ys)):
            if math.isfinite(x) and math.isfinite(y) and x > 0 and y > 0:
                px, py = self.point(x, y)
                current.append(f"{px:.1f},{py:.1f}")
            elif current:
                runs.append(current)
                current = []
        runs.append(current)
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        width = 0.8 if dashed else 1.2
        return "".join(
            f'<polyline points="{" ".join(r)}" fill="none" stroke="{color}" '
            f'stroke-width="{width}"{dash}/>'
            for r in runs
            if r
        )

    def axes(self) -> str:
        left, bottom = LEFT, HEIGHT - BOTTOM
        parts = [
            f'<rect x="{left}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{bottom - TOP}" fill="none" stroke="#444"/>'
        ]
        for d in _ticks(self.x0, self.x1):
            x, _ = self.at(d, self.y0)
            parts.append(f'<text x="{x:.1f}" y="{bottom + 13}" text-anchor="middle">1e{d}</text>')
        for d in _ticks(self.y0, self.y1):
            _, y = self.at(self.x0, d)
            parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">1e{d}</text>')
        parts.append(
            f'<text x="{(left + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" '
            'text-anchor="middle">eps</text>'
        )
        parts.append(
            f'<text x="10" y="{(TOP + bottom) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 10 {(TOP + bottom) / 2})">R(eps)</text>'
        )
        return "".join(parts)


def _floats(values) -> list[float]:
    return np.asarray(values, dtype=float).tolist()


def _decades(values: list) -> tuple[int, int]:
    finite = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in values] or [np.empty(0)])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if not finite.size:
        return 0, 1
    low, high = math.floor(math.log10(finite.min())), math.ceil(math.log10(finite.max()))
    return low, max(high, low + 1)


def _ticks(low: int, high: int) -> range:
    """At most about six labelled decades."""
    return range(low, high + 1, max(1, math.ceil((high - low) / 6)))


def _legend(labels: list[tuple[str, str]]) -> str:
    """Bottom right, where the curves are not: R is small only at small eps."""
    rows, first = [], HEIGHT - BOTTOM - 6 - 12 * (len(labels) - 1)
    for i, (color, text) in enumerate(labels):
        y = first + 12 * i
        rows.append(
            f'<line x1="{WIDTH - 150}" y1="{y - 3}" x2="{WIDTH - 135}" y2="{y - 3}" '
            f'stroke="{color}" stroke-width="1.5"/>'
            f'<text x="{WIDTH - 131}" y="{y}">{escape(text)}</text>'
        )
    return "".join(rows)
