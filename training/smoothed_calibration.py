"""Smoothed calibration of predicted risk at a horizon (Austin, Harrell & van Klaveren 2020): ICI, E50, E90, O/E.

For predicted risks p = 1 - S(t0 | x), a Cox model of the outcome on a restricted cubic spline of cloglog(p) =
log(-log(1 - p)) (3 knots, Harrell's ``rms::rcs`` placement and basis) estimates the observed risk of each patient,
1 - S(t0 | spline), as ``rms::survest`` does. The absolute differences |p - observed| summarise calibration: ICI is
their mean, E50 their median and E90 their 90th percentile. Observed/expected is the Kaplan-Meier risk at t0 over the
mean predicted risk.

Ties are handled as R does for ``cph``: Efron's approximation in the partial likelihood and, for the survival
estimate, the matching Efron baseline cumulative hazard of ``survfit.cph`` (at a time with d tied events the hazard
increment is sum_{r<d} 1 / (S0 - r/d T0), T0 the events' risk sum). Without tied event times this is Breslow's.

The optimism-corrected version follows Harrell's bootstrap: a model refitted on each bootstrap sample is assessed on
that sample (apparent) and on the original data (test); optimism = mean(apparent - test); corrected = apparent -
optimism. Resamples are drawn as in ``training.bootstrap.replicates`` so the same seeds give the same samples: the
validation measures these metrics inside its own bootstrap (``training.validate``), with ``metrics_on``, the batched
fast path (one batch of calibration models per data set for all horizons).

Numpy only (the bootstrap's workers import this module; joblib is imported when ``bootstrap_smoothed_calibration``
runs).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from training import cox_fast
from training.cox_fast import Survival

KNOTS = 3
# rms/Hmisc: a value shared by this fraction of the data at either end is a knot of its own (``fractied``).
FRACTION_TIED = 0.05
GRID_POINTS = 50
METRICS: tuple[str, ...] = ("ici", "e50", "e90", "emax")
# What the validation bootstrap measures at each horizon: the summaries above and observed/expected.
BOOTSTRAP_METRICS: tuple[str, ...] = (*METRICS, "observed_expected")
QUANTILES = np.array([0.5, 0.9])  # E50, E90

# A model refitted on a bootstrap sample, as a function from design rows to the cumulative hazard -log S(t0 | x) at the
# horizon (exact on the cloglog scale, where 1 - p loses every digit for risks near 1).
Predictor = Callable[[np.ndarray], np.ndarray]
FitPredictor = Callable[[np.ndarray, np.ndarray, np.ndarray, float], Predictor]


class CalibrationError(ValueError):
    """Smoothed calibration cannot be estimated (too few distinct predictions, no events, horizon past follow-up)."""


# ---------------------------------------------------------------------------------------------------------------
# Restricted cubic splines, as rms::rcs / Hmisc::rcspline.eval


def rcs_knots(x: np.ndarray, knots: int = KNOTS, fraction_tied: float = FRACTION_TIED) -> np.ndarray:
    """Knot locations of ``rms::rcs(x, knots)`` (``Hmisc::rcspline.eval``'s default placement).

    For 3 knots: the 10th, 50th and 90th percentiles (R's type 7 quantiles); with fewer than 100 values the outer knots
    move to the 5th smallest and 5th largest value; a value at either end shared by at least 5% of the data (when no
    interior value is that frequent) becomes a knot itself, the others placed in the rest of the data.

    References
    ----------
    Harrell FE. Regression Modeling Strategies. 2nd ed. Springer 2015, section 2.4.6; Hmisc ``rcspline.eval``.
    """
    x = np.asarray(x, dtype=float)
    xx = np.sort(x[~np.isnan(x)])  # sorted throughout: quantiles, unique values and cuts are then cheap
    n = len(xx)
    if n < 6:
        raise CalibrationError("knots not specified, and < 6 non-missing observations")
    starts = np.concatenate([[0], np.flatnonzero(xx[1:] != xx[:-1]) + 1])
    xu, counts = xx[starts], np.diff(np.append(starts, n))
    if len(xu) - 2 <= knots:
        warnings.warn(
            f"{knots} knots requested with {len(xu)} unique values: knots set to the interior values", stacklevel=2
        )
        found = xu[1:-1]
    else:
        outer = 0.025 if knots > 6 else 0.05 if knots > 3 else 0.1
        nke = knots
        first: list[float] = []
        last: list[float] = []
        if 0 < fraction_tied < 1:
            f = counts / n
            if f[1:-1].max() < fraction_tied:
                if f[0] >= fraction_tied:
                    first = [xx[xx > xx[0]][0]]
                    xx = xx[xx > first[0]]
                    nke -= 1
                if f[-1] >= fraction_tied:
                    last = [xx[xx < xx[-1]][-1]]
                    xx = xx[xx < last[0]]
                    nke -= 1
        if nke == 1:
            inner = quantile_sorted(xx, np.array([0.5]))
        else:
            if len(xu) <= nke:
                inner = xu.copy()
            else:
                p = np.linspace(0.5, 1 - outer, nke) if nke == 2 else np.linspace(outer, 1 - outer, nke)
                inner = quantile_sorted(xx, p)
                if len(np.unique(inner)) < min(nke, 3):
                    inner = quantile_sorted(xx, np.linspace(outer, 1 - outer, 2 * nke))
                    if first and len(np.unique(inner)) < 3:
                        mid = (first[0] + last[0]) / 2 if last else quantile_sorted(xx, np.array([0.5]))[0]
                        end = last[0] if last else quantile_sorted(xx, np.array([1 - outer]))[0]
                        inner = np.sort([first[0], mid, end])
                    if len(np.unique(inner)) < 3:
                        raise CalibrationError("fewer than 3 unique knots")
                    warnings.warn(f"could not obtain {nke} interior knots with the default algorithm", stacklevel=2)
            if len(xx) < 100:
                if not first:
                    inner[0] = xx[4]
                if not last:
                    inner[nke - 1] = xx[-5]
        found = np.concatenate([first, inner, last])
    found = np.unique(found)
    if len(found) < 3:
        raise CalibrationError("fewer than 3 unique knots: too few distinct predicted risks for a spline")
    return found


def quantile_sorted(values: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """R's type 7 (numpy's default "linear") quantiles of already sorted values: x[j] + g (x[j+1] - x[j]) at
    h = (n - 1) p, j = floor(h), g = h - j."""
    h = (len(values) - 1) * np.asarray(probabilities, dtype=float)
    j = np.floor(h).astype(np.intp)
    upper = np.minimum(j + 1, len(values) - 1)
    return values[j] + (h - j) * (values[upper] - values[j])


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis of ``rms::rcs``: x and k - 2 nonlinear terms, Harrell's normalisation (norm=2).

    Term j: (x - t_j)+^3 - (x - t_{k-1})+^3 (t_k - t_j)/(t_k - t_{k-1}) + (x - t_k)+^3 (t_{k-1} - t_j)/(t_k - t_{k-1}),
    each distance divided by (t_k - t_1)^(2/3).
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = len(t)
    kd = (t[-1] - t[0]) ** (2.0 / 3.0)

    def cube(u):
        return np.maximum(u / kd, 0.0) ** 3

    columns = [x]
    for j in range(k - 2):
        columns.append(
            cube(x - t[j]) + ((t[-2] - t[j]) * cube(x - t[-1]) - (t[-1] - t[j]) * cube(x - t[-2])) / (t[-1] - t[-2])
        )
    return np.column_stack(columns)


def cloglog(risk: np.ndarray) -> np.ndarray:
    """log(-log(1 - p)), the scale on which a proportional-hazards model is linear in the predicted risk."""
    return np.log(-np.log1p(-np.asarray(risk, dtype=float)))


# ---------------------------------------------------------------------------------------------------------------
# The calibration Cox model and its survival estimates (rms::cph + survest)


@dataclass(frozen=True)
class _EfronBaseline:
    """Cumulative Efron baseline quantities of a fitted Cox model (``survival:::agsurv``, survtype 3), centred x."""

    event_times: np.ndarray
    cum_hazard: np.ndarray
    cum_var: np.ndarray
    cum_xbar: np.ndarray  # (k, p)
    center: np.ndarray


def _efron_baseline(x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray) -> _EfronBaseline:
    center = x.mean(axis=0)
    xc = x - center
    w = np.exp(xc @ beta)
    order = np.argsort(time, kind="stable")
    ts, es, ws, xs = time[order], event[order], w[order], xc[order]
    event_times, d = np.unique(ts[es], return_counts=True)
    first = np.searchsorted(ts, event_times, side="left")
    s0 = np.cumsum(ws[::-1])[::-1][first]
    s1 = np.cumsum((xs * ws[:, None])[::-1], axis=0)[::-1][first]
    k_death = np.searchsorted(event_times, ts[es])
    t0 = np.bincount(k_death, weights=ws[es], minlength=len(d))
    t1 = np.stack([np.bincount(k_death, weights=ws[es] * col, minlength=len(d)) for col in xs[es].T], axis=1)
    # One row per (event time, r = 0..d-1): the Efron-weighted risk-set sums.
    k = np.repeat(np.arange(len(d)), d)
    frac = (np.arange(k.size) - np.repeat(np.cumsum(d) - d, d)) / d[k]
    a = s0[k] - frac * t0[k]
    hazard = np.bincount(k, weights=1.0 / a, minlength=len(d))
    var = np.bincount(k, weights=1.0 / a**2, minlength=len(d))
    xbar = (s1[k] - frac[:, None] * t1[k]) / (a**2)[:, None]
    xbar_sum = np.stack([np.bincount(k, weights=col, minlength=len(d)) for col in xbar.T], axis=1)
    return _EfronBaseline(event_times, np.cumsum(hazard), np.cumsum(var), np.cumsum(xbar_sum, axis=0), center)


@dataclass(frozen=True)
class _SplineCox:
    knots: np.ndarray
    coef: np.ndarray
    covariance: np.ndarray
    baseline: _EfronBaseline

    def survival(self, cll: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        """S(t0 | spline of cll) and the standard error of its cumulative hazard (``survest``'s std.err)."""
        b = self.baseline
        j = np.searchsorted(b.event_times, horizon, side="right") - 1
        z = rcs_basis(cll, self.knots) - b.center
        risk = np.exp(z @ self.coef)
        if j < 0:
            return np.ones(len(z)), np.zeros(len(z))
        h = b.cum_hazard[j] * risk
        dt = b.cum_hazard[j] * z - b.cum_xbar[j]
        var = (b.cum_var[j] + np.einsum("ij,jk,ik->i", dt, self.covariance, dt)) * risk**2
        return np.exp(-h), np.sqrt(var)


def _fit_spline_cox(cll: np.ndarray, time: np.ndarray, event: np.ndarray) -> _SplineCox:
    knots = rcs_knots(cll)
    z = rcs_basis(cll, knots)
    data, order = Survival.sorted(time, event)
    fit = cox_fast.fit_coefficients(data, z[order])
    if not np.all(np.isfinite(fit.beta)):
        raise CalibrationError("the calibration model did not converge")
    try:
        covariance = np.linalg.inv(fit.information)
    except np.linalg.LinAlgError as exc:
        raise CalibrationError("the calibration model's information matrix is singular") from exc
    return _SplineCox(knots, fit.beta, covariance, _efron_baseline(z, time, event, fit.beta))


def kaplan_meier_risk(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    """1 - Kaplan-Meier survival at the horizon (right-continuous)."""
    data, _ = Survival.sorted(time, event)
    return float(1.0 - data.kaplan_meier(np.array([horizon]))[0])


# ---------------------------------------------------------------------------------------------------------------
# Apparent smoothed calibration


@dataclass(frozen=True)
class SmoothedCalibration:
    """Smoothed calibration at one horizon; ``to_card()`` is an entry of ``validation.<endpoint>.smoothed_calibration``.

    ``observed`` holds each patient's smoothed observed risk; ``curve`` the calibration curve on a grid of predicted
    risks with a pointwise 95% band (log-scale interval of the spline model's survival, as ``survest``).
    """

    months: float
    n: int
    events: int
    ici: float
    e50: float
    e90: float
    emax: float
    observed_expected: float
    km_risk: float
    mean_predicted: float
    knots_cloglog: np.ndarray
    observed: np.ndarray = field(repr=False)
    curve: dict[str, np.ndarray] = field(repr=False)

    def metrics(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in METRICS}

    def to_card(self, digits: int = 4) -> dict:
        r = lambda v: round(float(v), digits)  # noqa: E731
        return {
            "months": float(self.months),
            "ici": r(self.ici),
            "e50": r(self.e50),
            "e90": r(self.e90),
            "emax": r(self.emax),
            "observed_expected": r(self.observed_expected),
            "km_risk": r(self.km_risk),
            "mean_predicted": r(self.mean_predicted),
            "n": self.n,
            "events": self.events,
            "knots_cloglog": [r(k) for k in self.knots_cloglog],
            "curve": {key: [r(v) for v in values] for key, values in self.curve.items()},
        }


def _inputs(
    predicted_risk: np.ndarray | None,
    cumulative_hazard: np.ndarray | None,
    time: np.ndarray,
    event: np.ndarray,
    horizon: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p, cloglog p, time, event), checked."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if cumulative_hazard is not None:
        h = np.asarray(cumulative_hazard, dtype=float)
        if not np.all(np.isfinite(h) & (h > 0)):
            raise CalibrationError("cumulative hazards must be positive and finite")
        p, cll = -np.expm1(-h), np.log(h)
    elif predicted_risk is not None:
        p = np.asarray(predicted_risk, dtype=float)
        if not np.all((p > 0) & (p < 1)):
            raise CalibrationError(
                "predicted risks must lie strictly between 0 and 1 (for risks that round to 1, "
                "pass the cumulative hazard instead)"
            )
        cll = cloglog(p)
    else:
        raise CalibrationError("give the predicted risks or the cumulative hazards")
    if not (len(p) == len(time) == len(event)):
        raise CalibrationError("predictions, times and events differ in length")
    if not event.any():
        raise CalibrationError("no events")
    if horizon > time.max():
        raise CalibrationError(f"the horizon {horizon:g} is past the last follow-up {time.max():g}")
    return p, cll, time, event


def _summaries(difference: np.ndarray) -> dict[str, float]:
    return {
        "ici": float(np.mean(difference)),
        "e50": float(np.median(difference)),
        "e90": float(np.quantile(difference, 0.9)),
        "emax": float(np.max(difference)),
    }


def smoothed_calibration(
    predicted_risk: np.ndarray | None,
    time: np.ndarray,
    event: np.ndarray,
    horizon: float,
    *,
    cumulative_hazard: np.ndarray | None = None,
    grid: np.ndarray | None = None,
    confidence: float = 0.95,
) -> SmoothedCalibration:
    """Smoothed calibration of predicted risks at ``horizon`` (Austin, Harrell & van Klaveren 2020).

    Parameters
    ----------
    predicted_risk : ndarray, shape (n,), or None
        1 - S(t0 | x) for each patient, strictly between 0 and 1.
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)
    horizon : float
        t0, in the unit of ``time``; at most the last follow-up.
    cumulative_hazard : ndarray, shape (n,), optional
        -log S(t0 | x) instead of the risks: exact on the cloglog scale, where risks near 1 lose their digits in
        1 - p (a Cox model's risk at 36 months can round to 1.0). Takes precedence over ``predicted_risk``.
    grid : ndarray, optional
        Predicted risks at which to draw the calibration curve (default: 50 points evenly spanning the predictions).
    confidence : float
        Level of the curve's pointwise band.

    Returns
    -------
    SmoothedCalibration
        ICI, E50, E90 and Emax of |p - observed|; observed/expected = Kaplan-Meier risk at t0 / mean predicted risk.

    References
    ----------
    Austin PC, Harrell FE Jr, van Klaveren D. Graphical calibration curves and the integrated calibration index (ICI)
    for survival models. Stat Med 2020;39:2714-2742.
    Harrell FE Jr. rms: Regression Modeling Strategies (``cph``, ``rcs``, ``survest``). R package.
    """
    p, cll, time, event = _inputs(predicted_risk, cumulative_hazard, time, event, horizon)
    model = _fit_spline_cox(cll, time, event)
    surv, _ = model.survival(cll, horizon)
    observed = 1.0 - surv
    summary = _summaries(np.abs(p - observed))
    if grid is None:  # risks that round to 1 (given as hazards) end the grid just below 1
        grid = np.linspace(p.min(), min(p.max(), 1.0 - 1e-9), GRID_POINTS)
    grid = np.asarray(grid, dtype=float)
    if not np.all((grid > 0) & (grid < 1)):
        raise CalibrationError("the grid's risks must lie strictly between 0 and 1")
    surv_grid, se = model.survival(cloglog(grid), horizon)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    upper_surv = np.minimum(1.0, surv_grid * np.exp(z * se))
    lower_surv = surv_grid * np.exp(-z * se)
    km = kaplan_meier_risk(time, event, horizon)
    return SmoothedCalibration(
        months=float(horizon),
        n=len(p),
        events=int(event.sum()),
        **summary,
        observed_expected=km / float(p.mean()),
        km_risk=km,
        mean_predicted=float(p.mean()),
        knots_cloglog=model.knots,
        observed=observed,
        curve={
            "predicted": grid,
            "observed": 1.0 - surv_grid,
            "ci_lower": 1.0 - upper_surv,
            "ci_upper": 1.0 - lower_surv,
        },
    )


def calibration_metrics(
    predicted_risk: np.ndarray | None,
    time: np.ndarray,
    event: np.ndarray,
    horizon: float,
    *,
    cumulative_hazard: np.ndarray | None = None,
) -> dict[str, float]:
    """ICI, E50, E90 and Emax only (no curve); NaN where the calibration model cannot be estimated."""
    try:
        p, cll, time, event = _inputs(predicted_risk, cumulative_hazard, time, event, horizon)
    except CalibrationError:
        return dict.fromkeys(METRICS, math.nan)
    data, order = Survival.sorted(time, event)
    row = metrics_on(data, cll[order][None, :], np.array([horizon]))[0]
    return {name: float(v) for name, v in zip(BOOTSTRAP_METRICS, row, strict=True) if name in METRICS}


def metrics_on(data: Survival, cll: np.ndarray, horizons: np.ndarray, slope: float = 1.0) -> np.ndarray:
    """:data:`BOOTSTRAP_METRICS` of predictions at several horizons on one data set, the bootstrap's fast path.

    ``cll`` has one row per entry of ``horizons`` (which may repeat: several sets of predictions): the log of each
    patient's predicted cumulative hazard at that horizon, columns in ``data``'s (time) order. The calibration models
    of all rows are fitted as one batch (same times and events); the result has one row per row of ``cll``, NaN where
    the model cannot be estimated (the horizon past the data's follow-up, too few distinct predictions for three knots,
    no convergence).
    """
    horizons = np.asarray(horizons, dtype=float)
    cll = np.atleast_2d(np.asarray(cll, dtype=float))
    out = np.full((len(horizons), len(BOOTSTRAP_METRICS)), np.nan)
    if not data.death.size:
        return out
    usable, bases = [], []
    for h, horizon in enumerate(horizons):
        if horizon > data.time[-1] or not np.all(np.isfinite(cll[h])):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a bootstrap sample with few distinct predictions: knots fall back
                z = rcs_basis(cll[h], rcs_knots(cll[h]))
        except CalibrationError:
            continue
        if np.all(np.ptp(z, axis=0) > 0):
            usable.append(h)
            bases.append(z)
    if not usable:
        return out
    z = np.stack(bases)
    km_risk = 1.0 - data.kaplan_meier(horizons)
    # Start where the calibration slope (1: perfect calibration) puts the linear term: a few Newton steps from the
    # maximum, which does not depend on the start.
    fit = cox_fast.fit_efron(data, z, np.array([slope if np.isfinite(slope) else 1.0, 0.0]), information=False)
    with np.errstate(all="ignore"):
        for i, h in enumerate(usable):
            if not np.all(np.isfinite(fit.beta[i])):
                continue
            h0 = cox_fast.cumulative_at(data.event_times, fit.efron[i], horizons[h])
            observed = -np.expm1(-h0 * np.exp(z[i] @ fit.beta[i]))
            p = -np.expm1(-np.exp(cll[h]))
            difference = np.sort(np.abs(p - observed))
            e50, e90 = quantile_sorted(difference, QUANTILES)
            out[h] = (difference.mean(), e50, e90, difference[-1], km_risk[h] / p.mean())
    return out


# ---------------------------------------------------------------------------------------------------------------
# Optimism correction (Harrell's bootstrap)


def cox_predictor(x: np.ndarray, time: np.ndarray, event: np.ndarray, horizon: float) -> Predictor:
    """Refit the served model on (x, time, event): Efron-tie Cox coefficients, Breslow baseline; the returned
    function gives the cumulative hazard H0(t0) exp(x'beta) at the horizon.

    This is how the calculator predicts (``training.fit.breslow_risk_sets``); past the sample's last follow-up it is
    not estimable (NaN).
    """
    data, order = Survival.sorted(time, event)
    fit = cox_fast.fit_coefficients(data, np.asarray(x, dtype=float)[order])
    beta = fit.beta
    if not np.all(np.isfinite(beta)):
        return lambda rows: np.full(len(rows), np.nan)
    h0 = float(cox_fast.cumulative_at(data.event_times, fit.breslow, horizon))
    if horizon > data.time[-1]:
        h0 = np.nan
    return lambda rows: h0 * np.exp(np.asarray(rows, dtype=float) @ beta)


def replicate_row(
    hazard_sample: np.ndarray,
    time_sample: np.ndarray,
    event_sample: np.ndarray,
    hazard_original: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    horizon: float,
) -> np.ndarray:
    """One bootstrap replicate from the refitted model's cumulative hazards at the horizon on its sample and on the
    original data: [ICI, E50, E90, Emax on the sample (apparent), then on the original data (test)], NaN where the
    calibration model could not be estimated. Risks p = 1 - exp(-H) work too through ``-log1p(-p)``."""
    apparent = calibration_metrics(None, time_sample, event_sample, horizon, cumulative_hazard=hazard_sample)
    test = calibration_metrics(None, time, event, horizon, cumulative_hazard=hazard_original)
    return np.array([apparent[m] for m in METRICS] + [test[m] for m in METRICS])


def replicates(
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    horizon: float,
    seeds: Sequence[np.random.SeedSequence],
    fit: FitPredictor = cox_predictor,
) -> np.ndarray:
    """Bootstrap replicates, one row each (see :func:`replicate_row`).

    Replicate b resamples ``default_rng(seeds[b]).integers(0, n, n)``, as ``training.bootstrap.replicates``, refits
    with ``fit`` and predicts on the sample and on the original data. Module level so joblib can ship it.
    """
    n = len(time)
    out = np.full((len(seeds), 2 * len(METRICS)), np.nan)
    for i, seed in enumerate(seeds):
        idx = np.random.default_rng(seed).integers(0, n, size=n)
        if not event[idx].any():
            continue
        with np.errstate(all="ignore"):
            predict = fit(x[idx], time[idx], event[idx], horizon)
            out[i] = replicate_row(predict(x[idx]), time[idx], event[idx], predict(x), time, event, horizon)
    return out


def optimism_corrected(apparent: dict[str, float], rows: np.ndarray) -> dict:
    """Apparent, optimism and optimism-corrected ICI/E50/E90/Emax from bootstrap rows (:func:`replicate_row`).

    optimism = mean over replicates of (metric on the bootstrap sample - metric on the original data); corrected =
    apparent - optimism. Calibration errors are smaller on the data a model was fitted to, so the optimism is usually
    negative and the corrected errors larger than the apparent ones. Replicates with NaN are left out (``failed``).
    """
    rows = np.asarray(rows, dtype=float).reshape(-1, 2 * len(METRICS))
    ok = np.all(np.isfinite(rows), axis=1)
    out: dict = {"replicates": int(len(rows)), "failed": int((~ok).sum())}
    for j, name in enumerate(METRICS):
        optimism = float(np.mean(rows[ok, j] - rows[ok, j + len(METRICS)])) if ok.any() else math.nan
        out[name] = {"apparent": apparent[name], "optimism": optimism, "optimism_corrected": apparent[name] - optimism}
    return out


def bootstrap_smoothed_calibration(
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    horizon: float,
    *,
    replicates_count: int,
    seed: int,
    stream: int = 0,
    fit: FitPredictor = cox_predictor,
    n_jobs: int | None = None,
) -> dict:
    """Optimism-corrected smoothed calibration of the model ``fit`` builds from (x, time, event).

    Seeds are ``SeedSequence([seed, stream]).spawn(replicates_count)`` as in ``training.validate.bootstrap``, so with
    the same seed and stream the resamples are those of the validation bootstrap; the result does not depend on
    ``n_jobs`` or the joblib backend.

    Returns
    -------
    dict
        ``{"replicates", "failed", "ici" | "e50" | "e90" | "emax": {"apparent", "optimism", "optimism_corrected"}}``.

    References
    ----------
    Harrell FE Jr, Lee KL, Mark DB. Multivariable prognostic models. Stat Med 1996;15:361-387.
    Austin PC, Harrell FE Jr, van Klaveren D. Stat Med 2020;39:2714-2742.
    """
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    predict = fit(x, time, event, horizon)
    apparent = calibration_metrics(None, time, event, horizon, cumulative_hazard=predict(x))
    import joblib  # here, not at the top: bootstrap workers import this module and should start fast

    seeds = np.random.SeedSequence([seed, stream]).spawn(replicates_count)
    size = max(1, math.ceil(replicates_count / 40))
    chunks = [seeds[i : i + size] for i in range(0, replicates_count, size)]
    parallel = joblib.Parallel(n_jobs=n_jobs)
    rows = parallel(joblib.delayed(replicates)(x, time, event, horizon, chunk, fit) for chunk in chunks)
    return optimism_corrected(apparent, np.vstack(rows) if rows else np.empty((0, 2 * len(METRICS))))
