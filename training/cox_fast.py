"""Fast concordance and calibration slope for the bootstrap (refits use ``training.fit.fit_coefficients``).

``harrell_c`` counts the same pairs as ``sksurv.metrics.concordance_index_censored`` in O(n log^2 n) instead of
O(n x events); checked against it in tests/test_validate.py.
"""

from __future__ import annotations

import numpy as np

from training.fit import efron_information, fit_coefficients

# Risk scores closer than this are tied, as in scikit-survival's concordance_index_censored.
TIED_TOL = 1e-8


def slope(lp: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[float, float]:
    """Calibration slope: the coefficient (and its standard error) of a Cox model with the linear predictor alone.

    References
    ----------
    Van Houwelingen HC. Validation, calibration, revision and combination of prognostic survival models.
    Stat Med 2000;19:3401-3415.
    """
    lp = np.asarray(lp, dtype=float)[:, None]
    coef = fit_coefficients(lp, time, event)
    if not np.isfinite(coef[0]) or np.ptp(lp) == 0:
        return float("nan"), float("nan")
    _, _, info = efron_information(lp, time, event, coef)
    return float(coef[0]), float(1.0 / np.sqrt(info[0, 0])) if info[0, 0] > 0 else float("nan")


def _dense_rank(values: np.ndarray, tol: float) -> np.ndarray:
    """Integer ranks where values closer than ``tol`` to their sorted predecessor share a rank."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    new = np.concatenate([[0], (np.diff(v) > tol).astype(np.int64)])
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.cumsum(new)
    return rank


def _count_later_below(rank: np.ndarray, side: str) -> np.ndarray:
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


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray, tied_tol: float = TIED_TOL
              ) -> tuple[float, int, int, int]:
    """Harrell's concordance index with the pair rules of ``sksurv.metrics.concordance_index_censored``.

    A pair is comparable when the shorter time is an event (a censored time equal to an event time counts as
    longer); tied risk scores count one half.

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

