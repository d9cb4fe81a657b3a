"""Registry in, one artifact directory out: fit both endpoints, assemble the card and the scoring payloads."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from prognosis import covariates
from prognosis.model import Cohort, EndpointModel, Model, RiskSets
from prognosis.store import CURRENT, ModelLoadError, load_model
from registry import Registry
from training import artifact, card, retrain, synthetic, updating
from training.imputation import Imputations
from training.unknowns import fit_unknowns_model

Progress = Callable[[str], None]


def stderr_progress() -> Progress:
    """Progress lines with elapsed seconds on stderr (stdout stays for results)."""
    start = time.perf_counter()

    def report(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    return report


def cohort_summary(
    frame: pd.DataFrame, optional: tuple[str, ...], scale: float = 1.0, completed: list[pd.DataFrame] | None = None
) -> Cohort:
    """Aggregates the calculator needs; no patient-level rows.

    ``grade_modality``: patients per level of MODALITY_WITHIN and option, times ``scale`` (for a synthetic registry
    the evidence's size over the registry's, so that "few similar patients" counts the study's patients), rounded;
    ``unknowns``: the distribution of the optional covariates given the required ones (``training.unknowns``), fitted
    on the ``completed`` registries stacked with weights 1/M when the optional covariates were imputed.
    """
    within = covariates.MODALITY_WITHIN
    counts = frame.groupby([within.name, covariates.MODALITY.name]).size()
    grade_modality = {
        g: {m: int(round(scale * counts.get((g, m), 0))) for m in covariates.OPTIONS} for g in within.levels
    }
    if completed:
        stacked = pd.concat(completed, ignore_index=True)
        weights = np.full(len(stacked), 1.0 / len(completed))
        return Cohort(grade_modality=grade_modality, unknowns=fit_unknowns_model(stacked, optional, weights=weights))
    return Cohort(grade_modality=grade_modality, unknowns=fit_unknowns_model(frame, optional))


def baseline_survival(
    risk_sets: RiskSets, horizons: tuple[float, ...] = covariates.DEFAULT_HORIZONS_MONTHS
) -> list[dict]:
    """S0(t) for the all-reference patient at the horizons: S(t | z) = S0(t) ** exp(z'beta) by hand."""
    times, cum = risk_sets.event_times, risk_sets.cum_hazard
    rows = []
    for h in horizons:
        k = np.searchsorted(times, h, side="right")
        estimable = h <= times[-1]
        rows.append(
            {"months": h, "survival": float(np.exp(-cum[k - 1])) if k and estimable else (1.0 if estimable else None)}
        )
    return rows


def default_version(created: datetime, data_sha256: str) -> str:
    return f"{created:%Y%m%d-%H%M%S}-{data_sha256[:8]}"


def previous_card(out: str | Path) -> dict | None:
    """The card of the version served beside ``out`` (``out``'s parent ``current`` link), for the changelog."""
    path = Path(out).parent / CURRENT / "model_card.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_reference(directory: str | Path | None, role: str = "served") -> tuple[Model | None, str | None]:
    """The model whose R-squared on the registry anticipates the new model's (sample size), or why there is none."""
    if directory is None:
        return None, f"no {role} model was given"
    if not Path(directory).exists():
        return None, f"there is no {role} model (nothing at {directory})"
    try:
        return load_model(directory), None
    except ModelLoadError as exc:
        return None, f"the {role} model at {directory} could not be loaded ({exc})"


def missing_data_block(imputed: Imputations | None, results: dict[str, dict]) -> dict:
    """The card's ``missing_data`` (CONTRACT shape); the per-endpoint fractions of missing information move here."""
    fmi = {
        name: result.pop("fraction_missing_information")
        for name, result in results.items()
        if "fraction_missing_information" in result
    }
    if imputed is None:
        return {"method": "complete_case", "imputations": 0, "rows_imputed": 0, "fraction_missing_information": {}}
    return {
        "method": "multiple_imputation",
        "imputations": imputed.m,
        "rows_imputed": imputed.rows_imputed,
        "fraction_missing_information": fmi,
        "missing_values": {name: int(rows.sum()) for name, rows in imputed.missing.items()},
        "imputed_columns": list(imputed.columns),
        "iterations": imputed.iterations,
        "seed": imputed.seed,
        "predictors": list(imputed.predictors),
        "software": "training.imputation.impute (chained equations; docs/methods.md)",
    }


def described_data(source: str, registry: Registry, results: dict[str, dict], evidence: int | None = None) -> dict:
    """The card's ``data`` block: where the registry came from and what of it each endpoint used."""
    return {
        "source": source,
        **({"evidence_patients": evidence} if evidence else {}),
        "sha256": registry.sha256,
        "rows_read": registry.report["rows_read"],
        "rows_used": {name: results[name]["n"] for name in covariates.ENDPOINTS},
        "excluded": registry.report["excluded"],
        "endpoint_missing": registry.report["endpoint_missing"],
        "format": registry.report["format"],
    }


def _finish(fitted: retrain.Fitted) -> dict:
    risk_sets = fitted.risk_sets
    return {
        **fitted.result,
        "last_event_months": risk_sets.last_event_time,
        "baseline_survival": baseline_survival(risk_sets),
    }


def fit_registry(
    registry: Registry,
    out: str | Path,
    *,
    version: str | None = None,
    progress: Progress | None = None,
    previous: dict | None = None,
    export_sksurv: bool = False,
    imputations: int = 0,
    shrinkage: str = "none",
    replicates: int = retrain.shrinkage.DEFAULT_REPLICATES,
    seed: int = retrain.DEFAULT_SEED,
    reference: str | Path | None = None,
) -> Path:
    """Fit HPFS and OS on a validated registry and write one artifact directory at ``out``.

    ``previous`` (default: the card ``current`` beside ``out`` points to) starts the new card's changelog.
    ``export_sksurv`` also fits scikit-survival's estimator of each endpoint and writes it beside the model as
    ``{endpoint}.sksurv.joblib``, for data scientists (slow on large registries; serving never opens it).
    ``imputations`` M >= 2: the missing optional covariates are multiply imputed (a registry loaded with
    ``allow_missing_optional``) and the M fits pooled by Rubin's rules. ``shrinkage``: "auto" shrinks an endpoint
    whose registry is too small by Riley et al.'s criteria, "bootstrap" always, "none" never (docs/retraining.md);
    ``replicates`` and ``seed`` drive its bootstrap and the imputation. ``reference``: the served model, whose
    R-squared on this registry anticipates the new model's in the sample-size criteria.
    """
    progress = progress or (lambda message: None)
    created = datetime.now(UTC)
    version = version or default_version(created, registry.sha256)
    source = synthetic.data_source(registry.frame["patient_id"])
    # A synthetic registry stands for the study whose estimates it reproduces: its variances are that study's.
    evidence = synthetic.evidence_patients() if source == "synthetic" else None
    imputed = None
    if imputations:
        progress(f"imputing the missing optional covariates: {imputations} completed registries (chained equations)")
        imputed = retrain.impute_registry(registry, imputations, seed)
        if imputed is None:
            progress("no optional covariate has a missing value: nothing to impute")
    served, note = load_reference(reference)
    models, estimators, results = {}, {}, {}
    for name in covariates.ENDPOINTS:
        data = retrain.endpoint_data(registry, name, imputed)
        scale = len(data.frame) / evidence if evidence else 1.0
        progress(
            f"{name}: fitting {len(data.frame)} patients, {int(data.event.sum())} events"
            + (f"; variances scaled to the evidence of {evidence} patients" if evidence else "")
        )
        fitted = retrain.fit_one(
            data,
            registry.optional,
            scale=scale,
            shrinkage_mode=shrinkage,
            reference=served,
            reference_note=note,
            registry_sha256=registry.sha256,
            replicates=replicates,
            seed=seed,
            export_sksurv=export_sksurv,
            progress=progress,
        )
        for line in fitted.notes:
            progress(f"{name}: {line}")
        models[name] = EndpointModel(
            name=name,
            terms=tuple(covariates.term_ids(registry.optional)),
            coef=fitted.coef,
            covariance=fitted.covariance,
            risk_sets=fitted.risk_sets,
            cohort=cohort_summary(data.frame, registry.optional, 1 / scale, data.frames if data.imputed else None),
            variance_scale=scale,
        )
        estimators[name] = fitted.estimator
        results[name] = _finish(fitted)
    described = described_data(source, registry, results, evidence)
    model_card = card.build_card(
        version=version,
        created_at=created,
        data=described,
        optional=registry.optional,
        endpoints=results,
        previous=previous if previous is not None else previous_card(out),
        missing_data=missing_data_block(imputed, results),
    )
    progress("writing the artifact")
    path = artifact.write_artifact(out, models, model_card, card.render_markdown(model_card), estimators=estimators)
    progress(f"wrote model version {version} to {path}")
    return path


def update_registry(
    base_dir: str | Path,
    registry: Registry,
    out: str | Path,
    *,
    method: str = "auto",
    alpha: float = updating.ALPHA,
    version: str | None = None,
    progress: Progress | None = None,
    imputations: int = 0,
    replicates: int = retrain.shrinkage.DEFAULT_REPLICATES,
    seed: int = retrain.DEFAULT_SEED,
) -> Path:
    """Update the model at ``base_dir`` on a validated registry (``training.updating``) and write a new version.

    The base model's terms are kept. ``method``: "auto" chooses per endpoint by closed testing at ``alpha``; or
    "original", "baseline", "recalibration", "refit" for both endpoints. ``imputations``, ``replicates`` and
    ``seed`` as in :func:`fit_registry` (the bootstrap shrinks a refit).
    """
    progress = progress or (lambda message: None)
    base = load_model(base_dir)
    optional = tuple(
        name
        for name in covariates.OPTIONAL
        if any(name in updating.optional_used(ep.terms) for ep in base.endpoints.values())
    )
    lacking = [name for name in optional if name not in registry.optional]
    if lacking:
        raise updating.UpdateError(
            f"the base model {base.version} uses {', '.join(lacking)}, which the registry does not record: it cannot "
            "be updated on these data (fit a new model without them instead)"
        )
    created = datetime.now(UTC)
    version = version or default_version(created, registry.sha256)
    imputed = None
    if imputations:
        progress(f"imputing the missing optional covariates: {imputations} completed registries (chained equations)")
        imputed = retrain.impute_registry(registry, imputations, seed)
    models, results = {}, {}
    for name in covariates.ENDPOINTS:
        data = retrain.endpoint_data(registry, name, imputed)
        ep = base.endpoints[name]
        progress(f"{name}: updating {base.version} on {len(data.frame)} patients, {int(data.event.sum())} events")
        fitted = retrain.update_one(
            data,
            ep,
            base.version,
            method=method,
            alpha=alpha,
            base_model=base,
            registry_sha256=registry.sha256,
            replicates=replicates,
            seed=seed,
            progress=progress,
        )
        chosen = fitted.result["update"]["method"]
        completed = data.frames if data.imputed else None
        if chosen == "original":
            cohort = ep.cohort
        elif chosen == "refit":
            cohort = cohort_summary(data.frame, optional, 1.0, completed)
        else:  # the base's coefficients: its counts behind them; the new registry's mix of the optional inputs
            cohort = Cohort(
                grade_modality=ep.cohort.grade_modality,
                unknowns=cohort_summary(data.frame, optional, 1.0, completed).unknowns,
            )
        models[name] = EndpointModel(
            name=name,
            terms=ep.terms,
            coef=fitted.coef,
            covariance=fitted.covariance,
            risk_sets=fitted.risk_sets,
            cohort=cohort,
            variance_scale=fitted.result["variance_scale"],
        )
        results[name] = _finish(fitted)
    described = described_data(synthetic.data_source(registry.frame["patient_id"]), registry, results)
    model_card = card.build_card(
        version=version,
        created_at=created,
        data=described,
        optional=optional,
        endpoints=results,
        previous=base.card,
        missing_data=missing_data_block(imputed, results),
        base={
            "version": base.version,
            "data_source": base.data_source,
            "sha256": base.sha256,
            "data_sha256": base.card.get("data", {}).get("sha256"),
            "evidence_patients": base.evidence_patients,
            "created_at": base.created_at,
        },
    )
    progress("writing the artifact")
    path = artifact.write_artifact(out, models, model_card, card.render_markdown(model_card))
    progress(f"wrote model version {version} (updated from {base.version}) to {path}")
    return path
