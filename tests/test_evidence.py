"""Every number is as certain as the evidence behind it (issue 8): synthetic models carry the study's uncertainty."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognosis import covariates
from prognosis.notices import FEW_SIMILAR_PATIENTS
from prognosis.scoring import predict
from prognosis.store import load_model
from registry import load_registry
from training.pipeline import fit_registry

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "model_artifacts" / "current"
R_TIMES = (3.0, 6.0, 12.0, 24.0, 36.0)
EVIDENCE = 184


@pytest.fixture(scope="module")
def synthetic_r_model(tmp_path_factory):
    """The R reference registry, its ids made synthetic: fitted as standing for a study of 184 patients."""
    folder = tmp_path_factory.mktemp("evidence")
    frame = pd.read_csv(DATA / "r_reference_registry.csv")
    frame["patient_id"] = [f"SYN{i:06d}" for i in range(len(frame))]
    frame.to_csv(folder / "synthetic.csv", index=False)
    return load_model(fit_registry(load_registry(str(folder / "synthetic.csv")), folder / "m", version="ev"))


def test_synthetic_variances_equal_r_with_case_weights(synthetic_r_model):
    """Scaling every variance by N / 184 is what R's coxph/survfit give with case weights 184 / N (1e-6 / 1e-8)."""
    card = synthetic_r_model.card
    assert card["data"]["source"] == "synthetic" and card["data"]["evidence_patients"] == EVIDENCE
    coefficients = pd.read_csv(DATA / "r_evidence_coefficients.csv")
    for endpoint in covariates.ENDPOINTS:
        rows = card["endpoints"][endpoint]["multivariate"]
        theirs = coefficients[coefficients.endpoint == endpoint]
        np.testing.assert_allclose([r["coef"] for r in rows], theirs["coef"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose([r["se"] for r in rows], theirs["se"], rtol=1e-6)
        np.testing.assert_allclose([r["ci_lower"] for r in rows], theirs["lower"], rtol=1e-6)
        np.testing.assert_allclose([r["p_value"] for r in rows], theirs["p"], rtol=1e-5, atol=1e-12)
    curves = pd.read_csv(DATA / "r_evidence_curves.csv")
    patients = pd.read_csv(DATA / "r_reference_patients.csv").to_dict("records")
    for i, row in enumerate(patients, start=1):
        patient = {c.name: str(row[c.name]) for c in covariates.COVARIATES}
        result = predict(synthetic_r_model, patient, horizons=R_TIMES)
        for endpoint in covariates.ENDPOINTS:
            ours = result["predictions"][endpoint][row["modality"]]["landmarks"]
            theirs = curves[(curves.endpoint == endpoint) & (curves.patient == i)]
            for key, column in (("survival", "surv"), ("ci_lower", "lower"), ("ci_upper", "upper")):
                np.testing.assert_allclose([lm[key] for lm in ours], theirs[column], rtol=1e-8)


def test_univariate_tables_are_scaled_like_lifelines_with_case_weights(synthetic_r_model):
    """The card's univariate rows of a synthetic model: lifelines' Efron fit of the same covariate with case weights
    184 / N (its naive variance, not the robust one) gives the same coefficients and standard errors (1e-5)."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import StatisticalWarning

    frame = pd.read_csv(DATA / "r_reference_registry.csv")
    frame = frame.astype(dict.fromkeys(covariates.BY_NAME, str) | {"modality": str})
    weight = EVIDENCE / len(frame)
    for endpoint, spec in covariates.ENDPOINTS.items():
        rows = {r["term"]: r for r in synthetic_r_model.card["endpoints"][endpoint]["univariate"]}
        for name in ("who_grade", "tumor_burden", "prior_resection_ablation"):
            terms = covariates.covariate_terms(covariates.BY_NAME[name])
            data = pd.DataFrame(covariates.design_matrix(frame, terms), columns=terms)
            data["T"], data["E"], data["w"] = frame[spec.time], frame[spec.event], weight
            with warnings.catch_warnings():  # the naive variance of fractional weights is the point here
                warnings.simplefilter("ignore", StatisticalWarning)
                fit = CoxPHFitter().fit(data, "T", "E", weights_col="w", robust=False)
            for term in terms:
                assert rows[term]["coef"] == pytest.approx(fit.params_[term], rel=1e-5)
                assert rows[term]["se"] == pytest.approx(fit.standard_errors_[term], rel=1e-5)


def test_the_imputed_path_scales_its_univariate_rows_as_the_complete_case_path():
    """The univariate table of a multiply imputed registry (``retrain.univariate_rows``: one Wald table per
    group, or Rubin's rules over the completed registries) is scaled as ``fit_endpoint``'s, which lifelines checks
    above: on complete data, with M identical completions (no between-imputation variance), both branches give
    the complete-case rows at the same variance scale (1e-9)."""
    from training.fit import fit_endpoint
    from training.retrain import EndpointData, endpoint_data, univariate_rows

    registry = load_registry(str(DATA / "r_reference_registry.csv"))
    scale = 200.0 / EVIDENCE
    for endpoint in covariates.ENDPOINTS:
        data = endpoint_data(registry, endpoint)
        expected = fit_endpoint(data.frame, registry.optional, variance_scale=scale)["univariate"]
        copies = EndpointData(endpoint, data.frame, [data.frame] * 3, imputed=True)
        for rows in (
            univariate_rows(data, registry.optional, scale),
            univariate_rows(copies, registry.optional, scale),
        ):
            assert [r["term"] for r in rows] == [r["term"] for r in expected]
            for got, want in zip(rows, expected, strict=True):
                for key in ("coef", "se", "ci_lower", "ci_upper", "p_value"):
                    assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), (endpoint, got["term"], key)


def test_a_registry_model_is_never_scaled(tmp_path):
    """The same rows with registry ids: unweighted, as R's plain coxph (the r_reference values)."""
    registry = load_registry(str(DATA / "r_reference_registry.csv"))
    model = load_model(fit_registry(registry, tmp_path / "m", version="reg"))
    assert model.card["data"]["source"] == "registry" and "evidence_patients" not in model.card["data"]
    assert all(ep.variance_scale == 1.0 for ep in model.endpoints.values())
    plain = pd.read_csv(DATA / "r_reference_coefficients.csv")
    for endpoint in covariates.ENDPOINTS:
        se = [r["se"] for r in model.card["endpoints"][endpoint]["multivariate"]]
        np.testing.assert_allclose(se, plain[plain.endpoint == endpoint]["se"], rtol=1e-6)


def test_similar_patients_are_counted_at_the_evidence_scale():
    model = load_model(SHIPPED)
    for ep in model.endpoints.values():
        total = sum(sum(by_option.values()) for by_option in ep.cohort.grade_modality.values())
        assert abs(total - EVIDENCE) <= len(covariates.OPTIONS) * len(covariates.MODALITY_WITHIN.levels)


def test_shipped_standard_errors_match_the_published_ones():
    """Must show: median card/published SE ratio in [0.6, 1.7] per endpoint (today's was 0.05)."""
    card = load_model(SHIPPED).card
    for endpoint in covariates.ENDPOINTS:
        rows = [r for r in card["endpoints"][endpoint]["multivariate"] if "published_se" in r]
        assert len(rows) >= 10
        ratios = [r["se"] / r["published_se"] for r in rows]
        assert 0.6 <= float(np.median(ratios)) <= 1.7, endpoint
        # The published SE is recovered from HR and p alone: |ln HR| / z(1 - p/2).
        from scipy.stats import norm

        for r in rows:
            assert r["published_se"] == pytest.approx(
                abs(np.log(r["published_hr"])) / norm.ppf(1 - r["published_p_value"] / 2), rel=1e-12
            )
        assert card["endpoints"][endpoint]["published_se_agreement"]["median_ratio"] == pytest.approx(np.median(ratios))


def test_a_grade_3_difference_is_as_uncertain_as_the_study():
    """Must show: OS SIRT vs TACE at 24 months in grade 3, interval at least 15 points wide, few-similar warning."""
    model = load_model(SHIPPED)
    result = predict(model, {"who_grade": "3", "tumor_burden": "<25%", "prior_resection_ablation": "0"})
    contrast = next(c for c in result["contrasts"]["os"] if (c["a"], c["b"]) == ("SIRT", "TACE"))
    at24 = next(d for d in contrast["survival_difference"] if d["months"] == 24.0)
    assert at24["ci_upper"] - at24["ci_lower"] >= 0.15
    assert any(w.startswith("Few similar patients") for w in result["warnings"])
    few = [o for o, n in result["similar_patients"].items() if n < FEW_SIMILAR_PATIENTS]
    warning = next(w for w in result["warnings"] if w.startswith("Few similar patients"))
    assert few and all(option in warning for option in few)
    assert any("SYNTHETIC" in w and "184 patients" in w for w in result["warnings"])
    assert any("not randomized" in w for w in result["warnings"])


def test_methods_table_is_the_shipped_cards():
    """docs/methods.md tabulates the shipped model's SE agreement; it must not drift from the card."""
    card = load_model(SHIPPED).card
    text = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    assert f"Shipped model `{card['model_version']}`" in text
    for endpoint in covariates.ENDPOINTS:
        for row in card["endpoints"][endpoint]["multivariate"]:
            if "published_se" in row:
                pattern = (
                    rf"\| {endpoint.upper()} \| `{re.escape(row['term'])}` \|[^|]*\| "
                    rf"{row['published_se']:.3f} \| {row['se']:.3f} \| {row['se_ratio']:.2f} \|"
                )
                assert re.search(pattern, text), (endpoint, row["term"])


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="R is not installed: the saved values are checked above")
def test_r_script_reproduces_its_saved_values(tmp_path):
    """Rerun tests/data/r_evidence.R and compare with the values the suite checks against."""
    saved = {name: pd.read_csv(DATA / name) for name in ("r_evidence_coefficients.csv", "r_evidence_curves.csv")}
    work = tmp_path / "repo"
    (work / "tests" / "data").mkdir(parents=True)
    for name in ("r_evidence.R", "r_terms.R", "r_reference_registry.csv", "r_reference_patients.csv"):
        shutil.copy(DATA / name, work / "tests" / "data" / name)
    subprocess.run(["Rscript", "tests/data/r_evidence.R"], cwd=work, check=True, capture_output=True, timeout=300)
    for name, frame in saved.items():
        again = pd.read_csv(work / "tests" / "data" / name)
        pd.testing.assert_frame_equal(again, frame, rtol=1e-10)


def test_a_synthetic_registry_is_judged_at_the_size_of_its_study(synthetic_r_model):
    """Riley et al.'s criteria at the evidence's size (not the synthetic N), and the published model never shrunk."""
    for ep in synthetic_r_model.card["endpoints"].values():
        block = ep["sample_size"]
        assert block["patients"] == EVIDENCE
        n, events = ep["n"], ep["events"]
        assert block["events"] == round(events * EVIDENCE / n)
        assert block["adequate"] is False and "never shrunk" in block["evidence"]
        assert ep["shrinkage"]["method"] == "none" and ep["shrinkage"]["factor"] == 1.0
