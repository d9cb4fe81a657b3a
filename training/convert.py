"""Convert a model version in the old pickled format (format 1: ``{endpoint}.joblib``) to arrays and JSON.

The calculator no longer unpickles anything, so a version written before it must be converted once, here, where
scikit-survival is installed. The pickles are opened only after every file matched the manifest, and only when the
installed scikit-learn / scikit-survival are the versions that wrote them. The numbers are carried over unchanged;
the estimator is kept beside them as the data scientists' export; a validation made for the old files is carried
over to the new ones (same numbers); the card's changelog says what happened.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from prognosis.model import Cohort, EndpointModel, RiskSets
from prognosis.store import MODEL_JSON, ModelLoadError, read_manifest, sha256_file, verify_directory, write_model_files
from training import artifact
from training.card import render_markdown
from training.unknowns import fit_unknowns_model

PICKLE_PACKAGES = ("scikit-learn", "scikit-survival")


def _legacy_endpoints(directory: Path) -> list[str]:
    return sorted(
        p.name[: -len(".joblib")] for p in directory.glob("*.joblib") if not p.name.endswith(artifact.ESTIMATOR_SUFFIX)
    )


def _endpoint_model(name: str, payload: dict) -> EndpointModel:
    """Format 1 kept the optional covariates' patterns with their counts, not given the required covariates: the
    chain of models of the unknowns is fitted to those counts (``given_required=False``), which reproduces the
    averaging format 1 did."""
    patterns = payload["cohort"]["patterns"]
    names = tuple(patterns["names"])
    frame = pd.DataFrame(np.asarray(patterns["values"], dtype=str).reshape(-1, len(names)), columns=list(names))
    unknowns = fit_unknowns_model(
        frame, names, weights=np.asarray(patterns["counts"], dtype=float), given_required=False
    )
    return EndpointModel(
        name=name,
        terms=tuple(payload["terms"]),
        coef=np.asarray(payload["coef"], dtype=float),
        covariance=np.asarray(payload["covariance"], dtype=float),
        risk_sets=RiskSets(**{k: np.asarray(v) for k, v in payload["risk_sets"].items()}),
        cohort=Cohort(grade_modality=payload["cohort"]["grade_modality"], unknowns=unknowns),
    )


def convert(directory: str | Path) -> list[str]:
    """Convert ``directory`` in place (one atomic swap); return the endpoints converted."""
    directory = Path(directory).resolve()
    endpoints = _legacy_endpoints(directory)
    if (directory / MODEL_JSON).exists() or not endpoints:
        raise artifact.ArtifactError(f"{directory} is not a model in the old pickled format; nothing to convert")
    manifest_sha = verify_directory(directory)
    card = json.loads((directory / "model_card.json").read_text(encoding="utf-8"))
    for package in PICKLE_PACKAGES:
        made_with, installed = card.get("software", {}).get(package), metadata.version(package)
        if made_with != installed:
            raise ModelLoadError(
                f"{directory} was pickled with {package} {made_with} but {installed} is installed; "
                "convert it where the versions it names are installed"
            )
    payloads = {name: joblib.load(directory / f"{name}.joblib") for name in endpoints}
    models = {name: _endpoint_model(name, payload) for name, payload in payloads.items()}

    def add(tmp: Path) -> None:
        write_model_files(tmp, models)
        for name, payload in payloads.items():
            if payload.get("estimator") is not None:
                joblib.dump(payload["estimator"], tmp / f"{name}{artifact.ESTIMATOR_SUFFIX}", compress=3)
        if isinstance(card.get("validation"), dict):
            # The validation judged these numbers; it now names the files that hold them.
            manifest = {name: sha256_file(tmp / name) for name in (MODEL_JSON, *(f"{ep}.npz" for ep in endpoints))}
            card["validation"]["model_files"] = manifest

    card.setdefault("changelog", []).insert(
        0,
        {
            "version": card["model_version"],
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "change": "Converted from pickled files (format 1) to arrays and JSON (format 2); numbers unchanged.",
        },
    )
    old = read_manifest(directory)
    artifact.rewrite_version(
        directory,
        card,
        render_markdown(card),
        expect_manifest=manifest_sha,
        keep=lambda name: not (name.endswith(".joblib") and name in old),
        add=add,
    )
    return endpoints
