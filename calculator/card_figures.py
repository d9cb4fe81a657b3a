"""Geometry of the model card's figures (templates/model.html draws them as inline SVG).

Pure functions of the card JSON (``training/card.py``, validation block: ``docs/validation.md``); no Flask. Like
:mod:`calculator.charts`, they return positions in the SVG view box and preformatted labels; the stylesheet gives
colours (the Okabe–Ito ``group-N`` classes of the card's own palette) and line styles, so the page needs no inline
style. A figure whose data the card lacks is ``None`` (an older card, or one never validated): the page then says
"not available".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from calculator.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Y_TICKS, Frame, Tick
from prognosis.covariates import COVARIATES, DEFAULT_HORIZONS_MONTHS, covariate_terms

# --- forest plot of hazard ratios ---------------------------------------------------------------------------

FOREST_ROW = 22  # view-box units per term
FOREST_TOP, FOREST_AXIS = 30, 46  # room for the column titles above, and the axis below the rows
FOREST_PLOT_WIDTH = 340
CHAR_WIDTH = 6.4  # approximate advance of a 12px system-ui character, to size the label column
LOG2_LIMIT = 6  # the axis spans at most 1/64 to 64; whiskers beyond are cut and end in an arrow


@dataclass(frozen=True)
class ForestRow:
    """One term: positions of its estimate, interval and (synthetic models) the published estimate."""

    term: str
    label: str
    y: float
    hr: float | None  # x of the estimate; None when not finite
    lower: float | None
    upper: float | None
    cut_lower: bool  # the interval runs past the axis on that side
    cut_upper: bool
    published: float | None  # x of the published HR
    text: str  # "1.99 (1.92–2.07)"


@dataclass(frozen=True)
class ForestPlot:
    width: float
    height: float
    label_right: float  # labels end here (text-anchor end)
    left: float  # the plot box
    right: float
    top: float
    bottom: float
    text_x: float  # the "HR (95% CI)" column
    reference: float  # x of HR = 1
    ticks: tuple[Tick, ...]
    rows: tuple[ForestRow, ...]
    has_published: bool

    @property
    def markers(self) -> int:
        """Terms drawn with an estimate."""
        return sum(row.hr is not None for row in self.rows)


def forest_plot(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str] | None = None) -> ForestPlot | None:
    """Forest plot of hazard ratios on a log scale (rows: the card's ``multivariate`` table)."""
    if not rows:
        return None
    labels = labels or {}
    values = [
        v
        for row in rows
        for v in (row.get("hr"), row.get("ci_lower"), row.get("ci_upper"), row.get("published_hr"))
        if _positive(v)
    ]
    low = max(-LOG2_LIMIT, min(0, math.floor(math.log2(min(values, default=1.0)))))
    high = min(LOG2_LIMIT, max(0, math.ceil(math.log2(max(values, default=1.0)))))
    if high - low < 2:  # at least 0.5 to 2
        low, high = min(low, -1), max(high, 1)

    texts = [_hr_text(row) for row in rows]
    names = [labels.get(row.get("term", ""), row.get("label") or row.get("term", "")) for row in rows]
    label_right = 8 + min(360.0, max(100.0, CHAR_WIDTH * max(len(n) for n in names)))
    left = label_right + 14
    right = left + FOREST_PLOT_WIDTH
    text_x = right + 14
    width = text_x + CHAR_WIDTH * max(12, max(len(t) for t in texts)) + 8
    top, bottom = FOREST_TOP, FOREST_TOP + FOREST_ROW * len(rows)

    def x(hr: float) -> float:
        return left + (right - left) * (math.log2(hr) - low) / (high - low)

    def clamp(v: Any) -> tuple[float | None, bool]:
        if not _positive(v):
            return None, False
        cut = not 2.0**low <= v <= 2.0**high
        return x(min(max(v, 2.0**low), 2.0**high)), cut

    out = []
    for i, (row, name, text) in enumerate(zip(rows, names, texts, strict=True)):
        hr, hr_cut = clamp(row.get("hr"))
        lower, cut_lower = clamp(row.get("ci_lower"))
        upper, cut_upper = clamp(row.get("ci_upper"))
        published, _ = clamp(row.get("published_hr"))
        out.append(
            ForestRow(
                str(row.get("term", "")),
                name,
                top + FOREST_ROW * (i + 0.5),
                None if hr_cut else hr,
                lower,
                upper,
                cut_lower,
                cut_upper,
                published,
                text,
            )
        )
    ticks = tuple(Tick(x(2.0**k), _hr_tick(2.0**k)) for k in range(low, high + 1))
    return ForestPlot(
        round(width),
        bottom + FOREST_AXIS,
        label_right,
        left,
        right,
        top,
        bottom,
        text_x,
        x(1.0),
        ticks,
        tuple(out),
        any(r.published is not None for r in out),
    )


def _positive(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def _hr_tick(v: float) -> str:
    """Powers of two: 1/4, 1/2, 1, 2, 4."""
    return f"{v:g}" if v >= 1 else f"1/{1 / v:g}"


def _hr_text(row: Mapping[str, Any]) -> str:
    def one(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, (int, float)) and math.isfinite(v) else "–"

    return f"{one(row.get('hr'))} ({one(row.get('ci_lower'))}–{one(row.get('ci_upper'))})"


# --- calibration plots --------------------------------------------------------------------------------------

CAL_SIZE = 300
CAL_LEFT, CAL_RIGHT, CAL_TOP, CAL_BOTTOM = 52, 282, 14, 244


@dataclass(frozen=True)
class CalibrationPoint:
    """One risk group: mean predicted (x) against Kaplan–Meier observed (y) survival, with its interval."""

    group: int
    x: float
    y: float
    lower: float | None  # y of the interval bounds; None when not estimable
    upper: float | None
    within: bool | None  # whether the mean prediction lies within the Kaplan–Meier interval


@dataclass(frozen=True)
class ProbabilityFrame(Frame):
    """A calibration plot's frame: predicted against observed on one range (``_ProbabilityAxes``), with the
    diagonal x1, y1, x2, y2 where they are equal (drawn by the ``probability_grid`` and ``probability_axes`` template
    macros)."""

    diagonal: tuple[float, float, float, float]


@dataclass(frozen=True)
class CalibrationPlot(ProbabilityFrame):
    months: float
    points: tuple[CalibrationPoint, ...]


@dataclass(frozen=True)
class _ProbabilityAxes:
    """A calibration plot's shared axes: one range for predicted and observed (whole tenths around the data, at
    least 0.2 wide, within [0, 1]) so that the diagonal is at 45°, its tick marks, and the mapping into the plot."""

    low: float
    high: float
    marks: tuple[float, ...]

    @classmethod
    def around(cls, values: list[float]) -> _ProbabilityAxes:
        low = max(0.0, math.floor(min(values) * 10 - 1e-9) / 10)
        high = min(1.0, math.ceil(max(values) * 10 + 1e-9) / 10)
        if high - low < 0.2:
            low, high = (max(0.0, high - 0.2), high) if high - 0.2 >= 0 else (0.0, 0.2)
        step = 0.1 if high - low <= 0.5 else 0.2
        first, last = math.ceil(round(low / step, 9)), int(math.floor(round(high / step, 9)))
        return cls(low, high, tuple(round(step * k, 10) for k in range(first, last + 1)))

    def _above_low(self, p: float) -> float:
        return min(max(p, self.low), self.high) - self.low

    def x(self, p: float) -> float:
        return CAL_LEFT + (CAL_RIGHT - CAL_LEFT) * self._above_low(p) / (self.high - self.low)

    def y(self, p: float) -> float:
        return CAL_BOTTOM - (CAL_BOTTOM - CAL_TOP) * self._above_low(p) / (self.high - self.low)

    def frame(self, height: int) -> dict[str, Any]:
        """The ``ProbabilityFrame`` fields of a plot ``height`` high (the square plot, and below it anything else)."""
        return {
            "width": CAL_SIZE,
            "height": height,
            "left": CAL_LEFT,
            "right": CAL_RIGHT,
            "top": CAL_TOP,
            "bottom": CAL_BOTTOM,
            "x_ticks": tuple(Tick(self.x(m), f"{m:.0%}") for m in self.marks),
            "y_ticks": tuple(Tick(self.y(m), f"{m:.0%}") for m in self.marks),
            "diagonal": (self.x(self.low), self.y(self.low), self.x(self.high), self.y(self.high)),
        }


def calibration_plot(horizon: Mapping[str, Any]) -> CalibrationPlot | None:
    """Predicted vs observed survival by risk group at one horizon (an entry of ``validation.<ep>.calibration``).

    Both axes share one range (so that the diagonal is at 45°), the data's rounded out to tenths.
    """
    groups = [g for g in horizon.get("groups") or [] if _finite(g.get("predicted")) and _finite(g.get("observed"))]
    if not groups:
        return None
    values = [
        v for g in groups for v in (g["predicted"], g["observed"], g.get("ci_lower"), g.get("ci_upper")) if _finite(v)
    ]
    axes = _ProbabilityAxes.around(values)
    x, y = axes.x, axes.y

    def bound(v: Any) -> float | None:
        return round(y(v), 1) if _finite(v) else None

    points = tuple(
        CalibrationPoint(
            int(g.get("group", i + 1)),
            round(x(g["predicted"]), 1),
            round(y(g["observed"]), 1),
            bound(g.get("ci_lower")),
            bound(g.get("ci_upper")),
            g.get("within_ci"),
        )
        for i, g in enumerate(groups)
    )
    return CalibrationPlot(**axes.frame(CAL_SIZE), months=float(horizon.get("months", 0.0)), points=points)


def _finite(v: object) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --- smoothed calibration curves (Austin, Harrell & van Klaveren 2020) ----------------------------------------

SMOOTH_HEIGHT = 350  # the square plot, and below it the histogram of predicted risks
SMOOTH_HISTOGRAM_TOP, SMOOTH_HISTOGRAM_BOTTOM = 268, 316
SMOOTH_MEASURES = ("ici", "e50", "e90", "emax", "observed_expected")


@dataclass(frozen=True)
class HistogramBar:
    x: float
    width: float
    y: float
    height: float
    count: int


@dataclass(frozen=True)
class SmoothedCalibrationPlot(ProbabilityFrame):
    """One horizon of ``validation.<ep>.smoothed_calibration``: the smoothed observed risk against the predicted risk
    (points of the line), its 95% band (polygon), the diagonal, and the predicted risks' histogram beneath."""

    months: float
    line: str
    band: str
    histogram: tuple[HistogramBar, ...]
    histogram_top: int
    histogram_bottom: int
    external: bool
    measures: dict[str, Any]  # ici, e50, e90, emax, observed_expected: the values to report (basis), or None


def smoothed_calibration_plot(entry: Mapping[str, Any]) -> SmoothedCalibrationPlot | None:
    """The figure of one entry of ``validation.<endpoint>.smoothed_calibration`` (docs/validation.md); None when it
    is not estimable or has no curve. Both axes share one range (the data's, rounded out to tenths), so that the
    diagonal is at 45°."""
    curve = entry.get("curve")
    if not entry.get("estimable", True) or not isinstance(curve, Mapping):
        return None
    predicted, observed = curve.get("predicted") or [], curve.get("observed") or []
    lower, upper = curve.get("ci_lower") or [], curve.get("ci_upper") or []
    points = [(x, y) for x, y in zip(predicted, observed, strict=False) if _finite(x) and _finite(y)]
    if len(points) < 2:
        return None
    values = [v for v in (*predicted, *observed, *lower, *upper) if _finite(v)]
    axes = _ProbabilityAxes.around(values)
    x, y = axes.x, axes.y

    def path(pairs: Sequence[tuple[float, float]]) -> str:
        return " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in pairs)

    band_upper = [(a, b) for a, b in zip(predicted, upper, strict=False) if _finite(a) and _finite(b)]
    band_lower = [(a, b) for a, b in zip(predicted, lower, strict=False) if _finite(a) and _finite(b)]
    band = path(band_upper + band_lower[::-1]) if band_upper and band_lower else ""
    distribution = entry.get("predicted_distribution")
    bars: list[HistogramBar] = []
    if isinstance(distribution, Mapping):
        edges, counts = distribution.get("edges") or [], distribution.get("counts") or []
        pairs = [
            (a, b, c)
            for a, b, c in zip(edges, edges[1:], counts, strict=False)
            if _finite(a) and _finite(b) and isinstance(c, int) and b > axes.low and a < axes.high
        ]
        most = max((c for _, _, c in pairs), default=0)
        for a, b, c in pairs:
            height = (SMOOTH_HISTOGRAM_BOTTOM - SMOOTH_HISTOGRAM_TOP) * c / most if most else 0.0
            bars.append(
                HistogramBar(
                    round(x(a), 1),
                    round(x(b) - x(a), 1),
                    round(SMOOTH_HISTOGRAM_BOTTOM - height, 1),
                    round(height, 1),
                    c,
                )
            )
    measures = {key: entry.get(key) if _finite(entry.get(key)) else None for key in SMOOTH_MEASURES}
    return SmoothedCalibrationPlot(
        **axes.frame(SMOOTH_HEIGHT),
        months=float(entry.get("months", 0.0)),
        line=path(points),
        band=band,
        histogram=tuple(bars),
        histogram_top=SMOOTH_HISTOGRAM_TOP,
        histogram_bottom=SMOOTH_HISTOGRAM_BOTTOM,
        external=bool(entry.get("external")),
        measures=measures,
    )


# --- Kaplan–Meier curves by predicted risk group ------------------------------------------------------------

KM_LEFT, KM_RIGHT, KM_TOP, KM_BOTTOM = LEFT, RIGHT, TOP, BOTTOM  # the same frame as the result page's charts
TABLE_HORIZONS = DEFAULT_HORIZONS_MONTHS
GROUP_COLOURS = 3  # classes group-0 ... group-2 in the stylesheet


@dataclass(frozen=True)
class RiskGroupSeries:
    """One risk group: observed Kaplan–Meier step line and band, and the mean predicted curve (SVG points)."""

    group: int
    slot: int  # colour of the group in the card's palette (class ``group-<slot>``; cycles after three groups)
    label: str
    short: str  # for the table's row headers
    n: int | None
    events: int | None
    observed: str
    band: str
    predicted: str
    table: tuple[dict[str, float | None], ...]  # at TABLE_HORIZONS within the curves: months, observed, CI, predicted


@dataclass(frozen=True)
class RiskGroupChart(Frame):
    series: tuple[RiskGroupSeries, ...]
    table_months: tuple[float, ...]


def risk_group_chart(curves: Mapping[str, Any]) -> RiskGroupChart | None:
    """Kaplan–Meier curves by predicted risk group (``validation.<ep>.risk_group_curves``) against the mean
    predicted curve of each group."""
    months = [float(m) for m in curves.get("months") or []]
    groups = list(curves.get("groups") or [])
    if len(months) < 2 or not groups:
        return None
    x_max = max(12.0, 12.0 * math.ceil(months[-1] / 12.0))
    step = 12 if x_max <= 120 else 24

    def x(m: float) -> float:
        return KM_LEFT + (KM_RIGHT - KM_LEFT) * m / x_max

    def y(p: float) -> float:
        return KM_BOTTOM - (KM_BOTTOM - KM_TOP) * p

    def points(vertices: list[tuple[float, float]]) -> str:
        return " ".join(f"{x(t):.1f},{y(s):.1f}" for t, s in vertices)

    table_months = tuple(h for h in TABLE_HORIZONS if h <= months[-1])
    series = []
    for i, g in enumerate(groups):
        observed = _steps(months, g.get("observed") or [])
        upper, lower = _steps(months, g.get("ci_upper") or []), _steps(months, g.get("ci_lower") or [])
        n = min(len(upper), len(lower))
        band = upper[:n] + lower[:n][::-1] if n else []
        predicted = [(t, v) for t, v in zip(months, g.get("predicted") or [], strict=False) if _finite(v)]
        table = tuple(_at(months, g, h) for h in table_months)
        number = int(g.get("group", i + 1))
        label = _group_label(number, len(groups))
        series.append(
            RiskGroupSeries(
                number,
                i % GROUP_COLOURS,
                label,
                label.removesuffix(" of predicted risk"),
                g.get("n"),
                g.get("events"),
                points(observed),
                points(band),
                points(predicted),
                table,
            )
        )
    return RiskGroupChart(
        WIDTH,
        HEIGHT,
        KM_LEFT,
        KM_RIGHT,
        KM_TOP,
        KM_BOTTOM,
        tuple(Tick(x(m), f"{m:g}") for m in range(0, int(x_max) + 1, step)),
        tuple(Tick(y(p), f"{p:.0%}") for p in Y_TICKS),
        tuple(series),
        table_months,
    )


def _steps(months: Sequence[float], values: Sequence[Any]) -> list[tuple[float, float]]:
    """Vertices of a step function through the monthly values, up to the first missing one."""
    vertices: list[tuple[float, float]] = []
    for t, v in zip(months, values, strict=False):
        if not _finite(v):
            break
        if vertices:
            vertices.append((t, vertices[-1][1]))
        vertices.append((t, float(v)))
    return vertices if len(vertices) > 1 else []


def _at(months: Sequence[float], group: Mapping[str, Any], horizon: float) -> dict[str, float | None]:
    i = min(range(len(months)), key=lambda k: abs(months[k] - horizon))

    def value(key: str) -> float | None:
        seq = group.get(key) or []
        return seq[i] if i < len(seq) and _finite(seq[i]) else None

    return {
        "months": horizon,
        "observed": value("observed"),
        "ci_lower": value("ci_lower"),
        "ci_upper": value("ci_upper"),
        "predicted": value("predicted"),
    }


def _group_label(group: int, count: int) -> str:
    if count == 3 and 1 <= group <= 3:
        return ("Lowest", "Middle", "Highest")[group - 1] + " third of predicted risk"
    return f"Risk group {group}" + (" (lowest risk)" if group == 1 else " (highest risk)" if group == count else "")


# --- the page's figures and the worked example --------------------------------------------------------------

# The worked example: the first non-reference level of the first two required categorical covariates (grade 2,
# burden 25-50%), everything else at the reference (treated with the reference option).
EXAMPLE_TERMS = tuple(covariate_terms(cov)[0] for cov in COVARIATES if cov.required and not cov.numeric)[:2]
EXAMPLE_MONTHS = 24.0


@dataclass(frozen=True)
class EndpointFigures:
    forest: ForestPlot | None
    calibration: tuple[CalibrationPlot, ...]
    risk_groups: RiskGroupChart | None
    example: dict[str, Any] | None  # see worked_example
    smoothed: tuple[SmoothedCalibrationPlot, ...] = ()


@dataclass(frozen=True)
class CardFigures:
    endpoints: dict[str, EndpointFigures]
    labels: dict[str, str]  # term id -> label, from the card's model terms


def card_figures(card: Mapping[str, Any]) -> CardFigures:
    """Every figure of the card, by endpoint; missing data give ``None`` (or no calibration plots)."""
    labels = {
        t["term"]: t["label"]
        for t in (card.get("model") or {}).get("terms") or []
        if isinstance(t, Mapping) and "term" in t and "label" in t
    }
    validation = card.get("validation")
    out = {}
    for name, endpoint in (card.get("endpoints") or {}).items():
        checks = validation.get(name) if isinstance(validation, Mapping) else None
        checks = checks if isinstance(checks, Mapping) else {}
        plots = tuple(
            p
            for p in (calibration_plot(h) for h in checks.get("calibration") or [] if isinstance(h, Mapping))
            if p is not None
        )
        curves = checks.get("risk_group_curves")
        smoothed = tuple(
            p
            for p in (
                smoothed_calibration_plot(h) for h in checks.get("smoothed_calibration") or [] if isinstance(h, Mapping)
            )
            if p is not None
        )
        out[name] = EndpointFigures(
            forest_plot(endpoint.get("multivariate") or [], labels),
            plots,
            risk_group_chart(curves) if isinstance(curves, Mapping) else None,
            worked_example(endpoint, EXAMPLE_TERMS, EXAMPLE_MONTHS),
            smoothed,
        )
    return CardFigures(out, labels)


def worked_example(endpoint: Mapping[str, Any], terms: Sequence[str], months: float = 24.0) -> dict[str, Any] | None:
    """S(t | z) = S0(t) ** exp(z'β) for a patient with ``terms`` (and no others), from the card's numbers alone."""
    baseline = next(
        (b.get("survival") for b in endpoint.get("baseline_survival") or [] if b.get("months") == months), None
    )
    coefs = {row.get("term"): row.get("coef") for row in endpoint.get("multivariate") or []}
    rows = [(t, coefs.get(t)) for t in terms]
    finite = [(t, c) for t, c in rows if _finite(c)]
    if not _finite(baseline) or not rows or len(finite) < len(rows):
        return None
    lp = sum(c for _, c in finite)
    return {
        "months": months,
        "baseline": baseline,
        "terms": [{"term": t, "coef": c} for t, c in finite],
        "lp": lp,
        "relative_hazard": math.exp(lp),
        "survival": baseline ** math.exp(lp),
    }
