"""Smoothed calibration (ICI, E50, E90, O/E, curve) against R's rms; the bootstrap optimism correction."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from prognosis import covariates
from training import smoothed_calibration as sc
from training.synthetic import synthesize

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
DATASETS = ["registry", "continuous", "small", "tied_low"]


def load_case(name: str):
    frame = pd.read_csv(DATA / "r_smoothed_calibration_input.csv").query("dataset == @name")
    return (
        frame["risk"].to_numpy(float),
        frame["time"].to_numpy(float),
        frame["event"].to_numpy(bool),
        float(frame["horizon"].iloc[0]),
    )


def compare_with_r(prefix: Path, name: str, atol: float) -> None:
    risk, time, event, horizon = load_case(name)
    values = pd.read_csv(f"{prefix}_values.csv").set_index("dataset").loc[name]
    curve = pd.read_csv(f"{prefix}_curve.csv").query("dataset == @name")
    observed = pd.read_csv(f"{prefix}_observed.csv").query("dataset == @name")["observed"].to_numpy()
    ours = sc.smoothed_calibration(risk, time, event, horizon, grid=curve["predicted"].to_numpy())
    for key in ("ici", "e50", "e90", "emax", "observed_expected", "km_risk", "mean_predicted"):
        assert getattr(ours, key) == pytest.approx(values[key], abs=atol), key
    np.testing.assert_allclose(ours.knots_cloglog, values[["knot1", "knot2", "knot3"]].to_numpy(float), atol=atol)
    np.testing.assert_allclose(ours.observed, observed, atol=atol)
    for key in ("observed", "ci_lower", "ci_upper"):
        np.testing.assert_allclose(ours.curve[key], curve[key].to_numpy(), atol=atol, err_msg=key)


@pytest.mark.parametrize("name", DATASETS)
def test_matches_rms(name):
    """cph(Surv(time, event) ~ rcs(cll, 3)) + survest (tests/data/r_smoothed_calibration.R, rms 6.5-0): ICI, E50,
    E90, O/E, knots, each patient's observed risk and the curve with its band, to 1e-9 (required 0.002). The data
    sets cover tied times, a model with categorical terms, fewer than 100 patients and 30% tied at the lowest risk."""
    compare_with_r(DATA / "r_smoothed_calibration", name, atol=1e-9)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="Rscript is not on PATH")
def test_rerun_r(tmp_path):
    """Rerun the R script on the saved input: R's values now are the saved ones, and ours match them."""
    probe = subprocess.run(["Rscript", "-e", "library(rms)"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("R package rms is not installed")
    prefix = tmp_path / "rerun"
    subprocess.run(
        [
            "Rscript",
            str(DATA / "r_smoothed_calibration.R"),
            str(DATA / "r_smoothed_calibration_input.csv"),
            str(prefix),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    for suffix in ("values", "curve", "observed"):
        fresh = pd.read_csv(f"{prefix}_{suffix}.csv")
        saved = pd.read_csv(DATA / f"r_smoothed_calibration_{suffix}.csv")
        pd.testing.assert_frame_equal(fresh, saved, rtol=1e-9)
    for name in DATASETS:
        compare_with_r(prefix, name, atol=1e-9)


def test_calibrated_and_miscalibrated_predictions():
    """Predictions from the true model have ICI near 0 and O/E near 1; predictions too extreme and too high do not,
    and the curve says in which direction."""
    rng = np.random.default_rng(5)
    n, horizon = 4000, 24.0
    lp = rng.normal(0.0, 0.7, n)
    t = rng.exponential(1.0 / (0.03 * np.exp(lp)))
    c = rng.uniform(30.0, 60.0, n)
    time, event = np.minimum(t, c), t <= c
    true_risk = -np.expm1(-0.03 * horizon * np.exp(lp))
    good = sc.smoothed_calibration(true_risk, time, event, horizon)
    assert good.ici < 0.01 and good.e90 < 0.02
    assert good.observed_expected == pytest.approx(1.0, abs=0.05)
    bad_risk = -np.expm1(-0.03 * horizon * np.exp(1.5 * lp + 0.3))
    bad = sc.smoothed_calibration(bad_risk, time, event, horizon)
    assert bad.ici > 0.05 and bad.e50 <= bad.e90 <= bad.emax
    assert bad.observed_expected < 0.9  # predictions too high on average
    curve = bad.curve
    top = np.argmax(curve["predicted"])
    assert curve["observed"][top] < curve["predicted"][top]  # the highest predictions overstate the risk
    assert np.all(curve["ci_lower"] <= curve["observed"]) and np.all(curve["observed"] <= curve["ci_upper"])
    card = bad.to_card()
    assert {"months", "ici", "e50", "e90", "observed_expected"} <= set(card) and card["months"] == horizon


def test_cumulative_hazard_input_survives_risks_that_round_to_one():
    """A Cox model's risk at 36 months can round to 1.0; given the cumulative hazard the calibration is unchanged
    where the risks are representable and still computed where they are not."""
    risk, time, event, horizon = load_case("continuous")
    hazard = -np.log1p(-risk)
    a = sc.smoothed_calibration(risk, time, event, horizon)
    b = sc.smoothed_calibration(None, time, event, horizon, cumulative_hazard=hazard)
    assert b.ici == pytest.approx(a.ici, rel=1e-9)
    hazard[0] = 60.0  # exp(-60) ~ 1e-26: the risk is 1.0 in floating point
    with pytest.raises(sc.CalibrationError, match="strictly between 0 and 1"):
        sc.smoothed_calibration(-np.expm1(-hazard), time, event, horizon)
    assert np.isfinite(sc.smoothed_calibration(None, time, event, horizon, cumulative_hazard=hazard).ici)


def test_rcs_knots_follow_rms_rules():
    """Hmisc's placement on hand-made data: 10/50/90th percentiles; fewer than 100 values: 5th smallest/largest."""
    x = np.arange(1.0, 201.0)
    np.testing.assert_allclose(sc.rcs_knots(x), np.quantile(x, [0.1, 0.5, 0.9]))
    y = np.arange(1.0, 51.0)
    np.testing.assert_allclose(sc.rcs_knots(y), [5.0, 25.5, 46.0])


def overfit_data(seed: int = 3):
    rng = np.random.default_rng(seed)
    n, p = 150, 12
    x = rng.normal(size=(n, p))
    t = rng.exponential(1.0 / (0.04 * np.exp(0.6 * x[:, 0])))
    c = rng.uniform(10.0, 50.0, n)
    return x, np.round(np.minimum(t, c), 1), t <= c


def test_optimism_correction_matches_a_brute_force_bootstrap_with_lifelines():
    """Replicate by replicate with lifelines refits (Breslow baseline) and the apparent calibration function: the
    same optimism; a model with 11 noise terms in 150 patients is more miscalibrated than it looks."""
    x, time, event = overfit_data()
    horizon, seed, count = 12.0, 17, 8
    result = sc.bootstrap_smoothed_calibration(x, time, event, horizon, replicates_count=count, seed=seed, n_jobs=1)
    seeds = np.random.SeedSequence([seed, 0]).spawn(count)
    diffs = []
    for s in seeds:
        idx = np.random.default_rng(s).integers(0, len(time), size=len(time))
        frame = pd.DataFrame(x[idx]).assign(T=time[idx], E=event[idx])
        model = CoxPHFitter().fit(frame, "T", "E", fit_options={"precision": 1e-12})
        risk_sample = 1 - model.predict_survival_function(pd.DataFrame(x[idx]), times=[horizon]).to_numpy()[0]
        risk_original = 1 - model.predict_survival_function(pd.DataFrame(x), times=[horizon]).to_numpy()[0]
        apparent = sc.smoothed_calibration(risk_sample, time[idx], event[idx], horizon).ici
        test = sc.smoothed_calibration(risk_original, time, event, horizon).ici
        diffs.append(apparent - test)
    assert result["failed"] == 0
    assert result["ici"]["optimism"] == pytest.approx(np.mean(diffs), abs=1e-4)
    assert result["ici"]["optimism"] < 0
    assert result["ici"]["optimism_corrected"] > result["ici"]["apparent"]


def test_bootstrap_does_not_depend_on_workers():
    x, time, event = overfit_data(4)
    one = sc.bootstrap_smoothed_calibration(x, time, event, 12.0, replicates_count=6, seed=1, n_jobs=1)
    two = sc.bootstrap_smoothed_calibration(x, time, event, 12.0, replicates_count=6, seed=1, n_jobs=2)
    assert one == two
    other = sc.bootstrap_smoothed_calibration(x, time, event, 12.0, replicates_count=6, seed=2, n_jobs=1)
    assert other["ici"]["optimism"] != one["ici"]["optimism"]


def test_bootstrap_on_a_registry_design():
    """The project's design matrix and endpoints: every replicate usable, corrected E90 >= corrected ICI."""
    frame = synthesize(400, 21)
    terms = covariates.term_ids(covariates.OPTIONAL)
    x = covariates.design_matrix(frame, terms)
    result = sc.bootstrap_smoothed_calibration(
        x,
        frame["os_months"].to_numpy(float),
        frame["os_event"].to_numpy(bool),
        24.0,
        replicates_count=20,
        seed=3,
        n_jobs=1,
    )
    assert result["failed"] == 0
    assert result["e90"]["optimism_corrected"] >= result["ici"]["optimism_corrected"] > 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"horizon": 1000.0}, "past the last follow-up"),
        ({"event": np.zeros(300, bool)}, "no events"),
        ({"predicted_risk": np.zeros(300)}, "strictly between"),
    ],
)
def test_invalid_inputs(kwargs, message):
    risk, time, event, horizon = load_case("continuous")
    args = {"predicted_risk": risk, "time": time, "event": event, "horizon": horizon, **kwargs}
    with pytest.raises(sc.CalibrationError, match=message):
        sc.smoothed_calibration(**args)


def test_quantiles_are_numpys():
    rng = np.random.default_rng(2)
    for n in (1, 2, 7, 184):
        values = np.sort(rng.normal(size=n))
        probabilities = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
        np.testing.assert_allclose(
            sc.quantile_sorted(values, probabilities), np.quantile(values, probabilities), rtol=1e-15, atol=1e-15
        )


def test_batched_metrics_equal_one_horizon_at_a_time():
    """The validation bootstrap's fast path (all horizons' calibration models as one batch, any start) gives what
    smoothed_calibration gives horizon by horizon."""
    risk, time, event, _ = load_case("continuous")
    data, order = sc.Survival.sorted(time, event)
    hazard = -np.log1p(-risk)
    horizons = np.array([6.0, 12.0, 24.0])
    cll = np.log(np.outer(horizons / 24.0, hazard))[:, order]
    batched = sc.metrics_on(data, cll, horizons, slope=0.7)
    for i, horizon in enumerate(horizons):
        one = sc.smoothed_calibration(None, time, event, horizon, cumulative_hazard=np.exp(cll[i])[np.argsort(order)])
        expected = [*one.metrics().values(), one.observed_expected]
        np.testing.assert_allclose(batched[i], expected, rtol=1e-8, atol=1e-12)
    assert np.all(np.isnan(sc.metrics_on(data, cll[:1], np.array([1000.0]))))  # past the follow-up
