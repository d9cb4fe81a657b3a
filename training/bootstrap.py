"""One task of the validation bootstrap: resample, rebuild the model as it was built, measure (numpy only).

This module is what joblib ships to the workers (``training.validate.bootstrap`` runs it), so it imports numpy and
the numpy-only kernels (``training.cox_fast``, ``training.smoothed_calibration``) and nothing else: a worker starts in
a fraction of a second. Multiple imputation inside the bootstrap (``impute_replicates``) imports pandas and
``training.imputation`` when it runs.

Replicate b of a stream draws ``numpy.random.default_rng(seeds[b]).integers(0, n, n)``: its resample depends on the
seed only, never on the worker or the chunk. In one replicate every measure uses the same resample: Harrell's C and
the calibration slope (``rms::validate``), and the smoothed calibration at each horizon (Austin, Harrell &
van Klaveren 2020).

How the model is rebuilt on a resample (``procedure``), as it was built on the original data:
- ``refit``: every coefficient re-estimated (Efron), then multiplied by the model's uniform shrinkage factor (1 for an
  unshrunk model; the factor is held at the model's value, not re-estimated in the replicate); Breslow baseline
  re-estimated for the shrunk linear predictor;
- ``recalibration``: one slope on the model's linear predictor re-estimated, baseline re-estimated;
- ``baseline``: the coefficients kept, the baseline re-estimated;
- ``none``: nothing rebuilt (external validation): only the model's own measures on the resample (intervals).
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training import cox_fast
from training import smoothed_calibration as sc
from training.cox_fast import Concordance, Survival

PROCEDURES = ("refit", "recalibration", "baseline", "none")
# A refit started at the validated model's coefficients (a few Newton steps) is redone from 0 when a coefficient
# reaches this size (a hazard ratio beyond e^8 ~ 3,000: a coefficient drifting under monotone likelihood).
DRIFTING = 8.0

# Harrell's optimism bootstrap, plus the model's own C for its interval.
BASE_MEASURES = (
    "c_refit_on_sample",  # C of the model rebuilt on the sample, on the sample (apparent)
    "c_refit_on_original",  # C of that model on the original data (test)
    "slope_refit_on_original",  # calibration slope of that model's linear predictor on the original data (test)
    "c_model_on_sample",  # C of the model being validated, on the sample
    "slope_refit_on_sample",  # the rebuilt model's slope on its own sample (apparent: 1 for a refit, 1/factor shrunk)
)
# At each horizon, for each of sc.BOOTSTRAP_METRICS (ICI, E50, E90, Emax, O/E): the rebuilt model on the sample
# (apparent) and on the original data (test).
SMOOTHED_SUFFIXES = ("refit_on_sample", "refit_on_original")


def smoothed_field(metric: str, months: float, suffix: str) -> str:
    """Name of a smoothed-calibration measure: e.g. ``ici_24_refit_on_sample``."""
    return f"{metric}_{months:g}_{suffix}"


def measures(horizons: Sequence[float] = ()) -> tuple[str, ...]:
    """The fields of a replicate's record: :data:`BASE_MEASURES`, then the smoothed-calibration ones per horizon."""
    smoothed = [
        smoothed_field(metric, h, suffix)
        for h in horizons
        for suffix in SMOOTHED_SUFFIXES
        for metric in sc.BOOTSTRAP_METRICS
    ]
    return (*BASE_MEASURES, *smoothed)


def empty(count: int, horizons: Sequence[float] = ()) -> np.ndarray:
    return np.full(count, np.nan, dtype=[(m, float) for m in measures(horizons)])


@dataclass(frozen=True)
class Problem:
    """One endpoint's bootstrap: data, the validated model and how it was built.

    ``x`` (n, p), ``time``, ``event`` in data order; ``coef`` the validated model's coefficients; ``shrinkage`` the
    uniform factor of a ``refit``; ``horizons`` those of the smoothed calibration (none: not measured).
    """

    x: np.ndarray
    time: np.ndarray
    event: np.ndarray
    coef: np.ndarray
    procedure: str = "refit"
    shrinkage: float = 1.0
    horizons: tuple[float, ...] = ()
    resample_size: int | None = None  # m-out-of-n (a synthetic model judged at its study's size); None: n

    def __post_init__(self) -> None:
        if self.procedure not in PROCEDURES:
            raise ValueError(f"unknown procedure {self.procedure!r}; one of {', '.join(PROCEDURES)}")


class _Data:
    """A data set in time order, with what every measure on it needs computed once."""

    def __init__(self, x: np.ndarray, time: np.ndarray, event: np.ndarray, *, pairs: bool = True):
        self.survival, self.order = Survival.sorted(time, event)
        self.x = np.asarray(x, dtype=float)[self.order]
        n, events = len(self.order), int(self.survival.death.size)
        self.pairs = (
            Concordance(self.survival.time, self.survival.event) if pairs and Concordance.fits(n, events) else None
        )

    def c(self, risk: np.ndarray, multiplicity: np.ndarray | None = None) -> float:
        """Harrell's C of ``risk`` (time order) on these data, or on the resample with these multiplicities."""
        if self.pairs is not None:
            return self.pairs(risk, multiplicity)
        if multiplicity is None:
            return cox_fast.harrell_c(self.survival.time, self.survival.event, risk)[0]
        rows = np.repeat(np.arange(len(risk)), multiplicity)
        return cox_fast.harrell_c(self.survival.time[rows], self.survival.event[rows], risk[rows])[0]


def _breslow_h0(data: Survival, lp: np.ndarray, horizons: Sequence[float]) -> np.ndarray:
    """The Breslow cumulative baseline hazard of linear predictor ``lp`` (time order) at each horizon (NaN past the
    data's follow-up)."""
    w = np.exp(lp - lp.max())
    s0 = np.cumsum(w[::-1])[::-1][data.first]
    cum = np.cumsum(data.d / s0) * np.exp(-lp.max())
    k = np.searchsorted(data.event_times, np.asarray(horizons, dtype=float), side="right")
    h0 = np.concatenate([[0.0], cum])[k]
    return np.where(np.asarray(horizons) <= data.time[-1], h0, np.nan)


def _cll(h0: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """log cumulative hazard at each horizon (rows) for each patient (columns); -inf/NaN where not estimable."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(h0)[:, None] + lp[None, :]


def _rebuild(problem: Problem, sample: _Data, start: np.ndarray) -> np.ndarray | None:
    """The model's coefficients rebuilt on the sample (``problem.procedure``); None if the fit failed."""
    if problem.procedure == "refit":
        warm = bool(np.all(np.abs(start) < DRIFTING))
        fit = cox_fast.fit_coefficients(sample.survival, sample.x, start if warm else None, information=False)
        if warm and (not fit.converged or not np.all(np.abs(fit.beta) < DRIFTING)):
            # Monotone likelihood (a level without events in the resample): the coefficient drifts and where it stops
            # depends on the start; from 0, as R's coxph and training.fit do, the refit is theirs.
            fit = cox_fast.fit_coefficients(sample.survival, sample.x, information=False)
        beta = fit.beta
        return None if not np.all(np.isfinite(beta)) else beta * problem.shrinkage
    if problem.procedure == "recalibration":
        gamma, _ = cox_fast.slope_on(sample.survival, sample.x @ problem.coef)
        return None if not np.isfinite(gamma) else gamma * problem.coef
    return problem.coef


def measure(
    record: np.ndarray, problem: Problem, sample: _Data, original: _Data, multiplicity: np.ndarray | None = None
) -> None:
    """Fill one replicate's ``record``: the validated model's C on ``sample``, and the rebuilt model on ``sample`` and
    ``original``.

    ``multiplicity`` (complete data): the sample is the original's rows with these counts, and C on the sample is
    counted on the original's pairs; otherwise ``sample`` is a data set of its own (an imputed resample).
    """
    horizons = problem.horizons

    def c_on_sample(lp_original: np.ndarray, lp_sample: np.ndarray) -> float:
        return original.c(lp_original, multiplicity) if multiplicity is not None else sample.c(lp_sample)

    record["c_model_on_sample"] = c_on_sample(original.x @ problem.coef, sample.x @ problem.coef)
    if problem.procedure == "none":
        return
    start = problem.coef / problem.shrinkage if problem.shrinkage else problem.coef
    beta = _rebuild(problem, sample, start)
    if beta is None:
        return
    lp_sample, lp_original = sample.x @ beta, original.x @ beta
    record["c_refit_on_sample"] = c_on_sample(lp_original, lp_sample)
    record["c_refit_on_original"] = original.c(lp_original)
    slope = cox_fast.slope_on(original.survival, lp_original)[0]
    record["slope_refit_on_original"] = slope
    # On its own sample a refit's slope is 1 / shrinkage (a recalibration's 1); measured, as rms::validate does.
    calibrated = 1.0 / problem.shrinkage if problem.procedure == "refit" else 1.0
    record["slope_refit_on_sample"] = cox_fast.slope_on(sample.survival, lp_sample, calibrated)[0]
    if horizons:
        hz = np.asarray(horizons, dtype=float)
        h0 = _breslow_h0(sample.survival, lp_sample, horizons)
        on_sample = sc.metrics_on(sample.survival, _cll(h0, lp_sample), hz, calibrated)
        _store(record, horizons, "refit_on_sample", on_sample)
        _store(
            record, horizons, "refit_on_original", sc.metrics_on(original.survival, _cll(h0, lp_original), hz, slope)
        )


def _store(record: np.ndarray, horizons: Sequence[float], suffix: str, values: np.ndarray) -> None:
    for i, h in enumerate(horizons):
        for j, metric in enumerate(sc.BOOTSTRAP_METRICS):
            record[smoothed_field(metric, h, suffix)] = values[i, j]


def replicates(problem: Problem, seeds: Sequence[np.random.SeedSequence]) -> np.ndarray:
    """Bootstrap replicates of complete data: one record per seed with the fields of :func:`measures`.

    Module level so that joblib (loky, Dask) can ship it. A failed rebuild leaves NaN in its record.
    """
    n = len(problem.time)
    size = problem.resample_size or n
    out = empty(len(seeds), problem.horizons)
    original = _Data(problem.x, problem.time, problem.event)
    with np.errstate(all="ignore"):
        for i, seed in enumerate(seeds):
            idx = np.random.default_rng(seed).integers(0, n, size=size)
            multiplicity = np.bincount(idx, minlength=n)[original.order]  # in time order
            if not original.survival.event[multiplicity > 0].any():
                continue
            sample = _Sample(original, multiplicity)
            measure(out[i : i + 1], problem, sample, original, multiplicity)
    return out


class _Sample(_Data):
    """The resample of an original :class:`_Data` with these multiplicities (time order), without re-sorting."""

    def __init__(self, original: _Data, multiplicity: np.ndarray):
        rows = np.repeat(np.arange(len(multiplicity)), multiplicity)  # still in time order
        self.survival = Survival(original.survival.time[rows], original.survival.event[rows])
        self.x = original.x[rows]
        self.order = rows
        self.pairs = None


# ---------------------------------------------------------------------------------------------------------------
# Multiple imputation inside the bootstrap


@dataclass(frozen=True)
class ImputedProblem:
    """The bootstrap of a model fitted with multiple imputation: the registry rows (with missing optional values), how
    they were imputed, and per endpoint a :class:`Problem` for each of the M completed original registries."""

    frame: object  # pandas.DataFrame of the registry (optional covariates may be missing)
    optional: tuple[str, ...]
    terms: dict[str, tuple[str, ...]]
    problems: dict[str, list[Problem]]  # endpoint -> one Problem per completed original registry
    iterations: int
    imputations_per_replicate: int = 1


def impute_replicates(problem: ImputedProblem, seeds: Sequence[np.random.SeedSequence]) -> dict[str, np.ndarray]:
    """Bootstrap replicates with imputation inside: each replicate resamples the registry's patients, imputes the
    resample (chained equations, the outcomes in the imputation model), rebuilds each endpoint's model on the completed
    resample, and tests it on one of the M completed original registries (replicate b uses the (b mod M)-th).

    Returns one structured array per endpoint, plus ``"imputation_seconds"``: the time spent imputing, per replicate.
    """
    import pandas as pd

    from prognosis import covariates
    from training.imputation import impute

    frame: pd.DataFrame = problem.frame  # type: ignore[assignment]
    n = len(frame)
    some = next(iter(problem.problems.values()))
    count = len(some)
    out = {ep: empty(len(seeds), plist[0].horizons) for ep, plist in problem.problems.items()}
    out["imputation_seconds"] = np.zeros(len(seeds))
    originals = {ep: [_Data(p.x, p.time, p.event) for p in plist] for ep, plist in problem.problems.items()}
    names = [*covariates.REQUIRED, *problem.optional, covariates.MODALITY.name]
    with np.errstate(all="ignore"):
        for i, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            idx = rng.integers(0, n, size=n)
            resample = frame.iloc[idx].reset_index(drop=True)
            b = int(seed.spawn_key[-1]) if seed.spawn_key else i
            start = _time.perf_counter()
            try:
                imputed = impute(
                    resample,
                    imputations=problem.imputations_per_replicate,
                    iterations=problem.iterations,
                    seed=int(rng.integers(2**63 - 1)),
                    columns=problem.optional,
                )
            except ValueError:
                out["imputation_seconds"][i] = _time.perf_counter() - start
                continue
            completed = imputed.completed(0)
            out["imputation_seconds"][i] = _time.perf_counter() - start
            for ep, plist in problem.problems.items():
                spec = covariates.ENDPOINTS[ep]
                keep = (completed[spec.time].notna() & completed[spec.event].notna()).to_numpy()
                rows = completed.loc[keep]
                event = rows[spec.event].to_numpy(dtype=float) > 0
                if not event.any():
                    continue
                x = covariates.design_matrix(
                    {c: rows[c].astype(str).to_numpy() for c in names}, list(problem.terms[ep])
                )
                sample = _Data(x, rows[spec.time].to_numpy(dtype=float), event)
                m = b % count
                measure(out[ep][i : i + 1], plist[m], sample, originals[ep][m])
    return out
