"""Fit one endpoint's Cox model with scikit-survival and derive what it does not give: Wald tables and risk sets.

scikit-survival gives coefficients but no standard errors. They come from the observed information of the Efron
partial likelihood at the fitted coefficients, computed here in closed form (vectorised; no loop over times),
which is what R's ``coxph`` inverts for ``fit$var``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sksurv.linear_model import CoxPHSurvivalAnalysis

from calculator import covariates

Z_975 = stats.norm.ppf(0.975)
# Newton stops when the relative change of the negative log partial likelihood is below this; at that point the
# quadratic convergence of Newton's method leaves coefficients accurate far beyond the reported precision.
TOLERANCE = 1e-12
MAX_ITERATIONS = 200


class FitError(Exception):
    """A model could not be fitted (no events, a term with no variation, no convergence)."""


@dataclass
class CoxFit:
    """A fitted Cox model with its Wald statistics and Breslow risk-set summaries."""

    terms: list[str]
    estimator: CoxPHSurvivalAnalysis
    coef: np.ndarray
    covariance: np.ndarray
    n: int
    events: int
    loglik: float

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance))

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
                "ci_lower": float(np.exp(b - Z_975 * s)),
                "ci_upper": float(np.exp(b + Z_975 * s)),
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
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    eta = x @ beta
    w = np.exp(eta)

    event_times, d, _, s0, s1 = risk_set_sums(x, time, event, w)

    # Tied-death sums T0, T1 at each event time.
    k_of_death = np.searchsorted(event_times, time[event])
    t0 = np.bincount(k_of_death, weights=w[event], minlength=len(event_times))
    t1 = np.zeros_like(s1)
    np.add.at(t1, k_of_death, x[event] * w[event][:, None])

    # One row per death: Efron's l/d down-weighting of the tied deaths.
    k_rows = np.repeat(np.arange(len(event_times)), d)
    start = np.repeat(np.cumsum(d) - d, d)
    phi = (np.arange(k_rows.size) - start) / d[k_rows]
    a0 = s0[k_rows] - phi * t0[k_rows]
    a1 = s1[k_rows] - phi[:, None] * t1[k_rows]
    mean = a1 / a0[:, None]

    loglik = float(eta[event].sum() - np.log(a0).sum())
    score = x[event].sum(axis=0) - mean.sum(axis=0)

    # sum over rows of A2/A0 = sum_k (c_k S2_k - e_k T2_k); S2_k is a risk-set sum, so sum_k c_k S2_k equals
    # X' diag(w_j * C_j) X with C_j the running sum of c_k over event times up to t_j.
    c = np.bincount(k_rows, weights=1.0 / a0, minlength=len(event_times))
    e = np.bincount(k_rows, weights=phi / a0, minlength=len(event_times))
    c_cum = np.concatenate([[0.0], np.cumsum(c)])
    c_j = c_cum[np.searchsorted(event_times, time, side="right")]
    xd = x[event]
    information = (x * (w * c_j)[:, None]).T @ x
    information -= (xd * (w[event] * e[k_of_death])[:, None]).T @ xd
    information -= mean.T @ mean
    return loglik, score, information


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


def fit_cox(x: np.ndarray, time: np.ndarray, event: np.ndarray, terms: list[str]) -> CoxFit:
    """Fit a Cox model (Efron ties) with scikit-survival; covariance from the observed information."""
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if event.sum() == 0:
        raise FitError("no events: a Cox model cannot be fitted")
    constant = [t for t, col in zip(terms, x.T) if np.ptp(col) == 0]
    if constant:
        raise FitError(f"no patients differ in term(s) {', '.join(constant)}: each level needs patients")
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
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError as exc:
        raise FitError("the information matrix is singular: some terms are not estimable") from exc
    if not np.all(np.isfinite(covariance)) or np.any(np.diag(covariance) <= 0):
        raise FitError("the information matrix is not positive definite: some terms are not estimable")
    return CoxFit(terms=list(terms), estimator=estimator, coef=np.asarray(estimator.coef_, dtype=float),
                  covariance=covariance, n=len(time), events=int(event.sum()), loglik=loglik)


def univariate_groups(optional: tuple[str, ...]) -> list[list[str]]:
    """Term groups fitted alone for the univariate table.

    Each variable alone (a categorical variable's indicators together); grade and modality as one 9-level factor
    with grade 1 treated with TACE as reference, as in the seed's Table 1.
    """
    groups = [covariates.covariate_terms(covariates.WHO_GRADE), covariates.covariate_terms(covariates.TUMOR_BURDEN),
              covariates.covariate_terms(covariates.PRIOR_RESECTION_ABLATION)]
    groups += [covariates.covariate_terms(covariates.BY_NAME[name]) for name in optional]
    grade_by_modality = [f"modality[{m}]:who_grade[{g}]" for g in covariates.WHO_GRADE.levels
                         for m in covariates.MODALITY.levels if (g, m) != ("1", "TACE")]
    groups.append(grade_by_modality)
    return groups


def fit_endpoint(frame: pd.DataFrame, optional: tuple[str, ...], progress=None) -> dict:
    """Fit the multivariate model and the univariate models of one endpoint.

    ``frame`` has the covariate columns (canonical levels), ``modality``, ``time`` and ``event``.
    Returns ``{"fit": CoxFit, "multivariate": rows, "univariate": rows, "risk_sets": arrays}``.
    """
    terms = covariates.term_ids(optional)
    time = frame["time"].to_numpy(dtype=float)
    event = frame["event"].to_numpy(dtype=bool)
    x = covariates.design_matrix(frame, terms)
    fit = fit_cox(x, time, event, terms)
    if progress:
        progress("multivariate model")
    univariate = []
    for group in univariate_groups(optional):
        univariate += fit_cox(covariates.design_matrix(frame, group), time, event, group).table()
        if progress:
            progress(f"univariate {group[0].split('[')[0]}")
    return {
        "fit": fit,
        "multivariate": fit.table(),
        "univariate": univariate,
        "risk_sets": breslow_risk_sets(x, time, event, fit.coef),
    }
