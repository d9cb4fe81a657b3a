"""Cox fits: coefficients against scikit-survival; Wald standard errors, CIs and p-values against lifelines and R's
coxph; a deliberately wrong likelihood is caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from sksurv.linear_model import CoxPHSurvivalAnalysis

from prognosis import covariates
from tests.registries import random_registry
from training.fit import (
    EventTimes,
    FitError,
    breslow_risk_sets,
    covariate_patterns,
    distinct_rows,
    efron_information,
    fit_coefficients,
    fit_cox,
    fit_endpoint,
    univariate_groups,
)

DATA = Path(__file__).parent / "data"


def endpoint_data(frame: pd.DataFrame, endpoint: str, optional=covariates.OPTIONAL):
    spec = covariates.ENDPOINTS[endpoint]
    terms = covariates.term_ids(optional)
    x = covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)
    return x, frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool), terms


def lifelines_fit(x, time, event, terms):
    df = pd.DataFrame(x, columns=terms).assign(T=time, E=event)
    return CoxPHFitter().fit(df, "T", "E", fit_options={"precision": 1e-14, "r_precision": 1e-14, "max_steps": 200})


def sksurv_fit(x, time, event, ties="efron"):
    """scikit-survival's CoxPHSurvivalAnalysis, the independent implementation the fit is checked against."""
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return CoxPHSurvivalAnalysis(ties=ties, n_iter=200, tol=1e-12).fit(x, y)


# Coefficients agree with scikit-survival's to this, absolutely (log hazard ratios are of order 0.1-1; the
# observed agreement is ~1e-10).
SKSURV_ATOL = 1e-6


def endpoint_frame(frame: pd.DataFrame, endpoint: str) -> pd.DataFrame:
    spec = covariates.ENDPOINTS[endpoint]
    out = frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME})
    return out.assign(time=frame[spec.time].astype(float), event=frame[spec.event].astype(bool))


@pytest.mark.parametrize("seed,round_to", [(1, None), (2, 1.0), (3, 0.25), (6, 6.0)])
@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_coefficients_match_scikit_survival(seed, round_to, endpoint):
    """Without ties and with few to heavily tied times: fit_cox and fit_endpoint's multivariate model (which reaches
    the same likelihood through the covariate patterns) give scikit-survival's Efron coefficients."""
    frame = random_registry(1500, seed, round_to=round_to)
    x, time, event, terms = endpoint_data(frame, endpoint)
    assert (len(np.unique(time[event])) < event.sum()) == (round_to is not None)  # tied event times, or none
    reference = sksurv_fit(x, time, event).coef_
    np.testing.assert_allclose(fit_cox(x, time, event, terms).coef, reference, rtol=0, atol=SKSURV_ATOL)
    np.testing.assert_allclose(fit_coefficients(x, time, event), reference, rtol=0, atol=SKSURV_ATOL)
    result = fit_endpoint(endpoint_frame(frame, endpoint), covariates.OPTIONAL)
    np.testing.assert_allclose(result["fit"].coef, reference, rtol=0, atol=SKSURV_ATOL)


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_univariate_coefficients_match_scikit_survival(endpoint):
    frame = random_registry(1200, 8, round_to=1.0)
    result = fit_endpoint(endpoint_frame(frame, endpoint), covariates.OPTIONAL)
    ours = {r["term"]: r["coef"] for r in result["univariate"]}
    data = endpoint_frame(frame, endpoint)
    for group in univariate_groups(covariates.OPTIONAL):
        x = covariates.design_matrix(data, group)
        reference = sksurv_fit(x, data["time"].to_numpy(float), data["event"].to_numpy(bool)).coef_
        np.testing.assert_allclose([ours[t] for t in group], reference, rtol=0, atol=SKSURV_ATOL)


def test_a_wrong_likelihood_is_caught(monkeypatch):
    """Breslow's handling of ties in place of Efron's (every tied death sees the whole risk set: phi = 0) gives
    exactly scikit-survival's Breslow fit, and misses its Efron fit by far more than the tests allow."""
    frame = random_registry(1500, 2, round_to=1.0)
    x, time, event, terms = endpoint_data(frame, "hpfs")
    efron, breslow = sksurv_fit(x, time, event).coef_, sksurv_fit(x, time, event, ties="breslow").coef_
    original = EventTimes.__init__

    def without_efron(self, *args):
        original(self, *args)
        self.phi = np.zeros_like(self.phi)

    monkeypatch.setattr(EventTimes, "__init__", without_efron)
    wrong = fit_cox(x, time, event, terms).coef
    np.testing.assert_allclose(wrong, breslow, rtol=0, atol=SKSURV_ATOL)
    assert np.abs(wrong - efron).max() > 1000 * SKSURV_ATOL
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong, efron, rtol=0, atol=SKSURV_ATOL)


def test_export_is_scikit_survivals_fit_of_the_same_model():
    frame = random_registry(800, 3, round_to=1.0)
    x, time, event, terms = endpoint_data(frame, "os")
    fit = fit_cox(x, time, event, terms, export_sksurv=True)
    assert isinstance(fit.estimator, CoxPHSurvivalAnalysis)
    np.testing.assert_allclose(fit.estimator.coef_, fit.coef, rtol=0, atol=SKSURV_ATOL)
    assert fit_cox(x, time, event, terms).estimator is None


def test_design_by_covariate_pattern_is_the_design_matrix():
    frame = random_registry(3000, 4).astype(dict.fromkeys(covariates.BY_NAME, str))
    frame.loc[frame.index[::7], "cytotoxic"] = np.nan  # a missing value is a pattern of its own
    terms = covariates.term_ids(covariates.OPTIONAL)
    first, rows = covariate_patterns(frame)
    assert len(first) < len(frame) / 2
    np.testing.assert_array_equal(
        covariates.design_matrix(frame.iloc[first], terms)[rows], covariates.design_matrix(frame, terms)
    )
    x = covariates.design_matrix(frame, terms)
    unique, inverse = distinct_rows(x)
    np.testing.assert_array_equal(unique[inverse], x)
    assert len(unique) == len(np.unique(x, axis=0))
    x[5, 0] = np.nan  # unverifiable: every row its own pattern, still exact
    unique, inverse = distinct_rows(x)
    assert len(unique) == len(x) and np.array_equal(unique[inverse], x, equal_nan=True)


@pytest.mark.parametrize("seed,round_to", [(1, None), (2, 1.0), (3, 0.25)])
@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_wald_table_matches_lifelines(seed, round_to, endpoint):
    """Other truths than the published ones, with and without tied times: 1e-5 relative (absolute below 1e-8)."""
    frame = random_registry(1500, seed, round_to=round_to)
    x, time, event, terms = endpoint_data(frame, endpoint)
    ours = fit_cox(x, time, event, terms).table()
    ref = lifelines_fit(x, time, event, terms).summary
    for row, (_, r) in zip(ours, ref.iterrows(), strict=True):
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
    num_score = np.array(
        [
            (
                efron_information(x, time, event, beta + eps * e)[0]
                - efron_information(x, time, event, beta - eps * e)[0]
            )
            / (2 * eps)
            for e in np.eye(len(beta))
        ]
    )
    num_hess = np.array(
        [
            (
                efron_information(x, time, event, beta + eps * e)[1]
                - efron_information(x, time, event, beta - eps * e)[1]
            )
            / (2 * eps)
            for e in np.eye(len(beta))
        ]
    )
    np.testing.assert_allclose(score, num_score, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(info, -num_hess, rtol=1e-5, atol=1e-6)


def test_breslow_baseline_matches_scikit_survival():
    frame = random_registry(800, 9, round_to=1.0)
    x, time, event, terms = endpoint_data(frame, "hpfs")
    sk = sksurv_fit(x, time, event)
    rs = breslow_risk_sets(x, time, event, sk.coef_)
    np.testing.assert_allclose(rs["cum_hazard"], sk.cum_baseline_hazard_(rs["event_times"]), rtol=1e-12)
    ours = fit_endpoint(endpoint_frame(frame, "hpfs"), covariates.OPTIONAL)["risk_sets"]
    np.testing.assert_allclose(ours["cum_hazard"], sk.cum_baseline_hazard_(rs["event_times"]), rtol=1e-8)


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
