"""Restricted mean survival time of a patient's mixture up to tau, per option, with the baseline and coefficient
parts of its variance kept apart so that differences between options keep their correlation.

RMST = t_1 + sum_j S̄(t_j) w_j over the event times t_j <= tau (S = 1 before the first; w_j the width of the step
t_j starts). It is linear in the mixture's weights, so at the default horizon it is read from per-combination
tables of every (option, pattern) component (``prognosis.prepared.RmstTable``, built by ``table``); any other
horizon, or a combination without tables, takes the exact path over every event time up to tau.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prognosis import covariates
from prognosis.mixture import Mixture
from prognosis.prepared import Endpoint, Prepared, RmstTable

N_OPTIONS = len(covariates.OPTIONS)


@dataclass(frozen=True, eq=False)
class Rmst:
    """RMST up to ``tau`` (endpoints,) per endpoint and option: ``estimate`` (endpoints, options), ``gradient``
    (endpoints, options, p) in beta and the baseline part of the covariance between options ``baseline`` (endpoints,
    options, options)."""

    tau: np.ndarray
    estimate: np.ndarray
    gradient: np.ndarray
    baseline: np.ndarray

    def variances(self, cov: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per endpoint, of each option's RMST and of each difference a - b (option index arrays), with ``cov``
        (endpoints, p, p) the coefficients' covariances: (endpoints, options) and (endpoints, pairs)."""
        g, bl = self.gradient, self.baseline
        d = g[:, a] - g[:, b]
        both = np.concatenate([g, d], axis=1)
        quad = np.einsum("eop,eop->eo", both @ cov, both)
        n = g.shape[1]
        return np.diagonal(bl, axis1=1, axis2=2) + quad[:, :n], bl[:, a, a] + bl[:, b, b] - 2 * bl[:, a, b] + quad[
            :, n:
        ]


def steps(ep: Endpoint, tau: float) -> tuple[int, np.ndarray, float]:
    """Event times <= tau, the widths of the steps they start (S(t_j) holds on [t_j, t_j+1)), and the time before
    the first event time (S = 1)."""
    times = ep.times
    n = int(np.searchsorted(times, tau, side="right"))
    return n, np.diff(np.append(times[:n], tau)), float(times[0] if n else tau)


def rmst(mix: Mixture, tau: list[float | None]) -> Rmst:
    """RMST up to tau[e] of each option's mixture for every endpoint (None: not estimable, NaN): from the
    combination's tables when tau is every endpoint's default horizon, else exactly."""
    prep, tables = mix.prep, mix.comb.rmst
    if tables is None or any(t != ep.rmst_tau for t, ep in zip(tau, prep.endpoints, strict=True)):
        nan = (np.full(N_OPTIONS, np.nan), np.zeros((N_OPTIONS, len(prep.terms))), np.zeros((N_OPTIONS, N_OPTIONS)))
        parts = [exact(mix, e, t) if t is not None else nan for e, t in enumerate(tau)]
        return Rmst(np.array(tau, dtype=float), *(np.stack(x) for x in zip(*parts, strict=True)))
    w, area, gradient, gram = mix.weights, tables.area, tables.gradient, tables.gram
    if mix.which is not None:  # the compatible patterns' block only
        area, gradient, gram = area[..., mix.which], gradient[:, :, mix.which], gram[:, :, mix.which][..., mix.which]
    baseline = np.einsum("eokq,ek->eoq", (gram @ w[:, None, None, :, None])[..., 0], w)
    return Rmst(
        np.array(tau),
        tables.first[:, None] + np.einsum("eok,ek->eo", area, w),
        np.einsum("eokp,ek->eop", gradient, w),
        baseline,
    )


def exact(mix: Mixture, e: int, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Endpoint ``e``'s RMST over every event time up to tau (any horizon): estimate, gradient and baseline, with
    c_i = sum_k w_k r_k * integral of S_k from t_i to tau and g = d RMST / d beta up to sign (the computation the tables
    hold per component)."""
    ep = mix.prep.endpoints[e]
    r, weights = mix.r[e], mix.weights[e]
    n, widths, first = steps(ep, tau)
    if n == 0:
        zeros = np.zeros(N_OPTIONS)
        return zeros + first, np.zeros((N_OPTIONS, len(ep.coef))), np.zeros((N_OPTIONS, N_OPTIONS))
    ws = np.exp(np.multiply.outer(ep.hc[:n], -r.reshape(-1))).reshape(n, N_OPTIONS, -1) * weights
    s = ws.sum(axis=2)  # (n, options)
    wrs = np.einsum("nok,ok->on", ws, r)
    area = wrs * widths
    c = np.cumsum(area[:, ::-1], axis=1)[:, ::-1]
    f1 = np.einsum("nok,n->ok", ws, ep.hc[:n] * widths) * r
    gradient = np.einsum("ok,okp->op", f1, mix.z) - area @ ep.xc[:n]
    dv = np.diff(np.concatenate([[0.0], ep.vc[:n]]))
    return first + widths @ s, gradient, (c * dv) @ c.T


def table(prep: Prepared, z: np.ndarray, r: np.ndarray) -> RmstTable:
    """The RMST tables of one combination's components, terms ``z`` (options, patterns, p) and hazard ratios ``r``
    (endpoints, options, patterns), at each endpoint's default horizon."""
    parts = []
    for e, ep in enumerate(prep.endpoints):
        assert ep.rmst_tau is not None
        n, widths, first = steps(ep, ep.rmst_tau)
        p_count, p = z.shape[1], z.shape[2]
        zs, rs = z.reshape(-1, p), r[e].reshape(-1)
        s = np.exp(np.multiply.outer(-rs, ep.hc[:n]))  # (components, n): S_c(t_j)
        sw = s * widths
        gradient = rs[:, None] * (zs * (sw @ ep.hc[:n])[:, None] - sw @ ep.xc[:n])
        c = rs[:, None] * np.cumsum(sw[:, ::-1], axis=1)[:, ::-1]
        dv = np.diff(np.concatenate([[0.0], ep.vc[:n]]))
        gram = ((c * dv) @ c.T).reshape(N_OPTIONS, p_count, N_OPTIONS, p_count)
        parts.append((sw.sum(axis=1).reshape(N_OPTIONS, p_count), gradient.reshape(N_OPTIONS, p_count, p), gram, first))
    areas, gradients, grams, firsts = zip(*parts, strict=True)
    return RmstTable(np.stack(areas), np.stack(gradients), np.stack(grams), np.array(firsts))
