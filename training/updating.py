"""Update an existing Cox model on new registry data instead of refitting it, and choose how by closed testing.

Four methods, each keeping the base model's terms (van Houwelingen, Stat Med 2000;19:3401; Steyerberg 2019, ch. 20):

- ``original``: the base model as it is;
- ``baseline``: the base coefficients, the Breslow baseline hazard re-estimated on the new data with the base linear
  predictor as an offset;
- ``recalibration``: one slope on the base linear predictor (Cox partial likelihood) and the baseline re-estimated;
- ``refit``: every coefficient re-estimated on the new data (shrunk: ``training.shrinkage``), baseline re-estimated.

Closed testing (Vergouwe et al., Stat Med 2017;36:4529): the most complex method is tested against the original
model, then against ``baseline``, then against ``recalibration``; the first simpler method that is not
significantly worse (likelihood ratio test at ``ALPHA``) is chosen, else ``refit``. The statistic between two methods
is a sum of the three adjacent components, each a likelihood ratio on the new data:

- original -> baseline (1 df): the full likelihood with the base model's cumulative hazard H_i = Lambda0(t_i)
  exp(lp_i) as known (the Poisson formulation: d_i ~ Poisson(exp(a) H_i)): 2 [O log(O/E) - (O - E)], the O/E test
  of the baseline's level. The partial likelihood does not see the baseline, so no other likelihood can test it;
- baseline -> recalibration (1 df): the Cox partial likelihood of the slope g on lp, 2 [l(g_hat lp) - l(lp)];
- recalibration -> refit (q - 1 df, q the terms that vary in the new data): 2 [l(beta_hat) - l(g_hat beta0)].

Under the original model the three components are asymptotically independent chi-squares (the O/E score
sum_i (d_i - H_i) is orthogonal to every partial-likelihood score sum_i int (x_i - xbar(t)) dM_i, because
sum_i Y_i(t) exp(lp_i) (x_i - xbar(t)) = 0; nested partial likelihood ratios are independent), so their sums are
chi-squares with the summed degrees of freedom. With multiple imputation each composite statistic is computed on
every completed data set and combined by the D2 rule (Li, Meng, Raghunathan & Rubin 1991), an F test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from prognosis import covariates
from prognosis.model import EndpointModel, RiskSets
from training.fit import EfronLikelihood, EventTimes, fit_coefficients
from training.sample_size import cox_snell_r2, shrinkage_adjusted_r2_cs

METHODS: tuple[str, ...] = ("original", "baseline", "recalibration", "refit")
# Significance level of every test of the closed procedure (Vergouwe et al. 2017 use 0.05).
ALPHA = 0.05
# Components between adjacent methods, in the order of METHODS.
COMPONENTS: tuple[str, ...] = ("baseline_level", "slope", "coefficients")


class UpdateError(ValueError):
    """The base model cannot be updated on these data (terms the data lack, no events)."""


def optional_used(terms: Sequence[str]) -> tuple[str, ...]:
    """The optional covariates whose terms a model uses, in the definitions' order."""
    used = set(terms)
    return tuple(
        name for name in covariates.OPTIONAL if used & set(covariates.covariate_terms(covariates.BY_NAME[name]))
    )


def cumulative_hazard_at(risk_sets: RiskSets, time: np.ndarray) -> np.ndarray:
    """The Breslow baseline cumulative hazard Lambda0(t) (right-continuous step function) at each time."""
    k = np.searchsorted(risk_sets.event_times, np.asarray(time, dtype=float), side="right")
    return np.concatenate([[0.0], risk_sets.cum_hazard])[k]


@dataclass(frozen=True)
class Components:
    """The closed test's adjacent likelihood ratio statistics on one (completed) data set, and their estimates.

    ``observed`` and ``expected``: events and the base model's expected events up to ``tau`` (its last event time;
    later follow-up is censored there, the base baseline being unknown beyond it). ``slope`` and ``slope_var``: the
    recalibration slope and its variance (inverse observed information). ``refit_terms``: the terms that vary in the
    data (the refit's parameters); ``refit_coef``: the unpenalised refit (NaN where a term does not vary, or
    everywhere when it failed).
    """

    observed: float
    expected: float
    tau: float
    slope: float
    slope_var: float
    lr: dict[str, float]
    df: dict[str, int]
    refit_coef: np.ndarray
    refit_ok: bool

    @property
    def observed_expected(self) -> float:
        return self.observed / self.expected if self.expected > 0 else math.nan


def baseline_level_lr(observed: float, expected: float) -> float:
    """2 [O log(O/E) - (O - E)]: the Poisson likelihood ratio of exp(a) H_i against H_i (a = log O/E)."""
    if expected <= 0:
        return math.nan
    return 2.0 * ((observed * math.log(observed / expected) if observed > 0 else 0.0) - (observed - expected))


def components(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, base_coef: np.ndarray, base_risk_sets: RiskSets
) -> Components:
    """The three adjacent likelihood ratio statistics of the closed test on one data set.

    Parameters
    ----------
    x : ndarray, shape (n, p)
        The base model's terms on the new data.
    time, event : ndarray, shape (n,)
    base_coef : ndarray, shape (p,)
    base_risk_sets : RiskSets
        The base model's Breslow baseline (its cumulative hazard is the "known" baseline of the O/E test).

    Returns
    -------
    Components
    """
    x = np.asarray(x, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if not event.any():
        raise UpdateError("no events in the new data: the model cannot be updated on them")
    lp = x @ base_coef
    tau = base_risk_sets.last_event_time
    expected = float(np.sum(cumulative_hazard_at(base_risk_sets, np.minimum(time, tau)) * np.exp(lp)))
    observed = float(np.sum(event & (time <= tau)))
    events = EventTimes(time, event)
    on_lp = EfronLikelihood(lp[:, None], time, event, events=events)
    slope = fit_coefficients(lp[:, None], time, event, events=events)[0]
    if np.ptp(lp) > 0 and np.isfinite(slope):
        l_slope, _, info = on_lp.evaluate(np.array([slope]))
        slope_var = float(1.0 / info[0, 0])
    else:  # a constant linear predictor: no slope to estimate
        slope, l_slope, slope_var = 1.0, on_lp.loglik(np.array([1.0])), math.nan
    l_offset = on_lp.loglik(np.array([1.0]))
    vary = np.ptp(x, axis=0) > 0
    refit = np.full(x.shape[1], np.nan)
    beta = fit_coefficients(x[:, vary], time, event, events=events)
    refit_ok = bool(np.all(np.isfinite(beta)))
    if refit_ok:
        refit[vary] = beta
        l_refit = EfronLikelihood(x[:, vary], time, event, events=events).loglik(beta)
    else:
        l_refit = math.nan
    q = int(vary.sum())
    lr = {
        "baseline_level": baseline_level_lr(observed, expected),
        "slope": max(2.0 * (l_slope - l_offset), 0.0),
        "coefficients": max(2.0 * (l_refit - l_slope), 0.0) if refit_ok else math.nan,
    }
    return Components(
        observed=observed,
        expected=expected,
        tau=tau,
        slope=float(slope),
        slope_var=slope_var,
        lr=lr,
        df={"baseline_level": 1, "slope": 1, "coefficients": max(q - 1, 0)},
        refit_coef=refit,
        refit_ok=refit_ok and bool(vary.all()),
    )


def d2(statistics: Sequence[float], df: int) -> tuple[float, float, float]:
    """Combine chi-square statistics of M completed data sets by the D2 rule (Li, Meng, Raghunathan & Rubin 1991).

    r = (1 + 1/M) var(sqrt(d)), D2 = (mean(d)/k - (M + 1)/(M - 1) r) / (1 + r), referred to F(k, v) with
    v = k^(-3/M) (M - 1) (1 + 1/r)^2; as ``mitml``'s D2 (van Buuren, Flexible Imputation of Missing Data, 2018,
    section 5.3.4).

    Returns
    -------
    (F statistic, denominator degrees of freedom v, p-value)
    """
    d = np.asarray(statistics, dtype=float)
    m = len(d)
    if m < 2:
        raise ValueError("the D2 rule needs at least 2 completed data sets")
    r = (1 + 1 / m) * float(np.var(np.sqrt(np.maximum(d, 0.0)), ddof=1))
    value = (d.mean() / df - (m + 1) / (m - 1) * r) / (1 + r)
    v = df ** (-3 / m) * (m - 1) * (1 + 1 / r) ** 2 if r > 0 else math.inf
    p = float(stats.f.sf(value, df, v)) if math.isfinite(v) else float(stats.chi2.sf(value * df, df))
    return float(value), float(v), p


@dataclass(frozen=True)
class ClosedTest:
    """The closed testing procedure's outcome for one endpoint: the chosen method and every test computed."""

    method: str
    tests: list[dict]
    available: tuple[str, ...]
    alpha: float


def closed_test(parts: Sequence[Components], alpha: float = ALPHA) -> ClosedTest:
    """Choose among METHODS by closed testing on one data set (or M completed ones, combined by D2).

    The reference is the most complex method available (``refit`` unless some base term does not vary in the data
    or the refit fails, then ``recalibration``); each simpler method, simplest first, is tested against it, and the
    first not rejected at ``alpha`` is chosen; when all are rejected, the reference.
    """
    available = METHODS if all(c.refit_ok for c in parts) else METHODS[:-1]
    reference = available[-1]
    tests = []
    chosen = None
    for i, method in enumerate(available[:-1]):
        keys = COMPONENTS[i : len(available) - 1]
        df = sum(parts[0].df[k] for k in keys)
        values = [sum(c.lr[k] for k in keys) for c in parts]
        row: dict = {"comparison": f"{reference} vs {method}", "df": int(df)}
        if len(parts) == 1:
            row.update(
                statistic=float(values[0]),
                p_value=float(stats.chi2.sf(values[0], df)) if df else 1.0,
                test="likelihood ratio (chi-square)",
            )
        else:
            value, v, p = d2(values, df)
            row.update(
                statistic=value,
                p_value=p,
                df2=v,
                test=f"D2 over {len(parts)} imputations (F)",
                chi_square_mean=float(np.mean(values)),
            )
        row["rejected"] = bool(row["p_value"] < alpha)
        row["components"] = list(keys)
        tests.append(row)
        if chosen is None and not row["rejected"]:
            chosen = method
    return ClosedTest(method=chosen or reference, tests=tests, available=available, alpha=alpha)


# ---------------------------------------------------------------------------------------------------------------
# The updated coefficients and their covariance


@dataclass(frozen=True)
class Updated:
    """An updated model's coefficients and their covariance (the baseline follows at these coefficients)."""

    coef: np.ndarray
    covariance: np.ndarray
    note: str


def keep_coefficients(base: EndpointModel) -> Updated:
    """``original`` and ``baseline``: the base coefficients with the base covariance (independent of the new data)."""
    return Updated(base.coef.copy(), base.covariance.copy(), "coefficients and their covariance are the base model's")


def recalibrated(base: EndpointModel, slope: float, slope_var: float) -> Updated:
    """``recalibration``: coefficients g beta0; covariance g^2 V0 + Var(g) beta0 beta0' (delta method; the base
    coefficients and the slope come from independent data)."""
    b = base.coef
    return Updated(
        slope * b,
        slope**2 * base.covariance + slope_var * np.outer(b, b),
        "coefficients g * beta0; covariance g^2 V0 + Var(g) beta0 beta0'",
    )


def pool_slopes(parts: Sequence[Components]) -> tuple[float, float]:
    """The recalibration slope and its variance over completed data sets by Rubin's rules (one data set: itself)."""
    g = np.array([c.slope for c in parts])
    w = np.array([c.slope_var for c in parts])
    if len(parts) == 1:
        return float(g[0]), float(w[0])
    m = len(parts)
    return float(g.mean()), float(w.mean() + (1 + 1 / m) * g.var(ddof=1))


# ---------------------------------------------------------------------------------------------------------------
# The anticipated R-squared of the sample-size criteria


def anticipated_r2_cs(
    base: EndpointModel, designs: Sequence[np.ndarray], time: np.ndarray, event: np.ndarray, *, same_data: bool
) -> float:
    """The Cox-Snell R-squared a model of these terms can be anticipated to reach on these data, from ``base``.

    The base linear predictor with one slope fitted (its external-validation R-squared, as R ``coxph(Surv ~ lp)``
    reports ``rsq``), shrunk for the one fitted parameter (or for all of the base's terms when ``same_data``: then
    it is the apparent R-squared of the model on its own training data), averaged over completed data sets.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    n = len(time)
    values = []
    for x in designs:
        lp = np.asarray(x, dtype=float) @ base.coef
        if np.ptp(lp) == 0:
            values.append(0.0)
            continue
        slope = fit_coefficients(lp[:, None], time, event)[0]
        data = EfronLikelihood(lp[:, None], time, event)
        r2 = cox_snell_r2(data.loglik(np.array([slope])), data.loglik(np.array([0.0])), n)
        parameters = len(base.terms) if same_data else 1
        values.append(max(shrinkage_adjusted_r2_cs(r2, n, parameters), 0.0) if r2 > 0 else 0.0)
    return float(np.mean(values))
