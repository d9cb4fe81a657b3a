"""Cox fits: coefficients, Wald standard errors, CIs and p-values against lifelines and R's coxph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from prognosis import covariates
from tests.registries import random_registry
from training.fit import FitError, breslow_risk_sets, efron_information, fit_cox, fit_endpoint

DATA = Path(__file__).parent / "data"


def endpoint_data(frame: pd.DataFrame, endpoint: str, optional=covariates.OPTIONAL):
    spec = covariates.ENDPOINTS[endpoint]
    terms = covariates.term_ids(optional)
    x = covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)
    return x, frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool), terms


def lifelines_fit(x, time, event, terms):
    df = pd.DataFrame(x, columns=terms).assign(T=time, E=event)
    return CoxPHFitter().fit(df, "T", "E", fit_options={"precision": 1e-14, "r_precision": 1e-14, "max_steps": 200})


@pytest.mark.parametrize("seed,round_to", [(1, None), (2, 1.0), (3, 0.25)])
@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_wald_table_matches_lifelines(seed, round_to, endpoint):
    """Other truths than the published ones, with and without tied times: 1e-5 relative (absolute below 1e-8)."""
    frame = random_registry(1500, seed, round_to=round_to)
    x, time, event, terms = endpoint_data(frame, endpoint)
    ours = fit_cox(x, time, event, terms).table()
    ref = lifelines_fit(x, time, event, terms).summary
    for row, (_, r) in zip(ours, ref.iterrows()):
        np.testing.assert_allclose(row["coef"], r["coef"], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(row["se"], r["se(coef)"], rtol=1e-5)
        np.testing.assert_allclose(row["ci_lower"], r["exp(coef) lower 95%"], rtol=1e-5)
        np.testing.assert_allclose(row["ci_upper"], r["exp(coef) upper 95%"], rtol=1e-5)
        np.testing.assert_allclose(row["p_value"], r["p"], rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_wald_table_matches_r_coxph(endpoint):
    """R survival 3.5-3 coxph(ties='efron') on a registry with heavily tied times (tests/data/r_reference.R)."""
    frame = pd.read_csv(DATA / "r_reference_registry.csv")
    ours = fit_cox(*endpoint_data(frame, endpoint)).table()
    ref = pd.read_csv(DATA / "r_reference_coefficients.csv").query("endpoint == @endpoint")
    np.testing.assert_allclose([r["coef"] for r in ours], ref["coef"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose([r["se"] for r in ours], ref["se"], rtol=1e-6)
    np.testing.assert_allclose([r["ci_lower"] for r in ours], ref["lower"], rtol=1e-6)
    np.testing.assert_allclose([r["ci_upper"] for r in ours], ref["upper"], rtol=1e-6)
    np.testing.assert_allclose([r["p_value"] for r in ours], ref["p"], rtol=1e-5, atol=1e-14)


def test_information_is_minus_the_numerical_hessian():
    frame = random_registry(300, 5, round_to=2.0)
    x, time, event, _ = endpoint_data(frame, "os")
    beta = np.random.default_rng(0).normal(0, 0.3, x.shape[1])
    loglik, score, info = efron_information(x, time, event, beta)
    eps = 1e-5
    num_score = np.array([(efron_information(x, time, event, beta + eps * e)[0]
                           - efron_information(x, time, event, beta - eps * e)[0]) / (2 * eps)
                          for e in np.eye(len(beta))])
    num_hess = np.array([(efron_information(x, time, event, beta + eps * e)[1]
                          - efron_information(x, time, event, beta - eps * e)[1]) / (2 * eps)
                         for e in np.eye(len(beta))])
    np.testing.assert_allclose(score, num_score, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(info, -num_hess, rtol=1e-5, atol=1e-6)


def test_breslow_baseline_matches_scikit_survival():
    frame = random_registry(800, 9, round_to=1.0)
    x, time, event, terms = endpoint_data(frame, "hpfs")
    fit = fit_cox(x, time, event, terms)
    rs = breslow_risk_sets(x, time, event, fit.coef)
    sk = fit.estimator.cum_baseline_hazard_
    np.testing.assert_allclose(rs["cum_hazard"], sk(rs["event_times"]), rtol=1e-12)


def test_univariate_grade_by_modality_uses_grade1_tace_reference():
    frame = random_registry(1200, 4).astype({"who_grade": str})
    frame = frame.assign(time=frame["os_months"], event=frame["os_event"].astype(bool))
    result = fit_endpoint(frame, covariates.OPTIONAL)
    terms = [r["term"] for r in result["univariate"]]
    assert "modality[TACE]:who_grade[2]" in terms and "modality[TACE]:who_grade[1]" not in terms
    assert [r["term"] for r in result["multivariate"]] == covariates.term_ids(covariates.OPTIONAL)
    # The 9-level factor alone, fitted independently by lifelines.
    group = [t for t in terms if t.startswith("modality")]
    x = covariates.design_matrix(frame, group)
    ref = lifelines_fit(x, frame["time"].to_numpy(float), frame["event"].to_numpy(bool), group).summary
    ours = {r["term"]: r for r in result["univariate"]}
    np.testing.assert_allclose([ours[t]["hr"] for t in group], ref["exp(coef)"], rtol=1e-5)


def test_no_events_and_constant_terms_are_refused():
    x = np.array([[0.0], [1.0], [0.0]])
    with pytest.raises(FitError, match="no events"):
        fit_cox(x, np.array([1.0, 2, 3]), np.zeros(3, bool), ["a"])
    with pytest.raises(FitError, match="term\\(s\\) a"):
        fit_cox(np.zeros((3, 1)), np.array([1.0, 2, 3]), np.ones(3, bool), ["a"])
