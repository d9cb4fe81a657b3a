"""Uniform shrinkage by the bootstrap calibration slope (training.shrinkage), and what ``fit`` does with it: the factor
against R rms::validate and a brute-force bootstrap with lifelines, the shrunk model against the unshrunk fit, its
baseline re-estimated after shrinking."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognosis import covariates
from prognosis.store import load_model
from tests.registries import random_registry
from training import shrinkage

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
TERMS = covariates.term_ids(covariates.OPTIONAL)
R = pd.read_csv(DATA / "r_update_values.csv").set_index("name")["value"]


def design(frame: pd.DataFrame, terms=TERMS) -> np.ndarray:
    return covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)


def os_data(terms=TERMS):
    frame = pd.read_csv(DATA / "update_registry.csv")
    return design(frame, terms), frame["os_months"].to_numpy(float), frame["os_event"].to_numpy(bool)


def test_bootstrap_slopes_equal_a_brute_force_bootstrap_with_lifelines():
    """The same resamples (SeedSequence([seed, stream]).spawn(B), integers(0, n, n)), each refitted with lifelines'
    CoxPHFitter and the original outcomes regressed on the refit's linear predictor: slopes equal to 1e-4."""
    from lifelines import CoxPHFitter

    terms = covariates.term_ids(())  # the 12 required terms: every resample's refit converges in lifelines too
    x, time, event = os_data(terms)
    ours = shrinkage.bootstrap_slopes([x], time, event, replicates=12, seed=5, stream=7)
    theirs = []
    for child in np.random.SeedSequence([5, 7]).spawn(12):
        idx = np.random.default_rng(child).integers(0, len(time), size=len(time))
        sample = pd.DataFrame(x[idx], columns=[f"x{j}" for j in range(x.shape[1])]).assign(t=time[idx], e=event[idx])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beta = CoxPHFitter().fit(sample, "t", "e").params_.to_numpy()
            lp = pd.DataFrame({"lp": x @ beta, "t": time, "e": event})
            theirs.append(CoxPHFitter().fit(lp, "t", "e").params_.iloc[0])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_shrinkage_factor_agrees_with_rms_validate():
    """rms::validate(cph(...), B = 1000)'s optimism-corrected slope (tests/data/r_update.R) and ours with 1000
    replicates of our own differ by less than 4 Monte-Carlo standard errors of the difference."""
    x, time, event = os_data()
    result = shrinkage.bootstrap_shrinkage([x], time, event, replicates=1000, seed=20170101, reason="test")
    mc = result.mc_se * math.sqrt(1 + 1000 / R["rms_slope_B"])  # rms's error: same spread, its own B
    assert abs(result.calibration_slope - R["rms_slope_corrected"]) < 4 * mc, (result.calibration_slope, mc)
    assert result.factor == min(1.0, result.calibration_slope) < 1
    assert result.failed == 0 and result.mc_se < 0.01


def test_the_factor_never_expands_the_coefficients():
    """A slope above 1 (no overfitting) leaves the coefficients as they are: factor 1."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 2))
    time = rng.exponential(1 / np.exp(x @ [0.8, -0.5]))
    result = shrinkage.bootstrap_shrinkage([x], time, np.ones(3000, bool), replicates=40, seed=1, reason="test")
    assert result.calibration_slope == pytest.approx(1.0, abs=0.03)
    assert result.factor == min(1.0, result.calibration_slope)


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALCULATOR_MODEL_DIR": "/nonexistent/current"}
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def small_fits(tmp_path_factory):
    """A 300-patient registry (19 terms: too small) fitted by `fit` (shrinkage auto) and `fit --shrinkage none`."""
    folder = tmp_path_factory.mktemp("shrinkage")
    frame = random_registry(300, 81, round_to=0.5)
    frame.to_csv(folder / "small.csv", index=False)
    shrunk = run("fit", "--data", str(folder / "small.csv"), "--out", str(folder / "shrunk"), "--bootstrap", "100")
    assert shrunk.returncode == 0, shrunk.stderr
    plain = run("fit", "--data", str(folder / "small.csv"), "--out", str(folder / "plain"), "--shrinkage", "none")
    assert plain.returncode == 0, plain.stderr
    return frame, load_model(folder / "shrunk"), load_model(folder / "plain"), shrunk.stdout


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_a_small_registry_is_shrunk_once_with_its_baseline_re_estimated(small_fits, endpoint):
    """Coefficients = factor x the unshrunk fit's; covariance factor^2 x; Wald p-values unchanged; the baseline is
    Breslow's at the shrunk coefficients (brute force), so the model again predicts as many events as the data had
    (sum over patients of H(t_i | x_i) = events) — the unshrunk baseline with shrunk coefficients would not."""
    frame, shrunk, plain, stdout = small_fits
    card = shrunk.card["endpoints"][endpoint]
    block = card["shrinkage"]
    assert block["method"] == "bootstrap_uniform" and 0.3 < block["factor"] < 1
    assert "too small" in block["reason"] and block["replicates"] == 100
    assert plain.card["endpoints"][endpoint]["shrinkage"]["method"] == "none"
    assert plain.card["endpoints"][endpoint]["shrinkage"]["factor"] == 1.0
    s = block["factor"]
    a, b = shrunk.endpoints[endpoint], plain.endpoints[endpoint]
    np.testing.assert_allclose(a.coef, s * b.coef, rtol=1e-10)
    np.testing.assert_allclose(a.covariance, s**2 * b.covariance, rtol=1e-10)
    rows, plain_rows = card["multivariate"], plain.card["endpoints"][endpoint]["multivariate"]
    np.testing.assert_allclose([r["p_value"] for r in rows], [r["p_value"] for r in plain_rows], rtol=1e-9)
    np.testing.assert_allclose([r["hr"] for r in rows], np.exp(a.coef), rtol=1e-12)

    spec = covariates.ENDPOINTS[endpoint]
    x = design(frame)
    time, event = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
    risk = np.exp(x @ a.coef)
    breslow = np.cumsum(
        [event[np.abs(time - t) < 1e-9].sum() / risk[time > t - 1e-9].sum() for t in a.risk_sets.event_times]
    )
    np.testing.assert_allclose(a.risk_sets.cum_hazard, breslow, rtol=1e-10)
    at = np.searchsorted(a.risk_sets.event_times, time + 1e-9, side="right")
    cum = np.concatenate([[0.0], a.risk_sets.cum_hazard])[at]
    assert np.sum(cum * risk) == pytest.approx(event.sum(), rel=1e-9)
    unshrunk_baseline = np.concatenate([[0.0], b.risk_sets.cum_hazard])[at]
    assert abs(np.sum(unshrunk_baseline * risk) - event.sum()) > 0.01 * event.sum()
    assert f"shrunk: coefficients x {s:.3f}" in stdout


def test_a_large_registry_is_not_shrunk_by_default(tmp_path):
    """``auto`` shrinks only when Riley et al.'s criteria find the registry too small."""
    frame = random_registry(3000, 82)
    frame.to_csv(tmp_path / "large.csv", index=False)
    done = run("fit", "--data", str(tmp_path / "large.csv"), "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "m" / "model_card.json").read_text())
    for endpoint in covariates.ENDPOINTS:
        ep = card["endpoints"][endpoint]
        assert ep["sample_size"]["adequate"] is True
        assert ep["shrinkage"]["method"] == "none" and ep["shrinkage"]["factor"] == 1.0
        assert "large enough" in ep["shrinkage"]["reason"]
