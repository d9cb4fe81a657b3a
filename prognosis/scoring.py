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

This module writes the response; ``prognosis.mixture`` computes a patient's curves at the event times the answer
needs (every number equal to the full computation, tests/scoring_oracle.py), from per-model constants
(``prognosis.prepared``; ``prepare(model)`` computes them at load).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from prognosis import covariates, mixture, notices
from prognosis.model import Model
from prognosis.normal import Z_95
from prognosis.prepared import Prepared, prepare, prepared

__all__ = ["condition_text", "check_condition", "predict", "prepare", "score_endpoint", "validate_patient"]

# Returned curves keep, among the event times scoring evaluates (the model's grid, ``prognosis.prepared``, plus the
# landmarks and the median), the first step in each 1-month interval and in each 0.01 band of survival (plus the
# last); the values at the kept times are exact. That bounds a curve to about 250 points, a response to tens of KB.
THIN_SURVIVAL_STEP = 0.01
THIN_MONTHS_STEP = 1.0
# Below this many training patients of the patient's grade treated with an option (at the evidence's scale for a
# synthetic model), the response warns that the option's estimates rest on few similar patients (docs/methods.md).
FEW_SIMILAR_PATIENTS = 10
# Counts below this are never shown exactly ("fewer than 5"), so that no small group of patients is disclosed.
SMALLEST_SHOWN = 5


def patients_text(count: int) -> str:
    """A count of patients as it may be shown: 'fewer than 5' below SMALLEST_SHOWN."""
    return f"fewer than {SMALLEST_SHOWN}" if count < SMALLEST_SHOWN else f"{count}"


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


def _at(times: np.ndarray, t: float) -> int | None:
    """Index of the last event time <= t (-1 before the first); None past the last event time (not estimable)."""
    if t > times[-1]:
        return None
    return int(np.searchsorted(times, t, side="right")) - 1


def _cis(estimate: np.ndarray, var: np.ndarray, lo: float, hi: float) -> tuple[list, list, list]:
    """Delta-method 95% intervals estimate -+ z se, clipped to [lo, hi], as lists."""
    half = Z_95 * np.sqrt(np.maximum(var, 0.0))
    return estimate.tolist(), np.maximum(lo, estimate - half).tolist(), np.minimum(hi, estimate + half).tolist()


def _none_ci() -> dict:
    return {"estimate": None, "ci_lower": None, "ci_upper": None}


@dataclass(frozen=True, eq=False)
class EndpointResult:
    """One endpoint's prediction before it is written out, for s = ``months`` already survived (None:
    unconditional): the (conditional) ``curve`` on the model's grid (on every event time when ``full``), ``reads``
    at the times read and s (``curve`` itself when full), the curve at medians evaluated beyond those (``points``),
    the conditioning base and the medians' event indices (options, 3: estimate, lower, upper; -1 never)."""

    prep: Prepared
    mix: mixture.Mixture
    curve: mixture.Curve
    reads: mixture.Curve
    points: mixture.Curve | None
    base: mixture.Base
    medians: np.ndarray
    months: float | None

    def positions(self, ts: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For times ``ts``: their event indices, their positions in ``reads``, and which are given (not past the
        last event time, and after s when conditional). An index <= s's reads S = 1."""
        t = np.asarray(ts, dtype=float)
        times = self.prep.times
        idx = np.searchsorted(times, t, side="right") - 1
        given = t <= times[-1]
        if self.months is not None:
            given &= t > self.months
        have = self.reads.values.idx
        return idx, np.minimum(np.searchsorted(have, idx), len(have) - 1), given

    def read(self, ts: Sequence[float]) -> list[list[dict]]:
        """Per option, the (conditional) step function and its interval at each time in ``ts``, exactly: null past
        the last event time or, conditional on s, at t <= s; 1 before the first event time after s."""
        idx, pos, given = self.positions(ts)
        one = idx <= self.base.index
        c = self.reads
        values = [np.where(one, 1.0, arr[:, pos]).tolist() for arr in (c.estimate, c.lower, c.upper)]
        ok = given.tolist()
        return [
            [
                {"months": float(t), "survival": est, "ci_lower": low, "ci_upper": up}
                if g
                else {"months": float(t), "survival": None, "ci_lower": None, "ci_upper": None}
                for t, g, est, low, up in zip(ts, ok, values[0][o], values[1][o], values[2][o], strict=True)
            ]
            for o in range(len(covariates.OPTIONS))
        ]

    def median_months(self) -> list[dict]:
        """Per option: the median and its interval in months (None: the curve never gets to 0.5)."""
        times = np.append(self.prep.times, np.nan)
        months = times[self.medians].tolist()  # index -1 reads the appended NaN
        return [
            {k: (None if v != v else v) for k, v in zip(("estimate", "ci_lower", "ci_upper"), row, strict=True)}
            for row in months
        ]


def score_endpoint(
    prep: Prepared, patient: dict[str, str | None], read_at: Sequence[float] = (), months: float | None = None
) -> EndpointResult:
    """The patient's curves for one endpoint at the event times the answer needs, conditional on ``months`` already
    survived without the event (None: unconditional), with medians.

    With few patterns of the unknowns (``prognosis.mixture.FULL_EVALUATION_PATTERNS``) every event time is
    evaluated; otherwise the model's grid, the times in ``read_at`` (landmarks, table times) and s, and whatever
    gaps of the grid the medians need (``prognosis.mixture.first_crossings``).
    """
    mix = mixture.mixture(prep, patient)
    times = prep.times
    base_index = int(np.searchsorted(times, months, side="right")) - 1 if months is not None else -1
    if mix.full:
        values = mixture.evaluate(mix, prep.every)
        base = mixture.Base.at(prep, values, base_index)
        curve = mixture.curve(prep, values, base)
        medians = mixture.first_at_or_below(curve, base_index)
        return EndpointResult(prep, mix, curve, curve, None, base, medians, months)
    t = np.asarray(read_at, dtype=float)
    wanted = np.searchsorted(times, t[t <= times[-1]], side="right") - 1
    # The first event time too, so that there is always something read (horizons may all be before it or past the end).
    wanted = np.unique(np.append(wanted, [base_index, 0]))
    wanted = wanted[wanted >= 0]
    read_values = mixture.evaluate(mix, wanted)
    base = mixture.Base.at(prep, read_values, base_index)
    reads = mixture.curve(prep, read_values, base)
    curve = mixture.curve(prep, mixture.evaluate(mix, prep.grid), base)
    medians, more = mixture.first_crossings(mix, curve, base, reads)
    points = None
    if more is not None:
        # The medians' own event times, so that the returned curve can show them.
        found = np.intersect1d(medians[:, 0], more.values.idx)
        if found.size:
            points = more.take(np.searchsorted(more.values.idx, found))
    return EndpointResult(prep, mix, curve, reads, points, base, medians, months)


def _member(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Which of ``values`` are in the (small) array ``wanted``."""
    if not len(wanted):
        return np.zeros(len(values), dtype=bool)
    w = np.sort(wanted)
    return w[np.minimum(np.searchsorted(w, values), len(w) - 1)] == values


def _returned_curves(res: EndpointResult, keep: np.ndarray) -> list[dict]:
    """Per option, its curve as returned: thinned from the evaluated grid points, the landmarks' event indices
    ``keep`` and the medians to the first step in each (1-month interval, 0.01 band of survival), the last step,
    ``keep`` and the option's median; values at the returned times are exact. Conditional on s, the curve starts at
    s with S = 1."""
    prep = res.prep
    medians = res.medians[:, 0]
    after = res.base.index
    if res.mix.full:
        chosen = prep.on_grid.copy()
        chosen[keep] = True
        chosen[medians[medians >= 0]] = True
        if after >= 0:
            chosen[: after + 1] = False
        pos = np.flatnonzero(chosen)
        c = res.curve
        at_idx, est, low, up = pos, c.estimate[:, pos], c.lower[:, pos], c.upper[:, pos]
    else:
        parts = [
            (res.curve, res.curve.values.idx > after),
            (res.reads, _member(res.reads.values.idx, keep) & ~prep.on_grid[res.reads.values.idx]),
        ]
        if res.points is not None:
            parts.append((res.points, ~prep.on_grid[res.points.values.idx]))
        cat = [
            np.concatenate([getattr(c, k)[..., mask] for c, mask in parts], axis=-1)
            for k in ("estimate", "lower", "upper")
        ]
        all_idx = np.concatenate([c.values.idx[mask] for c, mask in parts])
        # A median that is also a landmark appears twice; keep one.
        all_idx, first = np.unique(all_idx, return_index=True)
        at_idx, est, low, up = all_idx, cat[0][:, first], cat[1][:, first], cat[2][:, first]
    times = prep.times[at_idx]
    month = np.floor(times / THIN_MONTHS_STEP)
    level = np.floor((1.0 - est) / THIN_SURVIVAL_STEP)
    change = np.ones(est.shape, dtype=bool)
    change[:, 1:] = (month[1:] != month[:-1]) | (level[:, 1:] != level[:, :-1])
    change[:, -1:] = True
    change |= _member(at_idx, keep)
    change |= at_idx == medians[:, None]
    start = [res.months if res.months is not None else 0.0]
    rounded = (est.round(6), low.round(6), up.round(6))
    out = []
    for o in range(len(covariates.OPTIONS)):
        kept = change[o]
        out.append(
            {
                "times_months": start + times[kept].tolist(),
                **{
                    key: [1.0] + arr[o, kept].tolist()
                    for key, arr in zip(("survival", "ci_lower", "ci_upper"), rounded, strict=True)
                },
            }
        )
    return out


def _endpoint(
    prep: Prepared,
    patient: dict,
    horizons: Sequence[float],
    table_months: Sequence[float] = (),
    months: float | None = None,
) -> tuple[dict, list[dict]]:
    res = score_endpoint(prep, patient, [*horizons, *table_months], months)
    tau = max((h for h in horizons if h <= prep.last_time), default=None) if months is None else None
    rmst_out: list[dict] = [{"horizon_months": None, **_none_ci()} for _ in covariates.OPTIONS]
    rmst = mixture.rmst(res.mix, tau) if tau is not None else None
    if rmst is not None:
        est, low, up = _cis(rmst.estimate, rmst.variances(prep), 0.0, tau)  # type: ignore[arg-type]
        rmst_out = [
            {"horizon_months": tau, "estimate": e, "ci_lower": lo, "ci_upper": u}
            for e, lo, u in zip(est, low, up, strict=True)
        ]
    h_idx, _, h_given = res.positions(horizons)
    keep = h_idx[h_given & (h_idx > res.base.index)]
    curves = _returned_curves(res, keep)
    medians = res.median_months()
    landmarks = res.read(horizons)
    tables = res.read(table_months) if table_months else None
    options = {}
    for o, option in enumerate(covariates.OPTIONS):
        options[option] = {
            **curves[o],
            "median_months": medians[o],
            "landmarks": landmarks[o],
            "rmst": rmst_out[o],
            **({"table": tables[o]} if tables is not None else {}),
        }
    return options, _contrasts(res, rmst, horizons)


def _contrasts(res: EndpointResult, rmst: mixture.Rmst | None, horizons: Sequence[float]) -> list[dict]:
    """Each comparison a - b: survival differences at the horizons and the RMST difference, with delta-method 95%
    intervals that keep the correlation through the shared baseline and coefficients (and, conditional on s,
    through S(s)); see :func:`differences`."""
    index = {option: o for o, option in enumerate(covariates.OPTIONS)}
    a = np.array([index[x] for x, _ in covariates.COMPARISONS], dtype=np.intp)
    b = np.array([index[y] for _, y in covariates.COMPARISONS], dtype=np.intp)
    h_idx, h_pos, given = res.positions(horizons)
    one = h_idx <= res.base.index
    est, var = differences(res, a, b, h_pos, h_idx)
    est_l, low_l, up_l = _cis(np.where(one, 0.0, est), np.where(one, 0.0, var), -1.0, 1.0)
    rmst_diffs = [{"horizon_months": None, **_none_ci()} for _ in covariates.COMPARISONS]
    if rmst is not None:
        r_est, r_low, r_up = _cis(
            rmst.estimate[a] - rmst.estimate[b], rmst.difference_variances(res.prep, a, b), -rmst.tau, rmst.tau
        )
        rmst_diffs = [
            {"horizon_months": rmst.tau, "estimate": e, "ci_lower": lo, "ci_upper": u}
            for e, lo, u in zip(r_est, r_low, r_up, strict=True)
        ]
    out = []
    for c, (x, y) in enumerate(covariates.COMPARISONS):
        diffs = [
            {"months": float(h), "estimate": e, "ci_lower": lo, "ci_upper": u}
            if ok
            else {"months": float(h), **_none_ci()}
            for h, ok, e, lo, u in zip(horizons, given.tolist(), est_l[c], low_l[c], up_l[c], strict=True)
        ]
        out.append(
            {
                "comparison": f"{x} vs {y}",
                "a": x,
                "b": y,
                "survival_difference": diffs,
                "rmst_difference": rmst_diffs[c],
            }
        )
    return out


def differences(
    res: EndpointResult, a: np.ndarray, b: np.ndarray, pos: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """C_a(t|s) - C_b(t|s) for option pairs (a, b) at curve positions ``pos`` (event indices ``idx``, after s) and
    its delta-method variance: (pairs, len(pos)) each.

    With C = S(t)/S(s) and M = -log S̄, d(C_a - C_b) = -C_a d(M_a(t) - M_a(s)) + C_b d(M_b(t) - M_b(s)): on the
    baseline increments up to s the coefficient is -(C_a (r_a(t) - r_a(s)) - C_b (r_b(t) - r_b(s))), on those in
    (s, t] -(C_a r_a(t) - C_b r_b(t)); on beta -(C_a (q̄_a(t) - q̄_a(s)) - C_b (q̄_b(t) - q̄_b(s))). Unconditional,
    every term at s is zero.
    """
    prep, base, c = res.prep, res.base, res.reads
    est = c.estimate[:, pos]
    r = c.values.r_eff[:, pos]
    q = c.values.q(prep, pos) - base.q[:, None, :]
    vc = prep.vc[np.maximum(idx, 0)]
    ca, cb = est[a], est[b]
    baseline = (ca * (r[a] - base.r_eff[a, None]) - cb * (r[b] - base.r_eff[b, None])) ** 2 * base.vc + (
        ca * r[a] - cb * r[b]
    ) ** 2 * (vc - base.vc)
    grad = ca[..., None] * q[a] - cb[..., None] * q[b]
    return ca - cb, baseline + ((grad @ prep.cov) * grad).sum(axis=-1)


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
    predictions: dict[str, dict] = {}
    contrasts: dict[str, list[dict]] = {}
    similar: dict[str, int] = {}
    warnings = []
    for endpoint, spec in covariates.ENDPOINTS.items():
        prep = prepared(model.endpoints[endpoint])
        predictions[endpoint], contrasts[endpoint] = _endpoint(prep, clean, horizons, table_months, months)
        for option in covariates.OPTIONS:
            count = prep.cohort.grade_modality[grade][option]  # type: ignore[attr-defined]
            similar[option] = min(similar.get(option, count), count)
        late = [h for h in horizons if h > prep.last_time]
        if late:
            warnings.append(
                f"{spec.label}: not estimable beyond {prep.last_time:.1f} months (the last "
                f"observed {spec.event_label}); no value is given at " + ", ".join(f"{h:g}" for h in late) + " months."
            )
    in_model = next(iter(model.endpoints.values())).cohort.unknowns.names
    unknown = [name for name in in_model if clean[name] is None]
    unused = [name for name in covariates.OPTIONAL if name not in in_model and clean[name] is not None]
    if months is not None:
        events = covariates.join([f"{spec.event_label} for {spec.short}" for spec in covariates.ENDPOINTS.values()])
        early = [h for h in horizons if h <= months]
        if early:
            warnings.append(
                f"Conditional on the first {_months(months)} without the event ({events}): no value is "
                "given at " + ", ".join(f"{h:g}" for h in early) + " months, which are not after "
                f"{_months(months)}."
            )
        warnings.append(
            "Restricted mean survival time is not given for a conditional prediction: it counts time "
            f"from the embolotherapy, including the first {_months(months)} already survived."
        )
    if model.data_source == "synthetic":
        warnings.append(notices.synthetic_notice(model.evidence_patients))
    warnings.append(notices.OBSERVATIONAL)
    few = [option for option, count in similar.items() if count < FEW_SIMILAR_PATIENTS]
    if few:
        within = covariates.MODALITY_WITHIN.label_of(grade).lower()
        counts = covariates.join([f"{patients_text(similar[o])} received {o}" for o in few])
        scale = " (counted at the size of the original study)" if model.evidence_patients else ""
        warnings.append(
            f"Few similar patients: among patients with {within} in the data behind this model{scale}, "
            f"{counts}. The estimates for {covariates.join(few)} rest on few patients like this one."
        )
    if unused:
        warnings.append(
            "Not used by this model (its training data did not record them): "
            + ", ".join(covariates.BY_NAME[n].label.lower() for n in unused)
            + "."
        )
    if unknown:
        labels = ", ".join(covariates.BY_NAME[n].label.lower() for n in unknown)
        warnings.append(
            f"Unknown: {labels}. The prediction averages over the values these take in training "
            "patients with the same known characteristics."
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
        },
        "inputs": clean,
        "unknown": unknown,
        "condition": condition,
        "predictions": predictions,
        "contrasts": contrasts,
        "similar_patients": similar,
        "few_similar": few,
        "warnings": warnings,
    }
