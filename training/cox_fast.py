"""Cox kernels for the validation bootstrap, numpy only (a worker process that imports them starts in ~0.2 s).

- :class:`Survival`: one (time, event) in time order with the bookkeeping of its Efron partial likelihood, computed
  once and shared by every fit on the same data (the refit, the calibration slope, the calibration splines).
- :func:`fit_efron`: Newton-Raphson on the Efron partial likelihood for a batch of models on the same data at once
  (the calibration splines of the three horizons are one batch); the same likelihood, start-independent maximum and
  stopping rule as ``training.fit.fit_coefficients`` (checked against it and scikit-survival in tests).
- :func:`harrell_c` (O(n log^2 n)) and :class:`Concordance` (all pairs, for small data and bootstrap resamples given
  as multiplicities): Harrell's C with exactly the pair rules of ``sksurv.metrics.concordance_index_censored``.
- :func:`slope`: the calibration slope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

# Risk scores closer than this are tied, as in scikit-survival's concordance_index_censored.
TIED_TOL = 1e-8
# Newton stops at this relative change of the log partial likelihood, as training.fit.fit_coefficients.
NEWTON_TOLERANCE = 1e-10
NEWTON_MAX_ITERATIONS = 40
STEP_HALVINGS = 30
# Concordance by explicit pairs up to this many (event, subject) pairs; the merge-count harrell_c beyond.
PAIRS_LIMIT = 400_000


# ---------------------------------------------------------------------------------------------------------------
# The data of a Cox fit


class Survival:
    """Times and events in time order, with what the Efron likelihood needs of them (no covariates, no beta).

    ``first[k]``: first row at or after the k-th distinct event time (its risk set is rows ``first[k]:``);
    ``death``: the rows with an event (those at one event time are contiguous in this list); ``k``: each death's event
    time; ``phi``: Efron's l/d for the l-th of d tied deaths; ``starts``: where each event time's deaths begin in
    ``death``; ``at_or_before[j]``: the number of event times <= t_j.
    """

    def __init__(self, time: np.ndarray, event: np.ndarray):
        time = np.asarray(time, dtype=float)
        event = np.asarray(event, dtype=bool)
        if np.any(np.diff(time) < 0):
            raise ValueError("Survival needs the rows in time order (see Survival.sorted)")
        self.time, self.event, self.n = time, event, len(time)
        self.death = np.flatnonzero(event)
        td = time[self.death]
        new = np.concatenate([[True], td[1:] != td[:-1]]) if td.size else np.zeros(0, dtype=bool)
        self.starts = np.flatnonzero(new)
        self.event_times = td[self.starts]
        self.d = np.diff(np.append(self.starts, td.size))
        self.first = np.searchsorted(time, self.event_times, side="left")
        self.k = np.repeat(np.arange(len(self.d)), self.d)
        self.phi = (np.arange(td.size) - self.starts[self.k]) / self.d[self.k] if td.size else np.zeros(0)
        self.at_or_before = np.searchsorted(self.event_times, time, side="right")

    @staticmethod
    def order(time: np.ndarray) -> np.ndarray:
        """The permutation that puts rows in time order (stable, so equal times keep their row order)."""
        return np.argsort(np.asarray(time, dtype=float), kind="stable")

    @classmethod
    def sorted(cls, time: np.ndarray, event: np.ndarray) -> tuple[Survival, np.ndarray]:
        """(Survival of the rows in time order, that order): data row ``order[i]`` is row i of the Survival."""
        order = cls.order(time)
        return cls(np.asarray(time, dtype=float)[order], np.asarray(event, dtype=bool)[order]), order

    def kaplan_meier(self, horizons: np.ndarray) -> np.ndarray:
        """Kaplan-Meier survival at each horizon (right-continuous; 1 before the first event time)."""
        surv = np.cumprod(1.0 - self.d / (self.n - self.first))
        k = np.searchsorted(self.event_times, np.asarray(horizons, dtype=float), side="right")
        return np.concatenate([[1.0], surv])[k]


@dataclass(frozen=True)
class Fit:
    """A batch of Cox fits on one :class:`Survival`: row b of each array is model b.

    ``breslow``: baseline hazard increments d / S0 at the event times (the served model's estimator); ``efron``: the
    Efron increments sum_l 1 / (S0 - l/d T0) (``survfit.coxph`` after an Efron fit, as ``rms::survest``).
    Both belong to the linear predictor x'beta uncentred. ``beta`` is NaN for a model whose fit failed.
    """

    beta: np.ndarray
    loglik: np.ndarray | float
    information: np.ndarray
    converged: np.ndarray | bool
    breslow: np.ndarray
    efron: np.ndarray


def _state(data: Survival, x: np.ndarray, beta: np.ndarray) -> dict:
    eta = np.matmul(x, beta[:, :, None])[:, :, 0]
    shift = eta.max(axis=1, keepdims=True)
    w = np.exp(eta - shift)  # a common factor cancels from every risk-set ratio; it keeps exp() finite
    s0 = np.cumsum(w[:, ::-1], axis=1)[:, ::-1][:, data.first]
    wd = w[:, data.death]
    t0 = np.add.reduceat(wd, data.starts, axis=1)
    a = s0[:, data.k] - data.phi * t0[:, data.k]
    loglik = eta[:, data.death].sum(axis=1) - np.log(a).sum(axis=1) - data.death.size * shift[:, 0]
    return {"w": w, "wd": wd, "a": a, "s0": s0, "shift": shift[:, 0], "loglik": loglik}


def _derivatives(data: Survival, x: np.ndarray, state: dict, xd_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score and observed information (Efron): sum_j u_j x_j x_j' less the sum over deaths of the Efron means'
    outer products (as in training.fit.EfronLikelihood, with rows instead of covariate patterns); ``xd_sum`` is the
    sum of the deaths' rows."""
    w, a, k, phi = state["w"], state["a"], data.k, data.phi
    wx = w[:, :, None] * x
    s1 = np.cumsum(wx[:, ::-1], axis=1)[:, ::-1][:, data.first]
    t1 = np.add.reduceat(wx[:, data.death], data.starts, axis=1)
    inv = 1.0 / a
    mean = (s1[:, k] - phi[None, :, None] * t1[:, k]) * inv[:, :, None]
    score = xd_sum - mean.sum(axis=1)
    c = np.add.reduceat(inv, data.starts, axis=1)
    e = np.add.reduceat(phi * inv, data.starts, axis=1)
    cum = np.concatenate([np.zeros((len(c), 1)), np.cumsum(c, axis=1)], axis=1)
    u = w * cum[:, data.at_or_before]
    u[:, data.death] -= state["wd"] * e[:, k]
    info = np.matmul(np.swapaxes(x * u[:, :, None], 1, 2), x) - np.matmul(np.swapaxes(mean, 1, 2), mean)
    return score, info


def _solve(info: np.ndarray, score: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(info, score[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.lstsq(i, s, rcond=None)[0] for i, s in zip(info, score, strict=True)])


def fit_efron(
    data: Survival,
    x: np.ndarray,
    beta0: np.ndarray | None = None,
    *,
    tolerance: float = NEWTON_TOLERANCE,
    max_iterations: int = NEWTON_MAX_ITERATIONS,
    information: bool = True,
) -> Fit:
    """Maximum Efron partial-likelihood coefficients of a batch of Cox models on the same times and events.

    Parameters
    ----------
    data : Survival
    x : ndarray, shape (B, n, p) or (n, p)
        Designs, rows in ``data``'s (time) order; every column must vary (callers drop constant ones).
    beta0 : ndarray, shape (B, p) or (p,), optional
        Starting values (default 0). The maximum does not depend on them; a start near it saves iterations.
    information : bool
        False: the returned ``information`` may be that of the last step but one (saves a final evaluation).

    Newton-Raphson with step halving (every step an ascent) until the relative change of the log partial likelihood
    is at most ``tolerance`` (|l_old| + 1), as ``training.fit.fit_coefficients``. Under monotone likelihood a
    coefficient drifts until the likelihood stops changing, as in R's ``coxph``.

    References
    ----------
    Efron B. The efficiency of Cox's likelihood function for censored data. JASA 1977;72:557-565.
    Therneau TM, Grambsch PM. Modeling Survival Data. Springer 2000, section 3.3.
    """
    x = np.asarray(x, dtype=float)
    single = x.ndim == 2
    if single:
        x = x[None]
    batch, _, p = x.shape
    beta = np.zeros((batch, p)) if beta0 is None else np.array(np.broadcast_to(beta0, (batch, p)), dtype=float)
    with np.errstate(all="ignore"):  # a trial step far out can overflow; it is then halved
        xd_sum = x[:, data.death].sum(axis=1)
        state = _state(data, x, beta)
        score, info = _derivatives(data, x, state, xd_sum)
        loglik = state["loglik"]
        done = ~np.isfinite(loglik)
        converged = np.zeros(batch, dtype=bool)
        for _ in range(max_iterations):
            step = _solve(info, score)
            step[done] = 0.0
            trial = beta + step
            new, ok = state, np.zeros(batch, dtype=bool)
            for _ in range(STEP_HALVINGS):
                new = _state(data, x, trial)
                ok = np.isfinite(new["loglik"]) & (new["loglik"] >= loglik - 1e-12 * np.abs(loglik))
                if ok.all():
                    break
                step = np.where(ok[:, None], step, step / 2)
                trial = beta + step
            stuck = ~ok
            gain = np.abs(new["loglik"] - loglik)
            converged |= ~done & ok & (gain <= tolerance * (np.abs(loglik) + 1.0))
            beta = np.where(ok[:, None], trial, beta)
            for key in ("w", "wd", "a", "s0", "shift", "loglik"):
                state[key] = np.where(ok.reshape((-1,) + (1,) * (state[key].ndim - 1)), new[key], state[key])
            loglik = state["loglik"]
            finished = np.all(done | converged | stuck)
            if ok.any() and (information or not finished):
                new_score, new_info = _derivatives(data, x, new, xd_sum)
                score = np.where(ok[:, None], new_score, score)
                info = np.where(ok[:, None, None], new_info, info)
            done |= converged | stuck
            if done.all():
                break
        scale = np.exp(-state["shift"])[:, None]
        inv = 1.0 / state["a"]
        breslow = data.d * scale / state["s0"]
        efron = np.add.reduceat(inv, data.starts, axis=1) * scale if data.death.size else np.zeros((batch, 0))
    failed = ~np.all(np.isfinite(beta), axis=1) | ~np.isfinite(loglik)
    beta[failed] = np.nan
    if single:
        return Fit(beta[0], float(loglik[0]), info[0], bool(converged[0] and not failed[0]), breslow[0], efron[0])
    return Fit(beta, loglik, info, converged & ~failed, breslow, efron)


def fit_coefficients(
    data: Survival, x: np.ndarray, beta0: np.ndarray | None = None, *, information: bool = True
) -> Fit:
    """One model (x: (n, p) in ``data``'s order); a column without variation gets coefficient 0, as a term R's
    ``coxph`` reports as NA (``training.fit.fit_coefficients`` does the same). ``beta`` is NaN if the fit failed."""
    x = np.asarray(x, dtype=float)
    p = x.shape[1]
    if not data.death.size:
        return Fit(np.full(p, np.nan), np.nan, np.full((p, p), np.nan), False, np.zeros(0), np.zeros(0))
    keep = np.ptp(x, axis=0) > 0
    if not keep.any():
        return Fit(np.zeros(p), np.nan, np.zeros((p, p)), True, np.zeros(len(data.d)), np.zeros(len(data.d)))
    start = None if beta0 is None else np.asarray(beta0, dtype=float)[keep]
    fit = fit_efron(data, x[:, keep], start, information=information)
    beta = np.zeros(p)
    beta[keep] = fit.beta
    info = np.zeros((p, p))
    info[np.ix_(keep, keep)] = fit.information
    return Fit(beta, fit.loglik, info, fit.converged, fit.breslow, fit.efron)


def cumulative_at(event_times: np.ndarray, increments: np.ndarray, horizon: float) -> np.ndarray:
    """Sum of the increments (last axis) at event times <= ``horizon``."""
    k = int(np.searchsorted(event_times, horizon, side="right"))
    return np.asarray(increments)[..., :k].sum(axis=-1)


# ---------------------------------------------------------------------------------------------------------------
# Calibration slope


def slope(lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[float, float]:
    """Calibration slope: the coefficient (and its standard error) of a Cox model with the linear predictor alone.

    References
    ----------
    Van Houwelingen HC. Validation, calibration, revision and combination of prognostic survival models.
    Stat Med 2000;19:3401-3415.
    """
    data, order = Survival.sorted(time, event)
    return slope_on(data, np.asarray(lp, dtype=float)[order])


def slope_on(data: Survival, lp: np.ndarray, start: float = 1.0) -> tuple[float, float]:
    """:func:`slope` with the data's bookkeeping given (``lp`` in its time order): a one-parameter Efron Newton
    (the same likelihood, stopping rule and step halving as :func:`fit_efron`, in scalars)."""
    lp = np.asarray(lp, dtype=float)
    if not data.death.size or not np.all(np.isfinite(lp)) or np.ptp(lp) == 0:
        return float("nan"), float("nan")
    k, phi, first, starts = data.k, data.phi, data.first, data.starts
    lp_deaths = lp[data.death]
    powers = np.column_stack([np.ones_like(lp), lp, lp * lp])

    def evaluate(b: float) -> tuple[float, float, float]:
        eta = b * lp
        shift = eta.max()
        w = np.exp(eta - shift)
        rows = powers * w[:, None]
        s = np.cumsum(rows[::-1], axis=0)[::-1][first]
        t = np.add.reduceat(rows[data.death], starts, axis=0)
        a = s[k, 0] - phi * t[k, 0]
        m1 = (s[k, 1] - phi * t[k, 1]) / a
        m2 = (s[k, 2] - phi * t[k, 2]) / a
        loglik = b * lp_deaths.sum() - np.log(a).sum() - lp_deaths.size * shift
        return float(loglik), float(lp_deaths.sum() - m1.sum()), float((m2 - m1 * m1).sum())

    with np.errstate(all="ignore"):
        b = float(start)
        loglik, score, info = evaluate(b)
        if not np.isfinite(loglik):
            b, (loglik, score, info) = 0.0, evaluate(0.0)
        for _ in range(NEWTON_MAX_ITERATIONS):
            step = score / info if info > 0 else 0.0
            for _ in range(STEP_HALVINGS):
                new = evaluate(b + step)
                if np.isfinite(new[0]) and new[0] >= loglik - 1e-12 * abs(loglik):
                    break
                step /= 2
            else:
                break
            converged = abs(new[0] - loglik) <= NEWTON_TOLERANCE * (abs(loglik) + 1.0)
            b, (loglik, score, info) = b + step, new
            if converged:
                break
    if not np.isfinite(b):
        return float("nan"), float("nan")
    return b, float(1.0 / np.sqrt(info)) if info > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------------------
# Harrell's C


def _dense_rank(values: np.ndarray, tol: float) -> np.ndarray:
    """Integer ranks where values closer than ``tol`` to their sorted predecessor share a rank."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    new = np.concatenate([[0], (np.diff(v) > tol).astype(np.int64)])
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.cumsum(new)
    return rank


def _count_later_below(rank: np.ndarray, side: Literal["left", "right"]) -> np.ndarray:
    """For each position i: #{j > i with rank_j < rank_i} (side='left') or <= (side='right').

    Bottom-up merge counting: at block size s, each element in a left half is compared with the sorted right half
    of its block by one vectorised searchsorted over all blocks (ranks offset by block). O(n log^2 n).
    """
    n = len(rank)
    m = int(rank.max()) + 2 if n else 1
    pos = np.arange(n)
    counts = np.zeros(n, dtype=np.int64)
    s = 1
    while s < n:
        block = pos // (2 * s)
        right = (pos // s) % 2 == 1
        keys = np.sort(block[right] * m + rank[right])
        left = ~right
        base = block[left] * m
        counts[left] += np.searchsorted(keys, base + rank[left], side=side) - np.searchsorted(keys, base, side="left")
        s *= 2
    return counts


def harrell_c(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, tied_tol: float = TIED_TOL
) -> tuple[float, int, int, int]:
    """Harrell's concordance index with the pair rules of ``sksurv.metrics.concordance_index_censored``.

    A pair is comparable when the shorter time is an event (a censored time equal to an event time counts as
    longer); tied risk scores count one half. O(n log^2 n); ties of risk scores are runs of sorted scores less than
    ``tied_tol`` apart (:class:`Concordance` applies scikit-survival's pairwise |difference| <= tol exactly).

    Returns
    -------
    cindex, concordant, discordant, tied_risk

    References
    ----------
    Harrell FE, Lee KL, Mark DB. Multivariable prognostic models. Stat Med 1996;15:361-387.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    rank = _dense_rank(np.asarray(risk, dtype=float), tied_tol)
    # Order by (time, events before censored, rank): subjects after an event i in this order with a larger time key
    # are exactly its comparable partners; same-key subjects after i have rank >= rank_i, so '<' excludes them.
    order = np.lexsort((rank, ~event, time))
    t, ev, r = time[order], event[order], rank[order]
    key_change = np.concatenate([[True], (np.diff(t) != 0) | (np.diff(ev.astype(np.int8)) != 0)])
    group = np.cumsum(key_change) - 1
    group_end = np.concatenate([np.flatnonzero(key_change)[1:], [len(t)]])[group]  # one past the key group
    below = _count_later_below(r, "left")
    below_or_equal = _count_later_below(r, "right")
    # Same key and same rank after i are counted by "<=" but are not comparable: a run of L such subjects has
    # L-1-q of them after its q-th member.
    run_change = key_change | np.concatenate([[True], np.diff(r) != 0])
    run_id = np.cumsum(run_change) - 1
    run_end = np.concatenate([np.flatnonzero(run_change)[1:], [len(t)]])[run_id]
    same_after = run_end - 1 - np.arange(len(t))
    comparable = len(t) - group_end
    concordant = int(below[ev].sum())
    tied = int((below_or_equal - below - same_after)[ev].sum())
    discordant = int(comparable[ev].sum()) - concordant - tied
    total = concordant + discordant + tied
    cindex = (concordant + 0.5 * tied) / total if total else float("nan")
    return cindex, concordant, discordant, tied


class Concordance:
    """Harrell's C of any risk scores on one (time, event), or on a bootstrap resample of it, by explicit pairs.

    The comparable pairs (an event i and a subject j with t_j > t_i, or t_j = t_i and j censored: scikit-survival's
    rule) are found once; a resample with multiplicities m counts pair (i, j) m_i m_j times (a subject is never
    comparable with its own copies: equal time). Risk scores within ``TIED_TOL`` of each other are tied (1/2), as
    scikit-survival compares them pair by pair. Memory: events x n; use :func:`harrell_c` for large data.
    """

    def __init__(self, time: np.ndarray, event: np.ndarray):
        time = np.asarray(time, dtype=float)
        event = np.asarray(event, dtype=bool)
        self.events = np.flatnonzero(event)
        te = time[self.events][:, None]
        self.comparable = ((time[None, :] > te) | ((time[None, :] == te) & ~event[None, :])).astype(float)

    @staticmethod
    def fits(n: int, events: int) -> bool:
        return n * events <= PAIRS_LIMIT

    def __call__(self, risk: np.ndarray, multiplicity: np.ndarray | None = None) -> float:
        """C of ``risk`` (one score per subject of the original data) on the data, or on the resample ``m``."""
        risk = np.asarray(risk, dtype=float)
        diff = risk[self.events][:, None] - risk[None, :]
        tied = np.abs(diff) <= TIED_TOL
        weight = self.comparable
        if multiplicity is not None:
            m = np.asarray(multiplicity, dtype=float)
            weight = weight * m[self.events][:, None] * m[None, :]
        total = weight.sum()
        if total == 0:
            return float("nan")
        concordant = weight[(diff > 0) & ~tied].sum()
        return float((concordant + 0.5 * weight[tied].sum()) / total)
