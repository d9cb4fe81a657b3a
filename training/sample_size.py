"""Minimum sample size for developing a Cox prediction model (Riley et al. 2019/2020; the ``pmsampsize`` method).

Three criteria, each giving a minimum number of patients for a model with ``parameters`` candidate parameters and an
anticipated Cox-Snell R-squared:

(i)   ``shrinkage``: expected uniform shrinkage of the coefficients at least 0.9;
(ii)  ``optimism``: apparent minus adjusted Nagelkerke R-squared at most 0.05;
(iii) ``precision``: the overall risk at the horizon estimated within +/- 0.05 (95% interval).

Criteria (i) and (ii) follow ``pmsampsize`` (R 1.1.x, Python 0.1.0) to the integer. ``pmsampsize`` does not solve (iii)
for n (it reports the interval at the largest of (i) and (ii)); here (iii) is solved with the same interval, so a
registry can fail on it too, and the interval at the final n is returned as ``pmsampsize`` prints it.

Time units are free (months in this project) but must be the same for the event rate, the mean follow-up and the
horizon. For a registry, rate x mean follow-up = events / patients, so the maximum R-squared depends on the events per
patient only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize

from training.fit import efron_information

SHRINKAGE_TARGET = 0.9
OPTIMISM_MARGIN = 0.05
RISK_MARGIN = 0.05
# pmsampsize's normal quantile for the interval of the overall risk (1.96, not 1.959964...).
Z_RISK = 1.96
# pmsampsize takes the events per patient for the maximum R-squared as the events of a notional 10,000 patients, rounded
# up (a change of at most 1e-4); done the same way here, criterion (ii) agrees with it to the integer.
PMSAMPSIZE_NOTIONAL_PATIENTS = 10_000
# Riley et al. (BMJ 2020) suggest, when no previous model gives an R-squared, to anticipate a Nagelkerke R-squared of
# 0.15, i.e. a Cox-Snell R-squared of 15% of its maximum: a modest model, so a conservative (large) sample size.
CONSERVATIVE_FRACTION_OF_MAX = 0.15


def max_r2_cs(events_per_patient: float) -> float:
    """Largest Cox-Snell R-squared possible for a survival outcome with this many events per patient.

    max R2_CS = 1 - exp(2 lnL_null / n), lnL_null / n = r ln r - r with r = E / n = rate x mean follow-up: the
    log-likelihood of an exponential model without covariates, time measured in units of the mean follow-up
    (Riley et al. 2019 eq. 23 as amended in ``pmsampsize`` 1.0.2, so the maximum does not depend on the time unit).

    Parameters
    ----------
    events_per_patient : float
        E / n, equal to the event rate times the mean follow-up.

    Returns
    -------
    float

    References
    ----------
    Riley RD, Snell KIE, Ensor J, et al. Minimum sample size for developing a multivariable prediction model: Part II
    - binary and time-to-event outcomes. Stat Med 2019;38:1276-1296.
    """
    r = float(events_per_patient)
    if not r > 0:
        raise ValueError("the number of events per patient must be positive")
    return 1.0 - math.exp(2.0 * (r * math.log(r) - r))


def events_per_patient(rate: float, mean_follow_up: float) -> float:
    """Events per patient E / n = rate x mean follow-up, rounded up to 1e-4 as ``pmsampsize`` does."""
    n = PMSAMPSIZE_NOTIONAL_PATIENTS
    return math.ceil(rate * (mean_follow_up * n)) / n


def conservative_r2_cs(events_per_patient: float, fraction: float = CONSERVATIVE_FRACTION_OF_MAX) -> float:
    """The anticipated Cox-Snell R-squared when no model gives one: 15% of the maximum (Riley et al. BMJ 2020).

    A Nagelkerke R-squared of 0.15 is a modest model; a lower anticipated R-squared means more patients are needed,
    so this default errs towards asking for more data.
    """
    return fraction * max_r2_cs(events_per_patient)


def cox_snell_r2(loglik: float, loglik_null: float, n: int) -> float:
    """Cox-Snell R-squared 1 - exp(-LR / n), LR = 2 (loglik - loglik_null), n patients (R ``summary.coxph``'s rsq)."""
    return 1.0 - math.exp(-2.0 * (loglik - loglik_null) / n)


def model_r2_cs(x: np.ndarray, time: np.ndarray, event: np.ndarray, coef: np.ndarray) -> float:
    """Apparent Cox-Snell R-squared of a fitted Cox model (Efron partial likelihood at ``coef`` and at 0)."""
    x = np.asarray(x, dtype=float)
    loglik = efron_information(x, time, event, coef)[0]
    loglik_null = efron_information(x, time, event, np.zeros(x.shape[1]))[0]
    return cox_snell_r2(loglik, loglik_null, len(time))


def shrinkage_adjusted_r2_cs(r2_apparent: float, n: int, parameters: int) -> float:
    """An apparent Cox-Snell R-squared shrunk for optimism: S_VH x R2_app, S_VH = 1 + p / (n ln(1 - R2_app)).

    Riley et al. (2019) use this to turn a previous model's apparent R-squared into the anticipated one; the van
    Houwelingen heuristic shrinkage S_VH = 1 - p / LR is the same expression.
    """
    shrinkage = 1.0 + parameters / (n * math.log(1.0 - r2_apparent))
    return shrinkage * r2_apparent


def _patients_for_shrinkage(parameters: int, r2_cs: float, shrinkage: float) -> float:
    """n solving S = 1 + p / (n ln(1 - R2_CS / S)) (Riley et al. 2019 eq. 11), not rounded."""
    return parameters / ((shrinkage - 1.0) * math.log(1.0 - r2_cs / shrinkage))


def expected_shrinkage(n: int, parameters: int, r2_cs: float) -> float:
    """The uniform shrinkage expected for ``n`` patients: the S solving criterion (i)'s equation for this n.

    Returns
    -------
    float
        In (R2_CS, 1); close to 1 when n is large relative to the parameters.
    """
    if not 0 < r2_cs < 1:
        raise ValueError("the Cox-Snell R-squared must be in (0, 1)")
    lo, hi = r2_cs * (1 + 1e-12), 1 - 1e-15
    f = lambda s: _patients_for_shrinkage(parameters, r2_cs, s) - n  # noqa: E731  (decreasing in s)
    if f(hi) < 0:
        return 1.0
    if f(lo) > 0:
        return lo
    return float(optimize.brentq(f, lo, hi, xtol=1e-14, rtol=1e-14))


def risk_interval(rate: float, person_time: float, horizon: float) -> tuple[float, float, float]:
    """Overall risk 1 - exp(-rate t) at the horizon with ``pmsampsize``'s 95% interval for a given person-time.

    The rate's interval is rate +/- 1.96 sqrt(rate / person-time) (Poisson, normal approximation).

    Returns
    -------
    (risk, lower, upper)
    """
    half = Z_RISK * math.sqrt(rate / person_time)
    risk = 1.0 - math.exp(-rate * horizon)
    return risk, 1.0 - math.exp(-(rate - half) * horizon), 1.0 - math.exp(-(rate + half) * horizon)


def _patients_for_precision(rate: float, mean_follow_up: float, horizon: float, margin: float) -> int:
    """Smallest n whose interval for the risk at the horizon lies within +/- ``margin`` of it on both sides.

    risk - lower = exp(-rate t)(exp(h t) - 1) is the wider side (h the rate's half-width), so
    h <= ln(1 + margin exp(rate t)) / t, and h = 1.96 sqrt(rate / (n mean_follow_up)) gives n.
    """
    h_max = math.log1p(margin * math.exp(rate * horizon)) / horizon
    n = max(1, math.ceil(Z_RISK**2 * rate / (mean_follow_up * h_max**2)))
    while n > 1 and _margin(rate, (n - 1) * mean_follow_up, horizon) <= margin:  # floating-point edge
        n -= 1
    while _margin(rate, n * mean_follow_up, horizon) > margin:
        n += 1
    return n


def _margin(rate: float, person_time: float, horizon: float) -> float:
    risk, lower, upper = risk_interval(rate, person_time, horizon)
    return max(risk - lower, upper - risk)


@dataclass(frozen=True)
class SampleSize:
    """Riley et al.'s minimum sample size for one endpoint, beside the data actually available.

    ``to_card()`` gives the CONTRACT's ``sample_size`` block (and more keys).
    """

    r2_cs: float
    r2_cs_source: str
    parameters: int
    patients: int | None
    events: int | None
    rate: float
    mean_follow_up: float
    horizon: float
    max_r2_cs: float
    nagelkerke_r2: float
    shrinkage_target: float
    optimism_shrinkage: float
    criteria: dict[str, int]
    minimum_patients: int
    minimum_events: int
    events_per_parameter_required: float
    risk_at_horizon: float
    risk_interval_at_minimum: tuple[float, float]
    expected_shrinkage: float | None

    @property
    def adequate(self) -> bool | None:
        return None if self.patients is None else self.patients >= self.minimum_patients

    def to_card(self) -> dict:
        """The model card's ``sample_size`` block: the CONTRACT keys first, then the working."""
        out = {
            "r2_cs": self.r2_cs,
            "parameters": self.parameters,
            "patients": self.patients,
            "events": self.events,
            "criteria": dict(self.criteria),
            "minimum_patients": self.minimum_patients,
            "adequate": self.adequate,
        }
        extra = asdict(self)
        for key in out:
            extra.pop(key, None)
        extra["risk_interval_at_minimum"] = list(self.risk_interval_at_minimum)
        return {**out, **extra}


def minimum_sample_size(
    *,
    parameters: int,
    rate: float,
    mean_follow_up: float,
    horizon: float,
    r2_cs: float,
    shrinkage: float = SHRINKAGE_TARGET,
    optimism: float = OPTIMISM_MARGIN,
    margin: float = RISK_MARGIN,
    patients: int | None = None,
    events: int | None = None,
    r2_cs_source: str = "given",
) -> SampleSize:
    """Minimum number of patients for a Cox model by Riley et al.'s three criteria (``pmsampsize`` type "s").

    Parameters
    ----------
    parameters : int
        Candidate predictor parameters (model terms), not predictors.
    rate : float
        Events per unit of person-time.
    mean_follow_up : float
        Mean follow-up per patient, same time unit.
    horizon : float
        Time at which the overall risk should be estimated precisely, same time unit.
    r2_cs : float
        Anticipated (optimism-adjusted) Cox-Snell R-squared of the model.
    shrinkage, optimism, margin : float
        Targets of criteria (i), (ii) and (iii): 0.9, 0.05 and 0.05 as recommended.
    patients, events : int, optional
        The data at hand; given, the result says whether they are enough and the shrinkage to expect.
    r2_cs_source : str
        Where ``r2_cs`` came from, for the record.

    Returns
    -------
    SampleSize
        ``criteria`` = {"shrinkage", "optimism", "precision"} patients each; ``minimum_patients`` their maximum.

    References
    ----------
    Riley RD, Ensor J, Snell KIE, et al. Calculating the sample size required for developing a clinical prediction
    model. BMJ 2020;368:m441.
    Riley RD, Snell KIE, Ensor J, et al. Minimum sample size for developing a multivariable prediction model: Part II
    - binary and time-to-event outcomes. Stat Med 2019;38:1276-1296 (correction: Stat Med 2019;38:5672).
    Ensor J, Martin EC, Riley RD. pmsampsize: Calculates the minimum sample size required for developing a
    multivariable prediction model. R package, CRAN.
    """
    if parameters < 1:
        raise ValueError("at least one parameter is needed")
    if not (rate > 0 and mean_follow_up > 0 and horizon > 0):
        raise ValueError("the event rate, the mean follow-up and the horizon must be positive")
    largest = max_r2_cs(events_per_patient(rate, mean_follow_up))
    if not 0 < r2_cs < largest:
        raise ValueError(
            f"the Cox-Snell R-squared {r2_cs:g} must be in (0, {largest:.4f}), the largest possible "
            "with this event rate and follow-up"
        )
    if not r2_cs < shrinkage < 1:
        raise ValueError("the target shrinkage must be between the R-squared and 1")
    n_shrinkage = math.ceil(_patients_for_shrinkage(parameters, r2_cs, shrinkage))
    # (ii): the shrinkage that keeps apparent - adjusted Nagelkerke R2 within the margin, then (i)'s formula.
    s_optimism = r2_cs / (r2_cs + optimism * largest)
    n_optimism = math.ceil(_patients_for_shrinkage(parameters, r2_cs, s_optimism))
    n_precision = _patients_for_precision(rate, mean_follow_up, horizon, margin)
    n_min = max(n_shrinkage, n_optimism, n_precision)
    risk, lower, upper = risk_interval(rate, n_min * mean_follow_up, horizon)
    return SampleSize(
        r2_cs=float(r2_cs),
        r2_cs_source=r2_cs_source,
        parameters=int(parameters),
        patients=None if patients is None else int(patients),
        events=None if events is None else int(events),
        rate=float(rate),
        mean_follow_up=float(mean_follow_up),
        horizon=float(horizon),
        max_r2_cs=largest,
        nagelkerke_r2=r2_cs / largest,
        shrinkage_target=shrinkage,
        optimism_shrinkage=s_optimism,
        criteria={"shrinkage": n_shrinkage, "optimism": n_optimism, "precision": n_precision},
        minimum_patients=n_min,
        minimum_events=math.ceil(n_min * rate * mean_follow_up),
        events_per_parameter_required=n_min * rate * mean_follow_up / parameters,
        risk_at_horizon=risk,
        risk_interval_at_minimum=(lower, upper),
        expected_shrinkage=None if patients is None else expected_shrinkage(patients, parameters, r2_cs),
    )


def assess(
    time: np.ndarray, event: np.ndarray, parameters: int, horizon: float, r2_cs: float | None = None
) -> SampleSize:
    """Is this endpoint's data enough for a model with ``parameters`` terms? Riley et al.'s criteria on the registry.

    The event rate (events / person-time) and mean follow-up come from the data. ``r2_cs`` is the anticipated
    Cox-Snell R-squared; without one, the conservative default of 15% of the maximum is used (and recorded in
    ``r2_cs_source``). An apparent R-squared of a model fitted on these same data is optimistic: pass it through
    :func:`shrinkage_adjusted_r2_cs` first.

    Parameters
    ----------
    time : ndarray, shape (n,)
    event : ndarray of bool, shape (n,)
    parameters : int
    horizon : float
    r2_cs : float, optional

    Returns
    -------
    SampleSize
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    n, e = len(time), int(event.sum())
    if n == 0 or e == 0:
        raise ValueError("the data have no events: no sample size can be assessed")
    person_time = float(time.sum())
    rate, mean_follow_up = e / person_time, person_time / n
    source = "given"
    if r2_cs is None:
        r2_cs = conservative_r2_cs(events_per_patient(rate, mean_follow_up))
        source = f"conservative default: {CONSERVATIVE_FRACTION_OF_MAX:.0%} of the maximum"
    return minimum_sample_size(
        parameters=parameters,
        rate=rate,
        mean_follow_up=mean_follow_up,
        horizon=horizon,
        r2_cs=r2_cs,
        patients=n,
        events=e,
        r2_cs_source=source,
    )
