"""Fit one endpoint's Cox model with scikit-survival and derive what it does not give: Wald tables and risk sets.

scikit-survival gives coefficients but no standard errors. They come from the observed information of the Efron
partial likelihood at the fitted coefficients, computed here in closed form (vectorised; no loop over times),
which is what R's ``coxph`` inverts for ``fit$var``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sksurv.linear_model import CoxPHSurvivalAnalysis

from prognosis import covariates
from prognosis.normal import Z_95

# Newton stops when the relative change of the negative log partial likelihood is below this; at that point the
# quadratic convergence of Newton's method leaves coefficients accurate far beyond the reported precision.
TOLERANCE = 1e-12
MAX_ITERATIONS = 200
# The univariate tables and bootstrap refits use our own Newton-Raphson on the same likelihood (scikit-survival's
# Newton step loops in Python over event times); it stops at this relative change of the log partial likelihood.
NEWTON_TOLERANCE = 1e-10
NEWTON_MAX_ITERATIONS = 40


class FitError(Exception):
    """A model could not be fitted (no events, a term with no variation, no convergence)."""


@dataclass
class CoxFit:
    """A fitted Cox model with its Wald statistics and Breslow risk-set summaries."""

    terms: list[str]
    estimator: CoxPHSurvivalAnalysis | None  # None for the reported-only models of the univariate table
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
        for term, b, s, zz in zip(self.terms, self.coef, se, z):
            rows.append({
                "term": term,
                "coef": float(b),
                "se": float(s),
                "hr": float(np.exp(b)),
                "ci_lower": float(np.exp(b - Z_95 * s)),
                "ci_upper": float(np.exp(b + Z_95 * s)),
                "z": float(zz),
                "p_value": float(2.0 * stats.norm.sf(abs(zz))),
            })
        return rows


def risk_set_sums(x: np.ndarray, time: np.ndarray, event: np.ndarray, w: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct event times, deaths d at each, index of each risk set's first row in time order, and the
    risk-set sums S0 = sum w and S1 = sum w x (reverse cumulative sums over time-sorted rows)."""
    event_times, d = np.unique(time[event], return_counts=True)
    order = np.argsort(time, kind="mergesort")
    rev_w = np.cumsum(w[order][::-1])[::-1]
    rev_xw = np.cumsum((x[order] * w[order][:, None])[::-1], axis=0)[::-1]
    first = np.searchsorted(time[order], event_times, side="left")
    return event_times, d, first, rev_w[first], rev_xw[first]


class EfronLikelihood:
    """The Efron log partial likelihood of one data set, its score and observed information at any beta.

    The data are sorted once and the event-time bookkeeping that does not depend on beta is kept, so repeated
    evaluations (Newton steps, bootstrap refits) cost a few vectorised passes. sum over rows of A2/A0 equals
    sum_k (c_k S2_k - e_k T2_k); S2_k is a risk-set sum, so sum_k c_k S2_k = X' diag(w_j C_j) X with C_j the
    running sum of c_k over event times up to t_j: no (p, p) matrix per event time.
    """

    def __init__(self, x: np.ndarray, time: np.ndarray, event: np.ndarray):
        order = np.argsort(time, kind="stable")
        self.x = np.ascontiguousarray(x[order], dtype=float)
        t = time[order]
        ev = event[order]
        self.event_times, self.d = np.unique(t[ev], return_counts=True)
        self.first = np.searchsorted(t, self.event_times, side="left")
        self.death = np.flatnonzero(ev)  # time order, so each event time's deaths are contiguous
        self.starts = np.cumsum(self.d) - self.d
        self.k_rows = np.repeat(np.arange(len(self.d)), self.d)
        self.phi = (np.arange(self.k_rows.size) - self.starts[self.k_rows]) / self.d[self.k_rows]
        self.xd = self.x[self.death]
        self.xd_sum = self.xd.sum(axis=0)
        self.at_or_before = np.searchsorted(self.event_times, t, side="right")

    def evaluate(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Log partial likelihood, score and observed information (Efron) at ``beta``.

        A trial step far out (monotone likelihood) can underflow a risk-set sum; the result is then non-finite and
        the caller halves the step, so floating-point warnings are expected here and silenced.
        """
        with np.errstate(all="ignore"):
            return self._evaluate(beta)

    def _evaluate(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        x, xd = self.x, self.xd
        eta = x @ beta
        shift = eta.max()  # a common factor cancels from every risk-set ratio; it keeps exp() finite
        w = np.exp(eta - shift)
        rev_w = np.cumsum(w[::-1])[::-1]
        rev_xw = np.cumsum((x * w[:, None])[::-1], axis=0)[::-1]
        s0, s1 = rev_w[self.first], rev_xw[self.first]
        wd = w[self.death]
        t0 = np.add.reduceat(wd, self.starts)
        t1 = np.add.reduceat(xd * wd[:, None], self.starts, axis=0)
        k, phi = self.k_rows, self.phi
        a0 = s0[k] - phi * t0[k]
        mean = (s1[k] - phi[:, None] * t1[k]) / a0[:, None]
        loglik = float(eta[self.death].sum() - (np.log(a0) + shift).sum())
        score = self.xd_sum - mean.sum(axis=0)
        c = np.bincount(k, weights=1.0 / a0, minlength=len(self.d))
        e = np.bincount(k, weights=phi / a0, minlength=len(self.d))
        c_j = np.concatenate([[0.0], np.cumsum(c)])[self.at_or_before]
        info = (x * (w * c_j)[:, None]).T @ x
        info -= (xd * (wd * e[self.k_rows])[:, None]).T @ xd
        info -= mean.T @ mean
        return loglik, score, info


def efron_information(x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray
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
    return EfronLikelihood(np.asarray(x, dtype=float), np.asarray(time, dtype=float),
                           np.asarray(event, dtype=bool)).evaluate(np.asarray(beta, dtype=float))


def fit_coefficients(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Maximum partial-likelihood coefficients of a Cox model with Efron ties (Newton-Raphson, step halving).

    A column without variation (possible in a bootstrap sample) gets coefficient 0, as a term R's ``coxph``
    reports as NA contributes nothing to predictions. Under monotone likelihood (a level without events) the
    coefficient drifts until the likelihood stops changing, as in ``coxph``; rankings and slopes are then stable.

    Parameters
    ----------
    x : ndarray, shape (n, p)
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)

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
    data = EfronLikelihood(x[:, keep], np.asarray(time, dtype=float), event)
    beta = np.zeros(int(keep.sum()))
    loglik, score, info = data.evaluate(beta)
    for _ in range(NEWTON_MAX_ITERATIONS):
        try:
            step = np.linalg.solve(info, score)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(info, score, rcond=None)[0]
        for _ in range(30):  # step halving keeps every iteration an ascent
            new = beta + step
            new_loglik, new_score, new_info = data.evaluate(new)
            if np.isfinite(new_loglik) and new_loglik >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2
        else:
            break
        converged = abs(new_loglik - loglik) <= NEWTON_TOLERANCE * (abs(loglik) + 1.0)
        beta, loglik, score, info = new, new_loglik, new_score, new_info
        if converged:
            break
    if not np.all(np.isfinite(beta)):
        return out
    out[:] = 0.0
    out[keep] = beta
    return out


def breslow_risk_sets(x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray) -> dict[str, np.ndarray]:
    """Cumulative Breslow quantities at each distinct event time, all the scoring needs for curves and intervals.

    With S0 the risk-set sum of exp(x'beta) and xbar the risk-weighted mean covariate at each event time t_i, returns
    ``event_times``, ``events`` (d_i), ``at_risk``, ``cum_hazard`` (sum d/S0), ``cum_var_hazard`` (sum d/S0^2) and
    ``cum_xbar_hazard`` (sum xbar d/S0, shape (k, p)), as in Therneau & Grambsch (2000) section 10.2.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    event_times, d, first, s0, s1 = risk_set_sums(x, time, event, np.exp(x @ beta))
    xbar = s1 / s0[:, None]
    hazard = d / s0
    return {
        "event_times": event_times,
        "events": d,
        "at_risk": (len(time) - first),
        "cum_hazard": np.cumsum(hazard),
        "cum_var_hazard": np.cumsum(d / s0**2),
        "cum_xbar_hazard": np.cumsum(xbar * hazard[:, None], axis=0),
    }


def _check_fittable(x: np.ndarray, event: np.ndarray, terms: list[str]) -> None:
    if event.sum() == 0:
        raise FitError("no events: a Cox model cannot be fitted")
    constant = [t for t, col in zip(terms, x.T) if np.ptp(col) == 0]
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


def fit_cox(x: np.ndarray, time: np.ndarray, event: np.ndarray, terms: list[str]) -> CoxFit:
    """Fit a Cox model (Efron ties) with scikit-survival; covariance from the observed information."""
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    _check_fittable(x, event, terms)
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    estimator = CoxPHSurvivalAnalysis(ties="efron", n_iter=MAX_ITERATIONS, tol=TOLERANCE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            estimator.fit(x, y)
        except (ConvergenceWarning, ValueError, np.linalg.LinAlgError) as exc:
            raise FitError(f"the Cox model did not converge ({exc}); check for terms without events") from exc
    loglik, _, information = efron_information(x, time, event, estimator.coef_)
    return CoxFit(terms=list(terms), estimator=estimator, coef=np.asarray(estimator.coef_, dtype=float),
                  covariance=_covariance(information), n=len(time), events=int(event.sum()), loglik=loglik)


def wald_table(x: np.ndarray, time: np.ndarray, event: np.ndarray, terms: list[str],
               variance_scale: float = 1.0) -> list[dict]:
    """The Wald table of a model that is reported but not served (the univariate rows): fitted by
    :func:`fit_coefficients` on the same likelihood, which is many times faster than scikit-survival.
    ``variance_scale`` multiplies the covariance (see :meth:`CoxFit.scaled`)."""
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    _check_fittable(x, event, terms)
    coef = fit_coefficients(x, time, event)
    if not np.all(np.isfinite(coef)):
        raise FitError(f"the model of {', '.join(terms)} did not converge; check for levels without events")
    loglik, _, information = efron_information(x, time, event, coef)
    return CoxFit(terms=list(terms), estimator=None, coef=coef, covariance=_covariance(information) * variance_scale,
                  n=len(time), events=int(event.sum()), loglik=loglik).table()


def univariate_groups(optional: tuple[str, ...]) -> list[list[str]]:
    """Term groups fitted alone for the univariate table.

    Each variable alone (a categorical variable's indicators together); grade and modality as one 9-level factor
    with grade 1 treated with TACE as reference, as in the seed's Table 1.
    """
    groups = [covariates.covariate_terms(covariates.BY_NAME[name]) for name in covariates.REQUIRED]
    groups += [covariates.covariate_terms(covariates.BY_NAME[name]) for name in optional]
    modality, within = covariates.MODALITY, covariates.MODALITY_WITHIN
    grade_by_modality = [f"{modality.name}[{m}]:{within.name}[{g}]" for g in within.levels for m in modality.levels
                         if (g, m) != (within.reference, modality.reference)]
    groups.append(grade_by_modality)
    return groups


def fit_endpoint(frame: pd.DataFrame, optional: tuple[str, ...], progress=None, variance_scale: float = 1.0) -> dict:
    """Fit the multivariate model and the univariate models of one endpoint.

    ``frame`` has the covariate columns (canonical levels), ``modality``, ``time`` and ``event``.
    ``variance_scale`` multiplies every variance (coefficient covariances of both tables and the baseline-hazard
    variance of the risk sets): a synthetic registry of N rows standing for a study of M patients is fitted with
    N / M, so that its uncertainty is the study's (1 for real data).
    Returns ``{"fit": CoxFit, "multivariate": rows, "univariate": rows, "risk_sets": arrays}``.
    """
    terms = covariates.term_ids(optional)
    time = frame["time"].to_numpy(dtype=float)
    event = frame["event"].to_numpy(dtype=bool)
    x = covariates.design_matrix(frame, terms)
    fit = fit_cox(x, time, event, terms).scaled(variance_scale)
    if progress:
        progress("multivariate model")
    univariate = []
    for group in univariate_groups(optional):
        univariate += wald_table(covariates.design_matrix(frame, group), time, event, group, variance_scale)
        if progress:
            progress(f"univariate {group[0].split('[')[0]}")
    risk_sets = breslow_risk_sets(x, time, event, fit.coef)
    risk_sets["cum_var_hazard"] = risk_sets["cum_var_hazard"] * variance_scale
    return {
        "fit": fit,
        "multivariate": fit.table(),
        "univariate": univariate,
        "risk_sets": risk_sets,
    }
