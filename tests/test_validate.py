"""Validation: metrics against R and scikit-survival, bootstrap reproducibility, Dask backend, the card block."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored

from prognosis import covariates
from prognosis.store import load_model
from registry import RegistryError, endpoint_frame, load_registry
from tests.registries import random_registry
from training import calibration, cox_fast, ph_test, validate
from training import smoothed_calibration as sc
from training.card import render_markdown
from training.fit import fit_coefficients, fit_cox
from training.synthetic import synthesize

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
R_DATASETS = {"random_ties": lambda: random_registry(300, 5, round_to=1.0), "synthetic": lambda: synthesize(800, 3)}


def _registry(frame: pd.DataFrame, folder: Path, name: str = "r"):
    csv = folder / f"{name}.csv"
    frame.to_csv(csv, index=False)
    return load_registry(str(csv))


def write_r_input() -> None:
    """Write tests/data/r_concordance_input.csv (see tests/data/r_concordance.R): design, outcome and our lp."""
    import tempfile

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in R_DATASETS.items():
            registry = _registry(make(), Path(tmp))
            terms = covariates.term_ids(registry.optional)
            for endpoint in covariates.ENDPOINTS:
                frame = endpoint_frame(registry, endpoint)
                x = covariates.design_matrix(frame, terms)
                fit = fit_cox(x, frame["time"].to_numpy(float), frame["event"].to_numpy(bool), terms)
                part = pd.DataFrame(x, columns=[f"x{i}" for i in range(len(terms))])
                part.insert(0, "dataset", name)
                part.insert(1, "endpoint", endpoint)
                part["time"] = frame["time"].to_numpy(float)
                part["event"] = frame["event"].to_numpy(int)
                part["lp"] = x @ fit.coef
                parts.append(part)
    pd.concat(parts).to_csv(DATA / "r_concordance_input.csv", index=False, float_format="%.17g")


def _r_groups():
    data = pd.read_csv(DATA / "r_concordance_input.csv")
    for (name, endpoint), part in data.groupby(["dataset", "endpoint"], sort=False):
        x = part[[c for c in part.columns if c.startswith("x")]].dropna(axis=1, how="all").to_numpy(float)
        yield name, endpoint, x, part["time"].to_numpy(float), part["event"].to_numpy(bool), part["lp"].to_numpy()


# --- agreement with R and with scikit-survival ------------------------------------------------------------------


def test_harrell_c_equals_r_concordance_on_the_same_risk_scores():
    ref = pd.read_csv(DATA / "r_concordance_values.csv").set_index(["dataset", "endpoint"])
    for name, endpoint, _x, time, event, lp in _r_groups():
        r = ref.loc[(name, endpoint)]
        ours = concordance_index_censored(event, time, lp)
        fast = cox_fast.harrell_c(time, event, lp)
        assert abs(ours[0] - r["c_given_lp"]) < 1e-10, (name, endpoint)
        assert abs(fast[0] - r["c_given_lp"]) < 1e-10, (name, endpoint)
        assert (ours[1], ours[2], ours[3]) == (r["concordant"], r["discordant"], r["tied_x"])
        # R's own fit ranks the patients the same way: C within 1e-4 of R's concordance(coxph fit).
        assert r["max_abs_lp_difference"] < 1e-6
        assert abs(ours[0] - r["c_r_fit"]) < 1e-4


@pytest.mark.parametrize("transform", ["km", "identity"])
def test_ph_score_test_equals_r_cox_zph(transform):
    ref = pd.read_csv(DATA / "r_concordance_zph.csv")
    for name, endpoint, x, time, event, _lp in _r_groups():
        beta = fit_coefficients(x, time, event)
        test = ph_test.zph_score_test(x, time, event, beta, transform)
        r = ref[(ref["dataset"] == name) & (ref["endpoint"] == endpoint) & (ref["transform"] == transform)]
        r_terms = r[r["term"] != "GLOBAL"]
        np.testing.assert_allclose(test["chisq"], r_terms["chisq"].to_numpy(), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(test["p"], r_terms["p"].to_numpy(), rtol=1e-4, atol=1e-10)
        glob = r[r["term"] == "GLOBAL"].iloc[0]
        assert test["global_chisq"] == pytest.approx(glob["chisq"], rel=1e-5)
        assert test["global_p"] == pytest.approx(glob["p"], rel=1e-4, abs=1e-12)
        assert test["global_df"] == glob["df"]


def test_fast_harrell_c_counts_the_same_pairs_as_scikit_survival():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(2, 80))
        time = rng.integers(1, 10, n).astype(float)  # many tied times
        event = rng.random(n) < 0.6
        if not event.any():
            continue
        risk = rng.integers(0, 5, n) * 0.1  # many tied scores
        try:
            with np.errstate(invalid="ignore"):  # scikit-survival divides 0 by 0 when every pair is tied in time
                ref = concordance_index_censored(event, time, risk)
        except NoComparablePairException:
            continue
        if ref[1] + ref[2] + ref[3] == 0:
            continue
        ours = cox_fast.harrell_c(time, event, risk)
        assert ours[1:] == tuple(int(v) for v in ref[1:4])
        assert ours[0] == pytest.approx(ref[0], abs=1e-12)
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("round_to", [None, 1.0])
def test_newton_refit_equals_the_scikit_survival_fit(round_to, tmp_path):
    # Large enough that every term has events at each level (no monotone likelihood, where both fits drift apart).
    registry = _registry(random_registry(1500, 21, round_to=round_to), tmp_path)
    terms = covariates.term_ids(registry.optional)
    frame = endpoint_frame(registry, "os")
    x, t, e = covariates.design_matrix(frame, terms), frame["time"].to_numpy(float), frame["event"].to_numpy(bool)
    np.testing.assert_allclose(fit_coefficients(x, t, e), fit_cox(x, t, e, terms).coef, atol=1e-7)
    # A column without variation gets 0, the others are the fit without it.
    x2 = np.column_stack([x, np.ones(len(t))])
    np.testing.assert_allclose(fit_coefficients(x2, t, e)[:-1], fit_cox(x, t, e, terms).coef, atol=1e-7)
    assert fit_coefficients(x2, t, e)[-1] == 0.0
    slope, se = cox_fast.slope(x @ fit_cox(x, t, e, terms).coef, t, e)
    assert slope == pytest.approx(1.0, abs=1e-7) and 0 < se < 1


def test_kaplan_meier_by_group_matches_lifelines():
    from lifelines import KaplanMeierFitter

    rng = np.random.default_rng(8)
    time = np.ceil(rng.exponential(20, 300))
    event = rng.random(300) < 0.7
    horizons = np.array([12.0, 24.0, 36.0])
    surv, lo, hi = calibration.kaplan_meier_at(time, event, horizons)
    km = KaplanMeierFitter().fit(time, event)
    np.testing.assert_allclose(surv, km.survival_function_at_times(horizons).to_numpy(), atol=1e-12)
    ci = km.confidence_interval_survival_function_
    at = [ci.index.searchsorted(h, side="right") - 1 for h in horizons]
    np.testing.assert_allclose(lo, ci.iloc[at, 0].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(hi, ci.iloc[at, 1].to_numpy(), atol=1e-6)
    # Past the last follow-up nothing is estimated, unless everyone has had the event by then.
    event[time == time.max()] = False
    assert np.isnan(calibration.kaplan_meier_at(time, event, np.array([time.max() + 1]))[0][0])
    event[:] = True
    assert calibration.kaplan_meier_at(time, event, np.array([time.max() + 1]))[0][0] == 0.0


def test_risk_groups_are_ordered_and_nearly_equal():
    lp = np.random.default_rng(1).normal(size=1003)
    group = calibration.risk_groups(lp)
    assert sorted(set(group)) == list(range(1, 11))
    sizes = np.bincount(group)[1:]
    assert sizes.max() - sizes.min() <= 1
    means = [lp[group == g].mean() for g in range(1, 11)]
    assert means == sorted(means)
    assert len(set(calibration.risk_groups(lp[:184]))) == 3


# --- the bootstrap -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """184 patients (the benchmark's size), the model's design and coefficients for OS."""
    registry = _registry(synthesize(184, 5), tmp_path_factory.mktemp("small"))
    terms = covariates.term_ids(registry.optional)
    frame = endpoint_frame(registry, "os")
    x, t, e = covariates.design_matrix(frame, terms), frame["time"].to_numpy(float), frame["event"].to_numpy(bool)
    return x, t, e, fit_coefficients(x, t, e)


def test_bootstrap_is_reproducible_for_a_seed_whatever_the_workers(small):
    x, t, e, coef = small
    one = validate.bootstrap(x, t, e, coef, replicates=200, seed=7, n_jobs=1, show_progress=False)
    two = validate.bootstrap(x, t, e, coef, replicates=200, seed=7, n_jobs=2, show_progress=False)
    np.testing.assert_array_equal(one, two)
    other = validate.bootstrap(x, t, e, coef, replicates=20, seed=8, n_jobs=1, show_progress=False)
    assert not np.array_equal(one[:20], other)
    # The first replicates do not depend on how many follow.
    np.testing.assert_array_equal(
        validate.bootstrap(x, t, e, coef, replicates=20, seed=7, n_jobs=1, show_progress=False), one[:20]
    )
    # Refits on a bootstrap sample look better on it than on the original data: optimism is positive on average.
    assert np.nanmean(one["c_refit_on_sample"] - one["c_refit_on_original"]) > 0


def test_smoothed_calibration_shares_the_bootstraps_resamples(small):
    """The smoothed calibration is measured inside the validation bootstrap, on its resamples: replicate by replicate
    it equals training.smoothed_calibration's own bootstrap (refit, Breslow baseline, spline model) drawn with the same
    seeds; and the records do not depend on the number of workers."""
    x, t, e, coef = small
    records = validate.bootstrap(
        x, t, e, coef, replicates=8, seed=5, stream=3, n_jobs=1, show_progress=False, horizons=(24.0,)
    )
    seeds = np.random.SeedSequence([5, 3]).spawn(8)
    rows = sc.replicates(x, t, e, 24.0, seeds)
    for j, metric in enumerate(sc.METRICS):
        np.testing.assert_allclose(records[f"{metric}_24_refit_on_sample"], rows[:, j], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(
            records[f"{metric}_24_refit_on_original"], rows[:, j + len(sc.METRICS)], rtol=1e-7, atol=1e-10
        )
    two = validate.bootstrap(
        x, t, e, coef, replicates=8, seed=5, stream=3, n_jobs=2, show_progress=False, horizons=(24.0,)
    )
    np.testing.assert_array_equal(records, two)


def test_bootstrap_rebuilds_the_model_as_it_was_built(small):
    """A shrunk refit is the refit times the factor (C unchanged, slope scaled); a recalibration keeps the ranking
    (no optimism in C); an external validation rebuilds nothing."""
    x, t, e, coef = small
    kwargs = {"replicates": 6, "seed": 2, "n_jobs": 1, "show_progress": False}
    plain = validate.bootstrap(x, t, e, coef, **kwargs)
    shrunk = validate.bootstrap(x, t, e, coef * 0.8, shrinkage=0.8, **kwargs)
    np.testing.assert_allclose(shrunk["c_refit_on_original"], plain["c_refit_on_original"], atol=1e-12)
    np.testing.assert_allclose(shrunk["slope_refit_on_original"], plain["slope_refit_on_original"] / 0.8, rtol=1e-6)
    np.testing.assert_allclose(plain["slope_refit_on_sample"], 1.0, rtol=1e-7)
    np.testing.assert_allclose(shrunk["slope_refit_on_sample"], 1 / 0.8, rtol=1e-7)
    recalibrated = validate.bootstrap(x, t, e, coef, procedure="recalibration", **kwargs)
    lp = x @ coef
    for i, seed in enumerate(np.random.SeedSequence([2, 0]).spawn(6)):
        idx = np.random.default_rng(seed).integers(0, len(t), size=len(t))
        gamma = cox_fast.slope(lp[idx], t[idx], e[idx])[0]
        assert recalibrated["slope_refit_on_original"][i] == pytest.approx(cox_fast.slope(gamma * lp, t, e)[0])
        assert recalibrated["c_refit_on_original"][i] == pytest.approx(cox_fast.harrell_c(t, e, lp)[0], abs=1e-12)
    external = validate.bootstrap(x, t, e, coef, procedure="none", **kwargs)
    assert np.all(np.isnan(external["c_refit_on_sample"])) and np.all(np.isfinite(external["c_model_on_sample"]))


def test_a_model_shrunk_by_its_bootstrap_slope_is_calibrated(small):
    """Shrink a refit by its own optimism-corrected slope (uniform shrinkage, baseline re-estimated): validated with
    the same resamples, holding the factor, its corrected slope is 1 and its C unchanged; the gate judges that."""
    from prognosis.model import EndpointModel, RiskSets
    from training.fit import breslow_risk_sets

    x, t, e, coef = small

    def model(factor: float) -> EndpointModel:
        risk_sets = RiskSets(**breslow_risk_sets(x, t, e, coef * factor))
        terms = tuple(f"x{i}" for i in range(x.shape[1]))
        return EndpointModel("os", terms, coef * factor, np.eye(len(coef)), risk_sets, cohort=None)

    kwargs = {"replicates": 30, "seed": 4, "n_jobs": 1, "show_progress": False, "smoothed_horizons": ()}
    plain = validate.validate_design("os", model(1.0), x, t, e, **kwargs)
    factor = plain["calibration_slope"]["optimism_corrected"]
    assert factor < validate.MIN_CORRECTED_SLOPE and plain["internal"]
    build = validate.Building("refit", factor, "bootstrap_uniform")
    shrunk = validate.validate_design("os", model(factor), x, t, e, build=build, **kwargs)
    assert shrunk["internal"] and shrunk["calibration_slope"]["apparent"] == pytest.approx(1 / factor, abs=2e-4)
    assert shrunk["calibration_slope"]["optimism_corrected"] == pytest.approx(1.0, abs=1e-3)
    assert shrunk["harrell_c"] == plain["harrell_c"]
    block = {"hpfs": shrunk, "os": shrunk}
    card = {"endpoints": {"os": {"shrinkage": {"method": "bootstrap_uniform", "factor": factor}}}}
    assert validate._failures(block, card) == []
    assert validate._failures({"hpfs": shrunk, "os": plain}, card)[0].startswith("OS: optimism-corrected")


def test_bootstrap_runs_on_a_dask_cluster(small):
    distributed = pytest.importorskip("distributed")
    x, t, e, coef = small
    reference = validate.bootstrap(x, t, e, coef, replicates=12, seed=3, n_jobs=1, show_progress=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        with distributed.Client(cluster) as client:
            with joblib.parallel_config(backend="dask"):
                result = validate.bootstrap(x, t, e, coef, replicates=12, seed=3, show_progress=False)
            ran_on = client.run(lambda: True)
    assert len(ran_on) == 2
    np.testing.assert_array_equal(result, reference)


def test_progress_counter_on_stderr(small, capsys):
    x, t, e, coef = small
    validate.bootstrap(x, t, e, coef, replicates=10, seed=1, n_jobs=1, label="os bootstrap")
    err = capsys.readouterr().err
    assert "os bootstrap: 10/10 replicates" in err


# --- the validation block ------------------------------------------------------------------------------------------


def test_card_of_a_validated_model(model_dir):
    model = load_model(model_dir)
    block = model.card["validation"]
    assert block["status"] == "passed" and validate.validation_failures(model) == []
    assert block["method"]["ph_transform"] == "km" and block["method"]["kind"].startswith("internal")
    csv = Path(model_dir).parent / "test-synthetic-2000.csv"
    registry = load_registry(str(csv))
    for name in covariates.ENDPOINTS:
        ep = block[name]
        harrell = ep["harrell_c"]
        assert set(harrell) >= {"apparent", "optimism", "optimism_corrected", "ci_lower", "ci_upper"}
        assert harrell["ci_lower"] < harrell["apparent"] < harrell["ci_upper"]
        assert harrell["optimism_corrected"] == pytest.approx(harrell["apparent"] - harrell["optimism"], abs=2e-4)
        frame = endpoint_frame(registry, name)
        ep_model = model.endpoints[name]
        lp = covariates.design_matrix(frame, list(ep_model.terms)) @ ep_model.coef
        c = concordance_index_censored(frame["event"].to_numpy(bool), frame["time"].to_numpy(float), lp)[0]
        assert harrell["apparent"] == pytest.approx(c, abs=1e-4)
        assert 0 <= ep["ph_test"]["global_p"] <= 1 and len(ep["ph_test"]["terms"]) == ep["parameters"]
        assert ep["calibration_slope"]["apparent"] == pytest.approx(1.0, abs=1e-4)  # on its training data
        assert [r["months"] for r in ep["time_dependent_auc"]] == [12.0, 24.0, 36.0]
        assert all(0.5 < r["auc"] < 1 for r in ep["time_dependent_auc"])
        assert 0 < ep["integrated_brier_score"]["model"] < ep["integrated_brier_score"]["null_km"]
        # A synthetic model is judged at its study's size: resamples of 184, events per parameter of 184 patients.
        evidence = model.card["data"]["evidence_patients"]
        assert ep["bootstrap"]["resample_size"] == evidence
        study_events = round(ep["events"] * evidence / ep["n"])
        assert ep["events_per_parameter"] == pytest.approx(study_events / ep["parameters"], abs=0.01)
        for row in ep["calibration"]:
            assert len(row["groups"]) == 10 and sum(g["n"] for g in row["groups"]) == ep["n"]
            for g in row["groups"]:
                assert g["within_ci"] is None  # descriptive: no per-group verdict
                if g["ci_lower"] is not None:
                    assert g["ci_lower"] <= g["observed"] <= g["ci_upper"]
                else:  # the group's Kaplan-Meier curve reached 0: no log-log interval
                    assert g["observed"] == 0 or g["observed"] is None
        curves = ep["risk_group_curves"]
        assert [g["group"] for g in curves["groups"]] == [1, 2, 3]
        assert all(len(g["observed"]) == len(g["predicted"]) == len(curves["months"]) for g in curves["groups"])
        assert curves["groups"][0]["observed"][24] > curves["groups"][2]["observed"][24]  # low risk lives longer
        assert [e["months"] for e in ep["smoothed_calibration"]] == [12.0, 24.0, 36.0]
        for entry in ep["smoothed_calibration"]:
            assert entry["estimable"] and not entry["external"] and entry["basis"] == "optimism_corrected"
            for key in ("ici", "e50", "e90", "observed_expected"):
                measure = entry["measures"][key]
                assert entry[key] == measure["optimism_corrected"]
            assert 0 <= entry["e50"] <= entry["e90"] and entry["ici"] >= entry["measures"]["ici"]["apparent"]
            curve = entry["curve"]
            assert curve["kind"] == "apparent" and len(curve["predicted"]) == sc.GRID_POINTS
            assert all(
                lo <= ob <= hi
                for lo, ob, hi in zip(curve["ci_lower"], curve["observed"], curve["ci_upper"], strict=True)
            )
            assert sum(entry["predicted_distribution"]["counts"]) == ep["n"]
    assert not any("outside the Kaplan-Meier" in w for w in block["warnings"])
    markdown = (Path(model_dir) / "model_card.md").read_text()
    assert "## Validation" in markdown and "optimism-corrected" in markdown


def test_few_events_per_parameter_and_external_data_are_flagged(tmp_path):
    from training.pipeline import fit_registry

    train = _registry(random_registry(150, 31), tmp_path, "train")
    model_path = fit_registry(train, tmp_path / "model", version="small")
    block = validate.validate_model(load_model(model_path), train, replicates=10, seed=1, n_jobs=1, show_progress=False)
    assert block["os"]["events_per_parameter"] < 10
    assert any("events per parameter" in w for w in block["warnings"])
    assert block["os"]["internal"] and block["os"]["bootstrap"]["refit"]

    other = _registry(random_registry(600, 32), tmp_path, "other")
    external = validate.validate_model(
        load_model(model_path), other, replicates=10, seed=1, n_jobs=1, show_progress=False
    )
    assert external["method"]["kind"] == "external" and not external["data"]["same_as_training"]
    ep = external["os"]
    assert ep["harrell_c"]["optimism"] == 0 and ep["harrell_c"]["optimism_corrected"] == ep["harrell_c"]["apparent"]
    assert ep["calibration_slope"]["apparent"] != pytest.approx(1.0, abs=1e-3)  # an honest slope on new data
    assert any("external validation" in w for w in external["warnings"])


def test_non_proportional_hazards_are_flagged(tmp_path):
    from training.pipeline import fit_registry

    frame = random_registry(1500, 41, coef_scale=0.1)
    rng = np.random.default_rng(41)
    # Grade 3: many early events, then hardly any (crossing hazards): the grade-3 effect fades with time.
    g3 = (frame["who_grade"] == "3").to_numpy()
    early = rng.random(len(frame)) < 0.6
    t = np.where(
        g3 & early,
        rng.uniform(0.5, 4.0, len(frame)),
        np.where(g3, rng.uniform(60, 119, len(frame)), frame["os_months"]),
    )
    frame["os_months"] = np.where(g3, t, frame["os_months"])
    frame["os_event"] = np.where(g3 & early, 1, np.where(g3, 0, frame["os_event"]))
    frame["hpfs_months"] = np.minimum(frame["hpfs_months"], frame["os_months"])
    registry = _registry(frame, tmp_path)
    path = fit_registry(registry, tmp_path / "model", version="nonph")
    block = validate.validate_model(load_model(path), registry, replicates=4, seed=1, n_jobs=1, show_progress=False)
    ph = block["os"]["ph_test"]
    row = next(r for r in ph["terms"] if r["term"] == "who_grade[3]")
    assert row["p"] < 1e-6 and ph["global_p"] < 1e-6
    assert any("proportional hazards rejected" in w and "who_grade[3]" in w for w in block["warnings"])


def test_failures_follow_the_documented_thresholds():
    good = {"harrell_c": {"optimism_corrected": 0.7}, "calibration_slope": {"optimism_corrected": 0.9}}
    assert validate.MIN_CORRECTED_SLOPE == 0.85
    assert validate._failures({"hpfs": good, "os": good}) == []
    low_c = {"harrell_c": {"optimism_corrected": 0.54}, "calibration_slope": {"optimism_corrected": 0.9}}
    flat = {"harrell_c": {"optimism_corrected": 0.7}, "calibration_slope": {"optimism_corrected": 0.45}}
    steep = {"harrell_c": {"optimism_corrected": 0.7}, "calibration_slope": {"optimism_corrected": 1.6}}
    assert "Harrell's C" in validate._failures({"hpfs": low_c, "os": good})[0]
    assert "calibration slope" in validate._failures({"hpfs": good, "os": flat})[0]
    assert "calibration slope" in validate._failures({"hpfs": steep, "os": good})[0]
    assert validate._failures({"hpfs": good}) == ["OS: not validated"]


@pytest.mark.parametrize("slope", [0.71, 0.849])
def test_an_unshrunk_model_with_a_low_corrected_slope_fails_and_is_told_how_to_fix_it(slope):
    """Issue 9: a corrected slope of 0.71 used to pass with a warning. Below 0.85 an unshrunk model fails, and the
    message names the fixes; with shrinkage recorded in the card the model is judged on its own corrected slope."""
    good = {"harrell_c": {"optimism_corrected": 0.7}, "calibration_slope": {"optimism_corrected": 0.9}}
    low = {
        "harrell_c": {"optimism_corrected": 0.7},
        "calibration_slope": {"optimism_corrected": slope},
        "internal": True,
    }
    (failure,) = validate._failures({"hpfs": good, "os": low})
    assert failure.startswith(f"OS: optimism-corrected calibration slope {slope} of an unshrunk model is below 0.85")
    for fix in ("refit with shrinkage", "fewer terms", "python -m training update"):
        assert fix in failure
    card = {"endpoints": {"os": {"shrinkage": {"method": "none", "factor": 1.0}}}}
    assert validate._failures({"hpfs": good, "os": low}, card) == [failure]
    shrunk = {"endpoints": {"os": {"shrinkage": {"method": "bootstrap_slope", "factor": 0.8}}}}
    (failure,) = validate._failures({"hpfs": good, "os": low}, shrunk)
    assert "even with shrinkage (bootstrap_slope, factor 0.8)" in failure and "fewer terms" in failure
    fixed = {"harrell_c": {"optimism_corrected": 0.7}, "calibration_slope": {"optimism_corrected": 0.97}}
    assert validate._failures({"hpfs": good, "os": fixed}, shrunk) == []
    external = dict(low, internal=False)
    (failure,) = validate._failures({"hpfs": good, "os": external})
    assert "external data" in failure and "--method recalibration" in failure


def test_building_is_read_from_the_card():
    assert validate.building({}, "os") == validate.Building("refit", 1.0, "none")
    card = {
        "endpoints": {
            "os": {"shrinkage": {"method": "uniform", "factor": 0.83}, "update": {"method": "recalibration"}},
            "hpfs": {"update": {"method": "original"}, "shrinkage": {"method": "none", "factor": 1}},
        }
    }
    assert validate.building(card, "os") == validate.Building("recalibration", 0.83, "uniform")
    assert validate.building(card, "os").shrunk and not validate.building(card, "hpfs").shrunk
    assert validate.building(card, "hpfs").procedure == "baseline"


# --- the command line -----------------------------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_validate_and_fit_validate_from_the_command_line(tmp_path):
    csv = tmp_path / "registry.csv"
    # Large enough (about 13 OS events per parameter) for the model to pass validation honestly.
    random_registry(1000, 51, round_to=0.5).to_csv(csv, index=False)
    out = tmp_path / "model"
    done = run("fit", "--data", str(csv), "--out", str(out), "--validate", "--bootstrap", "10", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert "hpfs bootstrap: 10/10 replicates" in done.stderr and "validation passed" in done.stdout
    card = json.loads((out / "model_card.json").read_text())
    assert card["validation"]["data"]["location"] == str(csv.resolve())
    first = card["validation"]["os"]["harrell_c"]

    again = run("validate", str(out), "--data", str(csv), "--bootstrap", "10", "--jobs", "2")
    assert again.returncode == 0, again.stderr
    model = load_model(out)  # still verifies: card and manifest were swapped in together
    assert model.card["validation"]["os"]["harrell_c"] == first  # same seed, same numbers
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    bad = run("validate", str(out), "--data", str(tmp_path / "missing.csv"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_markdown_card_renders_validation(model_dir):
    card = load_model(model_dir).card
    text = render_markdown(card)
    for heading in ("## Validation", "Calibration at 24 months", "Proportional hazards"):
        assert heading in text
    copy = dict(card)
    copy.pop("validation")
    assert "## Validation" in render_markdown(copy) and "has not been validated" in render_markdown(copy)


# --- multiple imputation ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imputed_model(tmp_path_factory):
    """A registry with 15% of three optional covariates missing, and a model whose card says it was fitted with
    multiple imputation on it (3 imputations). The coefficients are those of the never-missing data: how the pooled
    fit came about (``fit --impute``) does not matter to validation, which re-imputes as the card says."""
    import json

    from training import artifact
    from training.pipeline import fit_registry

    folder = tmp_path_factory.mktemp("imputed")
    full = synthesize(300, 8)
    incomplete = full.copy()
    rng = np.random.default_rng(8)
    for column in ("tumor_type", "extrahepatic_metastases", "octreotide"):
        incomplete.loc[rng.random(len(full)) < 0.15, column] = None
    path = fit_registry(_registry(full, folder, "full"), folder / "model", version="imputed")
    incomplete.to_csv(folder / "incomplete.csv", index=False)
    with pytest.raises(RegistryError, match="missing value"):  # a complete-case model: incomplete rows refused
        validate.load_validation_registry(path, str(folder / "incomplete.csv"))
    registry = load_registry(str(folder / "incomplete.csv"), allow_missing_optional=True)
    card = json.loads((path / "model_card.json").read_text())
    card["missing_data"] = {"method": "multiple_imputation", "imputations": 3, "iterations": 3, "seed": 4}
    card["data"]["sha256"] = registry.sha256
    artifact.update_card(path, card, render_markdown(card))
    return path, folder / "incomplete.csv"


def test_multiple_imputation_inside_the_bootstrap(imputed_model):
    """Every row is used; the apparent measures are the mean over the completed registries (Harrell's C against
    scikit-survival on each, imputed independently with the card's settings); each replicate imputes its resample
    (time reported apart); the PH test is pooled; results do not depend on the number of workers."""
    from training.imputation import impute

    path, csv = imputed_model
    registry = validate.load_validation_registry(path, str(csv))
    assert sum(registry.report["missing_optional"].values()) > 0
    model = load_model(path)
    block = validate.validate_model(model, registry, replicates=6, seed=3, n_jobs=1, show_progress=False)
    method = block["method"]["missing_data"]
    assert method["imputations"] == 3 and method["bootstrap_imputation_seconds"] > 0
    assert "each replicate imputes its resample" in method["bootstrap"]
    imputations = impute(registry.frame, imputations=3, iterations=3, seed=4, columns=registry.optional)
    for name in covariates.ENDPOINTS:
        ep = block[name]
        assert ep["internal"] and ep["n"] == len(endpoint_frame(registry, name)) == 300
        assert ep["bootstrap"]["failed"] == 0 and "D2" in ep["ph_test"]["pooled"]
        cs = []
        for m in range(3):
            frame = endpoint_frame(dataclasses.replace(registry, frame=imputations.completed(m)), name)
            lp = covariates.design_matrix(frame, list(model.endpoints[name].terms)) @ model.endpoints[name].coef
            cs.append(concordance_index_censored(frame["event"].to_numpy(bool), frame["time"].to_numpy(float), lp)[0])
        assert ep["harrell_c"]["apparent"] == pytest.approx(np.mean(cs), abs=1e-4)
        assert ep["harrell_c"]["optimism"] > 0 and all(e["estimable"] for e in ep["smoothed_calibration"])
    again = validate.validate_model(model, registry, replicates=6, seed=3, n_jobs=2, show_progress=False)
    for name in covariates.ENDPOINTS:
        for key in ("harrell_c", "calibration_slope", "smoothed_calibration"):
            assert again[name][key] == block[name][key]


def test_pooled_chi_square_is_the_chi_square_test_when_imputations_agree():
    from scipy import stats

    statistic, p = validate.pool_chisq([6.0, 6.0, 6.0], 2)
    assert statistic == pytest.approx(6.0) and p == pytest.approx(stats.chi2.sf(6.0, 2))
    # Disagreement between imputations (missing information) weakens the evidence.
    assert validate.pool_chisq([2.0, 6.0, 10.0], 2)[1] > p


def test_each_imputed_replicate_is_tested_on_the_next_completed_registry(monkeypatch):
    """Replicate b imputes its own resample and is tested on completed original registry b mod M, so that over the
    replicates every completed registry serves as test data."""
    from training import bootstrap as boot_module

    frame = synthesize(120, 4)
    frame.loc[np.random.default_rng(4).random(120) < 0.2, "octreotide"] = None
    terms = covariates.term_ids(covariates.OPTIONAL)
    problems = {}
    for name, spec in covariates.ENDPOINTS.items():
        x = covariates.design_matrix(frame.fillna({"octreotide": "0"}), terms)
        t, e = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
        problems[name] = [boot_module.Problem(x, t, e, np.zeros(len(terms))) for _ in range(3)]
    used = []
    real = boot_module.measure
    monkeypatch.setattr(
        boot_module,
        "measure",
        lambda record, problem, sample, original, multiplicity=None: (
            used.append(next(m for m, p in enumerate(problems["os"] + problems["hpfs"]) if p is problem) % 3),
            real(record, problem, sample, original, multiplicity),
        ),
    )
    problem = boot_module.ImputedProblem(frame, covariates.OPTIONAL, {n: tuple(terms) for n in problems}, problems, 2)
    seeds = np.random.SeedSequence([1, 2]).spawn(5)
    out = boot_module.impute_replicates(problem, seeds)
    assert used == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1]  # hpfs and os of replicates 0..4
    assert np.all(out["imputation_seconds"] > 0)
