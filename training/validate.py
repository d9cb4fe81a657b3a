"""Validate a trained model version on registry data and write the results into its model card.

For each endpoint: Harrell's and Uno's C, time-dependent AUC and Brier scores at 12/24/36 months, the integrated
Brier score, Harrell's bootstrap optimism correction of the C-index and the calibration slope (``rms::validate``),
calibration by risk group at the horizons (``rms::calibrate``-style, Kaplan-Meier observed), the
proportional-hazards score test (``cox.zph``) and events per parameter. The key names are described in
docs/validation.md; ``validation_failures`` is the promotion gate.

The bootstrap runs through joblib, so ``joblib.parallel_config(backend="dask")`` moves it to a Dask cluster.
Every replicate draws from its own random stream derived from the master seed (``numpy.random.SeedSequence``),
so results are identical for a seed whatever the number of workers or the backend.
"""

from __future__ import annotations

import math
import sys
import time as _time
import zlib
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sksurv.metrics import (brier_score, concordance_index_censored, concordance_index_ipcw, cumulative_dynamic_auc,
                            integrated_brier_score)
from sksurv.nonparametric import kaplan_meier_estimator

from prognosis import covariates
from prognosis.normal import Z_95
from prognosis.model import EndpointModel, Model, RiskSets
from prognosis.store import MODEL_JSON, load_model, read_manifest
from training import artifact, calibration, card as card_module, cox_fast, ph_test, synthetic
from training.fit import fit_coefficients
from training.registry import Registry, endpoint_frame

HORIZONS_MONTHS: tuple[float, ...] = (12.0, 24.0, 36.0)
DEFAULT_REPLICATES = 200
DEFAULT_SEED = 20170101
PH_TRANSFORM: ph_test.Transform = "km"
# Uno's C is truncated at the last horizon: inverse-probability-of-censoring weights are unstable in the thin tail.
UNO_TAU_MONTHS = HORIZONS_MONTHS[-1]
BRIER_GRID_POINTS = 100
FIGURE_GROUPS = 3

# The promotion gate (docs/validation.md): a model below these has failed validation.
MIN_CORRECTED_C = 0.55
SLOPE_RANGE = (0.5, 1.5)
# Below these only a warning.
MIN_EVENTS_PER_PARAMETER = 10
PH_ALPHA = 0.05
SLOPE_WARNING_RANGE = (0.8, 1.2)
# Refitted coefficients this close to the model's mean the data are its training data (internal validation).
SAME_FIT_TOLERANCE = 1e-6

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

    def __init__(self, label: str, total: int, stream=None):
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
# Bootstrap (Harrell's optimism correction)


# What each bootstrap replicate measures (Harrell's optimism bootstrap, plus the model's own C for its interval).
BOOTSTRAP_MEASURES = (
    "c_refit_on_sample",        # C of the model refitted on the sample, on the sample (apparent)
    "c_refit_on_original",      # C of that refit on the original data (test)
    "slope_refit_on_original",  # calibration slope of that refit's linear predictor on the original data
    "c_model_on_sample",        # C of the model being validated, on the sample
)
REFIT_MEASURES = BOOTSTRAP_MEASURES[:3]


def _replicates(x: np.ndarray, time: np.ndarray, event: np.ndarray, coef: np.ndarray,
                seeds: list[np.random.SeedSequence], refit: bool) -> np.ndarray:
    """Bootstrap replicates: a structured array with one record per replicate and a field per BOOTSTRAP_MEASURES.

    Module level so that joblib (loky, Dask) can ship it to workers. A failed refit gives NaNs in its record.
    """
    n = len(time)
    lp_orig = x @ coef
    out = np.full(len(seeds), np.nan, dtype=[(m, float) for m in BOOTSTRAP_MEASURES])
    for i, seed in enumerate(seeds):
        idx = np.random.default_rng(seed).integers(0, n, size=n)
        xb, tb, eb = x[idx], time[idx], event[idx]
        if not eb.any():
            continue
        out["c_model_on_sample"][i] = cox_fast.harrell_c(tb, eb, lp_orig[idx])[0]
        if not refit:
            continue
        beta = fit_coefficients(xb, tb, eb)
        if not np.all(np.isfinite(beta)):
            continue
        out["c_refit_on_sample"][i] = cox_fast.harrell_c(tb, eb, xb @ beta)[0]
        lp_b = x @ beta
        out["c_refit_on_original"][i] = cox_fast.harrell_c(time, event, lp_b)[0]
        out["slope_refit_on_original"][i] = cox_fast.slope(lp_b, time, event)[0]
    return out


def bootstrap(x: np.ndarray, time: np.ndarray, event: np.ndarray, coef: np.ndarray, *, replicates: int, seed: int,
              stream: int = 0, refit: bool = True, n_jobs: int | None = None, label: str = "bootstrap",
              show_progress: bool = True) -> np.ndarray:
    """Run ``replicates`` bootstrap replicates in parallel with joblib; records as in ``_replicates``.

    Replicate b uses ``SeedSequence(seed, spawn_key=(stream, b))``-equivalent child seeds, so the result depends
    on (seed, stream, replicates) only, not on the backend, the number of workers or the chunking.
    ``n_jobs=None`` leaves the choice to joblib's configuration (``joblib.parallel_config``).
    """
    seeds = np.random.SeedSequence([seed, stream]).spawn(replicates)
    # Chunks of several replicates amortise the dispatch (and, for Dask, the scheduling) cost; ~40 tasks still give
    # an even load over a few workers and a smooth progress counter.
    size = max(1, math.ceil(replicates / 40))
    chunks = [seeds[i:i + size] for i in range(0, replicates, size)]
    progress = StderrProgress(label, replicates) if show_progress else None
    results = []
    parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator")
    for chunk_result in parallel(joblib.delayed(_replicates)(x, time, event, coef, chunk, refit) for chunk in chunks):
        results.append(chunk_result)
        if progress:
            progress.update(len(chunk_result))
    return np.concatenate(results) if results else np.empty(0, dtype=[(m, float) for m in BOOTSTRAP_MEASURES])


# ---------------------------------------------------------------------------------------------------------------
# One endpoint


def discrimination(lp: np.ndarray, time: np.ndarray, event: np.ndarray, risk_sets: RiskSets,
                   warn: Callable[[str], None]) -> dict:
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
    out: dict = {"harrell_c": {"apparent": float(harrell[0]), "concordant": int(harrell[1]),
                               "discordant": int(harrell[2]), "tied_risk": int(harrell[3]),
                               "tied_time": int(harrell[4])}}
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
        warn(f"horizons {', '.join(f'{h:g}' for h in skipped)} months are beyond the follow-up of the data or of "
             "the model: no time-dependent AUC or Brier score there")
    auc_rows, brier_rows = [], []
    if usable:
        auc, _ = cumulative_dynamic_auc(y, y, lp, np.array(usable))
        surv = calibration.predicted_survival(lp, risk_sets, np.array(usable))
        _, bs = brier_score(y, y, surv, np.array(usable))
        auc_rows = [{"months": h, "auc": _r(a)} for h, a in zip(usable, auc)]
        brier_rows = [{"months": h, "brier": _r(b)} for h, b in zip(usable, bs)]
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
            ibs = {"model": _r(model), "null_km": _r(null), "skill": _r(1.0 - model / null) if null > 0 else None,
                   "from_months": _r(lo, 3), "to_months": _r(hi, 3)}
        except ValueError as exc:
            warn(f"the integrated Brier score could not be estimated ({exc})")
    out["integrated_brier_score"] = ibs
    return out


def _merge_horizons(rows: list[dict], key: str) -> list[dict]:
    by_month = {r["months"]: r for r in rows}
    return [by_month.get(h, {"months": h, key: None}) for h in HORIZONS_MONTHS]


def validate_endpoint(name: str, model: EndpointModel, frame: pd.DataFrame, *, replicates: int, seed: int,
                      internal: bool | None = None, n_jobs: int | None = None, show_progress: bool = True) -> dict:
    """All validation results for one endpoint of a model on one data set (see docs/validation.md)."""
    notes: list[str] = []
    terms, coef, risk_sets = list(model.terms), model.coef, model.risk_sets
    time = frame["time"].to_numpy(dtype=float)
    event = frame["event"].to_numpy(dtype=bool)
    if event.sum() < 2:
        raise ValidationError(f"{name}: fewer than 2 events in the validation data")
    x = covariates.design_matrix(frame, terms)
    lp = x @ coef
    refit = fit_coefficients(x, time, event)
    same_fit = bool(np.all(np.isfinite(refit)) and np.allclose(refit, coef, rtol=SAME_FIT_TOLERANCE,
                                                               atol=SAME_FIT_TOLERANCE))
    internal = same_fit if internal is None else internal

    result: dict = {"n": int(len(time)), "events": int(event.sum()), "parameters": len(terms)}
    result["events_per_parameter"] = _r(event.sum() / len(terms), 2)
    if event.sum() / len(terms) < MIN_EVENTS_PER_PARAMETER:
        notes.append(f"only {event.sum() / len(terms):.1f} events per parameter ({event.sum()} events, "
                     f"{len(terms)} terms; at least {MIN_EVENTS_PER_PARAMETER} are advised): estimates may be "
                     "overfitted and unstable")

    result.update(discrimination(lp, time, event, risk_sets, notes.append))
    apparent_slope, slope_se = cox_fast.slope(lp, time, event)

    boot = bootstrap(x, time, event, coef, replicates=replicates, seed=seed,
                     stream=zlib.crc32(name.encode()), refit=internal, n_jobs=n_jobs,
                     label=f"{name} bootstrap", show_progress=show_progress)
    c_fixed = boot["c_model_on_sample"][np.isfinite(boot["c_model_on_sample"])]
    harrell = result["harrell_c"]
    if len(c_fixed) >= 2:
        harrell["ci_lower"], harrell["ci_upper"] = (float(v) for v in np.percentile(c_fixed, [2.5, 97.5]))
    else:
        harrell["ci_lower"] = harrell["ci_upper"] = None
    if internal:
        ok = np.all([np.isfinite(boot[m]) for m in REFIT_MEASURES], axis=0)
        failed = int((~ok).sum())
        if failed:
            notes.append(f"{failed} of {replicates} bootstrap refits failed and were left out")
        if ok.sum() == 0:
            raise ValidationError(f"{name}: every bootstrap refit failed")
        optimism_c = float(np.mean(boot["c_refit_on_sample"][ok] - boot["c_refit_on_original"][ok]))
        optimism_slope = float(np.mean(1.0 - boot["slope_refit_on_original"][ok]))
    else:
        failed, optimism_c, optimism_slope = 0, 0.0, 0.0
    harrell["optimism"] = optimism_c
    harrell["optimism_corrected"] = harrell["apparent"] - optimism_c
    for key in ("apparent", "optimism", "optimism_corrected", "ci_lower", "ci_upper"):
        harrell[key] = _r(harrell[key])
    result["calibration_slope"] = {
        "apparent": _r(apparent_slope),
        "ci_lower": _r(apparent_slope - Z_95 * slope_se), "ci_upper": _r(apparent_slope + Z_95 * slope_se),
        "optimism": _r(optimism_slope), "optimism_corrected": _r(apparent_slope - optimism_slope),
    }
    result["bootstrap"] = {"replicates": replicates, "failed": failed, "refit": internal}

    group = calibration.risk_groups(lp)
    result["calibration"] = calibration.calibration_by_group(lp, time, event, risk_sets, HORIZONS_MONTHS, group)
    for row in result["calibration"]:
        outside = [g["group"] for g in row["groups"] if g["within_ci"] is False]
        if outside:
            notes.append(f"at {row['months']:g} months the mean prediction lies outside the Kaplan-Meier 95% "
                         f"interval in risk group(s) {', '.join(map(str, outside))} of {len(row['groups'])}")
    # The Kaplan-Meier figure by predicted risk: tertiles (low / intermediate / high), readable as three curves.
    result["risk_group_curves"] = calibration.curves_by_group(lp, time, event, risk_sets,
                                                              calibration.risk_groups(lp, FIGURE_GROUPS))

    result["ph_test"] = _ph(x, time, event, refit if np.all(np.isfinite(refit)) else coef, terms, notes)
    corrected = result["calibration_slope"]["optimism_corrected"]
    if corrected is not None and not SLOPE_WARNING_RANGE[0] <= corrected <= SLOPE_WARNING_RANGE[1]:
        notes.append(f"the optimism-corrected calibration slope is {corrected:.2f}: predictions are "
                     + ("too extreme (overfitting); consider fewer terms or shrinkage" if corrected < 1 else
                        "not extreme enough"))
    result["internal"] = internal
    result["warnings"] = notes
    return result


def _ph(x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, terms: list[str],
        notes: list[str]) -> dict:
    """The cox.zph score test on the columns that vary in these data."""
    vary = np.ptp(x, axis=0) > 0
    try:
        test = ph_test.zph_score_test(x[:, vary], time, event, beta[vary], PH_TRANSFORM)
    except np.linalg.LinAlgError:
        notes.append("the proportional-hazards test could not be computed (singular information)")
        return {"transform": PH_TRANSFORM, "terms": [], "global_chisq": None, "global_df": None, "global_p": None}
    rows, j = [], 0
    for term, v in zip(terms, vary):
        if v:
            rows.append({"term": term, "chisq": _r(test["chisq"][j]), "df": 1, "p": _r(test["p"][j], 6)})
            j += 1
        else:
            rows.append({"term": term, "chisq": None, "df": 1, "p": None})
    failing = [r["term"] for r in rows if r["p"] is not None and r["p"] < PH_ALPHA]
    if test["global_p"] < PH_ALPHA:
        notes.append(f"proportional hazards rejected globally (p = {test['global_p']:.3g}); hazard ratios are "
                     "averages over follow-up and predictions far from the median follow-up are less reliable")
    if failing:
        notes.append(f"proportional hazards rejected (p < {PH_ALPHA}) for: {', '.join(failing)}")
    return {"transform": PH_TRANSFORM, "terms": rows, "global_chisq": _r(test["global_chisq"]),
            "global_df": int(test["global_df"]), "global_p": _r(test["global_p"], 6)}


# ---------------------------------------------------------------------------------------------------------------
# A model version


def _model_files(directory: Path) -> dict[str, str]:
    """Digests of the files the validation judged (the served model files), so a stale validation is detected."""
    manifest = read_manifest(directory)
    return {name: manifest[name] for name in (MODEL_JSON, *(f"{ep}.npz" for ep in covariates.ENDPOINTS))}


def validate_model(model: Model, registry: Registry, *, replicates: int = DEFAULT_REPLICATES,
                   seed: int = DEFAULT_SEED, n_jobs: int | None = None, source: dict | None = None,
                   progress: Progress | None = None, show_progress: bool = True) -> dict:
    """The ``validation`` block of the model card for ``model`` on ``registry``."""
    progress = progress or (lambda message: None)
    if replicates < 2:
        raise ValidationError("at least 2 bootstrap replicates are needed")
    used = set(model.card.get("model", {}).get("optional_covariates", []))
    missing = sorted(used - set(registry.optional))
    if missing:
        raise ValidationError(f"the model uses {', '.join(missing)}, which the validation data do not have")
    same_data = registry.sha256 == model.card["data"]["sha256"]
    block: dict = {
        "validated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_files": _model_files(model.directory),
        "data": {"source": synthetic.data_source(registry.frame["patient_id"]), "sha256": registry.sha256,
                 "rows_read": registry.report["rows_read"], "format": registry.report.get("format"),
                 "same_as_training": same_data, **(source or {})},
        "method": {
            "bootstrap_replicates": replicates, "seed": seed, "horizons_months": list(HORIZONS_MONTHS),
            "uno_tau_months": UNO_TAU_MONTHS, "ph_transform": PH_TRANSFORM,
            "calibration_groups": f"by rank of the linear predictor, about {calibration.PATIENTS_PER_GROUP} "
                                  f"patients each, {calibration.MIN_GROUPS} to {calibration.MAX_GROUPS} groups",
            "thresholds": {"min_optimism_corrected_c": MIN_CORRECTED_C,
                           "calibration_slope_range": list(SLOPE_RANGE),
                           "min_events_per_parameter": MIN_EVENTS_PER_PARAMETER, "ph_alpha": PH_ALPHA},
            "software": {name: metadata.version(name) for name in ("scikit-survival", "joblib", "numpy")},
        },
    }
    warnings_all: list[str] = []
    for name in covariates.ENDPOINTS:
        frame = endpoint_frame(registry, name)
        progress(f"{name}: validating on {len(frame)} patients, {int(frame['event'].sum())} events, "
                 f"{replicates} bootstrap replicates")
        internal = True if same_data else None
        result = validate_endpoint(name, model.endpoints[name], frame, replicates=replicates, seed=seed,
                                   internal=internal, n_jobs=n_jobs, show_progress=show_progress)
        block[name] = result
        warnings_all += [f"{name.upper()}: {w}" for w in result["warnings"]]
        if not result["internal"]:
            warnings_all.append(f"{name.upper()}: the validation data are not the training data: this is an "
                                "external validation (no optimism correction)")
    block["method"]["kind"] = ("internal (bootstrap optimism correction)"
                               if all(block[n]["internal"] for n in covariates.ENDPOINTS) else "external")
    block["warnings"] = warnings_all
    failures = _failures(block)
    block["status"] = "failed" if failures else "passed"
    block["failures"] = failures
    return block


def validate_directory(directory: str | Path, registry: Registry, **kwargs) -> dict:
    """Validate the artifact at ``directory`` and write the block into its card (an atomic directory swap)."""
    directory = Path(directory).resolve()
    model = load_model(directory)
    block = validate_model(model, registry, **kwargs)
    new_card = dict(model.card)
    new_card["validation"] = block
    artifact.update_card(directory, new_card, card_module.render_markdown(new_card),
                         expect_manifest=model.sha256)
    return block


# ---------------------------------------------------------------------------------------------------------------
# The promotion gate and the comparison with the served model


def _failures(block: dict) -> list[str]:
    out = []
    for name in covariates.ENDPOINTS:
        ep = block.get(name)
        if not isinstance(ep, dict):
            out.append(f"{name.upper()}: not validated")
            continue
        c = ep.get("harrell_c", {}).get("optimism_corrected")
        if c is None or c < MIN_CORRECTED_C:
            out.append(f"{name.upper()}: optimism-corrected Harrell's C {c} is below {MIN_CORRECTED_C}")
        s = ep.get("calibration_slope", {}).get("optimism_corrected")
        if s is None or not SLOPE_RANGE[0] <= s <= SLOPE_RANGE[1]:
            out.append(f"{name.upper()}: optimism-corrected calibration slope {s} is outside "
                       f"[{SLOPE_RANGE[0]}, {SLOPE_RANGE[1]}]")
    return out


def validation_failures(model: Model) -> list[str]:
    """Why ``model`` must not be promoted without ``--force`` (empty when it passed validation).

    Failed means: no validation block; a validation made for other model files; an endpoint not validated; an
    optimism-corrected Harrell's C below 0.55; or an optimism-corrected calibration slope outside [0.5, 1.5].
    The thresholds are recomputed here from the numbers, not read from the block's own status.
    """
    block = model.card.get("validation")
    if not isinstance(block, dict):
        return ["the model card has no validation: run `python -m training validate DIR --data SOURCE`"]
    if block.get("model_files") != _model_files(model.directory):
        return ["the validation in the card was made for other model files"]
    return _failures(block)


def compare(candidate: Model, current: Model, registry: Registry) -> dict:
    """Harrell's C and calibration slope of both models on the same (the candidate's) data, per endpoint."""
    out = {}
    for name in covariates.ENDPOINTS:
        frame = endpoint_frame(registry, name)
        time = frame["time"].to_numpy(dtype=float)
        event = frame["event"].to_numpy(dtype=bool)
        row = {}
        for label, model in (("candidate", candidate), ("current", current)):
            ep = model.endpoints[name]
            if any(t.split("[")[0] not in frame.columns for t in ep.terms if ":" not in t):
                row[label] = None
                continue
            lp = ep.linear_predictor(covariates.design_matrix(frame, list(ep.terms)))
            row[label] = {"harrell_c": _r(cox_fast.harrell_c(time, event, lp)[0]),
                          "calibration_slope": _r(cox_fast.slope(lp, time, event)[0])}
        validation = candidate.card.get("validation", {}).get(name, {})
        if row.get("candidate") is not None:
            row["candidate"]["harrell_c_optimism_corrected"] = validation.get("harrell_c", {}).get("optimism_corrected")
            row["candidate"]["calibration_slope_optimism_corrected"] = (
                validation.get("calibration_slope", {}).get("optimism_corrected"))
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
        lines.append(f"  {name.upper()}: Harrell's C candidate {cand['harrell_c']:.3f} (optimism-corrected "
                     f"{_fmt(cand.get('harrell_c_optimism_corrected'))}), current {cur['harrell_c']:.3f}; "
                     f"calibration slope candidate {_fmt(cand.get('calibration_slope_optimism_corrected'))} "
                     f"(optimism-corrected), current {_fmt(cur['calibration_slope'])}")
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"

