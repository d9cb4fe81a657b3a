"""Predicted survival beside Kaplan-Meier estimates by group of predicted risk: the card's descriptive figures.

Predictions use the artifact's own Breslow baseline (``risk_sets``), exactly what the calculator serves:
S(t | x) = exp(-H0(t) exp(x'beta)). Observed survival per group is the Kaplan-Meier estimate with a log-log 95%
interval (scikit-survival's ``kaplan_meier_estimator``). Nothing here passes or fails a model: a per-group "within
the interval" verdict is a multiple test of arbitrary groups; calibration is assessed by the smoothed calibration
curve and its summaries (``training.smoothed_calibration``; docs/validation.md).
"""

from __future__ import annotations

import numpy as np
from sksurv.nonparametric import kaplan_meier_estimator

from prognosis.model import RiskSets

# Groups of about this many patients (rms::calibrate's default m = 50), at least 3 and at most 10 (deciles).
PATIENTS_PER_GROUP = 50
MIN_GROUPS, MAX_GROUPS = 3, 10
# The Kaplan-Meier figure data: one point per month up to this many months.
CURVE_MONTHS = 120


def baseline_cumulative_hazard(risk_sets: RiskSets, times: np.ndarray) -> np.ndarray:
    """Breslow H0 at ``times`` (right-continuous step function; NaN past the last event time: not estimable)."""
    event_times, cum = risk_sets.event_times, risk_sets.cum_hazard
    times = np.asarray(times, dtype=float)
    k = np.searchsorted(event_times, times, side="right")
    out = np.where(k > 0, np.concatenate([[0.0], cum])[k], 0.0)
    return np.where(times <= event_times[-1], out, np.nan)


def predicted_survival(lp: np.ndarray, risk_sets: RiskSets, times: np.ndarray) -> np.ndarray:
    """S(t | x) for each patient (rows) at each time (columns); NaN past the model's last event time."""
    h0 = baseline_cumulative_hazard(risk_sets, times)
    return np.exp(-np.outer(np.exp(lp), h0))


def risk_groups(lp: np.ndarray, groups: int | None = None) -> np.ndarray:
    """Group 1 (lowest predicted risk) to g (highest) by rank of the linear predictor, nearly equal sizes.

    g defaults to n // 50 within [3, 10]. Patients with equal predictions may fall in adjacent groups (ranks are
    broken in row order, reproducibly); they have identical predictions, so calibration is unaffected.
    """
    n = len(lp)
    if groups is None:
        groups = int(np.clip(n // PATIENTS_PER_GROUP, MIN_GROUPS, MAX_GROUPS))
    rank = np.empty(n, dtype=int)
    rank[np.argsort(lp, kind="stable")] = np.arange(n)
    return rank * groups // n + 1


def kaplan_meier_at(
    time: np.ndarray, event: np.ndarray, horizons: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan-Meier survival with log-log 95% interval at each horizon; NaN past the group's last follow-up.

    References
    ----------
    Kalbfleisch JD, Prentice RL. The Statistical Analysis of Failure Time Data. 2nd ed. Wiley 2002 (log-log
    interval from Greenwood's variance).
    """
    horizons = np.asarray(horizons, dtype=float)
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    if not event.any():
        surv = np.where(horizons <= time.max(), 1.0, np.nan)
        return surv, surv.copy(), surv.copy()
    times, surv, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
    k = np.searchsorted(times, horizons, side="right")
    pad = lambda a: np.concatenate([[1.0], a])  # noqa: E731  (S = 1 before the first time)
    # Past the last follow-up the curve is unknown, unless it has reached 0 (everyone had the event).
    estimable = (horizons <= time.max()) | (surv[-1] == 0.0)
    out = [np.where(estimable, pad(a)[k], np.nan) for a in (surv, ci[0], ci[1])]
    # Where the estimate is 0 the log-log interval is undefined (scikit-survival gives a degenerate 0-0): NaN.
    zero = out[0] == 0.0
    return out[0], np.where(zero, np.nan, out[1]), np.where(zero, np.nan, out[2])


def _clean(value: float, digits: int = 4) -> float | None:
    return None if not np.isfinite(value) else round(float(value), digits)


def calibration_by_group(
    lp: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    risk_sets: RiskSets,
    horizons: tuple[float, ...],
    group: np.ndarray,
) -> list[dict]:
    """Predicted (mean over the group) vs observed (Kaplan-Meier, 95% CI) survival per risk group and horizon.

    Returns one entry per horizon: ``{"months", "estimable", "overall": {...}, "groups": [{"group", "n", "events",
    "predicted", "observed", "ci_lower", "ci_upper", "within_ci"}]}``. ``within_ci`` is always None: the per-group
    verdict is no longer made (kept for readers of earlier cards; to be removed).
    """
    horizons_arr = np.asarray(horizons, dtype=float)
    pred = predicted_survival(lp, risk_sets, horizons_arr)
    out = []
    labels = np.unique(group)
    per_group = {g: kaplan_meier_at(time[group == g], event[group == g], horizons_arr) for g in labels}
    overall = kaplan_meier_at(time, event, horizons_arr)
    for j, months in enumerate(horizons_arr):
        rows = []
        for g in labels:
            mask = group == g
            km, lo, hi = (a[j] for a in per_group[g])
            predicted = float(pred[mask, j].mean())
            rows.append(
                {
                    "group": int(g),
                    "n": int(mask.sum()),
                    "events": int(event[mask].sum()),
                    "predicted": _clean(predicted),
                    "observed": _clean(km),
                    "ci_lower": _clean(lo),
                    "ci_upper": _clean(hi),
                    "within_ci": None,
                }
            )
        estimable = bool(np.isfinite(pred[:, j]).all() and np.isfinite(overall[0][j]))
        out.append(
            {
                "months": float(months),
                "estimable": estimable,
                "overall": {
                    "predicted": _clean(float(pred[:, j].mean())),
                    "observed": _clean(overall[0][j]),
                    "ci_lower": _clean(overall[1][j]),
                    "ci_upper": _clean(overall[2][j]),
                },
                "groups": rows,
            }
        )
    return out


def curves_by_group(
    lp: np.ndarray, time: np.ndarray, event: np.ndarray, risk_sets: RiskSets, group: np.ndarray
) -> dict:
    """Monthly Kaplan-Meier curves and mean predicted curves per risk group: the card's figure data."""
    last = min(float(time.max()), risk_sets.last_event_time, CURVE_MONTHS)
    months = np.arange(0.0, np.floor(last) + 1.0)
    pred = predicted_survival(lp, risk_sets, months)
    series = []
    for g in np.unique(group):
        mask = group == g
        km, lo, hi = kaplan_meier_at(time[mask], event[mask], months)
        series.append(
            {
                "group": int(g),
                "n": int(mask.sum()),
                "events": int(event[mask].sum()),
                "observed": [_clean(v) for v in km],
                "ci_lower": [_clean(v) for v in lo],
                "ci_upper": [_clean(v) for v in hi],
                "predicted": [_clean(v) for v in pred[mask].mean(axis=0)],
            }
        )
    return {"months": months.tolist(), "groups": series}
