"""``fit --impute M`` and ``update --impute M``: every row used, M fits pooled by Rubin's rules into the served model
and the card (checked against mice::pool), the unknown-inputs chain fitted on the completed registries, and a
registry with outcome-dependent missingness in which the pooled fit lands on the never-missing one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognosis import covariates
from prognosis.store import load_model
from registry import load_registry
from tests.data import impute_data
from tests.registries import with_missing
from training import pipeline, synthetic
from training.fit import efron_information, fit_coefficients

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
TERMS = covariates.term_ids(covariates.OPTIONAL)


def design(frame: pd.DataFrame, terms=TERMS) -> np.ndarray:
    return covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALCULATOR_MODEL_DIR": "/nonexistent/current"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=900, env=env
    )


def test_pooled_tables_match_mice(tmp_path):
    """``fit --impute 5 --seed 11``: the served coefficients and the card's multivariate and univariate tables
    (estimate, pooled SE sqrt(T), fmi) equal R coxph + mice::pool on the same 5 completed registries (1e-6 relative)."""
    saved = pd.read_csv(DATA / "impute_completed.csv", dtype={"who_grade": str})
    now = impute_data.completed_frames()
    for name in covariates.OPTIONAL:  # the imputations are still those R pooled (else rerun tests/data/impute_data.py)
        assert (now[name].astype(str).to_numpy() == saved[name].astype(str).to_numpy()).all(), name
    registry = load_registry(str(DATA / "impute_registry.csv"), allow_missing_optional=True)
    out = pipeline.fit_registry(
        registry, tmp_path / "m", version="mi", imputations=impute_data.IMPUTATIONS, seed=impute_data.SEED
    )
    model = load_model(out)
    ref = pd.read_csv(DATA / "r_impute_pool.csv")
    for endpoint in covariates.ENDPOINTS:
        card = model.card["endpoints"][endpoint]
        for kind in ("multivariate", "univariate"):
            theirs = ref[(ref.endpoint == endpoint) & (ref.kind == kind)].sort_values("position")
            rows = card[kind]
            assert len(rows) == len(theirs)
            np.testing.assert_allclose([r["coef"] for r in rows], theirs["estimate"], rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose([r["se"] for r in rows], theirs["std_error"], rtol=1e-6)
            np.testing.assert_allclose([r["fmi"] for r in rows], theirs["fmi"], rtol=1e-6)
        multivariate = ref[(ref.endpoint == endpoint) & (ref.kind == "multivariate")].sort_values("position")
        np.testing.assert_allclose(model.endpoints[endpoint].coef, multivariate["estimate"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(
            np.sqrt(np.diag(model.endpoints[endpoint].covariance)), multivariate["std_error"], rtol=1e-6
        )
        assert card["n"] == 400
    missing = model.card["missing_data"]
    assert missing["method"] == "multiple_imputation" and missing["imputations"] == 5 and missing["seed"] == 11
    assert missing["rows_imputed"] == int(pd.read_csv(DATA / "impute_registry.csv").isna().any(axis=1).sum())
    assert set(missing["fraction_missing_information"]) == set(covariates.ENDPOINTS)
    assert "description" in missing and "Rubin" in missing["description"]


@pytest.fixture(scope="module")
def must_show(tmp_path_factory):
    """2,000 patients, optional covariates missing more often after an early death and in grade 3 (extrahepatic
    metastases ~45%, tumor type ~25%, octreotide ~15%): ``fit --impute 20`` on it and ``fit`` on the never-missing
    registry."""
    folder = tmp_path_factory.mktemp("impute")
    full = synthetic.synthesize(2000, 5)
    full["patient_id"] = [f"P{i:05d}" for i in range(len(full))]
    frame = with_missing(full, 105, {"extrahepatic_metastases": -0.6, "tumor_type": -1.5, "octreotide": -2.5})
    full.to_csv(folder / "full.csv", index=False)
    frame.to_csv(folder / "missing.csv", index=False)
    refused = run("fit", "--data", str(folder / "missing.csv"), "--out", str(folder / "cc"))
    imputed = run("fit", "--data", str(folder / "missing.csv"), "--out", str(folder / "mi"), "--impute", "20")
    assert imputed.returncode == 0, imputed.stderr
    return full, frame, load_model(folder / "mi"), refused, imputed


def test_a_registry_with_missing_optional_values_needs_impute(must_show):
    _, _, _, refused, _ = must_show
    assert refused.returncode != 0 and "missing value" in refused.stderr and "--impute 20" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_fit_impute_20_uses_every_row_and_lands_on_the_never_missing_fit(must_show, endpoint):
    """Must show: every row is used and every pooled coefficient is within 2.5 pooled SEs of the fit on the
    never-missing registry, while complete cases are off by more than 3 of its SEs for some term; the fraction of
    missing information is reported for every term, larger for the most-missing covariate than for one never
    missing."""
    full, frame, model, _, stdout = must_show
    card = model.card
    assert card["data"]["rows_used"] == {"hpfs": 2000, "os": 2000} and card["endpoints"][endpoint]["n"] == 2000
    spec = covariates.ENDPOINTS[endpoint]
    time, event = full[spec.time].to_numpy(float), full[spec.event].to_numpy(bool)
    x = design(full)
    truth = fit_coefficients(x, time, event)
    rows = card["endpoints"][endpoint]["multivariate"]
    pooled, se = np.array([r["coef"] for r in rows]), np.array([r["se"] for r in rows])
    assert card["endpoints"][endpoint]["shrinkage"]["method"] == "none"  # 2,000 patients: large enough
    z = (pooled - truth) / se
    assert np.all(np.abs(z) < 2.5), dict(zip(TERMS, np.round(z, 2), strict=True))
    complete = frame.dropna(subset=list(covariates.OPTIONAL))
    xc = design(complete)
    tc, ec = complete[spec.time].to_numpy(float), complete[spec.event].to_numpy(bool)
    cc = fit_coefficients(xc, tc, ec)
    se_full = np.sqrt(np.diag(np.linalg.inv(efron_information(x, time, event, truth)[2])))
    assert np.max(np.abs(cc - truth) / se_full) > 3
    fmi = card["missing_data"]["fraction_missing_information"][endpoint]
    assert list(fmi) == TERMS and all(0 < v < 1 for v in fmi.values())
    assert fmi["extrahepatic_metastases"] > fmi["biologic"]
    missing = card["missing_data"]
    assert missing["imputations"] == 20 and missing["rows_imputed"] == int(frame.isna().any(axis=1).sum())
    assert "multiple imputation: 20 imputations" in stdout.stdout


def test_unknown_inputs_chain_is_fitted_on_the_completed_registries(must_show):
    """The chain's P(extrahepatic metastases) averaged over the patients is the never-missing share (within 0.02);
    the observed values alone, missing more often after an early death, give a share off by more."""
    full, frame, model, _, _ = must_show
    link = next(link for link in model.endpoints["os"].cohort.unknowns.links if link.name == "extrahepatic_metastases")
    inputs = covariates.design_matrix(
        full.astype({c: str for c in full.columns if c in covariates.BY_NAME}), list(link.inputs)
    )
    served = np.exp(link.log_probabilities(inputs)[:, link.levels.index("1")]).mean()
    truth = (full["extrahepatic_metastases"].astype(str) == "1").mean()
    observed = frame["extrahepatic_metastases"].dropna().astype(str).eq("1").mean()
    assert abs(served - truth) < 0.02 < abs(observed - truth) + 0.02, (served, truth, observed)


def test_update_impute_pools_the_closed_test_with_d2(tmp_path):
    """``update --impute 5``: every row used, the closed test's statistics combined over the imputations by D2."""
    base = tmp_path / "base"
    full = synthetic.synthesize(3000, 21)
    full["patient_id"] = [f"B{i:05d}" for i in range(len(full))]
    pipeline.fit_registry(load_registry(_csv(full, tmp_path / "base.csv")), base, version="base")
    new = synthetic.synthesize(600, 22)
    new["patient_id"] = [f"N{i:05d}" for i in range(len(new))]
    new = with_missing(new, 23, {"extrahepatic_metastases": -1.0})
    done = run(
        "update",
        "--base",
        str(base),
        "--data",
        _csv(new, tmp_path / "new.csv"),
        "--out",
        str(tmp_path / "updated"),
        "--impute",
        "5",
        "--bootstrap",
        "20",
    )
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "updated" / "model_card.json").read_text())
    assert card["missing_data"]["method"] == "multiple_imputation" and card["missing_data"]["imputations"] == 5
    for endpoint in covariates.ENDPOINTS:
        ep = card["endpoints"][endpoint]
        assert ep["n"] == 600
        assert all(t["test"] == "D2 over 5 imputations (F)" and t["df2"] > 0 for t in ep["update"]["tests"])
        assert ep["update"]["method"] in ("original", "baseline", "recalibration", "refit")


def _csv(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)
