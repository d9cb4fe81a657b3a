"""Geometry of the survival charts, computed on the server so that they show without JavaScript and print, and the
stylesheet that colours each option.

Pure functions of the prediction and the definitions; no Flask. The template turns a :class:`Chart` into SVG, and the
same numbers go into a JSON data island that the page script reads for values on hover.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from prognosis.covariates import OPTION_STYLES, OPTIONS

Curves = Mapping[str, Mapping[str, Sequence[float | None]]]  # per option: times_months, survival, ci_lower, ci_upper

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 624, 16, 308  # the plot box inside the view box
Y_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
TICK_MONTHS = 12
# The time axis ends where the curves stop carrying information: once every option's survival has fallen to this
# (or the last event time, whichever is earlier), the rest would be curves flat at zero.
INFORMATIVE_SURVIVAL = 0.02


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Series:
    """One option's curve: ``slot`` is its position in the options, which picks its colour and dash pattern in the
    stylesheet (class ``option-<slot>``, see :func:`option_stylesheet`)."""

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
    start: float = 0.0  # where the curves begin: a conditional prediction's months already survived, else 0
    start_x: float = LEFT  # its x in the view box

    @property
    def conditional(self) -> bool:
        return self.start > 0

    def geometry(self) -> dict[str, float]:
        """What the page script needs to map between months/probabilities and the view box."""
        return {"left": self.left, "right": self.right, "top": self.top, "bottom": self.bottom, "x_max": self.x_max}


def survival_chart(curves: Curves, options: Sequence[str], start: float = 0.0) -> Chart:
    """Chart of one endpoint: ``curves[option]`` has ``times_months``, ``survival``, ``ci_lower``, ``ci_upper``.

    The time axis runs to :func:`informative_end`, rounded up to a tick; the curves are cut there. ``start``: a
    conditional prediction's curves begin at that many months (at 1) on the same axis, from 0; nothing is drawn
    before it.
    """
    end = max(informative_end(curves, options), start)
    x_max = max(float(TICK_MONTHS), TICK_MONTHS * math.ceil(end / TICK_MONTHS))
    if x_max <= start:  # leave room after the start for the curves
        x_max += TICK_MONTHS
    step = TICK_MONTHS if x_max <= 10 * TICK_MONTHS else 2 * TICK_MONTHS

    def x(months: float) -> float:
        return LEFT + (RIGHT - LEFT) * months / x_max

    def y(probability: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * probability

    series = []
    for slot, option in enumerate(options):
        curve = curves[option]
        times = _finite_prefix(curve["times_months"])
        line = _clip(_steps(times, _finite_prefix(curve["survival"]), start), x_max)
        # Both bounds over the same times, so that the polygon closes on itself.
        upper_values, lower_values = _finite_prefix(curve["ci_upper"]), _finite_prefix(curve["ci_lower"])
        n = min(len(upper_values), len(lower_values))
        upper = _clip(_steps(times, upper_values[:n], start), x_max)
        lower = _clip(_steps(times, lower_values[:n], start), x_max)
        band = upper + lower[::-1] if upper and lower else []
        series.append(Series(option, slot, _points(line, x, y), _points(band, x, y)))

    x_ticks = tuple(Tick(x(m), f"{m:g}") for m in range(0, int(x_max) + 1, step))
    y_ticks = tuple(Tick(y(p), f"{p:.0%}") for p in Y_TICKS)
    return Chart(
        WIDTH,
        HEIGHT,
        LEFT,
        RIGHT,
        TOP,
        BOTTOM,
        x_ticks,
        y_ticks,
        x_max=x_max,
        series=tuple(series),
        start=start,
        start_x=round(x(start), 1),
    )


def informative_end(curves: Curves, options: Sequence[str]) -> float:
    """Months up to which the curves carry information: the latest time at which an option's survival first falls
    to INFORMATIVE_SURVIVAL (an option that never does: its last time), but never past the last time of any curve
    (the last event time)."""
    last, ends = 0.0, []
    for option in options:
        times = _finite_prefix(curves[option]["times_months"])
        values = _finite_prefix(curves[option]["survival"])[: len(times)]
        if not values:
            continue
        own_last = times[len(values) - 1]
        last = max(last, own_last)
        ends.append(next((t for t, s in zip(times, values, strict=False) if s <= INFORMATIVE_SURVIVAL), own_last))
    return min(max(ends, default=0.0), last)


def _finite_prefix(values: Sequence[float | None]) -> list[float]:
    """The leading run of finite values (a curve stops at its first missing value: not estimable)."""
    out = []
    for value in values:
        if value is None or not math.isfinite(value):
            break
        out.append(float(value))
    return out


def _steps(times: Sequence[float], values: Sequence[float], start: float = 0.0) -> list[tuple[float, float]]:
    """Vertices of a right-continuous step function starting at (start, 1), over the given (finite) values."""
    vertices = [(start, 1.0)]
    previous = 1.0
    for time, value in zip(times, values, strict=False):
        if time > start:
            vertices.append((time, previous))
        vertices.append((time, value))
        previous = value
    return vertices if len(vertices) > 1 else []


def _clip(vertices: list[tuple[float, float]], x_max: float) -> list[tuple[float, float]]:
    """The step vertices up to ``x_max``; a curve that goes on is drawn to the edge at its value there."""
    kept = [(t, s) for t, s in vertices if t <= x_max]
    if kept and len(kept) < len(vertices) and kept[-1][0] < x_max:
        kept.append((x_max, kept[-1][1]))
    return kept if len(kept) > 1 else []


def _points(vertices: list[tuple[float, float]], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    return " ".join(f"{x(t):.1f},{y(s):.1f}" for t, s in vertices)


# --- the options' colours -----------------------------------------------------------------------------------

_COLOUR = re.compile(r"#[0-9A-Fa-f]{3,8}|[a-z]+")
_DASH = re.compile(r"[0-9. ,]*")


def option_stylesheet() -> str:
    """CSS that gives each option (class ``option-<i>``, i its position in OPTIONS) the colour and dash pattern of
    its OPTION_STYLES entry: lines, bands, legend swatches, table keys and hover dots. Served by the app as a file,
    so that the page needs no inline style (the CSP allows stylesheets from 'self' only)."""
    rules = ["/* Generated from OPTION_STYLES (prognosis/definitions.py): each option's colour and dash pattern. */"]
    for slot, option in enumerate(OPTIONS):
        style = OPTION_STYLES[option]
        if not _COLOUR.fullmatch(style.colour) or not _DASH.fullmatch(style.dash):
            raise ValueError(f"OPTION_STYLES[{option!r}]: not a CSS colour or an SVG dash pattern: {style}")
        name = re.sub(r"[^\w .+-]", "", option)
        rules.append(f".option-{slot} {{ stroke: {style.colour}; fill: {style.colour}; }} /* {name} */")
        rules.append(f".key.option-{slot} {{ background: {style.colour}; }}")
        if style.dash:
            rules.append(f".line.option-{slot}, .option-{slot} .swatch line {{ stroke-dasharray: {style.dash}; }}")
    return "\n".join(rules) + "\n"


OPTION_STYLESHEET = option_stylesheet()
# In the stylesheet's URL, so that it can be cached for good and a change of the definitions gets a new URL.
OPTION_STYLESHEET_DIGEST = hashlib.sha256(OPTION_STYLESHEET.encode()).hexdigest()[:16]
