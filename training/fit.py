"""Fit one endpoint's Cox model (Efron ties) and derive its Wald tables and risk sets.

The fit is the project's own Newton-Raphson on the Efron partial likelihood (:class:`EfronLikelihood`), exact and
vectorised: one sort of the times per endpoint serves the multivariate model and every univariate model, the design
is built once per distinct covariate pattern, and a Newton step works on counts of rows per pattern and stretch of
the time axis, so its cost does not grow with the number of rows. Standard errors come from the observed
information at the fitted coefficients, which is what R's ``coxph`` inverts for ``fit$var``. scikit-survival's
``CoxPHSurvivalAnalysis`` is the independent check in the tests, and fits the optional ``.sksurv.joblib`` export
(``export_sksurv``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from prognosis import covariates
from prognosis.normal import Z_95

# The multivariate model (fit_cox) stops when the relative change of the log partial likelihood,
# |l_new - l_old| / (|l_old| + 1), is below this; Newton's quadratic convergence then leaves the coefficients
# accurate far beyond the reported precision. The same criterion scikit-survival's fit used (its ``tol``).
TOLERANCE = 1e-12
MAX_ITERATIONS = 200
# fit_coefficients (the bootstrap refits of training.validate, calibration slopes, imputation) stops at this
# relative change of the log partial likelihood, a looser criterion that is still far below any reported digit.
NEWTON_TOLERANCE = 1e-10
NEWTON_MAX_ITERATIONS = 40
# The exported scikit-survival estimator must give the served coefficients to this (absolute or relative).
EXPORT_AGREEMENT = 1e-6
# Counts of rows per (segment of the time axis, covariate pattern) are kept as a dense matrix up to this many cells
# (the univariate models: a few patterns), as a sparse one beyond (the multivariate model: thousands of patterns).
DENSE_COUNTS = 500_000


class FitError(Exception):
    """A model could not be fitted (no events, a term with no variation, no convergence)."""


@dataclass
class CoxFit:
    """A fitted Cox model with its Wald statistics and Breslow risk-set summaries."""

    terms: list[str]
    # scikit-survival's CoxPHSurvivalAnalysis fitted on the same data, only when asked for (``export_sksurv``): the
    # data scientists' export. None otherwise, and for the reported-only models of the univariate table.
    estimator: Any | None
    coef: np.ndarray
    covariance: np.ndarray
    n: int
    events: int
    loglik: float

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

    def scaled(self, variance_scale: float) -> CoxFit:
        """The same fit with its covariance multiplied by ``variance_scale`` (as case weights 1/variance_scale
        would give: coefficients unchanged, correlations kept)."""
        return replace(self, covariance=self.covariance * variance_scale)

    def table(self) -> list[dict]:
        """Rows of (term, coef, se, hr, Wald 95% CI, Wald p), as R ``summary.coxph`` prints them."""
        se = self.se
        z = self.coef / se
        rows = []
        for term, b, s, zz in zip(self.terms, self.coef, se, z, strict=True):
            rows.append(
                {
                    "term": term,
                    "coef": float(b),
                    "se": float(s),
                    "hr": float(np.exp(b)),
                    "ci_lower": float(np.exp(b - Z_95 * s)),
                    "ci_upper": float(np.exp(b + Z_95 * s)),
                    "z": float(zz),
                    "p_value": float(2.0 * stats.norm.sf(abs(zz))),
                }
            )
        return rows


class EventTimes:
    """The sort and the event-time bookkeeping of one (time, event): all of the Efron likelihood that depends on
    neither the covariates nor beta, so the fits of one endpoint share it.

    Rows in time order fall into segments, segment k holding the rows with t_k <= t < t_(k+1) (t_k the distinct
    event times; rows before t_1 are in no risk set and in no segment): a risk-set sum at t_k is the sum of the
    segment sums from k on.
    """

    def __init__(self, time: np.ndarray, event: np.ndarray):
        time = np.asarray(time, dtype=float)
        event = np.asarray(event, dtype=bool)
        self.order = np.argsort(time, kind="stable")
        t = time[self.order]
        ev = event[self.order]
        self.n = len(t)
        te = t[ev]  # sorted: the distinct event times start where the time changes
        new = np.flatnonzero(np.concatenate([[True], te[1:] != te[:-1]])) if te.size else np.zeros(0, dtype=np.intp)
        self.event_times, self.d = te[new], np.diff(np.append(new, te.size))
        self.first = np.searchsorted(t, self.event_times, side="left")  # each risk set's first row in time order
        self.death = np.flatnonzero(ev)  # time order, so each event time's deaths are contiguous
        self.starts = np.cumsum(self.d) - self.d
        self.k_rows = np.repeat(np.arange(len(self.d)), self.d)
        # Efron: the l-th of d tied deaths (l = 0..d-1) sees the risk set less l/d of the tied deaths.
        self.phi = (np.arange(self.k_rows.size) - self.starts[self.k_rows]) / self.d[self.k_rows]
        self.at_or_before = np.searchsorted(self.event_times, t, side="right")  # event times t_k <= t_j
        self.segment = self.at_or_before - 1  # -1: before the first event time

    def counts(self, rows: np.ndarray, n_patterns: int) -> tuple[Any, Any]:
        """(K x n_patterns) counts of the rows per segment and pattern (``rows[j]``: data row j's pattern, in the
        data's order), and of the deaths per event time and pattern; dense when small, sparse otherwise."""
        pattern = np.asarray(rows)[self.order]
        inside = self.segment >= 0
        kk = len(self.d)
        if kk * n_patterns <= DENSE_COUNTS:
            cells = np.bincount(self.segment[inside] * n_patterns + pattern[inside], minlength=kk * n_patterns)
            deaths = np.bincount(self.k_rows * n_patterns + pattern[self.death], minlength=kk * n_patterns)
            return (cells.reshape(kk, n_patterns).astype(float), deaths.reshape(kk, n_patterns).astype(float))
        shape = (kk, n_patterns)
        count = sparse.csr_matrix((np.ones(int(inside.sum())), (self.segment[inside], pattern[inside])), shape=shape)
        dcount = sparse.csr_matrix((np.ones(self.death.size), (self.k_rows, pattern[self.death])), shape=shape)
        return count, dcount


_DIRECTION = np.random.default_rng(20170101).standard_normal(256)


def distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``x`` (any order) and each row's index among them: ``unique[inverse]`` equals ``x``.

    Rows are told apart by a random projection and the result is verified, so it is exact; should the check fail
    (a NaN, or two rows projecting alike) every row is its own pattern.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    if n == 0:
        return x.copy(), np.zeros(0, dtype=np.intp)
    p = x.shape[1]
    direction = _DIRECTION[:p] if p <= _DIRECTION.size else np.random.default_rng(20170101).standard_normal(p)
    projection = x @ direction
    _, first, inverse = np.unique(projection, return_index=True, return_inverse=True)
    unique = x[first]
    if not np.array_equal(unique[inverse], x):
        return x.copy(), np.arange(n)
    return unique, inverse


class EfronLikelihood:
    """The Efron log partial likelihood of one data set, its score and observed information at any beta.

    Everything that does not depend on beta is computed once: the sort and event-time bookkeeping
    (:class:`EventTimes`, shareable between fits of the same times), the distinct covariate patterns (rows of the
    design; a few thousand at most for indicator terms) and how many rows of each pattern every segment of the time
    axis holds and how many of them die at each event time. Since exp(x'beta) is the same for all rows of a
    pattern, each risk-set sum S0, S1 and tied-death sum T0, T1 is a product of those counts with the patterns'
    weights, and X' diag(u) X (below) a sum over patterns: a Newton step costs O(patterns x segments) sparse work
    and O(deaths) scalar work, independent of the number of rows.

    With a0 = S0 - phi T0 for each death, the information is sum_j u_j x_j x_j' minus the sum over deaths of the
    outer products of the Efron means (S1 - phi T1) / a0: the former has u_j = w_j (sum of c_k over t_k <= t_j)
    less w_j e_k at a death (c, e per event time below), the latter reduces to sums over event times (alpha, beta,
    gamma below): no (p, p) matrix per event time or per death.

    ``rows`` (optional): ``x`` then holds one row per covariate pattern and ``rows[j]`` is data row j's pattern.
    """

    def __init__(
        self,
        x: np.ndarray,
        time: np.ndarray,
        event: np.ndarray,
        *,
        events: EventTimes | None = None,
        rows: np.ndarray | None = None,
    ):
        events = events if events is not None else EventTimes(time, event)
        self.events = events
        self.event_times, self.d, self.first = events.event_times, events.d, events.first
        self.death, self.starts, self.k_rows, self.phi = events.death, events.starts, events.k_rows, events.phi
        self.at_or_before = events.at_or_before
        unique, inverse = distinct_rows(x)
        self.patterns = unique
        self.rows = inverse if rows is None else inverse[np.asarray(rows)]
        self.count, self.dcount = events.counts(self.rows, len(unique))
        self.death_counts = np.asarray(self.dcount.sum(axis=0)).ravel()
        self.xd_sum = self.death_counts @ unique

    @property
    def x(self) -> np.ndarray:
        """The design in time order."""
        return self.patterns[self.rows[self.events.order]]

    @property
    def xd(self) -> np.ndarray:
        """The deaths' rows of the design, in time order."""
        return self.patterns[self.rows[self.events.order][self.death]]

    def evaluate(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Log partial likelihood, score and observed information (Efron) at ``beta``.

        A trial step far out (monotone likelihood) can underflow a risk-set sum; the result is then non-finite and
        the caller halves the step, so floating-point warnings are expected here and silenced.
        """
        with np.errstate(all="ignore"):
            state = self._state(np.asarray(beta, dtype=float))
            return (state["loglik"], *self._derivatives(state))

    def loglik(self, beta: np.ndarray) -> float:
        """The log partial likelihood alone."""
        with np.errstate(all="ignore"):
            return self._state(np.asarray(beta, dtype=float))["loglik"]

    def risk_set_sums(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """S0 = sum exp(x'beta) and S1 = sum exp(x'beta) x over each event time's risk set (not rescaled)."""
        weighted = np.exp(self.patterns @ beta)[:, None] * np.column_stack([np.ones(len(self.patterns)), self.patterns])
        sums = np.cumsum((self.count @ weighted)[::-1], axis=0)[::-1]
        return sums[:, 0], sums[:, 1:]

    def _state(self, beta: np.ndarray) -> dict:
        eta = self.patterns @ beta
        shift = eta.max()  # a common factor cancels from every risk-set ratio; it keeps exp() finite
        w = np.exp(eta - shift)
        s0 = np.cumsum((self.count @ w)[::-1])[::-1]
        t0 = self.dcount @ w
        a0 = s0[self.k_rows] - self.phi * t0[self.k_rows]
        loglik = float(self.death_counts @ eta - (np.log(a0) + shift).sum())
        return {"w": w, "a0": a0, "loglik": loglik}

    def _derivatives(self, state: dict) -> tuple[np.ndarray, np.ndarray]:
        w, a0, x = state["w"], state["a0"], self.patterns
        wx = w[:, None] * x
        s1 = np.cumsum((self.count @ wx)[::-1], axis=0)[::-1]
        t1 = self.dcount @ wx
        # Per event time (deaths are contiguous): c = sum 1/a0, e = sum phi/a0, alpha, beta, gamma = sum 1, phi,
        # phi^2 over a0^2.
        inv = 1.0 / a0
        phi_inv = self.phi * inv
        inv2 = inv * inv
        phi_inv2 = phi_inv * inv
        c, e, alpha = (np.add.reduceat(v, self.starts) for v in (inv, phi_inv, inv2))
        beta, gamma = (np.add.reduceat(v, self.starts) for v in (phi_inv2, self.phi * phi_inv2))
        alpha, beta, gamma = alpha[:, None], beta[:, None], gamma[:, None]
        score = self.xd_sum - (c @ s1 - e @ t1)
        # The sum over deaths of mean mean', mean = (S1 - phi T1) / a0, grouped by event time.
        means = s1.T @ (alpha * s1 - beta * t1) + t1.T @ (gamma * t1 - beta * s1)
        # X' diag(u) X as a sum over patterns; u >= 0 (c_k > e_k), so it is Y'Y with Y = sqrt(u) X (BLAS syrk).
        u = w * (self.count.T @ np.cumsum(c) - self.dcount.T @ e)
        y = x * np.sqrt(np.maximum(u, 0.0))[:, None]
        info = y.T @ y
        info -= (means + means.T) / 2
        return score, info


def risk_set_sums(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct event times, deaths d at each, index of each risk set's first row in time order, and the
    risk-set sums S0 = sum w and S1 = sum w x (reverse cumulative sums over time-sorted rows)."""
    x = np.asarray(x, dtype=float)
    w = np.asarray(w, dtype=float)
    events = EventTimes(time, event)
    if not len(events.d):
        return events.event_times, events.d, events.first, np.zeros(0), np.zeros((0, x.shape[1]))
    f0 = int(events.first[0])
    ws = w[events.order][f0:]
    sums = np.add.reduceat(np.column_stack([ws, x[events.order][f0:] * ws[:, None]]), events.first - f0, axis=0)
    sums = np.cumsum(sums[::-1], axis=0)[::-1]
    return events.event_times, events.d, events.first, sums[:, 0], sums[:, 1:]


def efron_information(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood, score and observed information of a Cox model with Efron ties.

    Parameters
    ----------
    x : ndarray, shape (n, p)
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)
    beta : ndarray, shape (p,)

    Returns
    -------
    loglik : float
    score : ndarray, shape (p,)
    information : ndarray, shape (p, p)
        Minus the Hessian of the log partial likelihood.

    References
    ----------
    Efron B. The efficiency of Cox's likelihood function for censored data. JASA 1977;72:557-565.
    Therneau TM, Grambsch PM. Modeling Survival Data. Springer 2000, section 3.3.
    """
    return EfronLikelihood(
        np.asarray(x, dtype=float), np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
    ).evaluate(np.asarray(beta, dtype=float))


@dataclass
class _Newton:
    beta: np.ndarray
    loglik: float
    score: np.ndarray
    information: np.ndarray
    converged: bool


def _newton(data: EfronLikelihood, p: int, tolerance: float, max_iterations: int) -> _Newton:
    """Newton-Raphson from beta = 0 with step halving (every iteration an ascent), until the relative change of the
    log partial likelihood |l_new - l_old| <= tolerance (|l_old| + 1); the result carries the score and information
    at the returned beta."""
    beta = np.zeros(p)
    loglik, score, info = data.evaluate(beta)
    converged = False
    for _ in range(max_iterations):
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(info, score, rcond=None)[0]
        for _ in range(30):  # step halving keeps every iteration an ascent; trial steps need the likelihood only
            new = beta + step
            with np.errstate(all="ignore"):  # see EfronLikelihood.evaluate
                state = data._state(new)
                if np.isfinite(state["loglik"]) and state["loglik"] >= loglik - 1e-12 * abs(loglik):
                    new_score, new_info = data._derivatives(state)
                    break
            step = step / 2
        else:
            break
        converged = abs(state["loglik"] - loglik) <= tolerance * (abs(loglik) + 1.0)
        beta, loglik, score, info = new, state["loglik"], new_score, new_info
        if converged:
            break
    return _Newton(beta, loglik, score, info, converged)


def fit_coefficients(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, *, events: EventTimes | None = None
) -> np.ndarray:
    """Maximum partial-likelihood coefficients of a Cox model with Efron ties (Newton-Raphson, step halving).

    A column without variation (possible in a bootstrap sample) gets coefficient 0, as a term R's ``coxph``
    reports as NA contributes nothing to predictions. Under monotone likelihood (a level without events) the
    coefficient drifts until the likelihood stops changing, as in ``coxph``; rankings and slopes are then stable.

    Parameters
    ----------
    x : ndarray, shape (n, p)
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)
    events : EventTimes, optional
        The bookkeeping of the same ``time`` and ``event``, shared with other fits of them.

    Returns
    -------
    ndarray, shape (p,)
        NaN everywhere if the fit failed (no events, or a non-finite step).

    References
    ----------
    Therneau TM, Grambsch PM. Modeling Survival Data. Springer 2000, section 3.3 (Newton-Raphson for the Cox
    model; Efron approximation).
    """
    x = np.asarray(x, dtype=float)
    event = np.asarray(event, dtype=bool)
    p = x.shape[1]
    out = np.full(p, np.nan)
    if not event.any():
        return out
    keep = np.ptp(x, axis=0) > 0
    data = EfronLikelihood(x[:, keep], np.asarray(time, dtype=float), event, events=events)
    beta = _newton(data, int(keep.sum()), NEWTON_TOLERANCE, NEWTON_MAX_ITERATIONS).beta
    if not np.all(np.isfinite(beta)):
        return out
    out[:] = 0.0
    out[keep] = beta
    return out


def breslow_risk_sets(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, *, events: EventTimes | None = None
) -> dict[str, np.ndarray]:
    """Cumulative Breslow quantities at each distinct event time, all the scoring needs for curves and intervals.

    With S0 the risk-set sum of exp(x'beta) and xbar the risk-weighted mean covariate at each event time t_i, returns
    ``event_times``, ``events`` (d_i), ``at_risk``, ``cum_hazard`` (sum d/S0), ``cum_var_hazard`` (sum d/S0^2) and
    ``cum_xbar_hazard`` (sum xbar d/S0, shape (k, p)), as in Therneau & Grambsch (2000) section 10.2.
    """
    data = EfronLikelihood(
        np.asarray(x, dtype=float), np.asarray(time, dtype=float), np.asarray(event, dtype=bool), events=events
    )
    return _breslow(data, np.asarray(beta, dtype=float))


def _breslow(data: EfronLikelihood, beta: np.ndarray) -> dict[str, np.ndarray]:
    s0, s1 = data.risk_set_sums(beta)
    d = data.d
    xbar = s1 / s0[:, None]
    hazard = d / s0
    return {
        "event_times": data.event_times,
        "events": d,
        "at_risk": (data.events.n - data.first),
        "cum_hazard": np.cumsum(hazard),
        "cum_var_hazard": np.cumsum(d / s0**2),
        "cum_xbar_hazard": np.cumsum(xbar * hazard[:, None], axis=0),
    }


def _check_fittable(x: np.ndarray, event: np.ndarray, terms: list[str]) -> None:
    if event.sum() == 0:
        raise FitError("no events: a Cox model cannot be fitted")
    constant = [t for t, col in zip(terms, x.T, strict=True) if np.ptp(col) == 0]
    if constant:
        raise FitError(f"no patients differ in term(s) {', '.join(constant)}: each level needs patients")


def _covariance(information: np.ndarray) -> np.ndarray:
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError as exc:
        raise FitError("the information matrix is singular: some terms are not estimable") from exc
    if not np.all(np.isfinite(covariance)) or np.any(np.diag(covariance) <= 0):
        raise FitError("the information matrix is not positive definite: some terms are not estimable")
    return covariance


def _fit(data: EfronLikelihood, terms: list[str], event: np.ndarray, tolerance: float, max_iterations: int) -> CoxFit:
    """Newton on the Efron likelihood; the covariance is the inverse information at the returned coefficients."""
    _check_fittable(data.patterns, event, terms)  # every pattern is some row's: a constant column is constant
    result = _newton(data, data.patterns.shape[1], tolerance, max_iterations)
    if not (result.converged and np.all(np.isfinite(result.beta)) and np.isfinite(result.loglik)):
        raise FitError(f"the Cox model of {', '.join(terms)} did not converge; check for levels without events")
    return CoxFit(
        terms=list(terms),
        estimator=None,
        coef=result.beta,
        covariance=_covariance(result.information),
        n=len(event),
        events=int(event.sum()),
        loglik=result.loglik,
    )


def sksurv_estimator(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> Any:
    """scikit-survival's ``CoxPHSurvivalAnalysis(ties="efron")`` fitted on the data (slow: its Newton step loops in
    Python over event times); for the export and as the independent check of the tests."""
    from sklearn.exceptions import ConvergenceWarning
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    estimator = CoxPHSurvivalAnalysis(ties="efron", n_iter=MAX_ITERATIONS, tol=TOLERANCE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            estimator.fit(np.asarray(x, dtype=float), y)
        except (ConvergenceWarning, ValueError, np.linalg.LinAlgError) as exc:
            raise FitError(f"scikit-survival's Cox model did not converge ({exc})") from exc
    return estimator


def fit_cox(
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    terms: list[str],
    *,
    export_sksurv: bool = False,
    events: EventTimes | None = None,
    tolerance: float = TOLERANCE,
) -> CoxFit:
    """Fit a Cox model (Efron ties) by Newton-Raphson to ``tolerance``; covariance from the observed
    information. ``export_sksurv`` also fits scikit-survival's estimator (``CoxFit.estimator``) and refuses one
    whose coefficients differ from ours by more than :data:`EXPORT_AGREEMENT`."""
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if event.sum() == 0:
        raise FitError("no events: a Cox model cannot be fitted")
    fit = _fit(EfronLikelihood(x, time, event, events=events), terms, event, tolerance, MAX_ITERATIONS)
    return _with_export(fit, x, time, event) if export_sksurv else fit


def _with_export(fit: CoxFit, x: np.ndarray, time: np.ndarray, event: np.ndarray) -> CoxFit:
    """The fit with scikit-survival's estimator of the same model, refused unless its coefficients are ours."""
    estimator = sksurv_estimator(x, time, event)
    if not np.allclose(estimator.coef_, fit.coef, rtol=EXPORT_AGREEMENT, atol=EXPORT_AGREEMENT):
        raise FitError(
            "scikit-survival's coefficients differ from the fitted ones by more than "
            f"{EXPORT_AGREEMENT:g}; the export would not be the served model"
        )
    return replace(fit, estimator=estimator)


def wald_table(
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    terms: list[str],
    variance_scale: float = 1.0,
    *,
    events: EventTimes | None = None,
) -> list[dict]:
    """The Wald table of a model that is reported but not served (the univariate rows): the same Newton on the same
    likelihood as :func:`fit_cox`, to :data:`NEWTON_TOLERANCE`. ``variance_scale`` multiplies the covariance (see
    :meth:`CoxFit.scaled`)."""
    fit = fit_cox(x, time, event, terms, events=events, tolerance=NEWTON_TOLERANCE)
    return fit.scaled(variance_scale).table()


def univariate_groups(optional: tuple[str, ...]) -> list[list[str]]:
    """Term groups fitted alone for the univariate table.

    Each variable alone (a categorical variable's indicators together); grade and modality as one 9-level factor
    with grade 1 treated with TACE as reference, as in the seed's Table 1.
    """
    groups = [covariates.covariate_terms(covariates.BY_NAME[name]) for name in covariates.REQUIRED]
    groups += [covariates.covariate_terms(covariates.BY_NAME[name]) for name in optional]
    modality, within = covariates.MODALITY, covariates.MODALITY_WITHIN
    grade_by_modality = [
        f"{modality.name}[{m}]:{within.name}[{g}]"
        for g in within.levels
        for m in modality.levels
        if (g, m) != (within.reference, modality.reference)
    ]
    groups.append(grade_by_modality)
    return groups


def covariate_patterns(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One row index per distinct combination of the covariate (and modality) values of ``frame`` (``index``), and
    each row's combination (``rows``): a row's terms depend on that row's values only, so
    ``design_matrix(frame.iloc[index], terms)[rows]`` is ``design_matrix(frame, terms)``, without comparing every
    row's strings once per term. Missing values (NaN, None) form one value of their own."""
    names = [c for c in frame.columns if c in covariates.BY_NAME or c == covariates.MODALITY.name]
    key, size = np.zeros(len(frame), dtype=np.int64), 1
    for name in names:  # mixed-radix key of the columns' codes (0 for a missing value), renumbered before overflow
        codes, levels = pd.factorize(frame[name].to_numpy())
        if size * (len(levels) + 1) >= 2**62:
            key = pd.factorize(key)[0]
            size = int(key.max()) + 1
        key = key * (len(levels) + 1) + (codes + 1)
        size *= len(levels) + 1
    key = pd.factorize(key)[0]
    representative = np.empty(int(key.max()) + 1 if len(key) else 0, dtype=np.intp)
    representative[key] = np.arange(len(key))  # any row of a combination stands for it: they are equal
    return representative, key.astype(np.intp)


def fit_endpoint(
    frame: pd.DataFrame,
    optional: tuple[str, ...],
    progress: Callable[[str], None] | None = None,
    variance_scale: float = 1.0,
    *,
    export_sksurv: bool = False,
) -> dict:
    """Fit the multivariate model and the univariate models of one endpoint.

    ``frame`` has the covariate columns (canonical levels), ``modality``, ``time`` and ``event``.
    ``variance_scale`` multiplies every variance (coefficient covariances of both tables and the baseline-hazard
    variance of the risk sets): a synthetic registry of N rows standing for a study of M patients is fitted with
    N / M, so that its uncertainty is the study's (1 for real data). ``export_sksurv`` also fits scikit-survival's
    estimator of the multivariate model (``fit.estimator``), for the artifact's export.
    Returns ``{"fit": CoxFit, "multivariate": rows, "univariate": rows, "risk_sets": arrays}``.
    """
    terms = covariates.term_ids(optional)
    groups = univariate_groups(optional)
    time = frame["time"].to_numpy(dtype=float)
    event = frame["event"].to_numpy(dtype=bool)
    if event.sum() == 0:
        raise FitError("no events: a Cox model cannot be fitted")
    # Every term of both tables for each distinct covariate combination, and one sort of the times, for all fits.
    every_term = list(dict.fromkeys(terms + [t for group in groups for t in group]))
    column = {t: i for i, t in enumerate(every_term)}
    first, rows = covariate_patterns(frame)
    patterns = covariates.design_matrix(frame.iloc[first], every_term)
    events = EventTimes(time, event)

    def likelihood(group: list[str]) -> EfronLikelihood:
        return EfronLikelihood(patterns[:, [column[t] for t in group]], time, event, events=events, rows=rows)

    data = likelihood(terms)
    fit = _fit(data, terms, event, TOLERANCE, MAX_ITERATIONS)
    if export_sksurv:
        fit = _with_export(fit, data.patterns[data.rows], time, event)
    fit = fit.scaled(variance_scale)
    if progress:
        progress("multivariate model")
    univariate = []
    for group in groups:
        univariate += (
            _fit(likelihood(group), group, event, NEWTON_TOLERANCE, MAX_ITERATIONS).scaled(variance_scale).table()
        )
        if progress:
            progress(f"univariate {group[0].split('[')[0]}")
    risk_sets = _breslow(data, fit.coef)
    risk_sets["cum_var_hazard"] = risk_sets["cum_var_hazard"] * variance_scale
    return {
        "fit": fit,
        "multivariate": fit.table(),
        "univariate": univariate,
        "risk_sets": risk_sets,
    }
