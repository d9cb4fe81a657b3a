"""Validate a trained model version on registry data and write the results into its model card.

For each endpoint: Harrell's and Uno's C, time-dependent AUC and Brier scores at 12/24/36 months, the integrated
Brier score, Harrell's bootstrap optimism correction of the C-index, the calibration slope (``rms::validate``) and the
smoothed calibration at each horizon (ICI, E50, E90, observed/expected; Austin, Harrell & van Klaveren 2020) with its
curve; a descriptive table of predicted vs Kaplan-Meier survival by risk group; the proportional-hazards score test
(``cox.zph``) and events per parameter. The key names are described in docs/validation.md; ``validation_failures`` is
the promotion gate.

The bootstrap rebuilds the model on each resample as it was built (refit, with the card's shrinkage; recalibration or
baseline for an updated model; imputation inside each replicate for a model fitted with multiple imputation) and
measures everything on the same resample (``training.bootstrap``). It runs through joblib, so
``joblib.parallel_config(backend="dask")`` moves it to a Dask cluster. Every replicate draws from its own random
stream derived from the master seed (``numpy.random.SeedSequence``), so results are identical for a seed whatever the
number of workers or the backend.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time as _time
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO, cast

import joblib
import numpy as np
import pandas as pd
from sksurv.metrics import (
    brier_score,
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator

from prognosis import covariates
from prognosis.model import EndpointModel, Model, RiskSets
from prognosis.normal import Z_95
from prognosis.store import MODEL_JSON, load_model, read_manifest
from registry import Registry, endpoint_frame, load_registry
from training import artifact, calibration, cox_fast, ph_test, synthetic
from training import bootstrap as boot_module
from training import card as card_module
from training import smoothed_calibration as sc
from training.bootstrap import BASE_MEASURES, ImputedProblem, Problem
from training.fit import fit_coefficients

HORIZONS_MONTHS: tuple[float, ...] = (12.0, 24.0, 36.0)
DEFAULT_REPLICATES = 200
DEFAULT_SEED = 20170101
PH_TRANSFORM: ph_test.Transform = "km"
# Uno's C is truncated at the last horizon: inverse-probability-of-censoring weights are unstable in the thin tail.
UNO_TAU_MONTHS = HORIZONS_MONTHS[-1]
BRIER_GRID_POINTS = 100
FIGURE_GROUPS = 3
# The histogram of the predicted risks beneath the smoothed calibration curve: bins of this width on [0, 1].
HISTOGRAM_BIN = 0.05

# The promotion gate (docs/validation.md): a model below these has failed validation.
MIN_CORRECTED_C = 0.55
SLOPE_RANGE = (0.5, 1.5)
# An optimism-corrected calibration slope below this fails: predictions too extreme (docs/validation.md, "The gate").
MIN_CORRECTED_SLOPE = 0.85
# Below these only a warning.
MIN_EVENTS_PER_PARAMETER = 10
PH_ALPHA = 0.05
SLOPE_WARNING_RANGE = (MIN_CORRECTED_SLOPE, 1.2)
# Observed/expected risk at a horizon outside this range: a warning (calibration-in-the-large).
OBSERVED_EXPECTED_RANGE = (0.8, 1.25)
# Refitted coefficients this close to the model's mean the data are its training data (internal validation).
SAME_FIT_TOLERANCE = 1e-6
# Multiple imputation inside the bootstrap: imputations of each resample (docs/validation.md, "Missing covariates").
IMPUTATIONS_PER_REPLICATE = 1

Progress = Callable[[str], None]


class ValidationError(Exception):
    """The model cannot be validated on these data (missing covariates, no events, too few patients)."""


# ---------------------------------------------------------------------------------------------------------------
# Small pieces


def _survival_array(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return y


def _r(value: float | None, digits: int = 4) -> float | None:
    """Rounded for the card; None for what is not estimable."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


class StderrProgress:
    """A progress counter on stderr: redrawn in place on a terminal, a line per tenth otherwise (logs, CI)."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start = _time.perf_counter()
        self._shown = -1

    def update(self, k: int) -> None:
        self.done += k
        elapsed = _time.perf_counter() - self.start
        text = f"{self.label}: {self.done}/{self.total} replicates ({elapsed:.1f} s)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if self.done >= self.total else ""))
        else:
            tenth = 10 * self.done // max(self.total, 1)
            if tenth == self._shown:
                return
            self._shown = tenth
            self.stream.write(text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------------------------
# How the model was built (read from its card)


@dataclasses.dataclass(frozen=True)
class Building:
    """How one endpoint's model was built, as the bootstrap must rebuild it: ``procedure`` (``training.bootstrap``),
    the uniform ``shrinkage`` factor (1: none) and its ``method`` as the card names it."""

    procedure: str = "refit"
    shrinkage: float = 1.0
    method: str = "none"
    # A synthetic model stands for a study of this many patients: its bootstrap resamples are of that size (an
    # m-out-of-n bootstrap), so that optimism, the calibration slope and the intervals are what such a study shows.
    resample_size: int | None = None

    @property
    def shrunk(self) -> bool:
        return self.method not in ("none", "")


def building(card: dict, endpoint: str) -> Building:
    """From ``card.endpoints.<endpoint>``: ``shrinkage: {method, factor}`` and ``update: {method}``.

    An update by ``original`` or ``baseline`` keeps the base model's coefficients; ``recalibration`` re-estimates one
    slope on its linear predictor; ``refit`` (or no update) every coefficient. An absent or "none" shrinkage is 1.
    """
    entry = (card.get("endpoints") or {}).get(endpoint) or {}
    shrinkage = entry.get("shrinkage") or {}
    method = str(shrinkage.get("method") or "none")
    factor = float(shrinkage.get("factor", 1.0)) if method != "none" else 1.0
    update = str((entry.get("update") or {}).get("method") or "refit")
    procedure = {"original": "baseline", "baseline": "baseline", "recalibration": "recalibration"}.get(update, "refit")
    evidence = (card.get("data") or {}).get("evidence_patients")
    resample = int(evidence) if evidence and (entry.get("variance_scale") or 1.0) > 1.0 else None
    return Building(procedure, factor if math.isfinite(factor) and factor > 0 else 1.0, method, resample)


def imputed(card: dict) -> dict | None:
    """The card's ``missing_data`` block when the model was fitted with multiple imputation, else None."""
    block = card.get("missing_data") or {}
    return block if block.get("method") == "multiple_imputation" else None


def load_validation_registry(directory: str | Path, source: str, **kwargs: Any) -> Registry:
    """Load ``source`` as validation data for the model at ``directory``: rows with missing optional covariates are
    kept (``allow_missing_optional``) when the model was fitted with multiple imputation, so they can be imputed."""
    model = load_model(Path(directory))
    return load_registry(source, allow_missing_optional=imputed(model.card) is not None, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap (Harrell's optimism correction)


# What each bootstrap replicate measures (Harrell's optimism bootstrap, plus the model's own C for its interval);
# with horizons, the smoothed-calibration measures follow (training.bootstrap.measures).
BOOTSTRAP_MEASURES = BASE_MEASURES
REFIT_MEASURES = ("c_refit_on_sample", "c_refit_on_original", "slope_refit_on_sample", "slope_refit_on_original")


def _chunks(seeds: list, replicates: int) -> list[list]:
    # Chunks of several replicates amortise the dispatch (and, for Dask, the scheduling) cost; ~40 tasks still give
    # an even load over a few workers and a smooth progress counter.
    size = max(1, math.ceil(replicates / 40))
    return [seeds[i : i + size] for i in range(0, replicates, size)]


class _Pending:
    """Bootstrap tasks handed to joblib: they start at once (joblib dispatches a generator's tasks as workers free up,
    whether or not its results are read yet), so the caller can compute other things meanwhile; ``result()`` collects
    them in order, showing progress."""

    def __init__(
        self, function: Callable, problem: Any, seeds: list, *, n_jobs: int | None, label: str, show_progress: bool
    ):
        self.chunks = _chunks(seeds, len(seeds))
        self.label, self.total, self.show_progress = label, len(seeds), show_progress
        parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
        self.output = parallel(joblib.delayed(function)(problem, chunk) for chunk in self.chunks)

    def result(self) -> list:
        progress = StderrProgress(self.label, self.total) if self.show_progress else None
        results = []
        for chunk, result in zip(self.chunks, self.output, strict=True):
            results.append(result)
            if progress:
                progress.update(len(chunk))
        return results


def _start_bootstrap(
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    coef: np.ndarray,
    *,
    replicates: int,
    seed: int,
    stream: int,
    n_jobs: int | None,
    label: str,
    show_progress: bool,
    horizons: Sequence[float],
    procedure: str,
    shrinkage: float,
    resample_size: int | None = None,
) -> tuple[_Pending, Problem]:
    problem = Problem(
        np.asarray(x, dtype=float),
        np.asarray(time, dtype=float),
        np.asarray(event, dtype=bool),
        np.asarray(coef, dtype=float),
        procedure,
        float(shrinkage),
        tuple(float(h) for h in horizons),
        resample_size,
    )
    seeds = np.random.SeedSequence([seed, stream]).spawn(replicates)
    pending = _Pending(boot_module.replicates, problem, seeds, n_jobs=n_jobs, label=label, show_progress=show_progress)
    return pending, problem


def _records(pending: _Pending, problem: Problem) -> np.ndarray:
    results = pending.result()
    return np.concatenate(results) if results else boot_module.empty(0, problem.horizons)


def bootstrap(
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    coef: np.ndarray,
    *,
    replicates: int,
    seed: int,
    stream: int = 0,
    refit: bool = True,
    n_jobs: int | None = None,
    label: str = "bootstrap",
    show_progress: bool = True,
    horizons: Sequence[float] = (),
    procedure: str | None = None,
    shrinkage: float = 1.0,
) -> np.ndarray:
    """Run ``replicates`` bootstrap replicates in parallel with joblib: a structured array, one record per replicate,
    fields :data:`BOOTSTRAP_MEASURES` and, for each of ``horizons``, the smoothed-calibration measures
    (``training.bootstrap.measures``).

    ``procedure`` (default ``refit`` if ``refit`` else ``none``) and ``shrinkage`` say how the model is rebuilt on
    each resample (``training.bootstrap``). Replicate b uses ``SeedSequence([seed, stream]).spawn(replicates)[b]``,
    so the result depends on (seed, stream, replicates) only, not on the backend, the number of workers or the
    chunking.
    ``n_jobs=None`` leaves the choice to joblib's configuration (``joblib.parallel_config``).
    """
    pending, problem = _start_bootstrap(
        x,
        time,
        event,
        coef,
        replicates=replicates,
        seed=seed,
        stream=stream,
        n_jobs=n_jobs,
        label=label,
        show_progress=show_progress,
        horizons=horizons,
        procedure=procedure or ("refit" if refit else "none"),
        shrinkage=shrinkage,
    )
    return _records(pending, problem)


# ---------------------------------------------------------------------------------------------------------------
# One endpoint


def discrimination(
    lp: np.ndarray, time: np.ndarray, event: np.ndarray, risk_sets: RiskSets, warn: Callable[[str], None]
) -> dict:
    """Harrell's C, Uno's C, time-dependent AUC and Brier scores at the horizons, integrated Brier score.

    References
    ----------
    Harrell FE, Lee KL, Mark DB. Stat Med 1996;15:361-387.
    Uno H, Cai T, Pencina MJ, D'Agostino RB, Wei LJ. On the C-statistics for evaluating overall adequacy of risk
    prediction procedures with censored survival data. Stat Med 2011;30:1105-1117.
    Uno H, Cai T, Tian L, Wei LJ. Evaluating prediction rules for t-year survivors with censored regression models.
    JASA 2007;102:527-537 (cumulative/dynamic AUC).
    Graf E, Schmoor C, Sauerbrei W, Schumacher M. Assessment and comparison of prognostic classification schemes
    for survival data. Stat Med 1999;18:2529-2545 (Brier score with censoring weights).
    """
    y = _survival_array(time, event)
    harrell = concordance_index_censored(event, time, lp)
    out: dict = {
        "harrell_c": {
            "apparent": float(harrell[0]),
            "concordant": int(harrell[1]),
            "discordant": int(harrell[2]),
            "tied_risk": int(harrell[3]),
            "tied_time": int(harrell[4]),
        }
    }
    tau = UNO_TAU_MONTHS if time.max() > UNO_TAU_MONTHS else None
    try:
        uno = concordance_index_ipcw(y, y, lp, tau=tau)[0]
    except ValueError as exc:
        uno = None
        warn(f"Uno's C could not be estimated ({exc})")
    out["uno_c"] = {"apparent": _r(uno), "tau_months": tau}

    last_model_time = risk_sets.last_event_time
    usable = [h for h in HORIZONS_MONTHS if time.min() < h < time.max() and h <= last_model_time]
    skipped = [h for h in HORIZONS_MONTHS if h not in usable]
    if skipped:
        warn(
            f"horizons {', '.join(f'{h:g}' for h in skipped)} months are beyond the follow-up of the data or of "
            "the model: no time-dependent AUC or Brier score there"
        )
    auc_rows, brier_rows = [], []
    if usable:
        auc, _ = cumulative_dynamic_auc(y, y, lp, np.array(usable))
        surv = calibration.predicted_survival(lp, risk_sets, np.array(usable))
        _, bs = brier_score(y, y, surv, np.array(usable))
        auc_rows = [{"months": h, "auc": _r(a)} for h, a in zip(usable, auc, strict=True)]
        brier_rows = [{"months": h, "brier": _r(b)} for h, b in zip(usable, bs, strict=True)]
    out["time_dependent_auc"] = _merge_horizons(auc_rows, "auc")
    out["brier_score"] = _merge_horizons(brier_rows, "brier")

    # Integrated Brier score from the first observed time to the last horizon (within the data and the model's
    # follow-up), beside that of the Kaplan-Meier curve without covariates: the skill score is 1 - model/null.
    lo = float(np.min(time))
    hi = min(UNO_TAU_MONTHS, last_model_time, float(np.nextafter(time.max(), 0)))
    ibs = None
    if hi > lo:
        grid = np.linspace(lo, hi, BRIER_GRID_POINTS)
        grid = grid[grid < time.max()]
        try:
            model = integrated_brier_score(y, y, calibration.predicted_survival(lp, risk_sets, grid), grid)
            km_t, km_s = kaplan_meier_estimator(event, time)
            km = np.concatenate([[1.0], km_s])[np.searchsorted(km_t, grid, side="right")]
            null = integrated_brier_score(y, y, np.tile(km, (len(time), 1)), grid)
            ibs = {
                "model": _r(model),
                "null_km": _r(null),
                "skill": _r(1.0 - model / null) if null > 0 else None,
                "from_months": _r(lo, 3),
                "to_months": _r(hi, 3),
            }
        except ValueError as exc:
            warn(f"the integrated Brier score could not be estimated ({exc})")
    out["integrated_brier_score"] = ibs
    return out


def _merge_horizons(rows: list[dict], key: str) -> list[dict]:
    by_month = {r["months"]: r for r in rows}
    return [by_month.get(h, {"months": h, key: None}) for h in HORIZONS_MONTHS]


def _horizon_h0(model: EndpointModel, horizons: Sequence[float] = HORIZONS_MONTHS) -> np.ndarray:
    """The model's Breslow cumulative baseline hazard at the horizons (NaN past its last event time)."""
    return calibration.baseline_cumulative_hazard(model.risk_sets, np.array(horizons, dtype=float))


def _smoothed_apparent(
    lp: np.ndarray, time: np.ndarray, event: np.ndarray, h0: np.ndarray, horizons: Sequence[float] = HORIZONS_MONTHS
) -> list[sc.SmoothedCalibration | str]:
    """Smoothed calibration of the model's predictions at each horizon, or why it is not estimable there."""
    out: list[sc.SmoothedCalibration | str] = []
    for months, base in zip(horizons, h0, strict=True):
        if not (np.isfinite(base) and base > 0):
            out.append("the horizon is beyond the model's follow-up")
        elif months > time.max():
            out.append("the horizon is beyond the follow-up of the data")
        else:
            try:
                out.append(sc.smoothed_calibration(None, time, event, months, cumulative_hazard=base * np.exp(lp)))
            except sc.CalibrationError as exc:
                out.append(str(exc))
    return out


def _numbers(
    model: EndpointModel,
    x: np.ndarray,
    lp: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    notes: list[str],
    horizons: Sequence[float] = HORIZONS_MONTHS,
    refit: np.ndarray | None = None,
) -> dict:
    """The apparent measures of one (completed) data set, unrounded: discrimination, slope, smoothed calibration,
    the refit on these data (``refit`` when already made) and the proportional-hazards test."""
    out = discrimination(lp, time, event, model.risk_sets, notes.append)
    out["slope"] = cox_fast.slope(lp, time, event)
    out["smoothed"] = _smoothed_apparent(lp, time, event, _horizon_h0(model, horizons), horizons)
    refit = fit_coefficients(x, time, event) if refit is None else refit
    out["refit"] = refit
    vary = np.ptp(x, axis=0) > 0
    try:
        beta = refit if np.all(np.isfinite(refit)) else model.coef
        out["ph"] = (vary, ph_test.zph_score_test(x[:, vary], time, event, beta[vary], PH_TRANSFORM))
    except np.linalg.LinAlgError:
        out["ph"] = (vary, None)
    return out


def _figures(
    model: EndpointModel,
    lp: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    smoothed: list[sc.SmoothedCalibration | str] | None = None,
    horizons: Sequence[float] = HORIZONS_MONTHS,
) -> dict:
    """The figures: predicted vs Kaplan-Meier survival by risk group (a descriptive table and curves), and the
    smoothed calibration curves with the histogram of the predicted risks at each horizon."""
    group = calibration.risk_groups(lp)
    h0 = _horizon_h0(model, horizons)
    edges = np.round(np.arange(0.0, 1.0 + HISTOGRAM_BIN / 2, HISTOGRAM_BIN), 10)
    histograms = []
    for base in h0:
        with np.errstate(all="ignore"):
            risk = -np.expm1(-base * np.exp(lp))
        counts = np.histogram(risk, bins=edges)[0] if np.all(np.isfinite(risk)) else None
        histograms.append(None if counts is None else {"edges": edges.tolist(), "counts": counts.tolist()})
    return {
        "smoothed": smoothed if smoothed is not None else _smoothed_apparent(lp, time, event, h0, horizons),
        "histograms": histograms,
        "calibration": calibration.calibration_by_group(lp, time, event, model.risk_sets, HORIZONS_MONTHS, group),
        # Tertiles (low / intermediate / high), readable as three curves.
        "risk_group_curves": calibration.curves_by_group(
            lp, time, event, model.risk_sets, calibration.risk_groups(lp, FIGURE_GROUPS)
        ),
    }


def _percentiles(values: np.ndarray) -> tuple[float | None, float | None]:
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return None, None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _smoothed_entry(
    months: float,
    metrics: dict[str, float] | str,
    boot: np.ndarray,
    internal: bool,
    curve_from: sc.SmoothedCalibration | str,
    histogram: dict | None,
) -> dict:
    """One horizon of ``validation.<endpoint>.smoothed_calibration`` (docs/validation.md)."""
    headline = dict.fromkeys(sc.BOOTSTRAP_METRICS)
    if isinstance(metrics, str):
        return {"months": months, "estimable": False, "reason": metrics, "external": not internal, **headline}

    def column(suffix: str) -> np.ndarray:
        """The bootstrap records of every metric at this horizon (columns), for the rebuilt model on ``suffix``."""
        if not len(boot):
            return np.empty((0, len(sc.BOOTSTRAP_METRICS)))
        return np.column_stack([boot[boot_module.smoothed_field(m, months, suffix)] for m in sc.BOOTSTRAP_METRICS])

    failed = 0
    optimism = np.zeros(len(sc.BOOTSTRAP_METRICS))
    if internal:
        on_sample, on_original = column("refit_on_sample"), column("refit_on_original")
        ok = np.all(np.isfinite(on_sample) & np.isfinite(on_original), axis=1)
        failed = int((~ok).sum())
        optimism = (on_sample[ok] - on_original[ok]).mean(axis=0) if ok.any() else np.full(len(optimism), np.nan)
    measures = {}
    for j, name in enumerate(sc.BOOTSTRAP_METRICS):
        value = metrics[name]
        measures[name] = {
            "apparent": _r(value),
            "optimism": _r(float(optimism[j])),
            "optimism_corrected": _r(value - float(optimism[j])),
        }
        headline[name] = measures[name]["optimism_corrected"]
    entry = {
        "months": months,
        "estimable": True,
        "external": not internal,
        **headline,
        "basis": "optimism_corrected" if internal else "apparent (external data: no optimism)",
        "measures": measures,
        "bootstrap": {"replicates": int(len(boot)), "failed": failed},
    }
    if isinstance(curve_from, sc.SmoothedCalibration):
        card = curve_from.to_card()
        entry.update({key: card[key] for key in ("n", "events", "km_risk", "mean_predicted", "knots_cloglog")})
        entry["curve"] = {"kind": "apparent", **card["curve"]}
    entry["predicted_distribution"] = histogram
    return entry


def _ph_block(vary: np.ndarray, test: dict | None, terms: Sequence[str], notes: list[str]) -> dict:
    """The ``ph_test`` entry from a score test on the columns that vary in these data."""
    if test is None:
        notes.append("the proportional-hazards test could not be computed (singular information)")
        return {"transform": PH_TRANSFORM, "terms": [], "global_chisq": None, "global_df": None, "global_p": None}
    rows: list[dict[str, Any]] = []
    j = 0
    for term, v in zip(terms, vary, strict=True):
        if v:
            rows.append({"term": term, "chisq": _r(test["chisq"][j]), "df": 1, "p": _r(test["p"][j], 6)})
            j += 1
        else:
            rows.append({"term": term, "chisq": None, "df": 1, "p": None})
    failing = [r["term"] for r in rows if r["p"] is not None and r["p"] < PH_ALPHA]
    if test["global_p"] < PH_ALPHA:
        notes.append(
            f"proportional hazards rejected globally (p = {test['global_p']:.3g}); hazard ratios are "
            "averages over follow-up and predictions far from the median follow-up are less reliable"
        )
    if failing:
        notes.append(f"proportional hazards rejected (p < {PH_ALPHA}) for: {', '.join(failing)}")
    return {
        "transform": PH_TRANSFORM,
        "terms": rows,
        "global_chisq": _r(test["global_chisq"]),
        "global_df": int(test["global_df"]),
        "global_p": _r(test["global_p"], 6),
    }


def _metrics(smoothed: sc.SmoothedCalibration | str) -> dict[str, float] | str:
    if isinstance(smoothed, str):
        return smoothed
    return {**smoothed.metrics(), "observed_expected": smoothed.observed_expected}


def _design(model: EndpointModel, frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    time = frame["time"].to_numpy(dtype=float)
    event = frame["event"].to_numpy(dtype=bool)
    if event.sum() < 2:
        raise ValidationError(f"{name}: fewer than 2 events in the validation data")
    return covariates.design_matrix(cast(Mapping[str, object], frame), list(model.terms)), time, event


def _same_fit(refit: np.ndarray, coef: np.ndarray, build: Building) -> bool:
    """The data are the model's training data if refitting them gives its coefficients (before shrinkage)."""
    return bool(
        np.all(np.isfinite(refit))
        and np.allclose(refit * build.shrinkage, coef, rtol=SAME_FIT_TOLERANCE, atol=SAME_FIT_TOLERANCE)
    )


def validate_design(
    name: str,
    model: EndpointModel,
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    replicates: int,
    seed: int,
    internal: bool | None = None,
    n_jobs: int | None = None,
    show_progress: bool = True,
    build: Building | None = None,
    stream: int | None = None,
    smoothed_horizons: Sequence[float] = HORIZONS_MONTHS,
) -> dict:
    """All validation results for one endpoint of a model, given the design ``x`` (the model's terms), the times and
    the events (docs/validation.md). ``build`` says how the model was built (default: an unshrunk refit), so that
    the bootstrap rebuilds it that way.

    ``stream`` (default: a hash of ``name``) selects the bootstrap's random stream; ``smoothed_horizons`` the horizons
    of the smoothed calibration (none: no smoothed calibration, a faster bootstrap).
    """
    started = _start_endpoint(
        name,
        model,
        x,
        time,
        event,
        replicates=replicates,
        seed=seed,
        internal=internal,
        n_jobs=n_jobs,
        show_progress=show_progress,
        build=build,
        stream=stream,
        horizons=smoothed_horizons,
    )
    return _finish_endpoint(started)


@dataclasses.dataclass
class _Started:
    """One endpoint whose bootstrap is running: what finishing its validation needs."""

    name: str
    model: EndpointModel
    x: np.ndarray
    time: np.ndarray
    event: np.ndarray
    refit: np.ndarray
    internal: bool
    build: Building
    horizons: tuple[float, ...]
    pending: _Pending
    problem: Problem


def _start_endpoint(
    name: str,
    model: EndpointModel,
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    replicates: int,
    seed: int,
    internal: bool | None,
    n_jobs: int | None,
    show_progress: bool,
    build: Building | None,
    stream: int | None,
    horizons: Sequence[float],
) -> _Started:
    """Decide internal or external (a refit giving the model's coefficients) and dispatch the bootstrap."""
    build = build or Building()
    refit = fit_coefficients(x, time, event)
    internal = _same_fit(refit, model.coef, build) if internal is None else internal
    horizons = tuple(float(h) for h in horizons)
    pending, problem = _start_bootstrap(
        x,
        time,
        event,
        model.coef,
        replicates=replicates,
        seed=seed,
        stream=zlib.crc32(name.encode()) if stream is None else stream,
        n_jobs=n_jobs,
        label=f"{name} bootstrap",
        show_progress=show_progress,
        horizons=horizons,
        procedure=build.procedure if internal else "none",
        shrinkage=build.shrinkage,
        resample_size=build.resample_size,
    )
    return _Started(name, model, x, time, event, refit, internal, build, horizons, pending, problem)


def _finish_endpoint(started: _Started) -> dict:
    """The apparent measures and figures (while the bootstrap runs), then the bootstrap's records: the card entry."""
    s = started
    lp = s.x @ s.model.coef
    notes: list[str] = []
    numbers = _numbers(s.model, s.x, lp, s.time, s.event, notes, s.horizons, refit=s.refit)
    figures = _figures(s.model, lp, s.time, s.event, numbers["smoothed"], s.horizons)
    boot = _records(s.pending, s.problem)
    return _assemble(
        s.name,
        s.model,
        numbers,
        figures,
        boot,
        s.internal,
        s.build,
        notes,
        n=len(s.time),
        events=int(s.event.sum()),
        horizons=s.horizons,
    )


def _assemble(
    name: str,
    model: EndpointModel,
    numbers: dict,
    figures: dict,
    boot: np.ndarray,
    internal: bool,
    build: Building,
    notes: list[str],
    *,
    n: int,
    events: int,
    horizons: Sequence[float] = HORIZONS_MONTHS,
) -> dict:
    """The card entry of one endpoint from its apparent measures, figures and bootstrap records."""
    terms = list(model.terms)
    replicates = len(boot)
    # A synthetic model's events per parameter are its study's (events at the study's size).
    study_events = round(events * build.resample_size / n) if build.resample_size else events
    result: dict = {
        "n": n,
        "events": events,
        "parameters": len(terms),
        "events_per_parameter": _r(study_events / len(terms), 2),
    }
    if study_events / len(terms) < MIN_EVENTS_PER_PARAMETER:
        notes.insert(
            0,
            f"only {study_events / len(terms):.1f} events per parameter ({study_events} events, {len(terms)} terms; "
            f"at least {MIN_EVENTS_PER_PARAMETER} are advised): estimates may be overfitted and unstable",
        )
    for key in ("harrell_c", "uno_c", "time_dependent_auc", "brier_score", "integrated_brier_score"):
        result[key] = numbers[key]
    harrell = result["harrell_c"]
    harrell["ci_lower"], harrell["ci_upper"] = _percentiles(boot["c_model_on_sample"])
    if internal:
        ok = np.all([np.isfinite(boot[m]) for m in REFIT_MEASURES], axis=0)
        failed = int((~ok).sum())
        if failed:
            notes.append(f"{failed} of {replicates} bootstrap refits failed and were left out")
        if ok.sum() == 0:
            raise ValidationError(f"{name}: every bootstrap refit failed")
        optimism_c = float(np.mean(boot["c_refit_on_sample"][ok] - boot["c_refit_on_original"][ok]))
        optimism_slope = float(np.mean(boot["slope_refit_on_sample"][ok] - boot["slope_refit_on_original"][ok]))
    else:
        failed, optimism_c, optimism_slope = 0, 0.0, 0.0
    harrell["optimism"] = optimism_c
    harrell["optimism_corrected"] = harrell["apparent"] - optimism_c
    for key in ("apparent", "optimism", "optimism_corrected", "ci_lower", "ci_upper"):
        harrell[key] = _r(harrell[key])
    apparent_slope, slope_se = numbers["slope"]
    if build.resample_size:  # a synthetic model's apparent slope is as uncertain as its study's would be
        slope_se *= math.sqrt(n / build.resample_size)
    result["calibration_slope"] = {
        "apparent": _r(apparent_slope),
        "ci_lower": _r(apparent_slope - Z_95 * slope_se),
        "ci_upper": _r(apparent_slope + Z_95 * slope_se),
        "optimism": _r(optimism_slope),
        "optimism_corrected": _r(apparent_slope - optimism_slope),
    }
    result["bootstrap"] = {
        "replicates": replicates,
        "failed": failed,
        "refit": internal,
        "procedure": build.procedure if internal else "none",
        "resample_size": build.resample_size or n,
    }
    if build.resample_size:
        notes.append(
            f"a synthetic model standing for a study of {build.resample_size} patients: the bootstrap draws resamples "
            f"of that size from the {n} synthetic patients (m-out-of-n), so optimism, the calibration slope "
            "and the intervals are what a study of that size would show"
        )
        corrected = result["calibration_slope"]["optimism_corrected"]
        if corrected is not None and corrected < MIN_CORRECTED_SLOPE:
            notes.append(
                f"at the size of the study it reproduces ({build.resample_size} patients) the expected calibration "
                f"slope of the published model is {corrected:.2f}: its predictions are likely too extreme (the study "
                "was small for its number of terms). A model for clinical use should be fitted on registry data, "
                "with shrinkage or fewer terms, or updated from this one"
            )
    result["shrinkage"] = {"method": build.method, "factor": build.shrinkage}
    result["smoothed_calibration"] = [
        _smoothed_entry(
            months,
            _metrics(numbers["smoothed"][i]) if "smoothed_metrics" not in numbers else numbers["smoothed_metrics"][i],
            boot,
            internal,
            figures["smoothed"][i],
            figures["histograms"][i],
        )
        for i, months in enumerate(horizons)
    ]
    for entry in result["smoothed_calibration"]:
        ratio = entry.get("observed_expected")
        if ratio is not None and not OBSERVED_EXPECTED_RANGE[0] <= ratio <= OBSERVED_EXPECTED_RANGE[1]:
            notes.append(
                f"at {entry['months']:g} months the observed risk is {ratio:.2f} times the mean predicted "
                "risk"
                + (
                    ""
                    if internal
                    else ": the baseline hazard may not transport to these data (consider `python -m training update`)"
                )
            )
    # Descriptive (no pass/fail): the smoothed calibration above is the assessment (docs/validation.md).
    result["calibration"] = figures["calibration"]
    result["risk_group_curves"] = figures["risk_group_curves"]
    if "ph_block" in numbers:
        result["ph_test"] = numbers["ph_block"]
    else:
        vary, test = numbers["ph"]
        result["ph_test"] = _ph_block(vary, test, terms, notes)
    corrected = result["calibration_slope"]["optimism_corrected"]
    if corrected is not None and not SLOPE_WARNING_RANGE[0] <= corrected <= SLOPE_WARNING_RANGE[1]:
        notes.append(
            f"the optimism-corrected calibration slope is {corrected:.2f}: predictions are "
            + ("too extreme" if corrected < 1 else "not extreme enough")
        )
    result["internal"] = internal
    result["warnings"] = notes
    return result


# ---------------------------------------------------------------------------------------------------------------
# A model version


def _model_files(directory: Path) -> dict[str, str]:
    """Digests of the files the validation judged (the served model files), so a stale validation is detected."""
    manifest = read_manifest(directory)
    return {name: manifest[name] for name in (MODEL_JSON, *(f"{ep}.npz" for ep in covariates.ENDPOINTS))}


def validate_model(
    model: Model,
    registry: Registry,
    *,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = DEFAULT_SEED,
    n_jobs: int | None = None,
    source: dict | None = None,
    progress: Progress | None = None,
    show_progress: bool = True,
) -> dict:
    """The ``validation`` block of the model card for ``model`` on ``registry``.

    A model fitted with multiple imputation (card ``missing_data.method``) is validated with imputation: load the
    registry with ``load_validation_registry`` (or ``allow_missing_optional=True``) so that incomplete rows are kept.
    """
    progress = progress or (lambda message: None)
    if replicates < 2:
        raise ValidationError("at least 2 bootstrap replicates are needed")
    used = set(model.card.get("model", {}).get("optional_covariates", []))
    missing = sorted(used - set(registry.optional))
    if missing:
        raise ValidationError(f"the model uses {', '.join(missing)}, which the validation data do not have")
    same_data = registry.sha256 == model.card["data"]["sha256"]
    mi = imputed(model.card)
    block: dict = {
        "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_files": _model_files(model.directory),
        "data": {
            "source": synthetic.data_source(registry.frame["patient_id"]),
            "sha256": registry.sha256,
            "rows_read": registry.report["rows_read"],
            "format": registry.report.get("format"),
            "same_as_training": same_data,
            **(source or {}),
        },
        "method": {
            "bootstrap_replicates": replicates,
            "seed": seed,
            "horizons_months": list(HORIZONS_MONTHS),
            "uno_tau_months": UNO_TAU_MONTHS,
            "ph_transform": PH_TRANSFORM,
            "calibration_groups": f"by rank of the linear predictor, about {calibration.PATIENTS_PER_GROUP} "
            f"patients each, {calibration.MIN_GROUPS} to {calibration.MAX_GROUPS} groups "
            "(descriptive)",
            "smoothed_calibration": "Austin, Harrell & van Klaveren 2020: Cox model of the outcome on rcs(cloglog "
            "predicted risk, 3 knots), Efron ties, rms::survest; optimism by the same "
            "bootstrap resamples as C and the slope",
            "thresholds": {
                "min_optimism_corrected_c": MIN_CORRECTED_C,
                "calibration_slope_range": list(SLOPE_RANGE),
                "min_optimism_corrected_slope": MIN_CORRECTED_SLOPE,
                "min_events_per_parameter": MIN_EVENTS_PER_PARAMETER,
                "ph_alpha": PH_ALPHA,
            },
            "software": {name: metadata.version(name) for name in ("scikit-survival", "joblib", "numpy")},
        },
    }
    builds = {name: building(model.card, name) for name in covariates.ENDPOINTS}
    if mi is not None:
        results = _validate_imputed(
            model,
            registry,
            mi,
            builds,
            replicates=replicates,
            seed=seed,
            n_jobs=n_jobs,
            show_progress=show_progress,
            internal=same_data,
            progress=progress,
            method=block["method"],
        )
    else:
        # Both endpoints' bootstraps are dispatched first; the apparent measures are computed while they run.
        started = []
        for name in covariates.ENDPOINTS:
            frame = endpoint_frame(registry, name)
            progress(
                f"{name}: validating on {len(frame)} patients, {int(frame['event'].sum())} events, "
                f"{replicates} bootstrap replicates"
            )
            internal = True if same_data else None
            if (model.card["endpoints"][name].get("update") or {}).get("method") == "original":
                internal = False  # nothing was estimated on these data: an honest, external assessment
            x, time, event = _design(model.endpoints[name], frame, name)
            started.append(
                _start_endpoint(
                    name,
                    model.endpoints[name],
                    x,
                    time,
                    event,
                    replicates=replicates,
                    seed=seed,
                    internal=internal,
                    n_jobs=n_jobs,
                    show_progress=show_progress,
                    build=builds[name],
                    stream=None,
                    horizons=HORIZONS_MONTHS,
                )
            )
        results = {s.name: _finish_endpoint(s) for s in started}
    warnings_all: list[str] = []
    for name, result in results.items():
        block[name] = result
        warnings_all += [f"{name.upper()}: {w}" for w in result["warnings"]]
        if not result["internal"]:
            warnings_all.append(
                f"{name.upper()}: the validation data are not the training data: this is an "
                "external validation (no optimism correction)"
            )
    block["method"]["kind"] = (
        "internal (bootstrap optimism correction)"
        if all(block[n]["internal"] for n in covariates.ENDPOINTS)
        else "external"
    )
    block["warnings"] = warnings_all
    failures = _failures(block, model.card)
    block["status"] = "failed" if failures else "passed"
    block["failures"] = failures
    return block


# ---------------------------------------------------------------------------------------------------------------
# Multiple imputation


def _mean_tree(values: list) -> Any:
    """Element-wise mean of equally shaped JSON-like values (numbers averaged; None if any is None)."""
    first = values[0]
    if isinstance(first, dict):
        return {key: _mean_tree([v[key] for v in values]) for key in first}
    if isinstance(first, list):
        return [_mean_tree([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    if any(v is None for v in values):
        return None
    mean = float(np.mean(values))
    return int(round(mean)) if isinstance(first, int) else mean


def pool_chisq(chisq: Sequence[float], df: int) -> tuple[float, float]:
    """Combine one chi-square statistic per imputation into (statistic, p): Li, Meng, Raghunathan & Rubin's D2.

    D2 = (mean(d) / k - (m + 1) / (m - 1) r) / (1 + r), r = (1 + 1/m) var(sqrt(d)); referred to F(k, nu) with
    nu = k^(-3/m) (m - 1) (1 + 1/r)^2 (as ``miceadds::micombine.chisquare``); the returned statistic is k D2, on the
    chi-square scale. With equal statistics (r = 0) it is the chi-square test itself.

    References
    ----------
    Li KH, Meng XL, Raghunathan TE, Rubin DB. Significance levels from repeated p-values with multiply-imputed data.
    Statistica Sinica 1991;1:65-92.
    """
    from scipy import stats

    d = np.asarray(chisq, dtype=float)
    m = len(d)
    r = (1.0 + 1.0 / m) * float(np.var(np.sqrt(d), ddof=1)) if m > 1 else 0.0
    d2 = max(0.0, (d.mean() / df - (m + 1.0) / (m - 1.0) * r) / (1.0 + r)) if m > 1 else d.mean() / df
    if r <= 0:
        return df * d2, float(stats.chi2.sf(df * d2, df))
    nu = df ** (-3.0 / m) * (m - 1.0) * (1.0 + 1.0 / r) ** 2
    return df * d2, float(stats.f.sf(d2, df, nu))


def _pooled_ph(tests: list[tuple[np.ndarray, dict | None]], terms: Sequence[str], notes: list[str]) -> dict:
    """The ``ph_test`` entry from the score test on each completed data set, pooled by D2."""
    usable = [t for _, t in tests if t is not None]
    vary = np.all([v for v, _ in tests], axis=0)
    if len(usable) < len(tests) or not all(np.array_equal(v, vary) for v, _ in tests):
        return _ph_block(tests[0][0], tests[0][1], terms, notes)
    pooled: dict[str, list[float]] = {"chisq": [], "p": []}
    for j in range(len(usable[0]["chisq"])):
        stat, p = pool_chisq([t["chisq"][j] for t in usable], 1)
        pooled["chisq"].append(stat)
        pooled["p"].append(p)
    stat, p = pool_chisq([t["global_chisq"] for t in usable], usable[0]["global_df"])
    block = _ph_block(
        vary, {**pooled, "global_chisq": stat, "global_df": usable[0]["global_df"], "global_p": p}, terms, notes
    )
    block["pooled"] = "D2 (Li, Meng, Raghunathan & Rubin 1991) over the completed data sets"
    return block


def _validate_imputed(
    model: Model,
    registry: Registry,
    mi: dict,
    builds: dict[str, Building],
    *,
    replicates: int,
    seed: int,
    n_jobs: int | None,
    show_progress: bool,
    internal: bool,
    progress: Progress,
    method: dict,
) -> dict[str, dict]:
    """Validation of a model fitted with multiple imputation (docs/validation.md, "Missing covariates").

    The registry is imputed M times as the fit did (same settings); the apparent measures are averaged over the M
    completed registries (pooled chi-square for the PH test); the figures use each patient's linear predictor averaged
    over the imputations. Internal validation imputes inside the bootstrap: each replicate imputes its resample
    (``IMPUTATIONS_PER_REPLICATE`` chain), rebuilds the model on it and tests it on one completed original registry.
    """
    from training.imputation import DEFAULT_IMPUTATIONS, DEFAULT_ITERATIONS, impute

    count = int(mi.get("imputations") or DEFAULT_IMPUTATIONS)
    iterations = int(mi.get("iterations") or DEFAULT_ITERATIONS)
    start = _time.perf_counter()
    imputations = impute(
        registry.frame,
        imputations=count,
        iterations=iterations,
        seed=int(mi.get("seed") or 0),
        columns=registry.optional,
    )
    completed = [dataclasses.replace(registry, frame=imputations.completed(m)) for m in range(count)]
    original_seconds = _time.perf_counter() - start
    progress(f"imputed the validation registry {count} times ({original_seconds:.1f} s)")
    per_endpoint: dict[str, dict] = {}
    for name in covariates.ENDPOINTS:
        ep = model.endpoints[name]
        designs = [_design(ep, endpoint_frame(c, name), name) for c in completed]
        procedure = builds[name].procedure if internal else "none"
        problems = [
            Problem(x, time, event, ep.coef, procedure, builds[name].shrinkage, HORIZONS_MONTHS)
            for x, time, event in designs
        ]
        per_endpoint[name] = {"designs": designs, "problems": problems}
    # The bootstrap is dispatched first; the apparent measures on the M completed registries are computed meanwhile.
    imputed_pending: _Pending | None = None
    pending: dict[str, tuple[_Pending, Problem]] = {}
    if internal:
        problem = ImputedProblem(
            registry.frame,
            tuple(registry.optional),
            {n: tuple(model.endpoints[n].terms) for n in covariates.ENDPOINTS},
            {n: per_endpoint[n]["problems"] for n in covariates.ENDPOINTS},
            iterations,
            IMPUTATIONS_PER_REPLICATE,
        )
        seeds = np.random.SeedSequence([seed, zlib.crc32(b"imputation")]).spawn(replicates)
        imputed_pending = _Pending(
            boot_module.impute_replicates,
            problem,
            seeds,
            n_jobs=n_jobs,
            label="bootstrap with imputation",
            show_progress=show_progress,
        )
    else:
        for name in covariates.ENDPOINTS:
            x, time, event = per_endpoint[name]["designs"][0]
            pending[name] = _start_bootstrap(
                x,
                time,
                event,
                model.endpoints[name].coef,
                replicates=replicates,
                seed=seed,
                stream=zlib.crc32(name.encode()),
                n_jobs=n_jobs,
                label=f"{name} bootstrap",
                show_progress=show_progress,
                horizons=HORIZONS_MONTHS,
                procedure="none",
                shrinkage=1.0,
            )
    for name in covariates.ENDPOINTS:
        ep, data = model.endpoints[name], per_endpoint[name]
        notes: list[str] = []
        data["notes"] = notes
        data["numbers"] = [
            _numbers(ep, x, x @ ep.coef, time, event, notes if m == 0 else [])
            for m, (x, time, event) in enumerate(data["designs"])
        ]
    boot_seconds = 0.0
    if imputed_pending is not None:
        results = imputed_pending.result()
        boots = {n: np.concatenate([r[n] for r in results]) for n in covariates.ENDPOINTS}
        boot_seconds = float(sum(r["imputation_seconds"].sum() for r in results))
    else:
        boots = {name: _records(*pending[name]) for name in covariates.ENDPOINTS}
    method["missing_data"] = {
        "method": "multiple_imputation",
        "imputations": count,
        "iterations": iterations,
        "apparent": "measures averaged over the completed registries (Wood, Royston & White 2015); PH test pooled "
        "by D2; figures from each patient's linear predictor averaged over the imputations",
        "bootstrap": (
            "each replicate imputes its resample (chained equations, outcomes in the imputation model; "
            f"{IMPUTATIONS_PER_REPLICATE} imputation per replicate), rebuilds the model on it and tests it "
            "on one completed original registry (replicate b: the (b mod M)-th)"
        )
        if internal
        else "external: the first completed registry resampled, for intervals only",
        "imputation_seconds": round(original_seconds, 3),
        "bootstrap_imputation_seconds": round(boot_seconds, 3),
    }
    out = {}
    for name in covariates.ENDPOINTS:
        ep, data = model.endpoints[name], per_endpoint[name]
        numbers = data["numbers"]
        time, event = data["designs"][0][1], data["designs"][0][2]
        pooled: dict[str, Any] = {
            key: _mean_tree([nb[key] for nb in numbers])
            for key in ("harrell_c", "uno_c", "time_dependent_auc", "brier_score", "integrated_brier_score")
        }
        slopes = np.array([nb["slope"] for nb in numbers])
        within = float(np.mean(slopes[:, 1] ** 2))
        between = float(np.var(slopes[:, 0], ddof=1)) if count > 1 else 0.0
        pooled["slope"] = (float(slopes[:, 0].mean()), math.sqrt(within + (1.0 + 1.0 / count) * between))
        pooled["smoothed_metrics"] = []
        for i in range(len(HORIZONS_MONTHS)):
            each = [_metrics(nb["smoothed"][i]) for nb in numbers]
            pooled["smoothed_metrics"].append(next((e for e in each if isinstance(e, str)), None) or _mean_tree(each))
        notes = data["notes"]
        pooled["ph_block"] = _pooled_ph([nb["ph"] for nb in numbers], list(ep.terms), notes)
        lp_mean = np.mean([x @ ep.coef for x, _, _ in data["designs"]], axis=0)
        figures = _figures(ep, lp_mean, time, event)
        out[name] = _assemble(
            name, ep, pooled, figures, boots[name], internal, builds[name], notes, n=len(time), events=int(event.sum())
        )
    return out


def validate_directory(directory: str | Path, registry: Registry, **kwargs: Any) -> dict:
    """Validate the artifact at ``directory`` and write the block into its card (an atomic directory swap)."""
    directory = Path(directory).resolve()
    model = load_model(directory)
    block = validate_model(model, registry, **kwargs)
    new_card = dict(model.card)
    new_card["validation"] = block
    artifact.update_card(directory, new_card, card_module.render_markdown(new_card), expect_manifest=model.sha256)
    return block


# ---------------------------------------------------------------------------------------------------------------
# The promotion gate and the comparison with the served model


def _failures(block: dict, card: dict | None = None) -> list[str]:
    """The gate's reasons to refuse, recomputed from the numbers (``card``: the model's card, for its shrinkage)."""
    out = []
    for name in covariates.ENDPOINTS:
        ep = block.get(name)
        label = name.upper()
        if not isinstance(ep, dict):
            out.append(f"{label}: not validated")
            continue
        c = ep.get("harrell_c", {}).get("optimism_corrected")
        if c is None or c < MIN_CORRECTED_C:
            out.append(f"{label}: optimism-corrected Harrell's C {c} is below {MIN_CORRECTED_C}")
        s = ep.get("calibration_slope", {}).get("optimism_corrected")
        if s is None or not SLOPE_RANGE[0] <= s <= SLOPE_RANGE[1]:
            out.append(
                f"{label}: optimism-corrected calibration slope {s} is outside [{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]}]"
            )
        elif s < MIN_CORRECTED_SLOPE and not (card and building(card, name).resample_size):
            # A model reproducing a published one is not a candidate the gate could send back for shrinkage: its
            # expected slope at its study's size is reported as a warning instead (_finish_endpoint).
            out.append(_slope_failure(label, s, ep, building(card, name) if card else None))
    return out


def _slope_failure(label: str, s: float, ep: dict, build: Building | None) -> str:
    """Why a calibration slope below MIN_CORRECTED_SLOPE fails, and how to fix it."""
    if build is None:
        recorded = ep.get("shrinkage") or {}
        build = Building(method=str(recorded.get("method") or "none"), shrinkage=float(recorded.get("factor", 1.0)))
    update = (
        "update the current model instead of refitting (`python -m training update --base MODEL_DIR --data SOURCE`)"
    )
    if ep.get("internal") is False:
        return (
            f"{label}: the calibration slope on these external data is {s}, below {MIN_CORRECTED_SLOPE}: "
            "predictions are too extreme here; recalibrate the model on these data (`python -m training update "
            "--base MODEL_DIR --data SOURCE --method recalibration`)"
        )
    if build.shrunk:
        return (
            f"{label}: optimism-corrected calibration slope {s} is below {MIN_CORRECTED_SLOPE} even with "
            f"shrinkage ({build.method}, factor {build.shrinkage:.3g}): predictions are still too extreme; fit "
            f"fewer terms or {update}"
        )
    return (
        f"{label}: optimism-corrected calibration slope {s} of an unshrunk model is below {MIN_CORRECTED_SLOPE}: "
        "predictions are too extreme (overfitted); refit with shrinkage, refit with fewer terms, or " + update
    )


def validation_failures(model: Model) -> list[str]:
    """Why ``model`` must not be promoted without ``--force`` (empty when it passed validation).

    Failed means: no validation block; a validation made for other model files; an endpoint not validated; an
    optimism-corrected Harrell's C below 0.55; an optimism-corrected calibration slope outside [0.5, 1.5] or below
    0.85 (the model's own slope: with its shrinkage when shrunk). The thresholds are recomputed here from the
    numbers, not read from the block's own status.
    """
    block = model.card.get("validation")
    if not isinstance(block, dict):
        return ["the model card has no validation: run `python -m training validate DIR --data SOURCE`"]
    if block.get("model_files") != _model_files(model.directory):
        return ["the validation in the card was made for other model files"]
    return _failures(block, model.card)


def compare(candidate: Model, current: Model, registry: Registry) -> dict:
    """Harrell's C and calibration slope of both models on the same (the candidate's) data, per endpoint."""
    out = {}
    for name in covariates.ENDPOINTS:
        frame = endpoint_frame(registry, name)
        time = frame["time"].to_numpy(dtype=float)
        event = frame["event"].to_numpy(dtype=bool)
        row: dict[str, dict[str, Any] | None] = {}
        for label, model in (("candidate", candidate), ("current", current)):
            ep = model.endpoints[name]
            if any(t.split("[")[0] not in frame.columns for t in ep.terms if ":" not in t):
                row[label] = None
                continue
            lp = ep.linear_predictor(covariates.design_matrix(cast(Mapping[str, object], frame), list(ep.terms)))
            row[label] = {
                "harrell_c": _r(cox_fast.harrell_c(time, event, lp)[0]),
                "calibration_slope": _r(cox_fast.slope(lp, time, event)[0]),
            }
        validation = candidate.card.get("validation", {}).get(name, {})
        chosen = row.get("candidate")
        if chosen is not None:
            chosen["harrell_c_optimism_corrected"] = validation.get("harrell_c", {}).get("optimism_corrected")
            chosen["calibration_slope_optimism_corrected"] = validation.get("calibration_slope", {}).get(
                "optimism_corrected"
            )
        out[name] = row
    return out


def format_comparison(comparison: dict, candidate: str, current: str) -> list[str]:
    """Plain lines for the terminal."""
    lines = [f"comparison on the candidate's data: candidate {candidate} vs current {current}"]
    for name, row in comparison.items():
        cand, cur = row.get("candidate"), row.get("current")
        if cand is None or cur is None:
            lines.append(f"  {name.upper()}: not comparable (the data lack covariates one of the models uses)")
            continue
        lines.append(
            f"  {name.upper()}: Harrell's C candidate {cand['harrell_c']:.3f} (optimism-corrected "
            f"{_fmt(cand.get('harrell_c_optimism_corrected'))}), current {cur['harrell_c']:.3f}; "
            f"calibration slope candidate {_fmt(cand.get('calibration_slope_optimism_corrected'))} "
            f"(optimism-corrected), current {_fmt(cur['calibration_slope'])}"
        )
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
