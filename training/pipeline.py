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
from prognosis.model import Cohort, EndpointModel, RiskSets
from prognosis.store import CURRENT
from training import artifact, card, synthetic
from training.fit import fit_endpoint
from training.registry import Registry, endpoint_frame
from training.unknowns import fit_unknowns_model

Progress = Callable[[str], None]


def stderr_progress() -> Progress:
    """Progress lines with elapsed seconds on stderr (stdout stays for results)."""
    start = time.perf_counter()

    def report(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    return report


def cohort_summary(frame: pd.DataFrame, optional: tuple[str, ...], scale: float = 1.0) -> Cohort:
    """Aggregates the calculator needs; no patient-level rows.

    ``grade_modality``: patients per level of MODALITY_WITHIN and option, times ``scale`` (for a synthetic registry
    the evidence's size over the registry's, so that "few similar patients" counts the study's patients), rounded;
    ``unknowns``: the distribution of the optional covariates given the required ones (``training.unknowns``).
    """
    within = covariates.MODALITY_WITHIN
    counts = frame.groupby([within.name, covariates.MODALITY.name]).size()
    grade_modality = {
        g: {m: int(round(scale * counts.get((g, m), 0))) for m in covariates.OPTIONS} for g in within.levels
    }
    return Cohort(grade_modality=grade_modality, unknowns=fit_unknowns_model(frame, optional))


def baseline_survival(risk_sets: RiskSets, horizons=covariates.DEFAULT_HORIZONS_MONTHS) -> list[dict]:
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


def fit_registry(
    registry: Registry,
    out: str | Path,
    *,
    version: str | None = None,
    progress: Progress | None = None,
    previous: dict | None = None,
    export_sksurv: bool = False,
) -> Path:
    """Fit HPFS and OS on a validated registry and write one artifact directory at ``out``.

    ``previous`` (default: the card ``current`` beside ``out`` points to) starts the new card's changelog.
    ``export_sksurv`` also fits scikit-survival's estimator of each endpoint and writes it beside the model as
    ``{endpoint}.sksurv.joblib``, for data scientists (slow on large registries; serving never opens it).
    """
    progress = progress or (lambda message: None)
    created = datetime.now(UTC)
    version = version or default_version(created, registry.sha256)
    source = synthetic.data_source(registry.frame["patient_id"])
    # A synthetic registry stands for the study whose estimates it reproduces: its variances are that study's.
    evidence = synthetic.evidence_patients() if source == "synthetic" else None
    models, estimators, results = {}, {}, {}
    for name in covariates.ENDPOINTS:
        frame = endpoint_frame(registry, name)
        scale = len(frame) / evidence if evidence else 1.0
        progress(
            f"{name}: fitting {len(frame)} patients, {int(frame['event'].sum())} events"
            + (f"; variances scaled to the evidence of {evidence} patients" if evidence else "")
        )
        fitted = fit_endpoint(
            frame,
            registry.optional,
            progress=lambda step, n=name: progress(f"{n}: {step}"),
            variance_scale=scale,
            export_sksurv=export_sksurv,
        )
        fit, risk_sets = fitted["fit"], RiskSets(**fitted["risk_sets"])
        models[name] = EndpointModel(
            name=name,
            terms=tuple(fit.terms),
            coef=fit.coef,
            covariance=fit.covariance,
            risk_sets=risk_sets,
            cohort=cohort_summary(frame, registry.optional, 1 / scale),
            variance_scale=scale,
        )
        estimators[name] = fit.estimator
        results[name] = {
            "n": fit.n,
            "events": fit.events,
            "variance_scale": scale,
            "multivariate": fitted["multivariate"],
            "univariate": fitted["univariate"],
            "last_event_months": risk_sets.last_event_time,
            "baseline_survival": baseline_survival(risk_sets),
        }
    data = {
        "source": source,
        **({"evidence_patients": evidence} if evidence else {}),
        "sha256": registry.sha256,
        "rows_read": registry.report["rows_read"],
        "rows_used": {name: results[name]["n"] for name in covariates.ENDPOINTS},
        "excluded": registry.report["excluded"],
        "endpoint_missing": registry.report["endpoint_missing"],
        "format": registry.report["format"],
    }
    model_card = card.build_card(
        version=version,
        created_at=created,
        data=data,
        optional=registry.optional,
        endpoints=results,
        previous=previous if previous is not None else previous_card(out),
    )
    progress("writing the artifact")
    path = artifact.write_artifact(out, models, model_card, card.render_markdown(model_card), estimators=estimators)
    progress(f"wrote model version {version} to {path}")
    return path
