"""Per-model constants for scoring, computed once per loaded model and dropped with it.

Scoring (``prognosis.mixture``) evaluates a patient's averaged curve only where the answer needs it; what makes that
possible is computed here, once per endpoint model:

- the baseline quantities at every event time (cumulative hazard H, its variance term, the risk-set means, and
  B = XC V, g = diag(XC V XC') for the coefficient part of the variance);
- the **grid**: the event times at which every curve is evaluated, chosen once for the model so that the returned
  curves stay smooth for every patient (below), and per gap between consecutive grid points the bounds that let
  the median's confidence limits be located without evaluating the curves inside the gap;
- the **patterns** of the optional covariates the unknowns model covers, with each term's and each chain input's
  value factored into a part that depends on the pattern and a part that depends on the rest of the patient, so a
  patient's mixture components are one product of small arrays;
- lazily, per combination of the required covariates, the **RMST tables** at the default horizon (see
  :class:`RmstBlock`).

Memory (shipped model, ~2,000-2,700 event times, 19 terms, 64 patterns), per endpoint: ~1.1-1.4 MB of
per-event-time arrays, grid and gap bounds; for the 24 combinations of the required covariates 1.4 MB of components
(``prognosis.mixture.Components``) and 7.5 MB of RMST tables; ~19 MB for both endpoints (``prepare`` builds them
all at load, else each on first use; ``RMST_TABLE_BUDGET`` and ``mixture.COMPONENTS_KEPT`` cap them).
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prognosis import covariates
from prognosis.model import ChainLink, EndpointModel, Model

# The grid: every event time that starts a new month, and enough others that no patient's curve can fall by more
# than this between consecutive grid points (so the returned curves, thinned from the grid, look like the full ones).
GRID_SURVIVAL_STEP = 0.01
GRID_MONTHS_STEP = 1.0
# RMST tables are kept for at most this many bytes per endpoint; combinations beyond it use the exact path.
RMST_TABLE_BUDGET = 64 * 2**20


@dataclass(frozen=True, eq=False)
class TermParts:
    """Terms (of the Cox model, or the inputs of one link of the unknowns chain), each a product of parts.

    A term's value for a patient under an option and a pattern of the unknowns is (its parts on the patient's other
    covariates: ``fixed`` indicators and ``numeric`` values) x (its option part: ``option_indicator``) x (its parts
    on the pattern's covariates: ``pattern_factor`` (P, n_terms), 1 where it has none).
    """

    fixed: tuple[tuple[tuple[str, str], ...], ...]
    numeric: tuple[tuple[str, ...], ...]
    option_indicator: np.ndarray  # (options, n_terms)
    pattern_factor: np.ndarray  # (P, n_terms)

    def fixed_values(self, patient: Mapping[str, str | None]) -> np.ndarray:
        """Each term's parts on the patient's covariates other than the pattern's and the option (n_terms,)."""
        out = np.empty(len(self.fixed))
        for j, (parts, numbers) in enumerate(zip(self.fixed, self.numeric, strict=True)):
            value = 1.0
            for name, level in parts:
                if patient[name] != level:
                    value = 0.0
                    break
            for name in numbers:
                number = patient[name]
                value *= float(number) if number is not None else 0.0
            out[j] = value
        return out

    def other_rows(self, patient: Mapping[str, str | None]) -> np.ndarray:
        """(options, n_terms): each term's value without its pattern part, for the patient under each option."""
        return self.fixed_values(patient) * self.option_indicator


def _term_parts(terms: tuple[str, ...] | list[str], names: tuple[str, ...], levels: np.ndarray) -> TermParts:
    """Split ``terms`` into parts on the pattern covariates ``names`` (their levels per pattern: ``levels``), on
    the option, and on the rest of the patient."""
    fixed, numeric, option_level = [], [], []
    factor = np.ones((len(levels), len(terms)))
    for j, term in enumerate(terms):
        own: list[tuple[str, str]] = []
        numbers: list[str] = []
        option = None
        if term in covariates.BY_NAME and covariates.BY_NAME[term].numeric:
            numbers.append(term)
        else:
            for name, level in covariates._parts(term).items():
                if name == covariates.MODALITY.name:
                    option = level
                elif name in names:
                    factor[:, j] *= levels[:, names.index(name)] == level
                else:
                    own.append((name, level))
        fixed.append(tuple(own))
        numeric.append(tuple(numbers))
        option_level.append(option)
    indicator = np.array(
        [[1.0 if level is None or level == option else 0.0 for level in option_level] for option in covariates.OPTIONS]
    ).reshape(len(covariates.OPTIONS), len(terms))
    return TermParts(tuple(fixed), tuple(numeric), indicator, factor)


@dataclass(frozen=True, eq=False)
class Patterns:
    """Every combination (pattern) of the optional covariates the unknowns chain covers, and the chain's pieces.

    ``levels`` (P, n) holds each pattern's levels and ``codes`` (P, n) their positions among the covariate's levels;
    ``links`` per link of the chain its inputs split into parts and, per pattern, the index of the pattern's level.
    """

    names: tuple[str, ...]
    levels: np.ndarray
    codes: np.ndarray
    links: tuple[tuple[ChainLink, TermParts, np.ndarray], ...]

    def compatible(self, patient: dict[str, str | None]) -> np.ndarray:
        """Indices of the patterns that agree with the patient's known optional values."""
        known = []
        for j, name in enumerate(self.names):
            value = patient[name]
            if value is not None:
                known.append((j, covariates.BY_NAME[name].levels.index(value)))
        if not known:
            return np.arange(len(self.codes))
        cols, values = zip(*known, strict=True)
        return np.flatnonzero((self.codes[:, cols] == values).all(axis=1))

    def log_joint(self, patient: dict[str, str | None]) -> np.ndarray:
        """log P(pattern, given the patient's other inputs) of every pattern under the chain (P,): normalised over
        the compatible patterns, these are the weights P(pattern | known inputs) (Bayes)."""
        out = np.zeros(len(self.codes))
        rows = np.arange(len(self.codes))
        for link, parts, observed in self.links:
            log_p = link.log_probabilities(parts.fixed_values(patient) * parts.pattern_factor)
            out += log_p[rows, observed]
        return out


def _patterns(ep: EndpointModel) -> Patterns:
    names = tuple(ep.cohort.unknowns.names)
    combos = list(itertools.product(*(covariates.BY_NAME[name].levels for name in names)))
    levels = np.array(combos, dtype=object).reshape(len(combos), len(names))
    codes = np.array(
        [[covariates.BY_NAME[name].levels.index(v) for name, v in zip(names, combo, strict=True)] for combo in combos],
        dtype=np.intp,
    ).reshape(len(combos), len(names))
    links = tuple(
        (
            link,
            _term_parts(link.inputs, names, levels),
            np.array([link.levels.index(value) for value in levels[:, names.index(link.name)]]),
        )
        for link in ep.cohort.unknowns.links
    )
    return Patterns(names, levels, codes, links)


@dataclass(frozen=True, eq=False)
class Gaps:
    """Per gap between consecutive grid points a < b, what bounds the curves over its interior a < i < b.

    H: ``h_hi`` = H(b-1), the largest interior value; ``dh_a`` = H(b-1) - H(a) and ``dh_b`` = H(b) - H(a+1), how
    far it moves from either end. Sum d/S0²: ``vc_a``, ``vc_lo``, ``vc_hi``, ``vc_b`` at a, a+1, b-1, b. Centring on
    the gap's own mean risk-set covariate m_g = (XC(b) - XC(a)) / (H(b) - H(a)) (``centre``, with ``v_centre`` = V m_g
    and ``m_v_m`` = m_g' V m_g), Y = XC - m_g H: ``y_hi`` = the largest interior ||Y_i||_V, ``dy_a`` and ``dy_b`` the
    largest interior ||Y_i - Y_a||_V and ||Y_i - Y_b||_V. Gaps without interior points have ``interior`` False.
    """

    interior: np.ndarray
    h_hi: np.ndarray
    dh_a: np.ndarray
    dh_b: np.ndarray
    vc_a: np.ndarray
    vc_lo: np.ndarray
    vc_hi: np.ndarray
    vc_b: np.ndarray
    centre: np.ndarray
    v_centre: np.ndarray
    m_v_m: np.ndarray
    y_hi: np.ndarray
    dy_a: np.ndarray
    dy_b: np.ndarray

    @property
    def sides(self) -> dict[str, np.ndarray]:
        """The constants of the bounds from a and from b stacked (2, gaps), so each step is one operation."""
        return _sides(self)


def _sides(gaps: Gaps) -> dict[str, np.ndarray]:
    found = _SIDES.get(gaps)
    if found is None:
        found = _SIDES[gaps] = {
            "h_dh": np.stack([gaps.h_hi * gaps.dh_a, gaps.h_hi * gaps.dh_b]),
            "dh": np.stack([gaps.dh_a, gaps.dh_b]),
            "dy": np.stack([gaps.dy_a, gaps.dy_b]),
            "v_centre": np.stack([gaps.v_centre, gaps.v_centre]),
            "sqrt_m_v_m": np.sqrt(gaps.m_v_m),
        }
    return found


_SIDES: weakref.WeakKeyDictionary[Gaps, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class RmstBlock:
    """RMST tables at horizon tau for one combination of the required covariates: every (option, pattern).

    With S_c(t_j) the survival of component c (option, pattern), widths w_j of the steps up to tau:
    ``area`` [c] = sum_j S_c(t_j) w_j; ``gradient`` [c] = r_c (z_c sum_j S_c H_j w_j - sum_j S_c XC_j w_j), the
    component's share of the RMST's gradient in beta; ``gram`` = C diag(d/S0²) C' with
    C[c, i] = r_c sum_{j >= i} S_c(t_j) w_j, so that a mixture's baseline variance is w' gram w (linear in the
    weights, since RMST is).
    """

    area: np.ndarray  # (options, P)
    gradient: np.ndarray  # (options, P, p)
    gram: np.ndarray  # (options * P, options * P)

    @property
    def nbytes(self) -> int:
        return self.area.nbytes + self.gradient.nbytes + self.gram.nbytes


@dataclass(eq=False)
class Prepared:
    """One endpoint's constants for scoring (see the module docstring)."""

    name: str
    terms: tuple[str, ...]
    coef: np.ndarray
    cov: np.ndarray
    times: np.ndarray
    hc: np.ndarray
    vc: np.ndarray
    xc: np.ndarray
    b: np.ndarray
    g: np.ndarray
    grid: np.ndarray
    gaps: Gaps
    b_t: np.ndarray  # B transposed, contiguous (p, T)
    varying: np.ndarray  # the terms with a part on the patterns of the unknowns
    every: np.ndarray  # every event index, 0 .. T-1
    on_grid: np.ndarray  # bool per event index: a grid point
    parts: TermParts
    patterns: Patterns
    cohort: object
    fixed_names: tuple[str, ...]  # the covariates the terms' fixed parts (and the chain's inputs) read
    rmst_tau: float | None
    rmst_keys: tuple[str, ...] | None  # the covariates an RMST block is keyed by (None: no tables)
    rmst_blocks: dict[tuple, RmstBlock] = field(default_factory=dict)
    rmst_lock: threading.Lock = field(default_factory=threading.Lock)
    # Per combination of the fixed covariates: every (option, pattern) component (``prognosis.mixture``).
    components: dict[tuple, Any] = field(default_factory=dict)

    @property
    def last_time(self) -> float:
        return float(self.times[-1])

    def nbytes(self) -> int:
        arrays = (
            self.times,
            self.hc,
            self.vc,
            self.xc,
            self.b,
            self.g,
            self.grid,
            self.parts.pattern_factor,
            *vars(self.gaps).values(),
        )
        return (
            sum(a.nbytes for a in arrays)
            + sum(block.nbytes for block in self.rmst_blocks.values())
            + sum(c.nbytes for c in self.components.values())
        )


def lp_range(ep: EndpointModel, names: tuple[str, ...]) -> tuple[float, float]:
    """Smallest and largest linear predictor z'beta over every patient and option (numeric covariates at their
    bounds where finite): the range of hazard ratios the grid must serve."""
    lo = hi = 0.0
    groups: dict[tuple[str, ...], list[int]] = {}
    for j, term in enumerate(ep.terms):
        key = tuple(sorted(covariates._parts(term)))
        groups.setdefault(key, []).append(j)
    # Terms sharing covariates are enumerated together (the modality-by-grade terms, a categorical covariate's
    # indicators); the sum of per-group extremes bounds the whole (exact when groups share no covariate).
    merged: list[set[str]] = []
    for key in groups:
        joined = set(key)
        for other in [m for m in merged if m & joined]:
            joined |= other
            merged.remove(other)
        merged.append(joined)
    for names_in in merged:
        values = []
        choices = []
        for name in sorted(names_in):
            cov = covariates.MODALITY if name == covariates.MODALITY.name else covariates.BY_NAME[name]
            if cov.numeric:
                bounds = [v for v in (cov.minimum, cov.maximum) if np.isfinite(v)]
                choices.append([repr(float(v)) for v in bounds] or ["0.0"])
            else:
                choices.append(list(cov.levels))
        ordered = sorted(names_in)
        idx = [j for j, term in enumerate(ep.terms) if set(covariates._parts(term)) <= names_in]
        for combo in itertools.product(*choices):
            columns = {name: [value] for name, value in zip(ordered, combo, strict=True)}
            x = covariates.design_matrix(columns, [ep.terms[j] for j in idx])
            values.append(float(x[0] @ ep.coef[idx]))
        lo, hi = lo + min(values), hi + max(values)
    return lo, hi


def _fall(a_h: float, b_h: float, r_lo: float, r_hi: float) -> float:
    """The largest fall of exp(-r H) from H = a_h to H = b_h over r in [r_lo, r_hi] (at r* = log(b/a) / (b - a),
    clipped: the fall is unimodal in r)."""
    if b_h <= a_h:
        return 0.0
    r_star = math.log(b_h / a_h) / (b_h - a_h) if a_h > 0 else math.inf
    r = min(max(r_star, r_lo), r_hi)
    return math.exp(-r * a_h) - math.exp(-r * b_h)


def _grid(times: np.ndarray, hc: np.ndarray, r_lo: float, r_hi: float) -> np.ndarray:
    """Event-time indices: the first in each month, the last, and enough others that for every hazard ratio r in
    [r_lo, r_hi] the survival exp(-r H) falls by at most GRID_SURVIVAL_STEP between consecutive ones (a single
    event time that falls by more is kept with the one before it). A mixture of such curves falls by at most as
    much as its steepest component, so this holds for every patient, unknown inputs or not."""
    month = np.floor(times / GRID_MONTHS_STEP)
    keep = np.ones(len(times), dtype=bool)
    keep[1:] = month[1:] != month[:-1]
    keep[-1] = True
    a_h, last_kept = 0.0, -1  # before the first event time: H = 0
    for i in range(len(times)):
        if _fall(a_h, hc[i], r_lo, r_hi) > GRID_SURVIVAL_STEP:
            if i - 1 > last_kept:
                keep[i - 1] = True
                a_h, last_kept = float(hc[i - 1]), i - 1
            if _fall(a_h, hc[i], r_lo, r_hi) > GRID_SURVIVAL_STEP:
                keep[i] = True
        if keep[i]:
            a_h, last_kept = float(hc[i]), i
    return np.flatnonzero(keep)


def _gaps(grid: np.ndarray, hc: np.ndarray, vc: np.ndarray, xc: np.ndarray, cov: np.ndarray) -> Gaps:
    a, b = grid[:-1], grid[1:]
    interior = b > a + 1
    hi = np.maximum(b - 1, a)
    lo = np.minimum(a + 1, b)
    with np.errstate(all="ignore"):
        centre = (xc[b] - xc[a]) / (hc[b] - hc[a])[:, None]
    centre = np.where(np.isfinite(centre), centre, 0.0)
    # Every interior event index with its gap, to take each gap's largest norms in one pass.
    inside = np.flatnonzero(np.isin(np.arange(len(hc)), grid, invert=True))
    gap = np.searchsorted(a, inside, side="right") - 1
    m = centre[gap]

    def norms(rows: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(((rows @ cov) * rows).sum(axis=1), 0.0))

    def largest(values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(a))
        np.maximum.at(out, gap, values)
        return out

    y = xc[inside] - m * hc[inside, None]
    y_a = xc[a[gap]] - m * hc[a[gap], None]
    y_b = xc[b[gap]] - m * hc[b[gap], None]
    return Gaps(
        interior=interior,
        h_hi=hc[hi],
        dh_a=hc[hi] - hc[a],
        dh_b=hc[b] - hc[lo],
        vc_a=vc[a],
        vc_lo=vc[lo],
        vc_hi=vc[hi],
        vc_b=vc[b],
        centre=centre,
        v_centre=centre @ cov,
        m_v_m=np.einsum("gp,pq,gq->g", centre, cov, centre),
        y_hi=largest(norms(y)),
        dy_a=largest(norms(y - y_a)),
        dy_b=largest(norms(y - y_b)),
    )


def _prepare_endpoint(ep: EndpointModel) -> Prepared:
    rs = ep.risk_sets
    cov = ep.covariance
    times, hc, vc, xc = rs.event_times, rs.cum_hazard, rs.cum_var_hazard, rs.cum_xbar_hazard
    b = xc @ cov
    g = np.einsum("tp,tp->t", b, xc)
    patterns = _patterns(ep)
    parts = _term_parts(ep.terms, patterns.names, patterns.levels)
    lo, hi = lp_range(ep, patterns.names)
    grid = _grid(times, hc, float(np.exp(lo)), float(np.exp(hi)))
    horizon = max((h for h in covariates.DEFAULT_HORIZONS_MONTHS if h <= times[-1]), default=None)
    keys = _rmst_keys(ep, patterns.names)
    fixed: set[str] = set()
    for term_parts in (parts, *(link_parts for _, link_parts, _ in patterns.links)):
        fixed |= {name for term in term_parts.fixed for name, _ in term}
        fixed |= {name for term in term_parts.numeric for name in term}
    return Prepared(
        name=ep.name,
        terms=tuple(ep.terms),
        coef=ep.coef,
        cov=cov,
        times=times,
        hc=hc,
        vc=vc,
        xc=xc,
        b=b,
        g=g,
        grid=grid,
        gaps=_gaps(grid, hc, vc, xc, cov),
        b_t=np.ascontiguousarray(b.T),
        varying=np.flatnonzero((parts.pattern_factor != 1.0).any(axis=0)),
        every=np.arange(len(times)),
        on_grid=np.isin(np.arange(len(times)), grid),
        parts=parts,
        patterns=patterns,
        cohort=ep.cohort,
        fixed_names=tuple(sorted(fixed)),
        rmst_tau=horizon,
        rmst_keys=keys,
    )


def _rmst_keys(ep: EndpointModel, pattern_names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The covariates besides the patterns and the option that the terms involve, if all are required and
    categorical (then the tables can be enumerated); None otherwise."""
    names: set[str] = set()
    for term in ep.terms:
        names |= set(covariates._parts(term))
    names -= {covariates.MODALITY.name, *pattern_names}
    if any(
        n not in covariates.BY_NAME or not covariates.BY_NAME[n].required or covariates.BY_NAME[n].numeric
        for n in names
    ):
        return None
    return tuple(name for name in covariates.REQUIRED if name in names)


# Per-model constants, computed once per loaded model and dropped with it.
_prepared: weakref.WeakKeyDictionary[EndpointModel, Prepared] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def prepared(ep: EndpointModel) -> Prepared:
    """The endpoint's constants (computed on first use, then kept as long as the model is)."""
    prep = _prepared.get(ep)
    if prep is None:
        with _lock:
            prep = _prepared.get(ep)
            if prep is None:
                prep = _prepared[ep] = _prepare_endpoint(ep)
    return prep


def prepare(model: Model, rmst_tables: bool = True) -> dict[str, Prepared]:
    """Compute every per-model constant now (at load time) rather than on the first prediction: the grid and its
    bounds, and for every combination of the required covariates (when they are categorical) the components and,
    with ``rmst_tables``, the RMST tables (within their budget)."""
    from prognosis import mixture  # the components and tables are built by the code that reads them

    out = {}
    for name, ep in model.endpoints.items():
        prep = out[name] = prepared(ep)
        if prep.rmst_keys is None:
            continue  # a numeric covariate: nothing to enumerate
        for combo in itertools.product(*(covariates.BY_NAME[k].levels for k in prep.rmst_keys)):
            key = dict(zip(prep.rmst_keys, combo, strict=True))
            if set(prep.fixed_names) <= set(key):
                mixture.components(prep, key)  # type: ignore[arg-type]
            if rmst_tables and prep.rmst_tau is not None:
                mixture.rmst_block(prep, key)
    return out
