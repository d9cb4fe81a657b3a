"""Uniform shrinkage of a refitted Cox model by the bootstrap calibration slope, baseline re-estimated after shrinking.

A model fitted on too few patients predicts too extremely: on new patients its linear predictor needs a slope below
1. Harrell's bootstrap estimates that slope without new patients: refit the model on a bootstrap resample, fit a Cox
model of the original outcomes on the refit's linear predictor; the mean of those slopes over the resamples is the
optimism-corrected calibration slope (R ``rms::validate``'s corrected "Slope"). Shrinking every coefficient by it
(van Houwelingen & le Cessie 1990; Harrell, Regression Modeling Strategies 2015, section 5.5; Steyerberg, Clinical
Prediction Models 2019, ch. 13) and then re-estimating the Breslow baseline at the shrunk coefficients (so that the
model still predicts as many events as the data had) gives predictions whose expected calibration slope is 1.

The factor is capped at 1 (a slope above 1 means no overfitting to correct; nothing is expanded). The covariance of
the shrunk coefficients is factor^2 times the fitted one (the factor taken as fixed): Wald statistics and p-values are
unchanged, hazard-ratio intervals are the fitted ones pulled towards 1 on the log scale, and predicted-survival
intervals narrow accordingly. The factor's own sampling error is not propagated (it is recorded, ``mc_se`` being its
Monte-Carlo error only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from prognosis.model import RiskSets
from training.fit import EventTimes, fit_coefficients
from training.imputation import pooled_risk_sets

NONE = "none"
BOOTSTRAP = "bootstrap_uniform"
MODES: tuple[str, ...] = ("auto", "none", "bootstrap")
DEFAULT_REPLICATES = 200
RISK_SET_KEYS = ("event_times", "events", "at_risk", "cum_hazard", "cum_var_hazard", "cum_xbar_hazard")


@dataclass(frozen=True)
class Shrinkage:
    """How a model's coefficients were shrunk: ``factor`` multiplies every coefficient (1 and method "none": not)."""

    method: str
    factor: float
    reason: str
    calibration_slope: float | None = None
    mc_se: float | None = None
    replicates: int = 0
    failed: int = 0
    seed: int | None = None
    stream: int | None = None

    def to_card(self) -> dict:
        """The card's ``endpoints.<ep>.shrinkage`` block: ``method`` and ``factor`` first, then the working."""
        out = asdict(self)
        return {"method": out.pop("method"), "factor": out.pop("factor"), **out}


def not_shrunk(reason: str) -> Shrinkage:
    return Shrinkage(method=NONE, factor=1.0, reason=reason)


def bootstrap_slopes(
    designs: Sequence[np.ndarray], time: np.ndarray, event: np.ndarray, *, replicates: int, seed: int, stream: int = 0
) -> np.ndarray:
    """The calibration slope, on the original data, of the model refitted on each of ``replicates`` resamples.

    Resample b draws ``integers(0, n, n)`` from ``SeedSequence([seed, stream]).spawn(replicates)[b]`` (the
    convention of ``training.validate``) and, with several completed data sets (multiple imputation), uses data set
    b mod M, so the replicates are spread evenly over the imputations. NaN where a refit failed.

    References
    ----------
    Harrell FE. Regression Modeling Strategies. 2nd ed. Springer 2015, section 5.3 (bootstrap optimism).
    Van Houwelingen JC, le Cessie S. Predictive value of statistical models. Stat Med 1990;9:1303-1325.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    designs = [np.asarray(x, dtype=float) for x in designs]
    n = len(time)
    events = EventTimes(time, event)
    out = np.full(replicates, np.nan)
    for b, child in enumerate(np.random.SeedSequence([seed, stream]).spawn(replicates)):
        x = designs[b % len(designs)]
        idx = np.random.default_rng(child).integers(0, n, size=n)
        if not event[idx].any():
            continue
        beta = fit_coefficients(x[idx], time[idx], event[idx])
        if not np.all(np.isfinite(beta)):
            continue
        lp = x @ beta
        if np.ptp(lp) == 0:
            continue
        out[b] = fit_coefficients(lp[:, None], time, event, events=events)[0]
    return out


def bootstrap_shrinkage(
    designs: Sequence[np.ndarray],
    time: np.ndarray,
    event: np.ndarray,
    *,
    replicates: int,
    seed: int,
    stream: int = 0,
    reason: str,
) -> Shrinkage:
    """Uniform shrinkage by the mean bootstrap calibration slope, capped at 1 (see the module docstring)."""
    if replicates < 2:
        raise ValueError("at least 2 bootstrap replicates are needed to estimate the shrinkage")
    slopes = bootstrap_slopes(designs, time, event, replicates=replicates, seed=seed, stream=stream)
    ok = np.isfinite(slopes)
    if ok.sum() < 2:
        raise ValueError("the bootstrap refits failed: no shrinkage factor can be estimated")
    slope = float(slopes[ok].mean())
    return Shrinkage(
        method=BOOTSTRAP,
        factor=min(1.0, slope),
        reason=reason,
        calibration_slope=slope,
        mc_se=float(slopes[ok].std(ddof=1) / math.sqrt(ok.sum())),
        replicates=replicates,
        failed=int((~ok).sum()),
        seed=seed,
        stream=stream,
    )


def shrink(coef: np.ndarray, covariance: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Shrunk coefficients and their covariance (factor taken as fixed)."""
    return factor * np.asarray(coef, dtype=float), factor**2 * np.asarray(covariance, dtype=float)


def risk_sets_at(designs: Sequence[np.ndarray], time: np.ndarray, event: np.ndarray, coef: np.ndarray) -> RiskSets:
    """The Breslow baseline re-estimated at ``coef`` (averaged over completed data sets, as Rubin's rules pool it)."""
    pooled = pooled_risk_sets(designs, np.asarray(time, dtype=float), np.asarray(event, dtype=bool), coef)
    return RiskSets(**{key: pooled[key] for key in RISK_SET_KEYS})
