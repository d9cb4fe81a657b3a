"""One patient in, predicted survival for each endpoint under each option out, with intervals. Pure numpy; no Flask.

Curves are the Cox model's Breslow predictions. Pointwise 95% intervals are on the log scale (R ``survfit.coxph``'s
default) and include both the coefficient and the baseline-hazard uncertainty (Tsiatis 1981; Therneau & Grambsch
2000, section 10.2): with h_i = d_i / S0_i the baseline hazard increments at the event times t_i,
x̄_i the risk-weighted mean covariate, V the inverse information and r = exp(z'beta),

    H(t|z) = r sum_{t_i<=t} h_i
    Var H(t|z) = r^2 sum_{t_i<=t} d_i / S0_i^2 + q(t)' V q(t),   q(t) = r sum_{t_i<=t} (z - x̄_i) h_i.

Tied event times are handled as scikit-survival's Breslow estimator does (d_i deaths over one risk set), so with
ties the curve is Breslow's, not R's Efron-adjusted one; without ties the two agree.

When optional inputs are unknown the prediction is the average of the curves over the training cohort's patterns
of those inputs, S̄ = sum_k w_k S_k; its delta-method variance has the same form with r and q replaced by their
averages weighted by a_k(t) = w_k S_k(t) / S̄(t). Differences between options (survival at horizons, restricted
mean survival time) get delta-method intervals that keep the correlation through the shared baseline and
coefficients. Conditional on s months already survived without the event, curves are S(t)/S(s) with the
covariance of S(t) and S(s) kept (``conditional_on_months``).

This module writes the response. The numbers come from the patient's mixture evaluated, every option at once, only
at the event times the answer needs (``prognosis.mixture``): the model's grid, the times read and where the medians
can be (``prognosis.medians``), RMST from per-model tables (``prognosis.rmst``); per-model constants are computed at
load (``prepare(model)``, ``prognosis.prepared``), among them the mixture of a patient with every optional input
unknown, per combination of the required inputs (``every_unknown``). Every number equals the full computation
(tests/scoring_oracle.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prognosis import covariates, medians, mixture, notices, provenance, rmst
from prognosis.model import Model
from prognosis.normal import Z_95
from prognosis.prepared import Combination, Prepared, prepare, prepared

__all__ = ["condition_text", "check_condition", "predict", "prepare", "score", "validate_patient"]

# Returned curves keep, among the event times scoring evaluates (the model's grid, ``prognosis.prepared``, plus the
# landmarks and the median), the first step in each 1-month interval and in each 0.01 band of survival (plus the
# last); the values at the kept times are exact. That bounds a curve to about 250 points, a response to tens of KB.
THIN_SURVIVAL_STEP = 0.01
N_OPTIONS = len(covariates.OPTIONS)


def validate_patient(patient: Mapping[str, str | None]) -> dict[str, str | None]:
    """Canonical patient: every covariate present; a required one known; values among the levels."""
    unknown_keys = set(patient) - set(covariates.BY_NAME)
    if unknown_keys:
        raise ValueError(f"unknown inputs: {', '.join(sorted(unknown_keys))}")
    clean: dict[str, str | None] = {}
    for cov in covariates.COVARIATES:
        value = patient.get(cov.name)
        if value is None:
            if cov.required:
                raise ValueError(f"{cov.name} is required")
            clean[cov.name] = None
            continue
        level = cov.canonical(value)
        if level is None:
            raise ValueError(f"{cov.name}: {value!r} is not one of {', '.join(cov.levels)}")
        clean[cov.name] = level
    return clean


def _months(m: float) -> str:
    return f"{m:g} month" + ("" if m == 1 else "s")


def condition_text(endpoint: str, months: float) -> str:
    """What a conditional prediction assumes, in words: 'given the patient is still free of hepatic progression
    12 months after the embolotherapy' (the endpoint's ``free_of`` wording)."""
    free_of = covariates.ENDPOINTS[endpoint].free_of
    return f"given the patient is still {free_of} {_months(months)} after the embolotherapy"


def check_condition(model: Model, conditional_on_months: float | None) -> float | None:
    """The time already survived without the event, checked: None (or 0) is unconditional; negative, non-finite or
    past an endpoint's last event time is refused with a ValueError naming the endpoint and its last event time."""
    if conditional_on_months is None:
        return None
    s = float(conditional_on_months)
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"conditional_on_months must be a number of months >= 0 (got {conditional_on_months!r})")
    for endpoint, spec in covariates.ENDPOINTS.items():
        last = model.endpoints[endpoint].risk_sets.last_event_time
        if s > last:
            raise ValueError(
                f"conditional_on_months={s:g} is past the last observed {spec.event_label} for "
                f"{spec.label} ({spec.name}) at {last:.1f} months: survival beyond it is not "
                "estimable, so neither is survival conditional on it"
            )
    return s if s > 0 else None


def _cis(
    estimate: np.ndarray, var: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray
) -> tuple[list, list, list]:
    """Delta-method 95% intervals estimate -+ z se, clipped to [lo, hi], as lists."""
    half = Z_95 * np.sqrt(np.maximum(var, 0.0))
    return estimate.tolist(), np.maximum(lo, estimate - half).tolist(), np.minimum(hi, estimate + half).tolist()


def _none_ci() -> dict:
    return {"estimate": None, "ci_lower": None, "ci_upper": None}


@dataclass(frozen=True, eq=False)
class Reads:
    """Times read off the curves, per endpoint (endpoints, times): their event ``idx``, their positions ``pos``
    among the evaluated points, which are ``given`` (not past the endpoint's last event time, and after s when
    conditional) and which read S = 1 (``one``: before the first event time after s)."""

    months: list[float]
    idx: np.ndarray
    pos: np.ndarray
    given: np.ndarray
    one: np.ndarray

    def take(self, part: slice) -> Reads:
        return Reads(self.months[part], self.idx[:, part], self.pos[:, part], self.given[:, part], self.one[:, part])


@dataclass(frozen=True, eq=False)
class Scored:
    """A patient's prediction for every endpoint before it is written out, for s = ``months`` already survived
    (None: unconditional): the (conditional) curves at every event time evaluated (``points``: the grid, the times
    read and where the medians can be), the conditioning ``base``, the medians' event indices ``medians``
    (3: estimate, lower, upper; endpoints; options; -1 never) and where the times asked for are read (``reads``)."""

    prep: Prepared
    mix: mixture.Mixture
    grid: mixture.Curve
    points: mixture.Points
    base: mixture.Base
    medians: np.ndarray
    months: float | None
    reads: Reads

    def read(self, at: Reads) -> list[list[list[dict]]]:
        """Per endpoint and option, the (conditional) step function and its interval at each time read, exactly: null
        past the last event time or, conditional on s, at t <= s; 1 before the first event time after s."""
        rows = np.arange(len(at.pos))[:, None, None]
        bands = self.points.bands[:, rows, np.arange(N_OPTIONS)[:, None], at.pos[:, None, :]]
        est, low, up = np.where(at.one[:, None, :], 1.0, bands).tolist()
        ok = at.given.tolist()
        return [
            [
                [
                    {"months": t, "survival": x, "ci_lower": lo, "ci_upper": u}
                    if g
                    else {"months": t, "survival": None, "ci_lower": None, "ci_upper": None}
                    for t, g, x, lo, u in zip(at.months, ok[e], est[e][o], low[e][o], up[e][o], strict=True)
                ]
                for o in range(N_OPTIONS)
            ]
            for e in range(len(ok))
        ]

    def median_months(self) -> list[list[dict]]:
        """Per endpoint and option: the median and its interval in months (None: the curve never gets to 0.5)."""
        rows = np.arange(len(self.prep.endpoints))[:, None]
        found = np.where(self.medians >= 0, self.prep.times[rows, self.medians], np.nan)
        return [
            [
                {k: (None if v != v else v) for k, v in zip(("estimate", "ci_lower", "ci_upper"), row, strict=True)}
                for row in rows_e
            ]
            for rows_e in found.transpose(1, 2, 0).tolist()
        ]


@dataclass(frozen=True, eq=False)
class Evaluated:
    """A mixture's (conditional) curve on the grid, the event indices off it where a median or one of its limits can
    be (``gaps``: (endpoints, n), sorted, padded with the sentinel; ``prognosis.medians``) and the curve at them
    (None: there are none)."""

    grid: mixture.Curve
    gaps: np.ndarray
    at_gaps: mixture.Curve | None

    @property
    def nbytes(self) -> int:
        return self.grid.nbytes + self.gaps.nbytes + (self.at_gaps.nbytes if self.at_gaps is not None else 0)


def evaluated(mix: mixture.Mixture, base: mixture.Base) -> Evaluated:
    """The mixture on the grid, where its medians can be, and the mixture there."""
    grid = mixture.curve(mix, mixture.evaluate(mix), base)
    gaps = medians.gap_points(mix, grid, base)
    there = None
    if (gaps < mix.prep.sentinel).any():
        there = mixture.curve(mix, mixture.evaluate(mix, gaps), base)
    return Evaluated(grid, gaps, there)


def every_unknown(prep: Prepared, comb: Combination) -> Evaluated | None:
    """For a patient with every optional input unknown, unconditional, the mixture depends on the required inputs
    only: its ``Evaluated`` is computed once per combination (at load, ``prepare``) and kept with the model's tables
    (within ``prognosis.prepared.GRID_TABLE_BUDGET``). None: the model keeps none for it (a numeric input, or over
    the budget, which is remembered), and scoring evaluates the patient's mixture as any other's."""
    if comb in prep.every_unknown:
        return prep.every_unknown[comb]
    if not prep.enumerable or comb.grid_survival is None:
        return None
    mix = mixture.every_unknown(prep, comb)
    found = evaluated(mix, mixture.base_at(mix, None))
    kept = found if prep.reserve("grid", found.nbytes) else None
    prep.every_unknown[comb] = kept
    return kept


def score(
    prep: Prepared, patient: dict[str, str | None], read_at: Sequence[float] = (), months: float | None = None
) -> Scored:
    """The patient's curves for every endpoint at the event times the answer needs, conditional on ``months`` already
    survived without the event (None: unconditional), with medians: the model's grid, the times in ``read_at``
    (landmarks, table times) and the event times where a median can be (``prognosis.medians``)."""
    mix = mixture.mixture(prep, patient)
    index = None
    if months is not None:
        index = np.array([np.searchsorted(ep.times, months, side="right") - 1 for ep in prep.endpoints])
    base = mixture.base_at(mix, index)
    kept = every_unknown(prep, mix.comb) if mix.which is None and index is None else None
    grid = kept.grid if kept is not None else mixture.curve(mix, mixture.evaluate(mix), base)
    # The times read, per endpoint: the step in force at each (-1 before the first event time), whether given.
    read_months = [float(t) for t in read_at]
    t = np.asarray(read_months, dtype=float)
    reads = np.stack([np.searchsorted(ep.times, t, side="right") for ep in prep.endpoints]) - 1
    given = t <= np.array([ep.last_time for ep in prep.endpoints])[:, None]
    if months is not None:
        given &= t > months
    # Those off the grid are evaluated beside the event times where a median can be (each once).
    off = given & (reads > base.after) & ~prep.on_grid.ravel()[reads + prep.offsets]
    curves = [grid]
    if kept is not None and not off.any():
        curves += [kept.at_gaps] if kept.at_gaps is not None else []
    else:
        gaps = kept.gaps if kept is not None else medians.gap_points(mix, grid, base)
        extra = np.sort(np.concatenate([gaps, np.where(off, reads, prep.sentinel)], axis=1))
        extra[:, 1:][extra[:, 1:] == extra[:, :-1]] = prep.sentinel
        if (extra < prep.sentinel).any():
            curves.append(mixture.curve(mix, mixture.evaluate(mix, extra), base))
    points = mixture.points(*curves)
    found = medians.first_at_or_below(points.idx, points.bands, base.after)
    # Each time's position among the points: one search over every endpoint's (offset to sort after the previous).
    idx, n = points.idx, points.idx.shape[1]
    pos = np.minimum(
        np.searchsorted((idx + prep.offsets).ravel(), reads + prep.offsets) - prep.offsets // (prep.sentinel + 1) * n,
        n - 1,
    )
    at = Reads(read_months, reads, pos, given, reads <= base.after)
    return Scored(prep, mix, grid, points, base, found, months, at)


def _returned_curves(res: Scored, keep: np.ndarray) -> list[list[dict]]:
    """Per endpoint and option, its curve as returned: of the grid points after s, the first in each 1-month interval
    and in each 0.01 band of survival, and the last; and the steps in force at the landmarks ``keep`` (endpoints, h;
    -1 none) and at the option's median. Values at the returned times are exact. Conditional on s, the curve starts
    at s with S = 1."""
    prep, grid = res.prep, res.grid
    endpoints = len(prep.endpoints)
    level = np.floor((1.0 - grid.bands[0]) / THIN_SURVIVAL_STEP)
    kept = np.empty(level.shape, dtype=bool)
    kept[..., 0] = True
    np.not_equal(level[..., 1:], level[..., :-1], out=kept[..., 1:])
    kept |= prep.grid_kept
    kept &= prep.grid_valid
    if res.base.index is not None:
        after = prep.grid > res.base.after
        kept &= after[:, None, :]
        rows = np.flatnonzero(after.any(axis=1))
        kept[rows, :, after[rows].argmax(axis=1)] = True  # the first grid point after s
    # The steps at the landmarks and at the option's own median: marked on the grid, or read off the other points.
    forced = np.concatenate(
        [np.broadcast_to(keep[:, None, :], (*level.shape[:2], keep.shape[1])), res.medians[0][..., None]], axis=2
    )
    position = prep.grid_pos.ravel()[np.maximum(forced, 0) + prep.offsets[:, :, None]]
    on = np.nonzero((forced >= 0) & (position >= 0))
    kept[on[0], on[1], position[on]] = True
    off_e, off_o, off_j = np.nonzero((forced >= 0) & (position < 0))
    index = forced[off_e, off_o, off_j]
    n = res.points.idx.shape[1]
    at = np.searchsorted((res.points.idx + prep.offsets).ravel(), index + prep.offsets[off_e, 0]) - off_e * n
    extra_times = prep.times[off_e, index].tolist()
    extra = res.points.bands.reshape(3, -1)[:, at + (off_e * N_OPTIONS + off_o) * n].round(6).tolist()
    # Every curve's kept grid points in one pass (endpoint, option, point order), then split by curve.
    kept_times = np.broadcast_to(prep.grid_times[:, None, :], kept.shape)[kept].tolist()
    survival, lower, upper = grid.bands[:, kept].round(6).tolist()
    ends = np.cumsum(kept.sum(axis=2)).tolist()
    start = [res.months if res.months is not None else 0.0]
    out, lo = [], 0
    for e in range(endpoints):
        row = []
        for hi in ends[e * N_OPTIONS : (e + 1) * N_OPTIONS]:
            row.append(
                {
                    "times_months": start + kept_times[lo:hi],
                    "survival": [1.0] + survival[lo:hi],
                    "ci_lower": [1.0] + lower[lo:hi],
                    "ci_upper": [1.0] + upper[lo:hi],
                }
            )
            lo = hi
        out.append(row)
    for k, (e, o) in enumerate(zip(off_e.tolist(), off_o.tolist(), strict=True)):
        curve, t = out[e][o], extra_times[k]
        i = bisect.bisect_left(curve["times_months"], t, 1)
        if i < len(curve["times_months"]) and curve["times_months"][i] == t:
            continue  # a landmark's step that is also the median
        for key, value in zip(_CURVE_KEYS, (t, extra[0][k], extra[1][k], extra[2][k]), strict=True):
            curve[key].insert(i, value)
    return out


_CURVE_KEYS = ("times_months", "survival", "ci_lower", "ci_upper")


# Each comparison a - b as option index arrays.
_A = np.array([covariates.OPTIONS.index(x) for x, _ in covariates.COMPARISONS], dtype=np.intp)
_B = np.array([covariates.OPTIONS.index(y) for _, y in covariates.COMPARISONS], dtype=np.intp)


def differences(res: Scored, a: np.ndarray, b: np.ndarray, at: Reads) -> tuple[np.ndarray, np.ndarray]:
    """C_a(t|s) - C_b(t|s) for option pairs (a, b) at the times read ``at`` (after s) and its delta-method variance:
    (endpoints, pairs, times) each.

    With C = S(t)/S(s) and M = -log S̄, d(C_a - C_b) = -C_a d(M_a(t) - M_a(s)) + C_b d(M_b(t) - M_b(s)): on the
    baseline increments up to s the coefficient is -(C_a (r_a(t) - r_a(s)) - C_b (r_b(t) - r_b(s))), on those in
    (s, t] -(C_a r_a(t) - C_b r_b(t)); on beta -(C_a (q̄_a(t) - q̄_a(s)) - C_b (q̄_b(t) - q̄_b(s))). Unconditional,
    every term at s is zero.
    """
    prep, base, pts = res.prep, res.base, res.points
    rows = np.arange(len(at.pos))[:, None]
    idx = pts.idx[rows, at.pos]  # (endpoints, h)
    est = pts.bands[0][rows[:, :, None], np.arange(N_OPTIONS)[:, None], at.pos[:, None, :]]
    r, y = pts.at(at.pos)
    h, vc, _ = prep.rows(idx)
    xc = prep.columns_at(prep.xc_t, idx).transpose(0, 2, 1)[:, None]  # (endpoints, 1, h, p)
    q = (y.transpose(0, 1, 3, 2) @ res.mix.comb.basis) * h[..., None] - r[..., None] * xc - base.q[:, :, None, :]
    ca, cb = est[:, a], est[:, b]
    r_s, vc_s = base.r_eff[..., None], base.vc
    baseline = (ca * (r[:, a] - r_s[:, a]) - cb * (r[:, b] - r_s[:, b])) ** 2 * vc_s + (
        ca * r[:, a] - cb * r[:, b]
    ) ** 2 * (vc - vc_s)
    grad = ca[..., None] * q[:, a] - cb[..., None] * q[:, b]
    return ca - cb, baseline + ((grad @ prep.cov[:, None]) * grad).sum(axis=-1)


def _contrasts(res: Scored, at: Reads, rmst_diff: list[list[dict]]) -> list[list[dict]]:
    """Per endpoint, each comparison a - b: survival differences at the horizons ``at`` and the RMST difference
    ``rmst_diff`` (per endpoint and comparison, written), with delta-method 95% intervals that keep the correlation
    through the shared baseline and coefficients (and, conditional on s, through S(s)); see :func:`differences`."""
    est, var = differences(res, _A, _B, at)
    one = at.one[:, None, :]
    est_l, low_l, up_l = _cis(np.where(one, 0.0, est), np.where(one, 0.0, var), -1.0, 1.0)
    ok = at.given.tolist()
    return [
        [
            {
                "comparison": f"{x} vs {y}",
                "a": x,
                "b": y,
                "survival_difference": [
                    {"months": h, "estimate": d, "ci_lower": lo, "ci_upper": u} if g else {"months": h, **_none_ci()}
                    for h, g, d, lo, u in zip(at.months, ok[e], est_l[e][c], low_l[e][c], up_l[e][c], strict=True)
                ],
                "rmst_difference": rmst_diff[e][c],
            }
            for c, (x, y) in enumerate(covariates.COMPARISONS)
        ]
        for e in range(len(ok))
    ]


def _rmst_out(found: rmst.Rmst | None, cov: np.ndarray, endpoints: int) -> tuple[list, list]:
    """Per endpoint, each option's RMST and each comparison's RMST difference with their 95% intervals, written
    (null where not given: conditional, or every horizon past the endpoint's follow-up)."""
    if found is None:
        return (
            [[{"horizon_months": None, **_none_ci()} for _ in covariates.OPTIONS] for _ in range(endpoints)],
            [[{"horizon_months": None, **_none_ci()} for _ in covariates.COMPARISONS] for _ in range(endpoints)],
        )
    own_var, diff_var = found.variances(cov, _A, _B)
    tau = found.tau[:, None]
    est, low, up = _cis(found.estimate, own_var, 0.0, tau)
    d_est, d_low, d_up = _cis(found.estimate[:, _A] - found.estimate[:, _B], diff_var, -tau, tau)
    taus = [None if t != t else t for t in found.tau.tolist()]

    def written(tau_e: float | None, *values: list) -> list[dict]:
        if tau_e is None:
            return [{"horizon_months": None, **_none_ci()} for _ in values[0]]
        return [
            {"horizon_months": tau_e, "estimate": x, "ci_lower": lo, "ci_upper": u}
            for x, lo, u in zip(*values, strict=True)
        ]

    return (
        [written(t, est[e], low[e], up[e]) for e, t in enumerate(taus)],
        [written(t, d_est[e], d_low[e], d_up[e]) for e, t in enumerate(taus)],
    )


def _endpoints(
    prep: Prepared, patient: dict, horizons: Sequence[float], table_months: Sequence[float], months: float | None
) -> tuple[list[dict], list[list[dict]]]:
    """Per endpoint, the options' predictions and the contrasts."""
    res = score(prep, patient, [*horizons, *table_months], months)
    landmarks_at = res.reads.take(slice(0, len(horizons)))
    found = None
    if months is None:
        tau = [max((h for h in landmarks_at.months if h <= ep.last_time), default=None) for ep in prep.endpoints]
        found = rmst.rmst(res.mix, tau) if any(t is not None for t in tau) else None
    rmst_own, rmst_diff = _rmst_out(found, prep.cov, len(prep.endpoints))
    keep = np.where(landmarks_at.given & ~landmarks_at.one, landmarks_at.idx, -1)
    curves = _returned_curves(res, keep)
    medians_out = res.median_months()
    landmarks = res.read(landmarks_at)
    table = res.read(res.reads.take(slice(len(horizons), None))) if table_months else None
    predictions = [
        {
            option: {
                **curves[e][o],
                "median_months": medians_out[e][o],
                "landmarks": landmarks[e][o],
                "rmst": rmst_own[e][o],
                **({"table": table[e][o]} if table is not None else {}),
            }
            for o, option in enumerate(covariates.OPTIONS)
        }
        for e in range(len(prep.endpoints))
    ]
    return predictions, _contrasts(res, landmarks_at, rmst_diff)


def similar_patients(model: Model, grade: str) -> dict[str, int]:
    """Per option, the training patients with the patient's level of MODALITY_WITHIN who received it (the smallest
    count over the endpoints; at the evidence's scale for a synthetic model)."""
    cohorts = [model.endpoints[name].cohort.grade_modality[grade] for name in covariates.ENDPOINTS]
    return {option: min(cohort[option] for cohort in cohorts) for option in covariates.OPTIONS}


def horizon_warnings(model: Model, horizons: Sequence[float], months: float | None) -> list[str]:
    """Where no value is given: horizons past an endpoint's last event time and, conditional on ``months`` already
    survived, horizons not after it (the same for every patient of a model)."""
    warnings = []
    for name, spec in covariates.ENDPOINTS.items():
        last = model.endpoints[name].risk_sets.last_event_time
        late = [h for h in horizons if h > last]
        if late:
            warnings.append(
                f"{spec.label}: not estimable beyond {last:.1f} months (the last observed {spec.event_label}); no "
                "value is given at " + ", ".join(f"{h:g}" for h in late) + " months."
            )
    early = [h for h in horizons if months is not None and h <= months]
    if months is not None and early:
        events = covariates.join([f"{spec.event_label} for {spec.short}" for spec in covariates.ENDPOINTS.values()])
        warnings.append(
            f"Conditional on the first {_months(months)} without the event ({events}): no value is given at "
            + ", ".join(f"{h:g}" for h in early)
            + f" months, which are not after {_months(months)}."
        )
    return warnings


def predict(
    model: Model,
    patient: Mapping[str, str | None],
    horizons: Sequence[float] = covariates.DEFAULT_HORIZONS_MONTHS,
    table_months: Sequence[float] = (),
    conditional_on_months: float | None = None,
) -> dict:
    """Predicted HPFS and OS for one patient under each option (the API's response body, and more).

    ``model`` is a :class:`prognosis.model.Model`; ``patient`` maps covariate names to canonical
    levels (None = unknown, optional covariates only). ``table_months`` adds to each option a ``table`` of exact
    values at those times (the returned curves are thinned), for the data tables behind the charts.
    ``conditional_on_months`` = s > 0 gives S(t | T > s) = S(t) / S(s) for t >= s instead (curves from s, medians
    and landmarks after s, differences; RMST null), and a ``condition`` saying so in words; a ValueError for s < 0
    or past an endpoint's last event time.
    """
    clean = validate_patient(patient)
    horizons = [float(h) for h in horizons]
    months = check_condition(model, conditional_on_months)
    grade = clean[covariates.MODALITY_WITHIN.name]
    assert grade is not None, "MODALITY_WITHIN is required"
    prep = prepared(model)
    per_endpoint, per_contrast = _endpoints(prep, clean, horizons, table_months, months)
    predictions = dict(zip(covariates.ENDPOINTS, per_endpoint, strict=True))
    contrasts = dict(zip(covariates.ENDPOINTS, per_contrast, strict=True))
    similar = similar_patients(model, grade)
    in_model = next(iter(model.endpoints.values())).cohort.unknowns.names
    unknown = [name for name in in_model if clean[name] is None]
    unused = [name for name in covariates.OPTIONAL if name not in in_model and clean[name] is not None]
    warnings = horizon_warnings(model, horizons, months)
    if months is not None:
        warnings.append(
            "Restricted mean survival time is not given for a conditional prediction: it counts time "
            f"from the embolotherapy, including the first {_months(months)} already survived."
        )
    origin = provenance.provenance(model.card)
    warnings += notices.patient_warnings(
        notice=origin.notice,
        evidence_patients=model.evidence_patients,
        grade=grade,
        similar=similar,
        unknown=unknown,
        unused=unused,
    )
    condition = (
        None
        if months is None
        else {
            endpoint: {"months": months, "text": condition_text(endpoint, months)} for endpoint in covariates.ENDPOINTS
        }
    )
    return {
        "model": {
            "model_version": model.version,
            "sha256": model.sha256,
            "data_source": model.data_source,
            "created_at": model.created_at,
            **({"base_version": origin.base_version} if origin.base_version else {}),
        },
        "inputs": clean,
        "unknown": unknown,
        "condition": condition,
        "predictions": predictions,
        "contrasts": contrasts,
        "similar_patients": similar,
        "few_similar": notices.few_similar(similar),
        "warnings": warnings,
    }
