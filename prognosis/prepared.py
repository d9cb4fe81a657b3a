"""Per-model constants for scoring, computed once per loaded model (``prognosis.scoring.prepare``) and kept with it.

A patient's prediction for endpoint e under option o averages, over the patterns k of the unknown optional inputs,
the components S_eok(t) = exp(-r_eok H_e(t)) (one component when every input is known). Scoring evaluates every
endpoint and option at once, so the endpoints' constants are stacked along a leading axis; their event times are
padded to a common length with one **sentinel** event index past every endpoint's last (H = 0 there, so S = 1 with
variance 0: never a median, never returned). What does not depend on which inputs the patient left unknown is
computed here:

- per endpoint (``Endpoint``): the baseline at every event time (H, sum d/S0², XC = sum x̄ d/S0, B = XC V,
  g = diag(XC V XC')) and the **grid**, the event times at which every curve is evaluated (below);
- stacked over endpoints: the same arrays padded, the grid, and per gap between grid points the constants that bound
  a curve inside it (``Gaps``, for locating the medians' limits, ``prognosis.medians``);
- per **combination** of the inputs the terms and the unknowns model read besides the patterns (the required inputs:
  24 for the shipped definitions), a ``Combination``: every (endpoint, option, pattern) component's hazard ratio and
  moment columns and the chains' log-probabilities of the patterns; when the combinations can be enumerated (no
  numeric input), also the components' survival on the grid and their RMST tables at the default horizon, and
  (``every_unknown``, built by ``prognosis.scoring``) the mixture of a patient with every optional input unknown,
  which depends on the combination alone, evaluated on the grid and where its medians can be.

Every endpoint of a model has the same terms and the same optional inputs averaged over (``training.pipeline`` fits
them so); a model term is either a pattern term (it reads only those optional inputs) or a base term (it reads none
of them), as every term the definitions make is. So a component's terms are z_ok = u_o + v_k: the patient's base
terms under option o plus pattern k's terms.

Memory, shipped model (2 endpoints, ~2,000 and ~2,700 event times, grids of ~315, 19 terms, 64 patterns, 24
combinations): ~2.7 MB of padded per-event-time arrays, grids and gap constants; per combination ~0.9 MB of grid
survival (2 x 3 x 64 x grid), ~0.6 MB of RMST tables, ~0.5 MB of the every-unknown mixture evaluated and ~0.2 MB
of components: ~60 MB in all (``Prepared.nbytes``).
``GRID_TABLE_BUDGET`` and ``RMST_TABLE_BUDGET`` cap the tables; a combination beyond them, or not enumerable, computes
the same numbers per request.
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from prognosis import covariates
from prognosis.model import EndpointModel, Model

if TYPE_CHECKING:
    from prognosis.scoring import Evaluated

# The grid: every event time that starts a new month, the steps in force at the default horizons, and enough others
# that no patient's curve can fall by more than this between consecutive grid points (so the returned curves,
# thinned from the grid, look like the full ones).
GRID_SURVIVAL_STEP = 0.01
GRID_MONTHS_STEP = 1.0
# Per model, at most this many bytes of precomputed grid survival and of RMST tables.
GRID_TABLE_BUDGET = 64 * 2**20
RMST_TABLE_BUDGET = 64 * 2**20
# Combinations that cannot be enumerated (a numeric input) are kept, without tables, up to this many per model.
COMBINATIONS_KEPT = 256
N_OPTIONS = len(covariates.OPTIONS)


@dataclass(frozen=True, eq=False)
class Terms:
    """Terms (of the Cox model, or the inputs of one link of the unknowns chain), each a pattern term or a base term.

    ``pattern_values`` (patterns, terms): the pattern terms' values for every pattern (0 in base terms' columns).
    A base term's value for a patient is the product of its indicators ``rules`` (covariate, level) on the patient's
    inputs, its numeric inputs' values and, under option o, ``option_indicator`` [o] (0 in pattern terms' columns).
    """

    rules: tuple[tuple[tuple[str, str], ...], ...]
    numeric: tuple[tuple[str, ...], ...]
    option_indicator: np.ndarray
    pattern_values: np.ndarray
    patterned: np.ndarray

    def base_values(self, patient: Mapping[str, str | None]) -> np.ndarray:
        """(options, terms): the base terms' values for the patient under each option, 0 for pattern terms."""
        out = np.empty(len(self.rules))
        for j, (rules, numbers) in enumerate(zip(self.rules, self.numeric, strict=True)):
            value = 1.0
            for name, level in rules:
                if patient[name] != level:
                    value = 0.0
                    break
            for name in numbers:
                number = patient[name]
                value *= float(number) if number is not None else 0.0
            out[j] = value
        return out * self.option_indicator

    @property
    def reads(self) -> set[str]:
        """The inputs the base terms read."""
        return {name for rules in self.rules for name, _ in rules} | {name for names in self.numeric for name in names}


def _terms(terms: tuple[str, ...], names: tuple[str, ...], levels: np.ndarray) -> Terms:
    """Split ``terms`` into pattern terms (on the covariates ``names``, with their ``levels`` per pattern) and base
    terms (on the option and the other inputs); a term reading both kinds is refused."""
    rules, numeric, option_level = [], [], []
    values = np.zeros((len(levels), len(terms)))
    patterned = np.zeros(len(terms), dtype=bool)
    for j, term in enumerate(terms):
        numeric_term = term in covariates.BY_NAME and covariates.BY_NAME[term].numeric
        parts = {term: "1"} if numeric_term else covariates._parts(term)
        on_patterns = [name for name in parts if name in names]
        if on_patterns and len(on_patterns) < len(parts):
            raise ValueError(f"term {term} reads both optional inputs averaged over and other inputs")
        own: list[tuple[str, str]] = []
        numbers: list[str] = []
        option = None
        if on_patterns:
            patterned[j] = True
            values[:, j] = np.all([levels[:, names.index(name)] == level for name, level in parts.items()], axis=0)
        for name, level in parts.items() if not on_patterns else ():
            if name == covariates.MODALITY.name:
                option = level
            elif covariates.BY_NAME[name].numeric:
                numbers.append(name)
            else:
                own.append((name, level))
        rules.append(tuple(own))
        numeric.append(tuple(numbers))
        option_level.append(option)
    indicator = np.array(
        [
            [0.0 if patterned[j] else float(level is None or level == option) for j, level in enumerate(option_level)]
            for option in covariates.OPTIONS
        ]
    ).reshape(N_OPTIONS, len(terms))
    return Terms(tuple(rules), tuple(numeric), indicator, values, patterned)


@dataclass(frozen=True, eq=False)
class Chain:
    """One endpoint's unknowns model, the chain P(o_1 | r) P(o_2 | r, o_1) ... over the patterns: per link its
    coefficients, its inputs split like the model's terms, and the level each pattern takes."""

    links: tuple[tuple[np.ndarray, Terms, np.ndarray], ...]
    patterns: int

    def log_joint(self, patient: Mapping[str, str | None]) -> np.ndarray:
        """log P(pattern, given the patient's other inputs) of every pattern (patterns,): normalised over the
        patterns compatible with the known inputs, these are the weights P(pattern | known inputs) (Bayes)."""
        out = np.zeros(self.patterns)
        for coef, inputs, observed in self.links:
            x = inputs.base_values(patient)[0] + inputs.pattern_values  # (patterns, inputs)
            eta = np.zeros((len(x), coef.shape[0] + 1))
            eta[:, 1:] = coef[:, 0] + x @ coef[:, 1:].T
            log_p = eta - np.logaddexp.reduce(eta, axis=1, keepdims=True)
            out = out + log_p[np.arange(len(x)), observed]
        return out


@dataclass(frozen=True, eq=False)
class Endpoint:
    """One endpoint's baseline at its own event times: ``times``, H ``hc``, sum d/S0² ``vc``, XC ``xc`` (T, terms),
    its coefficients and their covariance, its ``grid`` (event indices), its cohort and the default RMST horizon."""

    name: str
    times: np.ndarray
    hc: np.ndarray
    vc: np.ndarray
    xc: np.ndarray
    coef: np.ndarray
    cov: np.ndarray
    grid: np.ndarray
    cohort: object
    rmst_tau: float | None

    @property
    def last_time(self) -> float:
        return float(self.times[-1])


@dataclass(frozen=True, eq=False)
class Gaps:
    """Per endpoint and gap between consecutive grid points a < b (each (endpoints, 1, gaps), to broadcast over the
    options), what bounds a curve over its interior a < i < b (``prognosis.medians.sd_bounds``). With the gap's mean
    risk-set covariate m = (XC(b) - XC(a)) / (H(b) - H(a)) and Y = XC - m H (so Y(a) = Y(b)): ``dh2_8`` =
    (H(b) - H(a))² / 8, ``h_a``, ``h_b`` = H(a), H(b), ``xvx`` = XC(a)' V XC(b), ``dy`` the largest interior
    ||Y_i - Y_a||_V, ``y_a`` = ||Y_a||_V, ``root_m_v_m`` = ||m||_V; ``vc_lo`` and ``vc_hi``: sum d/S0² at a+1 and
    b-1. Gaps without interior points, and the padding, have ``interior`` False."""

    interior: np.ndarray
    dh2_8: np.ndarray
    h_a: np.ndarray
    h_b: np.ndarray
    xvx: np.ndarray
    dy: np.ndarray
    y_a: np.ndarray
    root_m_v_m: np.ndarray
    vc_lo: np.ndarray
    vc_hi: np.ndarray


@dataclass(frozen=True, eq=False)
class RmstTable:
    """RMST at each endpoint's default horizon tau for every (option, pattern) component c of one combination
    (S_c(t_j) the component's survival, w_j the widths of the steps up to tau), stacked over the endpoints:
    ``area`` [e, c] = sum_j S_c(t_j) w_j; ``gradient`` [e, c] = r_c (z_c sum_j S_c H_j w_j - sum_j S_c XC_j w_j), its
    share of the RMST's gradient in beta; ``gram`` [e] = C diag(d/S0²) C' with C[c, i] = r_c sum_{j >= i} S_c(t_j) w_j,
    so that a mixture's baseline variance is w' gram w (RMST is linear in the weights); ``first`` (endpoints,) the time
    before the first event time (S = 1 there)."""

    area: np.ndarray  # (endpoints, options, patterns)
    gradient: np.ndarray  # (endpoints, options, patterns, terms)
    gram: np.ndarray  # (endpoints, options, patterns, options, patterns)
    first: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.area.nbytes + self.gradient.nbytes + self.gram.nbytes


@dataclass(frozen=True, eq=False)
class Combination:
    """Every (endpoint, option, pattern) component for one combination of the base inputs.

    ``z`` (options, patterns, terms) = u_o + v_k and ``r`` (endpoints, options, patterns) the hazard ratios;
    ``columns`` (endpoints, options, 4 + D, patterns) = [1, r, r v, r², r² z'Vz] with v the D pattern terms (their
    weighted averages are the mixture's moments, ``prognosis.mixture``); ``log_joint`` (endpoints, patterns) the
    chains' log-probabilities; for a patient with every optional input unknown, ``weights`` (endpoints, patterns) =
    P(pattern | the combination), ``weighted`` = columns x weights and ``spread`` (endpoints, options, 1) =
    max_k r - min_k r. A mixture's A = E[r z] is y' ``basis`` with y = (r_eff, E[r v]): ``basis`` (options,
    1 + D, terms) holds u_o and the pattern terms' unit vectors, ``gram`` = basis V basis' (endpoints, options, 1 + D,
    1 + D), ``grid_b`` = basis B' on the grid. When the model keeps tables: ``grid_survival`` (endpoints, options,
    patterns, grid) = exp(-r H) on the grid, and ``rmst`` the RMST tables at the endpoints' default horizons."""

    z: np.ndarray
    r: np.ndarray
    columns: np.ndarray
    log_joint: np.ndarray
    weights: np.ndarray
    weighted: np.ndarray
    spread: np.ndarray
    basis: np.ndarray
    gram: np.ndarray
    grid_b: np.ndarray
    grid_survival: np.ndarray | None
    rmst: RmstTable | None

    @property
    def nbytes(self) -> int:
        arrays = [self.z, self.r, self.columns, self.log_joint, self.weights, self.weighted, self.spread, self.basis]
        arrays += [self.gram, self.grid_b] + ([self.grid_survival] if self.grid_survival is not None else [])
        return sum(a.nbytes for a in arrays) + (self.rmst.nbytes if self.rmst is not None else 0)


@dataclass(eq=False)
class Prepared:
    """A model's constants for scoring (see the module docstring). Stacked arrays have the endpoints first; event-time
    arrays are padded to ``sentinel`` + 1 columns, the last the sentinel's."""

    endpoints: tuple[Endpoint, ...]
    terms: tuple[str, ...]
    model_terms: Terms
    varying: np.ndarray  # the pattern terms' columns
    pattern_names: tuple[str, ...]
    pattern_codes: np.ndarray  # (patterns, names): each pattern's level positions
    chains: tuple[Chain, ...]
    coef: np.ndarray  # (endpoints, terms)
    cov: np.ndarray  # (endpoints, terms, terms)
    sentinel: int
    times: np.ndarray  # (endpoints, sentinel + 1), the sentinel's time inf; and the next three alike
    hc: np.ndarray
    vc: np.ndarray
    g: np.ndarray
    b_t: np.ndarray  # (endpoints, terms, sentinel + 1): B'
    xc_t: np.ndarray  # (endpoints, terms, sentinel + 1): XC'
    on_grid: np.ndarray  # (endpoints, sentinel + 1)
    offsets: np.ndarray  # (endpoints, 1): each endpoint's row in the flattened (endpoints, sentinel + 1) arrays
    term_offsets: np.ndarray  # (endpoints, terms, 1): likewise for (endpoints, terms, sentinel + 1)
    grid: np.ndarray  # (endpoints, grid), padded with the sentinel
    grid_rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # H, vc and g on the grid, each (endpoints, 1, grid)
    gaps: Gaps
    grid_times: np.ndarray  # (endpoints, grid): the grid's times
    grid_kept: np.ndarray  # (endpoints, 1, grid): the first grid point of each month, and the last (returned curves)
    grid_valid: np.ndarray  # (endpoints, 1, grid): not padding
    grid_pos: np.ndarray  # (endpoints, sentinel + 1): each event index's position in the grid, -1 off it
    inside: np.ndarray  # (endpoints, m): every event index off the grid, padded with the sentinel
    inside_gap: np.ndarray  # (endpoints, m): the gap each lies in (0 for the padding, the sentinel: S = 1 there)
    base_names: tuple[str, ...]  # the inputs a combination is keyed by
    enumerable: bool  # every base input required and categorical: the combinations can be listed, tables kept
    combinations: dict[tuple, Combination] = field(default_factory=dict)
    compatible: dict[tuple, np.ndarray | None] = field(default_factory=dict)
    # Per combination, the mixture of a patient with every optional input unknown, evaluated (``prognosis.scoring``;
    # None: over the budget).
    every_unknown: dict[Combination, Evaluated | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    table_bytes: dict[str, int] = field(default_factory=lambda: {"grid": 0, "rmst": 0})

    def reserve(self, kind: str, nbytes: int) -> bool:
        """Whether a table of ``nbytes`` fits the model's budget for ``kind`` ("grid" or "rmst"); if so it is
        counted."""
        budget = GRID_TABLE_BUDGET if kind == "grid" else RMST_TABLE_BUDGET
        with self.lock:
            if self.table_bytes[kind] + nbytes > budget:
                return False
            self.table_bytes[kind] += nbytes
            return True

    def rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """H, vc and g at event indices ``idx`` (endpoints, n), each (endpoints, 1, n)."""
        flat = (idx + self.offsets)[:, None, :]
        return self.hc.ravel()[flat], self.vc.ravel()[flat], self.g.ravel()[flat]

    def columns_at(self, array: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """An (endpoints, terms, event times) array (B' or XC') at event indices ``idx`` (endpoints, n):
        (endpoints, terms, n)."""
        return array.ravel()[idx[:, None, :] + self.term_offsets]

    def combination(self, patient: Mapping[str, str | None]) -> Combination:
        """The components for the patient's base inputs (kept per model)."""
        key = tuple(patient[name] for name in self.base_names)
        found = self.combinations.get(key)
        if found is None:
            found = _combination(self, patient)
            with self.lock:
                if self.enumerable or len(self.combinations) < COMBINATIONS_KEPT:
                    self.combinations.setdefault(key, found)
        return found

    def patterns_of(self, patient: Mapping[str, str | None]) -> np.ndarray | None:
        """Indices of the patterns that agree with the patient's known optional inputs (None: every pattern)."""
        key = tuple(patient[name] for name in self.pattern_names)
        if key in self.compatible:
            return self.compatible[key]
        keep = np.ones(len(self.pattern_codes), dtype=bool)
        for j, (name, value) in enumerate(zip(self.pattern_names, key, strict=True)):
            if value is not None:
                keep &= self.pattern_codes[:, j] == covariates.BY_NAME[name].levels.index(value)
        which = None if keep.all() else np.flatnonzero(keep)
        self.compatible[key] = which  # at most prod(levels + 1) keys
        return which

    def nbytes(self) -> int:
        arrays = [self.coef, self.cov, self.times, self.hc, self.vc, self.g, self.b_t, self.xc_t, self.on_grid]
        arrays += [self.grid, self.grid_times, self.grid_kept, self.grid_valid, self.grid_pos, self.inside]
        arrays += [self.inside_gap, *self.grid_rows, *vars(self.gaps).values()]
        arrays += [a for ep in self.endpoints for a in (ep.times, ep.hc, ep.vc, ep.xc, ep.grid)]
        tables = sum(c.nbytes for c in self.combinations.values()) + sum(
            e.nbytes for e in self.every_unknown.values() if e
        )
        return sum(a.nbytes for a in arrays) + tables


def _combination(prep: Prepared, patient: Mapping[str, str | None]) -> Combination:
    terms = prep.model_terms
    base = terms.base_values(patient)
    z = base[:, None, :] + terms.pattern_values[None, :, :]
    r = np.exp(z @ prep.coef[:, None, :, None])[..., 0]  # (endpoints, options, patterns)
    zvz = np.einsum("okp,epq,okq->eok", z, prep.cov, z)
    v = terms.pattern_values[:, prep.varying].T  # (D, patterns)
    r1, r2 = r[:, :, None, :], (r * r)[:, :, None, :]
    columns = np.concatenate([np.ones_like(r1), r1, r1 * v, r2, r2 * zvz[:, :, None, :]], axis=2)
    basis = np.zeros((N_OPTIONS, 1 + len(prep.varying), len(prep.terms)))
    basis[:, 0] = base
    basis[:, np.arange(1, 1 + len(prep.varying)), prep.varying] = 1.0
    gram = basis @ prep.cov[:, None] @ basis.transpose(0, 2, 1)
    grid_b = basis @ np.take_along_axis(prep.b_t, prep.grid[:, None, :], axis=2)[:, None]
    grid_survival = rmst = None
    if prep.enumerable:
        survival = np.exp(r[..., None] * -prep.grid_rows[0][:, :, None, :])
        if prep.reserve("grid", survival.nbytes):
            grid_survival = survival
        if all(ep.rmst_tau is not None for ep in prep.endpoints):
            from prognosis.rmst import table  # the tables are built by the code that reads them

            built = table(prep, z, r)
            if prep.reserve("rmst", built.nbytes):
                rmst = built
    log_joint = np.stack([chain.log_joint(patient) for chain in prep.chains])
    weights = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    spread = r.max(axis=2, keepdims=True) - r.min(axis=2, keepdims=True)
    weighted = columns * weights[:, None, None, :]
    return Combination(z, r, columns, log_joint, weights, weighted, spread, basis, gram, grid_b, grid_survival, rmst)


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
    """Event-time indices: the first in each month, the last, the steps in force at the default horizons, and enough
    others that for every hazard ratio r in [r_lo, r_hi] the survival exp(-r H) falls by at most GRID_SURVIVAL_STEP
    between consecutive ones (a single event time that falls by more is kept with the one before it). A mixture of
    such curves falls by at most as much as its steepest component, so this holds for every patient."""
    month = np.floor(times / GRID_MONTHS_STEP)
    keep = np.ones(len(times), dtype=bool)
    keep[1:] = month[1:] != month[:-1]
    keep[-1] = True
    horizons = np.array([h for h in covariates.DEFAULT_HORIZONS_MONTHS if times[0] <= h <= times[-1]], dtype=float)
    keep[np.searchsorted(times, horizons, side="right") - 1] = True
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


def _gaps(grid: np.ndarray, hc: np.ndarray, vc: np.ndarray, xc: np.ndarray, cov: np.ndarray) -> dict[str, np.ndarray]:
    """One endpoint's gap constants (``Gaps``), unpadded."""
    a, b = grid[:-1], grid[1:]
    with np.errstate(all="ignore"):
        centre = (xc[b] - xc[a]) / (hc[b] - hc[a])[:, None]
    centre = np.where(np.isfinite(centre), centre, 0.0)

    def norms(rows: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(((rows @ cov) * rows).sum(axis=1), 0.0))

    # Every interior event index with its gap, to take each gap's largest norm in one pass.
    inside = np.flatnonzero(~np.isin(np.arange(len(hc)), grid))
    gap = np.searchsorted(a, inside, side="right") - 1
    y_a = xc[a] - centre * hc[a, None]
    dy = np.zeros(len(a))
    np.maximum.at(dy, gap, norms(xc[inside] - centre[gap] * hc[inside, None] - y_a[gap]))
    return {
        "interior": b > a + 1,
        "dh2_8": (hc[b] - hc[a]) ** 2 / 8,
        "h_a": hc[a],
        "h_b": hc[b],
        "xvx": ((xc[a] @ cov) * xc[b]).sum(axis=1),
        "dy": dy,
        "y_a": norms(y_a),
        "root_m_v_m": norms(centre),
        "vc_lo": vc[np.minimum(a + 1, b)],
        "vc_hi": vc[np.maximum(b - 1, a)],
    }


def _padded(rows: list[np.ndarray], width: int, fill: float | bool = 0.0) -> np.ndarray:
    """Stack 1- or 2-D arrays (last axis of varying length) into (len(rows), ..., width), padded with ``fill``."""
    out = np.full((len(rows), *rows[0].shape[:-1], width), fill, dtype=rows[0].dtype)
    for e, row in enumerate(rows):
        out[e, ..., : row.shape[-1]] = row
    return out


def _prepare(model: Model) -> Prepared:
    eps = [model.endpoints[name] for name in covariates.ENDPOINTS]
    first = eps[0]
    names = tuple(first.cohort.unknowns.names)
    for ep in eps[1:]:
        if tuple(ep.terms) != tuple(first.terms) or tuple(ep.cohort.unknowns.names) != names:
            raise ValueError("every endpoint of a model must have the same terms and optional inputs to average over")
    combos = list(itertools.product(*(covariates.BY_NAME[name].levels for name in names)))
    levels = np.array(combos, dtype=object).reshape(len(combos), len(names))
    codes = np.array(
        [[covariates.BY_NAME[n].levels.index(v) for n, v in zip(names, combo, strict=True)] for combo in combos],
        dtype=np.intp,
    ).reshape(len(combos), len(names))
    model_terms = _terms(tuple(first.terms), names, levels)
    chains = tuple(
        Chain(
            tuple(
                (
                    link.coef,
                    _terms(link.inputs, names, levels),
                    np.array([link.levels.index(v) for v in levels[:, names.index(link.name)]], dtype=np.intp),
                )
                for link in ep.cohort.unknowns.links
            ),
            len(levels),
        )
        for ep in eps
    )
    reads = model_terms.reads.union(*(inputs.reads for chain in chains for _, inputs, _ in chain.links))
    endpoints, gaps = [], []
    for ep in eps:
        rs = ep.risk_sets
        lo, hi = lp_range(ep, names)
        grid = _grid(rs.event_times, rs.cum_hazard, float(np.exp(lo)), float(np.exp(hi)))
        horizon = max((h for h in covariates.DEFAULT_HORIZONS_MONTHS if h <= rs.event_times[-1]), default=None)
        endpoints.append(
            Endpoint(
                ep.name,
                rs.event_times,
                rs.cum_hazard,
                rs.cum_var_hazard,
                rs.cum_xbar_hazard,
                ep.coef,
                ep.covariance,
                grid,
                ep.cohort,
                horizon,
            )
        )
        gaps.append(_gaps(grid, rs.cum_hazard, rs.cum_var_hazard, rs.cum_xbar_hazard, ep.covariance))
    sentinel = max(len(ep.times) for ep in endpoints)
    width = max(len(ep.grid) for ep in endpoints)
    # Event-time arrays padded with zeros up to and including the sentinel's column: H = 0 there.
    hc = _padded([ep.hc for ep in endpoints], sentinel + 1)
    vc = _padded([ep.vc for ep in endpoints], sentinel + 1)
    xc_t = _padded([ep.xc.T for ep in endpoints], sentinel + 1)
    b_t = np.stack([ep.cov for ep in endpoints]) @ xc_t
    g = (xc_t * b_t).sum(axis=1)
    grid = _padded([ep.grid for ep in endpoints], width, sentinel)
    on_grid = np.zeros((len(endpoints), sentinel + 1), dtype=bool)
    for e, point in enumerate(endpoints):
        on_grid[e, point.grid] = True
    rows = tuple(np.take_along_axis(x, grid, axis=1)[:, None, :] for x in (hc, vc, g))
    m = max(len(ep.times) - len(ep.grid) for ep in endpoints)
    times = _padded([ep.times for ep in endpoints], sentinel + 1, np.inf)
    times_grid = np.take_along_axis(times, grid, axis=1)
    month = np.floor(times_grid / GRID_MONTHS_STEP)
    grid_kept = np.ones(grid.shape, dtype=bool)
    grid_kept[:, 1:] = month[:, 1:] != month[:, :-1]
    grid_kept[np.arange(len(endpoints)), [len(ep.grid) - 1 for ep in endpoints]] = True
    grid_pos = np.full((len(endpoints), sentinel + 1), -1)
    for e, point in enumerate(endpoints):
        grid_pos[e, point.grid] = np.arange(len(point.grid))
    stacked = {key: _padded([gap[key] for gap in gaps], width - 1, 0.0)[:, None] for key in gaps[0]}
    return Prepared(
        endpoints=tuple(endpoints),
        terms=tuple(first.terms),
        model_terms=model_terms,
        varying=np.flatnonzero(model_terms.patterned),
        pattern_names=names,
        pattern_codes=codes,
        chains=chains,
        coef=np.stack([ep.coef for ep in endpoints]),
        cov=np.stack([ep.cov for ep in endpoints]),
        sentinel=sentinel,
        times=times,
        hc=hc,
        vc=vc,
        g=g,
        b_t=b_t,
        xc_t=xc_t,
        on_grid=on_grid,
        offsets=np.arange(len(endpoints))[:, None] * (sentinel + 1),
        term_offsets=(
            np.arange(len(endpoints))[:, None, None] * len(first.terms) + np.arange(len(first.terms))[:, None]
        )
        * (sentinel + 1),
        grid=grid,
        grid_rows=rows,  # type: ignore[arg-type]
        gaps=Gaps(**stacked),
        grid_times=times_grid,
        grid_kept=grid_kept[:, None, :],
        grid_valid=(grid < sentinel)[:, None, :],
        grid_pos=grid_pos,
        inside=_padded([np.flatnonzero(~on_grid[e, : len(ep.times)]) for e, ep in enumerate(endpoints)], m, sentinel),
        inside_gap=_padded(
            [
                np.searchsorted(ep.grid, np.flatnonzero(~on_grid[e, : len(ep.times)])) - 1
                for e, ep in enumerate(endpoints)
            ],
            m,
            0,
        ),
        base_names=tuple(sorted(reads)),
        enumerable=all(covariates.BY_NAME[n].required and not covariates.BY_NAME[n].numeric for n in reads),
    )


# Per-model constants, computed once per loaded model and dropped with it.
_prepared: weakref.WeakKeyDictionary[Model, Prepared] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def prepared(model: Model) -> Prepared:
    """The model's constants (computed on first use, then kept as long as the model is)."""
    prep = _prepared.get(model)
    if prep is None:
        with _lock:
            prep = _prepared.get(model)
            if prep is None:
                prep = _prepared[model] = _prepare(model)
    return prep


def prepare(model: Model) -> Prepared:
    """Compute every per-model constant now (at load) rather than on the first predictions: the grids and their
    bounds and, when the base inputs can be enumerated, every combination's components and tables."""
    prep = prepared(model)
    if prep.enumerable:
        from prognosis.scoring import every_unknown  # the tables are built by the code that reads them

        for combo in itertools.product(*(covariates.BY_NAME[n].levels for n in prep.base_names)):
            every_unknown(prep, prep.combination(dict(zip(prep.base_names, combo, strict=True))))
    return prep
