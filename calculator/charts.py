"""Geometry of the survival charts, computed on the server so that they show without JavaScript and print.

Pure functions of the prediction; no Flask. The template turns a :class:`Chart` into SVG, and the same numbers go
into a JSON data island that the page script reads for values on hover.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 624, 16, 308  # the plot box inside the view box
Y_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Series:
    """One option's curve: ``slot`` picks its colour and dash pattern in the stylesheet."""

    option: str
    slot: int
    line: str  # points of the step polyline
    band: str  # points of the polygon between the interval curves


@dataclass(frozen=True)
class Frame:
    """The view box, plot area and ticks of a chart (drawn by the ``survival_axes`` template macro)."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]


@dataclass(frozen=True)
class Chart(Frame):
    x_max: float
    series: tuple[Series, ...]

    def geometry(self) -> dict[str, float]:
        """What the page script needs to map between months/probabilities and the view box."""
        return {"left": self.left, "right": self.right, "top": self.top, "bottom": self.bottom, "x_max": self.x_max}


def survival_chart(curves: Mapping[str, Mapping[str, Sequence[float | None]]], options: Sequence[str]) -> Chart:
    """Chart of one endpoint: ``curves[option]`` has ``times_months``, ``survival``, ``ci_lower``, ``ci_upper``."""
    last = max((max(curves[o]["times_months"], default=0.0) for o in options), default=0.0)
    x_max = max(12.0, 12.0 * math.ceil(last / 12.0))
    step = 12 if x_max <= 120 else 24

    def x(months: float) -> float:
        return LEFT + (RIGHT - LEFT) * months / x_max

    def y(probability: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * probability

    series = []
    for slot, option in enumerate(options):
        curve = curves[option]
        times = list(curve["times_months"])
        line = _steps(times, curve["survival"])
        # Both bounds over the same times, so that the polygon closes on itself.
        n = min(_finite_length(curve["ci_lower"]), _finite_length(curve["ci_upper"]))
        upper, lower = _steps(times[:n], curve["ci_upper"][:n]), _steps(times[:n], curve["ci_lower"][:n])
        band = upper + lower[::-1] if upper and lower else []
        series.append(Series(option, slot, _points(line, x, y), _points(band, x, y)))

    x_ticks = tuple(Tick(x(m), f"{m:g}") for m in range(0, int(x_max) + 1, step))
    y_ticks = tuple(Tick(y(p), f"{p:.0%}") for p in Y_TICKS)
    return Chart(WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM, x_ticks, y_ticks, x_max=x_max, series=tuple(series))


def _finite_length(values: Sequence[float | None]) -> int:
    """Length of the leading run of finite values."""
    return next((i for i, v in enumerate(values) if v is None or not math.isfinite(v)), len(values))


def _steps(times: Sequence[float], values: Sequence[float | None]) -> list[tuple[float, float]]:
    """Vertices of a right-continuous step function starting at (0, 1); stops at the first missing value."""
    vertices = [(0.0, 1.0)]
    previous = 1.0
    for time, value in zip(times, values[:_finite_length(values)]):
        if time > 0:
            vertices.append((time, previous))
        vertices.append((time, value))
        previous = value
    return vertices if len(vertices) > 1 else []


def _points(vertices: list[tuple[float, float]], x, y) -> str:
    return " ".join(f"{x(t):.1f},{y(s):.1f}" for t, s in vertices)
