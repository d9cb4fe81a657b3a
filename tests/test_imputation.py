"""Multiple imputation: Rubin's rules against mice::pool, imputed frequencies against mice, and a simulation in which
complete-case analysis is biased and the imputations are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.nonparametric import nelson_aalen_estimator

from prognosis import covariates
from tests.registries import with_missing
from training import imputation as mi
from training.fit import breslow_risk_sets, efron_information, fit_coefficients
from training.synthetic import synthesize

DATA = Path(__file__).parent / "data"
TERMS = covariates.term_ids(covariates.OPTIONAL)


def design(frame: pd.DataFrame, terms=TERMS) -> np.ndarray:
    return covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_pooling_matches_mice(endpoint):
    """5 completed registries fitted by R coxph(ties='efron') and pooled by mice::pool 3.15 (tests/data/r_mice_pool.R):
    pooled coefficients, standard errors sqrt(T), riv, lambda, Barnard-Rubin df and fmi to 1e-6 relative."""
    completed = pd.read_csv(DATA / "mi_pool_completed.csv", dtype={"tumor_type": str})
    ref = pd.read_csv(DATA / "r_mice_pool.csv").query("endpoint == @endpoint").sort_values("position")
    spec = covariates.ENDPOINTS[endpoint]
    frames = [g for _, g in completed.groupby("imputation")]
    result = mi.pool_cox(
        [design(g) for g in frames], frames[0][spec.time].to_numpy(float), frames[0][spec.event].to_numpy(bool), TERMS
    )
    pooled = result.pooled
    assert pooled.m == 5 and pooled.dfcom == ref["dfcom"].iloc[0]
    np.testing.assert_allclose(pooled.coef, ref["estimate"], rtol=1e-6)
    np.testing.assert_allclose(pooled.se, ref["std_error"], rtol=1e-6)
    np.testing.assert_allclose(np.diag(pooled.within), ref["ubar"], rtol=1e-6)
    np.testing.assert_allclose(np.diag(pooled.between), ref["b"], rtol=1e-6)
    for ours, theirs in ((pooled.riv, "riv"), (pooled.lambda_, "lambda"), (pooled.df, "df"), (pooled.fmi, "fmi")):
        np.testing.assert_allclose(ours, ref[theirs], rtol=1e-6, err_msg=theirs)
    rows = result.table()
    assert [r["term"] for r in rows] == TERMS and all(0 < r["fmi"] < 1 for r in rows)


def test_nelson_aalen_matches_scikit_survival():
    rng = np.random.default_rng(2)
    time = np.ceil(rng.exponential(10.0, 300))  # whole units: many ties
    event = rng.random(300) < 0.7
    times, cum = nelson_aalen_estimator(event, time)
    expected = cum[np.searchsorted(times, time)]
    np.testing.assert_allclose(mi.nelson_aalen(time, event), expected, rtol=1e-12)


@pytest.fixture(scope="module")
def simulation():
    """2000 patients; extrahepatic metastases 46% missing, tumor type 26%, octreotide 13%, all MAR on the outcome and
    grade. The never-missing registry, the incomplete one, and both endpoints pooled over M = 20 imputations."""
    full = synthesize(2000, 5)
    frame = with_missing(full, 105, {"extrahepatic_metastases": -0.6, "tumor_type": -1.5, "octreotide": -2.5})
    imputations = mi.impute(frame, imputations=20, iterations=10, seed=1)
    pooled = {ep: mi.pool_endpoint(imputations, ep, covariates.OPTIONAL) for ep in covariates.ENDPOINTS}
    return full, frame, imputations, pooled


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_imputation_recovers_the_never_missing_fit(simulation, endpoint):
    """Complete cases are biased (some term more than 3 standard errors from the fit on the never-missing data); the
    pooled imputation estimates are within 2.5 pooled standard errors of it for every term."""
    full, frame, imputations, pooled = simulation
    spec = covariates.ENDPOINTS[endpoint]
    time, event = full[spec.time].to_numpy(float), full[spec.event].to_numpy(bool)
    x = design(full)
    truth = fit_coefficients(x, time, event)
    se_full = np.sqrt(np.diag(np.linalg.inv(efron_information(x, time, event, truth)[2])))
    complete = frame.dropna(subset=list(covariates.OPTIONAL))
    cc = fit_coefficients(design(complete), complete[spec.time].to_numpy(float), complete[spec.event].to_numpy(bool))
    assert np.max(np.abs(cc - truth) / se_full) > 3
    result = pooled[endpoint].pooled
    z = (result.coef - truth) / result.se
    assert np.all(np.abs(z) < 2.5), dict(zip(TERMS, np.round(z, 2), strict=True))


def test_imputation_model_uses_the_event_times():
    """Every death observed, so the event indicator carries nothing: only the Nelson-Aalen cumulative hazard at the
    patient's time tells the imputation model about the outcome (White & Royston). Half of the extrahepatic
    metastases (HR 3) missing completely at random: the pooled estimate stays within 2.5 standard errors of the
    never-missing fit (without the outcome in the imputation model it is attenuated by about 6)."""
    full = synthesize(1000, 51)
    x = design(full)
    rng = np.random.default_rng(52)
    beta = np.zeros(len(TERMS))
    beta[TERMS.index("extrahepatic_metastases")], beta[TERMS.index("who_grade[3]")] = np.log(3.0), 1.0
    time = rng.exponential(1 / (0.05 * np.exp(x @ beta)))
    full = full.drop(columns=["hpfs_months", "hpfs_event"]).assign(os_months=time, os_event=1)
    frame = full.astype(dict.fromkeys(covariates.OPTIONAL, object))
    frame.loc[rng.random(len(frame)) < 0.5, "extrahepatic_metastases"] = None
    truth = fit_coefficients(x, time, np.ones(len(time), bool))
    pooled = mi.pool_endpoint(mi.impute(frame, imputations=20, iterations=5, seed=1), "os", covariates.OPTIONAL)
    z = (pooled.pooled.coef - truth) / pooled.pooled.se
    assert np.all(np.abs(z) < 2.5), dict(zip(TERMS, np.round(z, 2), strict=True))


def test_imputations_are_proper():
    """85% of a binary covariate missing completely at random, 64 values observed: the imputed share varies between
    imputations as the posterior of the observed share plus binomial noise, p(1 - p)(1/n_obs + 1/n_mis); imputing
    from the fitted model alone (improper) would vary about a quarter as much."""
    frame = synthesize(500, 13).astype(dict.fromkeys(covariates.OPTIONAL, object))
    missing = np.random.default_rng(14).random(len(frame)) < 0.85
    frame.loc[missing, "octreotide"] = None
    p = (frame.loc[~missing, "octreotide"].astype(str) == "1").mean()
    expected = np.sqrt(p * (1 - p) * (1 / (~missing).sum() + 1 / missing.sum()))
    imputations = mi.impute(frame, imputations=40, iterations=2, seed=1)
    share = (imputations.values["octreotide"] == "1").mean(axis=1)
    assert 0.7 < share.std(ddof=1) / expected < 1.6


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_fraction_of_missing_information(simulation, endpoint):
    """Between 0 and 1 for every term; larger for the covariate missing in 46% than for the one missing in 13%."""
    _, _, imputations, pooled = simulation
    fmi = pooled[endpoint].fraction_missing_information()
    assert all(0 < v < 1 for v in fmi.values())
    assert fmi["extrahepatic_metastases"] > fmi["octreotide"]
    assert fmi["extrahepatic_metastases"] > fmi["who_grade[2]"]
    block = mi.missing_data_block(imputations, pooled)
    assert block["method"] == "multiple_imputation" and block["imputations"] == 20
    assert block["rows_imputed"] == imputations.frame[list(imputations.columns)].isna().any(axis=1).sum()
    assert set(block["fraction_missing_information"]) == {"hpfs", "os"}


def test_pooled_risk_sets(simulation):
    """Averaged over the completed registries at the pooled coefficients; event times those of the data; the baseline's
    between-imputation variance, which scoring does not use, is well below its within-imputation variance (2-15% over
    seeds and times in this simulation)."""
    full, _, _, pooled = simulation
    risk_sets = pooled["os"].risk_sets
    expected_times = np.unique(full.loc[full["os_event"] == 1, "os_months"])
    np.testing.assert_array_equal(risk_sets["event_times"], expected_times)
    assert np.all(np.diff(risk_sets["cum_hazard"]) > 0)
    assert risk_sets["cum_xbar_hazard"].shape == (len(expected_times), len(TERMS))
    between = risk_sets["cum_hazard_between_var"]
    assert np.all(between > 0) and np.all(between < 0.5 * risk_sets["cum_var_hazard"])


def test_pooled_risk_sets_by_brute_force():
    """Breslow's sums written out event time by event time for each completed registry at the pooled coefficients,
    then averaged over the registries."""
    frame = with_missing(synthesize(80, 6), 7, {"tumor_type": -0.5, "extrahepatic_metastases": -0.5})
    imputations = mi.impute(frame, imputations=4, iterations=3, seed=2)
    result = mi.pool_endpoint(imputations, "os", covariates.OPTIONAL)
    time, event = frame["os_months"].to_numpy(float), frame["os_event"].to_numpy(bool)
    beta = result.pooled.coef
    hazard, variance, xbar = [], [], []
    for completed in imputations.completed_frames():
        x = design(completed)
        h = v = 0.0
        xb = np.zeros(len(TERMS))
        rows_h, rows_v, rows_x = [], [], []
        for t in np.unique(time[event]):
            at_risk = time >= t
            risk = np.exp(x[at_risk] @ beta)
            d = np.sum(event & (time == t))
            h += d / risk.sum()
            v += d / risk.sum() ** 2
            xb = xb + d * (risk @ x[at_risk]) / risk.sum() ** 2
            rows_h.append(h), rows_v.append(v), rows_x.append(xb)
        hazard.append(rows_h), variance.append(rows_v), xbar.append(rows_x)
    np.testing.assert_allclose(result.risk_sets["cum_hazard"], np.mean(hazard, axis=0), rtol=1e-10)
    np.testing.assert_allclose(result.risk_sets["cum_var_hazard"], np.mean(variance, axis=0), rtol=1e-10)
    np.testing.assert_allclose(result.risk_sets["cum_xbar_hazard"], np.mean(xbar, axis=0), rtol=1e-10, atol=1e-14)


def test_without_missing_values_pooling_is_the_single_fit():
    """M copies of a complete registry: Rubin's rules give back the fit, its covariance and its risk sets."""
    frame = synthesize(300, 8)
    spec = covariates.ENDPOINTS["hpfs"]
    time, event = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
    x = design(frame)
    result = mi.pool_cox([x, x, x], time, event, TERMS)
    beta = fit_coefficients(x, time, event)
    np.testing.assert_allclose(result.pooled.coef, beta, rtol=1e-12)
    np.testing.assert_allclose(
        result.pooled.covariance, np.linalg.inv(efron_information(x, time, event, beta)[2]), rtol=1e-12
    )
    np.testing.assert_allclose(result.pooled.riv, 0.0, atol=1e-20)
    single = breslow_risk_sets(x, time, event, beta)
    for key in ("cum_hazard", "cum_var_hazard", "cum_xbar_hazard"):
        np.testing.assert_allclose(result.risk_sets[key], single[key], rtol=1e-12)


@pytest.fixture(scope="module")
def frequency_data():
    frame = pd.read_csv(DATA / "mi_frequency_input.csv", dtype={"tumor_type": str, "true_tumor_type": str})
    ref = pd.read_csv(DATA / "r_mice_frequencies.csv", dtype={"level": str}).set_index(["variable", "level"])
    registry = frame[[c for c in frame.columns if not c.startswith(("x_", "true_"))]]
    return frame, registry, ref


def test_imputed_frequencies_match_mice(frequency_data):
    """mice 3.15 (m = 100, tests/data/r_mice_frequencies.R) on the same data and imputation model: the mean share of
    each imputed level agrees within 4 Monte-Carlo standard errors, binary covariates with our default (normal
    draws, mice's logreg) and tumor type with draws as mice's polyreg makes them (none)."""
    _, registry, ref = frequency_data
    m = 60
    imputations = mi.impute(registry, imputations=m, iterations=10, seed=11, polytomous_draw="none")
    for (variable, level), row in ref.iterrows():
        share = (imputations.values[variable] == level).mean(axis=1)
        se = np.sqrt(share.var(ddof=1) / m + row["sd"] ** 2 / row["m"])
        assert abs(share.mean() - row["mean"]) < 4 * se, (variable, level, share.mean(), row["mean"], se)


def test_bootstrap_draws_keep_rare_levels_rare(frequency_data):
    """Normal draws of the multinomial coefficients over-impute the rare primary sites; bootstrap draws (the default)
    land closer to the masked true values."""
    frame, registry, _ = frequency_data
    missing = frame["tumor_type"].isna().to_numpy()
    truth = frame.loc[missing, "true_tumor_type"].to_numpy()
    rare = ("bronchial", "other")
    true_share = np.isin(truth, rare).mean()
    errors = {}
    for label, options in (("default", {}), ("normal", {"polytomous_draw": "normal"})):
        imputations = mi.impute(registry, imputations=30, iterations=10, seed=12, columns=["tumor_type"], **options)
        errors[label] = abs(np.isin(imputations.values["tumor_type"], rare).mean() - true_share)
    assert errors["default"] < errors["normal"]
    assert errors["default"] < 0.03


def test_seeded_and_reproducible():
    frame = with_missing(synthesize(184, 9), 10, {"tumor_type": -1.0, "biologic": -1.5})
    a = mi.impute(frame, imputations=4, iterations=5, seed=3)
    b = mi.impute(frame, imputations=4, iterations=5, seed=3)
    c = mi.impute(frame, imputations=6, iterations=5, seed=3)
    d = mi.impute(frame, imputations=4, iterations=5, seed=4)
    for name in a.columns:
        np.testing.assert_array_equal(a.values[name], b.values[name])
        np.testing.assert_array_equal(a.values[name], c.values[name][:4])  # imputation m does not depend on M
    assert any(not np.array_equal(a.values[n], d.values[n]) for n in a.columns)


def test_completed_frames_keep_observed_values(tmp_path):
    """Also through a CSV file, where a binary column with gaps reads back as 1.0 / 0.0 / NaN: the completed frames
    carry canonical levels, so the design matrix sees the observed values."""
    frame = with_missing(synthesize(184, 9), 10, {"tumor_type": -1.0, "octreotide": -1.0})
    frame.to_csv(tmp_path / "registry.csv", index=False)
    frame = pd.read_csv(tmp_path / "registry.csv", dtype={"tumor_type": object})
    assert frame["octreotide"].dtype == float
    imputations = mi.impute(frame, imputations=3, iterations=3, seed=1)
    assert imputations.columns == ("tumor_type", "octreotide")
    for completed in imputations.completed_frames():
        for name in covariates.OPTIONAL:
            observed = frame[name].notna()
            canonical = frame.loc[observed, name].map(covariates.BY_NAME[name].canonical)
            assert (completed.loc[observed, name] == canonical).all()
            assert completed[name].notna().all()
            assert set(completed[name].astype(str)) <= set(covariates.BY_NAME[name].levels)
        pd.testing.assert_frame_equal(
            completed[["hpfs_months", "hpfs_event", "os_months", "os_event"]],
            frame[["hpfs_months", "hpfs_event", "os_months", "os_event"]],
        )
    assert imputations.rows_imputed == (frame["tumor_type"].isna() | frame["octreotide"].isna()).sum()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda f: f.assign(who_grade=[None] + list(f["who_grade"].iloc[1:])), "who_grade is required"),
        (lambda f: f.assign(tumor_type=["colon"] + list(f["tumor_type"].iloc[1:])), "not one of"),
        (lambda f: f.assign(octreotide=None), "no observed values"),
    ],
)
def test_invalid_inputs(change, message):
    frame = with_missing(synthesize(50, 1), 2, {"tumor_type": -1.0})
    with pytest.raises(mi.ImputationError, match=message):
        mi.impute(change(frame), imputations=2, iterations=1)


def test_pooling_needs_two_imputations():
    with pytest.raises(mi.ImputationError, match="at least 2"):
        mi.pool([np.zeros(2)], [np.eye(2)])
