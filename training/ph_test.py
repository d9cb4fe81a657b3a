"""Proportional-hazards check: the score test on scaled Schoenfeld residuals that R's ``cox.zph`` computes.

Each term's coefficient is allowed to vary as beta_j + gamma_j g(t); the test is the score test of gamma = 0 at the
fitted beta (Efron ties, as the model), per term (1 df) and for all terms together (global, p df). This is the test
of survival >= 3.0; the older Grambsch-Therneau approximation (lifelines, survival < 3.0) differs slightly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats

from training.fit import risk_set_sums

Transform = Literal["km", "identity"]


def _km_left(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival just before each row's time (left-continuous), over all rows."""
    event_times, d = np.unique(time[event], return_counts=True)
    at_risk = len(time) - np.searchsorted(np.sort(time), event_times, side="left")
    surv = np.cumprod(1.0 - d / at_risk)
    # Event times strictly before t: survival after the last of them (1 before the first).
    k = np.searchsorted(event_times, time, side="left")
    return np.concatenate([[1.0], surv])[k]


def time_transform(time: np.ndarray, event: np.ndarray, transform: Transform) -> np.ndarray:
    """g(t) per row: ``identity`` (t) or ``km`` (1 - left-continuous Kaplan-Meier), as ``cox.zph`` defines them."""
    if transform == "identity":
        return time.astype(float)
    if transform == "km":
        return 1.0 - _km_left(time, event)
    raise ValueError(f"unknown transform {transform!r}; use 'km' or 'identity'")


def zph_score_test(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, transform: Transform = "km"
) -> dict:
    """Score test of proportional hazards for each column of ``x`` and globally.

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Design matrix of the fitted model.
    time, event : ndarray, shape (n,)
        Follow-up time and event indicator.
    beta : ndarray, shape (p,)
        Fitted coefficients (the test is evaluated there).
    transform : {"km", "identity"}
        Time scale g(t) of the alternative beta_j + gamma_j g(t); ``km`` is R's default.

    Returns
    -------
    dict
        ``chisq``, ``p`` (arrays over the columns, 1 df each), ``global_chisq``, ``global_df``, ``global_p``.

    References
    ----------
    Grambsch PM, Therneau TM. Proportional hazards tests and diagnostics based on weighted residuals.
    Biometrika 1994;81:515-526.
    Therneau TM. survival: A Package for Survival Analysis in R, version 3 (``cox.zph``).
    """
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    n, p = x.shape
    g_row = time_transform(time, event, transform)
    # Centering g changes nothing in the statistic (the beta-score is zero at the fit) but keeps the sums small.
    g_row = g_row - g_row[event].mean()

    eta = x @ beta
    w = np.exp(eta - eta.max())  # a common factor cancels from every risk-set ratio
    event_times, d, _, s0, s1 = risk_set_sums(x, time, event, w)
    k_of_death = np.searchsorted(event_times, time[event])
    t0 = np.bincount(k_of_death, weights=w[event], minlength=len(event_times))
    t1 = np.zeros_like(s1)
    np.add.at(t1, k_of_death, x[event] * w[event][:, None])
    # g is a function of the event time: one value per distinct event time.
    g_k = np.zeros(len(event_times))
    g_k[k_of_death] = g_row[event]

    # Efron: the l-th of d tied deaths sees the risk set less l/d of the tied deaths.
    k_rows = np.repeat(np.arange(len(event_times)), d)
    start = np.repeat(np.cumsum(d) - d, d)
    phi = (np.arange(k_rows.size) - start) / d[k_rows]
    a0 = s0[k_rows] - phi * t0[k_rows]
    mean = (s1[k_rows] - phi[:, None] * t1[k_rows]) / a0[:, None]

    u_gamma = (x[event] * g_row[event][:, None]).sum(axis=0) - (mean * g_k[k_rows][:, None]).sum(axis=0)

    c = np.bincount(k_rows, weights=1.0 / a0, minlength=len(event_times))
    e = np.bincount(k_rows, weights=phi / a0, minlength=len(event_times))
    at_or_before = np.searchsorted(event_times, time, side="right")  # event times t_k <= t_j: j is in their risk sets
    xd, wd = x[event], w[event]

    def block(power: int) -> np.ndarray:
        """sum over death rows of g^power times the Efron covariance of x in the risk set."""
        gp = g_k**power
        c_cum = np.concatenate([[0.0], np.cumsum(gp * c)])[at_or_before]
        out = (x * (w * c_cum)[:, None]).T @ x
        out -= (xd * (wd * (gp * e)[k_of_death])[:, None]).T @ xd
        out -= (mean * gp[k_rows][:, None]).T @ mean
        return out

    i0, i1, i2 = block(0), block(1), block(2)
    imat = np.block([[i0, i1], [i1, i2]])
    u = np.concatenate([np.zeros(p), u_gamma])
    chisq = np.empty(p)
    for j in range(p):
        kk = np.r_[np.arange(p), p + j]
        sub = imat[np.ix_(kk, kk)]
        uj = u[kk]
        chisq[j] = float(uj @ np.linalg.solve(sub, uj))
    global_chisq = float(u @ np.linalg.solve(imat, u))
    return {
        "transform": transform,
        "chisq": chisq,
        "p": stats.chi2.sf(chisq, 1),
        "global_chisq": global_chisq,
        "global_df": p,
        "global_p": float(stats.chi2.sf(global_chisq, p)),
    }
