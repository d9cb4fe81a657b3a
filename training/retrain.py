"""One endpoint's served model from a registry, as a methodologist would build it (issue 9).

``fit_one``: the Cox model of the registry's terms on complete cases or on multiply imputed registries pooled by
Rubin's rules, shrunk when the registry is small by Riley et al.'s criteria. ``update_one``: a base model updated on
the registry by the method closed testing chooses (``training.updating``). Both give the arrays to serve and the
card's entries for the endpoint: ``sample_size``, ``shrinkage``, ``update``, the Wald tables.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from prognosis import covariates
from prognosis.model import EndpointModel, Model, RiskSets
from registry import Registry, endpoint_frame
from training import imputation, sample_size, shrinkage, updating
from training.fit import CoxFit, FitError, fit_endpoint, univariate_groups, wald_table

# Criterion (iii) of the sample size (the overall risk estimated within +/- 0.05) at this horizon: 2 years, the middle
# of the calculator's landmarks and near the median hepatic progression-free survival of the seed study.
SAMPLE_SIZE_HORIZON_MONTHS = 24.0
SHRINKAGE_STREAM = "shrinkage"
# The default seed of the imputation and of the shrinkage bootstrap (the validation's default too).
DEFAULT_SEED = 20170101

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


# ---------------------------------------------------------------------------------------------------------------
# The data of one endpoint, complete or completed


@dataclass
class EndpointData:
    """One endpoint's rows: ``frame`` as loaded (optional covariates may be missing when imputing) and ``frames``,
    its completed versions (one: ``frame`` itself)."""

    name: str
    frame: pd.DataFrame
    frames: list[pd.DataFrame]
    imputed: bool = False
    _designs: dict = field(default_factory=dict, repr=False)

    @property
    def time(self) -> np.ndarray:
        return self.frame["time"].to_numpy(dtype=float)

    @property
    def event(self) -> np.ndarray:
        return self.frame["event"].to_numpy(dtype=bool)

    def designs(self, terms: Sequence[str]) -> list[np.ndarray]:
        """The design matrix of ``terms`` in every completed frame."""
        key = tuple(terms)
        if key not in self._designs:
            self._designs[key] = [
                covariates.design_matrix({str(c): f[c] for c in f.columns}, list(terms)) for f in self.frames
            ]
        return self._designs[key]


def impute_registry(registry: Registry, imputations: int, seed: int) -> imputation.Imputations | None:
    """M completed versions of the registry's optional covariates; None when none has a missing value."""
    if imputations < 2:
        raise imputation.ImputationError("multiple imputation needs at least 2 imputations (--impute M, M >= 2)")
    if not any(registry.frame[name].isna().any() for name in registry.optional):
        return None
    return imputation.impute(registry.frame, imputations=imputations, seed=seed, columns=registry.optional)


def endpoint_data(registry: Registry, name: str, imputed: imputation.Imputations | None = None) -> EndpointData:
    frame = endpoint_frame(registry, name)
    if imputed is None:
        return EndpointData(name, frame, [frame])
    frames = []
    for completed in imputed.completed_frames():
        f = frame.copy()
        for column in imputed.observed:
            f[column] = completed.loc[frame.index, column].to_numpy()
        frames.append(f)
    return EndpointData(name, frame, frames, imputed=True)


# ---------------------------------------------------------------------------------------------------------------
# Sample size


def assess_sample_size(
    data: EndpointData,
    parameters: int,
    reference: Model | None,
    *,
    role: str,
    registry_sha256: str | None = None,
    reference_note: str | None = None,
    evidence_fraction: float = 1.0,
) -> tuple[sample_size.SampleSize, dict]:
    """Riley et al.'s criteria for this endpoint; the anticipated R-squared from ``reference`` when it can be had.

    ``evidence_fraction`` < 1: a synthetic registry standing for a smaller study (its variances scaled to it) is
    judged at the study's size — patients and events times the fraction — not at its own.

    ``reference`` (the served model for ``fit``, the base model for ``update``) gives the R-squared of its linear
    predictor on these data (``training.updating.anticipated_r2_cs``) when it exists, uses only covariates the
    registry has and explains something; otherwise the conservative default (15% of the maximum). The card block
    says which and why (``r2_cs_source``).
    """
    time, event = data.time, data.event
    person_time = float(time.sum())
    conservative = sample_size.conservative_r2_cs(
        sample_size.events_per_patient(event.sum() / person_time, person_time / len(time))
    )
    largest = conservative / sample_size.CONSERVATIVE_FRACTION_OF_MAX
    default = (
        f"conservative default: {sample_size.CONSERVATIVE_FRACTION_OF_MAX:.0%} of the largest R-squared "
        "possible (a Nagelkerke R-squared of 0.15; Riley et al., BMJ 2020)"
    )
    r2, why = None, reference_note or f"no {role} model"
    if reference is not None and data.name in reference.endpoints:
        ep = reference.endpoints[data.name]
        lacking = [o for o in updating.optional_used(ep.terms) if o not in data.frame.columns]
        same = registry_sha256 is not None and reference.card.get("data", {}).get("sha256") == registry_sha256
        if lacking:
            why = f"the {role} model {reference.version} uses {', '.join(lacking)}, which this registry lacks"
        else:
            value = updating.anticipated_r2_cs(ep, data.designs(ep.terms), time, event, same_data=same)
            if 0 < value < largest:
                r2 = value
                why = f"the {role} model {reference.version}'s linear predictor on this registry" + (
                    " (its own training data: apparent R-squared shrunk by van Houwelingen's heuristic for its "
                    f"{len(ep.terms)} terms)"
                    if same
                    else " with one slope fitted (its external-validation R-squared, shrunk for that slope)"
                )
            else:
                why = (
                    f"the {role} model {reference.version} explains nothing on this registry "
                    f"(Cox-Snell R-squared {value:.4f})"
                )
    result = sample_size.assess(time, event, parameters, SAMPLE_SIZE_HORIZON_MONTHS, r2)
    if evidence_fraction != 1.0:
        result = sample_size.minimum_sample_size(
            parameters=parameters,
            rate=result.rate,
            mean_follow_up=result.mean_follow_up,
            horizon=result.horizon,
            r2_cs=result.r2_cs,
            patients=round(len(time) * evidence_fraction),
            events=round(int(event.sum()) * evidence_fraction),
        )
    source = why if r2 is not None else f"{default}, because {why}"
    result = replace(result, r2_cs_source=source)
    block = result.to_card()
    block["r2_cs_conservative"] = conservative
    block["reference_model"] = reference.version if r2 is not None and reference is not None else None
    block["horizon_months"] = SAMPLE_SIZE_HORIZON_MONTHS
    return result, block


def sample_size_lines(name: str, block: dict) -> list[str]:
    """Plain sentences for the terminal: the criteria and, when too small, what it would take."""
    crit = block["criteria"]
    lines = [
        f"{name.upper()}: {block['patients']} patients, {block['events']} events, {block['parameters']} "
        f"parameters; Riley et al.'s minimum sample size with an anticipated Cox-Snell R-squared of "
        f"{block['r2_cs']:.3f} ({block['r2_cs_source']}): (i) shrinkage >= 0.9 needs {crit['shrinkage']} "
        f"patients, (ii) optimism <= 0.05 needs {crit['optimism']}, (iii) the {block['horizon']:g}-month risk "
        f"within +/- 0.05 needs {crit['precision']}"
    ]
    if block["adequate"]:
        lines.append(f"  adequate: {block['patients']} >= {block['minimum_patients']} patients")
    else:
        lines.append(
            f"  TOO SMALL: it would take at least {block['minimum_patients']} patients (about "
            f"{block['minimum_events']} events at this registry's event rate) for {block['parameters']} "
            f"parameters; with {block['patients']} the expected shrinkage is "
            f"{block['expected_shrinkage']:.2f}. Fewer terms, more patients, or updating the served model "
            "(python -m training update) instead of refitting it."
        )
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Shrinkage


def decide_shrinkage(
    mode: str, size: sample_size.SampleSize, data: EndpointData, terms: Sequence[str], *, replicates: int, seed: int
) -> shrinkage.Shrinkage:
    """``auto``: shrink when the registry is too small by the sample-size criteria; ``none``/``bootstrap``: as asked."""
    if mode not in shrinkage.MODES:
        raise ValueError(f"unknown shrinkage {mode!r} (known: {', '.join(shrinkage.MODES)})")
    if mode == "none":
        return shrinkage.not_shrunk("not asked for (--shrinkage none)")
    if mode == "auto" and size.adequate:
        return shrinkage.not_shrunk(
            f"the registry is large enough by Riley et al.'s criteria ({size.patients} >= "
            f"{size.minimum_patients} patients)"
        )
    reason = (
        "asked for (--shrinkage bootstrap)"
        if mode == "bootstrap"
        else f"the registry is too small by Riley et al.'s criteria ({size.patients} < {size.minimum_patients} "
        "patients)"
    )
    return estimate_shrinkage(data, terms, replicates=replicates, seed=seed, reason=reason)


def estimate_shrinkage(
    data: EndpointData, terms: Sequence[str], *, replicates: int, seed: int, reason: str
) -> shrinkage.Shrinkage:
    stream = zlib.crc32(f"{SHRINKAGE_STREAM}:{data.name}".encode())
    return shrinkage.bootstrap_shrinkage(
        data.designs(terms), data.time, data.event, replicates=replicates, seed=seed, stream=stream, reason=reason
    )


# ---------------------------------------------------------------------------------------------------------------
# Fitting


@dataclass
class Fitted:
    """What one endpoint contributes to the artifact (arrays) and to the card (``result``)."""

    coef: np.ndarray
    covariance: np.ndarray
    risk_sets: RiskSets
    result: dict
    estimator: Any = None
    notes: list[str] = field(default_factory=list)


def coefficient_table(
    terms: Sequence[str],
    coef: np.ndarray,
    covariance: np.ndarray,
    n: int,
    events: int,
    extra: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Wald rows (HR, 95% CI, p) of the served coefficients and covariance, with per-term ``extra`` columns."""
    rows = CoxFit(
        terms=list(terms),
        estimator=None,
        coef=np.asarray(coef, float),
        covariance=np.asarray(covariance, float),
        n=n,
        events=events,
        loglik=math.nan,
    ).table()
    for key, values in (extra or {}).items():
        for row, value in zip(rows, values, strict=True):
            row[key] = float(value)
    return rows


def _pool(designs: list[np.ndarray], time: np.ndarray, event: np.ndarray, terms: list[str]) -> imputation.PooledCox:
    constant = [t for t, col in zip(terms, designs[0].T, strict=True) if np.ptp(col) == 0]
    if constant:
        raise FitError(f"no patients differ in term(s) {', '.join(constant)}: each level needs patients")
    try:
        return imputation.pool_cox(designs, time, event, terms)
    except (imputation.ImputationError, np.linalg.LinAlgError) as exc:
        raise FitError(
            f"the Cox model of {', '.join(terms)} could not be fitted to every imputed registry ({exc})"
        ) from exc


def univariate_rows(data: EndpointData, optional: tuple[str, ...], scale: float = 1.0) -> list[dict]:
    """The univariate table on these data, pooled by Rubin's rules when imputed; a group that cannot be fitted on
    these data (a level without patients) gets rows without estimates."""
    time, event = data.time, data.event
    rows: list[dict] = []
    for group in univariate_groups(optional):
        designs = data.designs(group)
        try:
            if len(designs) == 1:
                rows += wald_table(designs[0], time, event, group, scale)
            else:
                pooled = _pool(designs, time, event, group)
                rows += coefficient_table(
                    group,
                    pooled.pooled.coef,
                    pooled.pooled.covariance * scale,
                    len(time),
                    int(event.sum()),
                    {"fmi": pooled.pooled.fmi},
                )
        except FitError:
            rows += [
                {
                    "term": t,
                    "coef": None,
                    "se": None,
                    "hr": None,
                    "ci_lower": None,
                    "ci_upper": None,
                    "z": None,
                    "p_value": None,
                    "note": "not estimable on these data",
                }
                for t in group
            ]
    return rows


def fit_one(
    data: EndpointData,
    optional: tuple[str, ...],
    *,
    scale: float = 1.0,
    shrinkage_mode: str = "none",
    reference: Model | None = None,
    reference_note: str | None = None,
    registry_sha256: str | None = None,
    replicates: int = shrinkage.DEFAULT_REPLICATES,
    seed: int = 0,
    export_sksurv: bool = False,
    progress: Progress = _quiet,
) -> Fitted:
    """Fit one endpoint (complete cases, or pooled over the completed registries), assess the sample size, and shrink
    when asked or (``auto``) when the registry is too small; the baseline is re-estimated after shrinking."""
    terms = covariates.term_ids(optional)
    time, event = data.time, data.event
    notes: list[str] = []
    size, size_block = assess_sample_size(
        data,
        len(terms),
        reference,
        role="served",
        registry_sha256=registry_sha256,
        reference_note=reference_note,
        evidence_fraction=1 / scale,
    )
    if scale != 1.0:
        size_block["evidence"] = (
            "judged at the size of the study the synthetic registry stands for: the published model is reproduced "
            "as published, never shrunk"
            + (
                ""
                if size.adequate
                else f"; Riley et al.'s criteria are not met at that size (expected shrinkage "
                f"{size.expected_shrinkage:.2f}): its predictions may be too extreme"
            )
        )
    if data.imputed:
        progress(f"{data.name}: fitting each of {len(data.frames)} imputed registries, pooling by Rubin's rules")
        pooled = _pool(data.designs(terms), time, event, terms)
        coef, covariance = pooled.pooled.coef, pooled.pooled.covariance * scale
        risk_sets = RiskSets(**{key: pooled.risk_sets[key] for key in shrinkage.RISK_SET_KEYS})
        risk_sets = replace(risk_sets, cum_var_hazard=risk_sets.cum_var_hazard * scale)
        extra = {
            "fmi": pooled.pooled.fmi,
            "riv": pooled.pooled.riv,
            "lambda": pooled.pooled.lambda_,
            "df": pooled.pooled.df,
        }
        univariate = univariate_rows(data, optional, scale)
        estimator = None
        fmi = pooled.fraction_missing_information()
        if export_sksurv:
            notes.append("no scikit-survival export for a multiply imputed model (it would be one imputation's)")
    else:
        fitted = fit_endpoint(
            data.frame,
            optional,
            progress=lambda step: progress(f"{data.name}: {step}"),
            variance_scale=scale,
            export_sksurv=export_sksurv,
        )
        fit = fitted["fit"]
        coef, covariance = fit.coef, fit.covariance
        risk_sets = RiskSets(**fitted["risk_sets"])
        univariate, extra, estimator, fmi = fitted["univariate"], {}, fit.estimator, None
    if scale != 1.0 and shrinkage_mode == "auto":
        shrunk = shrinkage.not_shrunk("a synthetic registry reproduces the published model as published")
    else:
        shrunk = decide_shrinkage(shrinkage_mode, size, data, terms, replicates=replicates, seed=seed)
    if shrunk.method != shrinkage.NONE:
        progress(
            f"{data.name}: shrinking the coefficients by {shrunk.factor:.3f} (bootstrap calibration slope "
            f"{shrunk.calibration_slope:.3f}, {shrunk.replicates} replicates)"
        )
        if shrunk.factor < 1.0:
            coef, covariance = shrinkage.shrink(coef, covariance, shrunk.factor)
            risk_sets = shrinkage.risk_sets_at(data.designs(terms), time, event, coef)
            risk_sets = replace(risk_sets, cum_var_hazard=risk_sets.cum_var_hazard * scale)
            if estimator is not None:
                notes.append("no scikit-survival export for a shrunk model (it would be the unshrunk fit)")
                estimator = None
    result = {
        "n": len(time),
        "events": int(event.sum()),
        "variance_scale": scale,
        "multivariate": coefficient_table(terms, coef, covariance, len(time), int(event.sum()), extra),
        "univariate": univariate,
        "sample_size": size_block,
        "shrinkage": shrunk.to_card(),
    }
    if fmi is not None:
        result["fraction_missing_information"] = fmi
    return Fitted(
        coef=coef, covariance=covariance, risk_sets=risk_sets, result=result, estimator=estimator, notes=notes
    )


# ---------------------------------------------------------------------------------------------------------------
# Updating


def update_one(
    data: EndpointData,
    base: EndpointModel,
    base_version: str,
    *,
    method: str = "auto",
    alpha: float = updating.ALPHA,
    base_model: Model | None = None,
    registry_sha256: str | None = None,
    replicates: int = shrinkage.DEFAULT_REPLICATES,
    seed: int = 0,
    progress: Progress = _quiet,
) -> Fitted:
    """Update ``base`` on these data by ``method`` (``auto``: closed testing) and assess the sample size with the base
    model's R-squared. Coefficients, covariance and baseline as documented in ``training.updating``."""
    if method != "auto" and method not in updating.METHODS:
        raise ValueError(f"unknown update method {method!r} (known: auto, {', '.join(updating.METHODS)})")
    terms = list(base.terms)
    optional = updating.optional_used(terms)
    if terms != covariates.term_ids(optional):
        raise updating.UpdateError(
            f"the base model's {data.name} terms are not those of this software's "
            "definitions; it cannot be updated here"
        )
    time, event = data.time, data.event
    designs = data.designs(terms)
    parts = [updating.components(x, time, event, base.coef, base.risk_sets) for x in designs]
    test = updating.closed_test(parts, alpha)
    chosen = test.method if method == "auto" else method
    if chosen == "refit" and "refit" not in test.available:
        constant = [t for t, col in zip(terms, designs[0].T, strict=True) if np.ptp(col) == 0]
        raise FitError(
            f"{data.name}: every coefficient cannot be refitted on these data"
            + (f" (no patients differ in {', '.join(constant)})" if constant else "")
            + "; use --method recalibration or baseline"
        )
    size_block = assess_sample_size(data, len(terms), base_model, role="base", registry_sha256=registry_sha256)[1]
    progress(f"{data.name}: closed test chose {test.method}" + (f"; {chosen} as asked" if method != "auto" else ""))
    shrunk = shrinkage.not_shrunk(f"{chosen}: no coefficient is re-estimated freely")
    if chosen == "original":
        kept = updating.keep_coefficients(base)
        coef, covariance, risk_sets = kept.coef, kept.covariance, base.risk_sets
        note = kept.note + "; baseline hazard the base model's"
    elif chosen == "baseline":
        kept = updating.keep_coefficients(base)
        coef, covariance = kept.coef, kept.covariance
        risk_sets = shrinkage.risk_sets_at(designs, time, event, coef)
        note = kept.note + "; Breslow baseline re-estimated on these data with the base linear predictor as offset"
    elif chosen == "recalibration":
        slope, slope_var = updating.pool_slopes(parts)
        new = updating.recalibrated(base, slope, slope_var)
        coef, covariance = new.coef, new.covariance
        risk_sets = shrinkage.risk_sets_at(designs, time, event, coef)
        note = new.note + f" (g = {slope:.4f}, SE {math.sqrt(slope_var):.4f}); Breslow baseline re-estimated"
    else:
        if data.imputed:
            pooled = _pool(designs, time, event, terms)
            coef, covariance = pooled.pooled.coef, pooled.pooled.covariance
        else:
            fit = fit_endpoint(data.frame, optional)["fit"]
            coef, covariance = fit.coef, fit.covariance
        shrunk = estimate_shrinkage(
            data,
            terms,
            replicates=replicates,
            seed=seed,
            reason="refit on update: every coefficient re-estimated, then shrunk",
        )
        coef, covariance = shrinkage.shrink(coef, covariance, shrunk.factor)
        risk_sets = shrinkage.risk_sets_at(designs, time, event, coef)
        note = (
            f"every coefficient re-estimated on these data and shrunk by {shrunk.factor:.4f}; covariance "
            "factor^2 times the refit's; Breslow baseline re-estimated after shrinking"
        )
    first = parts[0]
    block = {
        "base_version": base_version,
        "method": chosen,
        "selected_by": "closed test" if method == "auto" else "asked for (--method)",
        "closed_test_method": test.method,
        "alpha": alpha,
        "tests": test.tests,
        "observed_expected": float(np.mean([c.observed_expected for c in parts])),
        "observed_events": first.observed,
        "expected_events": float(np.mean([c.expected for c in parts])),
        "base_follow_up_months": first.tau,
        "calibration_slope": updating.pool_slopes(parts)[0],
        "calibration_slope_se": math.sqrt(updating.pool_slopes(parts)[1]),
        "estimates": note,
    }
    result = {
        "n": len(time),
        "events": int(event.sum()),
        "variance_scale": base.variance_scale if chosen == "original" else 1.0,
        "multivariate": coefficient_table(terms, coef, covariance, len(time), int(event.sum())),
        "univariate": univariate_rows(data, optional),
        "sample_size": size_block,
        "shrinkage": shrunk.to_card(),
        "update": block,
    }
    return Fitted(coef=coef, covariance=covariance, risk_sets=risk_sets, result=result)
