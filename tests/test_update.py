"""Updating a model on new data (training.updating, ``python -m training update``): the closed test's statistics and
the updated baselines against R (tests/data/r_update.R), D2 and Rubin's rules against mitml and mice, and the choice
the closed test makes on registries generated for each case."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prognosis import covariates
from prognosis.model import Cohort, EndpointModel, RiskSets, UnknownsModel
from prognosis.store import load_model
from registry import load_registry
from training import pipeline, retrain, synthetic, updating

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent
TERMS = covariates.term_ids(covariates.OPTIONAL)
R = pd.read_csv(DATA / "r_update_values.csv").set_index("name")["value"]
R_BASELINES = pd.read_csv(DATA / "r_update_baselines.csv")


def design(frame: pd.DataFrame, terms=TERMS) -> np.ndarray:
    return covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)


def reference_base() -> EndpointModel:
    """The base OS model of tests/data/update_data.py: coefficients and Breslow baseline (only these are used)."""
    coef = pd.read_csv(DATA / "update_base.csv")["coef"].to_numpy(float)
    hazard = pd.read_csv(DATA / "update_base_hazard.csv")
    k = len(hazard)
    risk_sets = RiskSets(
        event_times=hazard["time"].to_numpy(float),
        events=np.ones(k),
        at_risk=np.ones(k),
        cum_hazard=hazard["cum_hazard"].to_numpy(float),
        cum_var_hazard=np.zeros(k),
        cum_xbar_hazard=np.zeros((k, len(coef))),
    )
    covariance = np.diag(np.full(len(coef), 0.01)) + 0.002
    return EndpointModel(
        name="os",
        terms=tuple(TERMS),
        coef=coef,
        covariance=covariance,
        risk_sets=risk_sets,
        cohort=Cohort(grade_modality={}, unknowns=UnknownsModel(())),
    )


def reference_data(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return design(frame), frame["os_months"].to_numpy(float), frame["os_event"].to_numpy(bool)


def test_closed_test_statistics_match_glm_and_coxph():
    """Each component as R computes it (Poisson glm deviance with offset log H; coxph with offset, with lp, with the
    19 terms), to 1e-6 relative; the composite tests' df and chi-square p-values as R's pchisq."""
    x, time, event = reference_data(pd.read_csv(DATA / "update_registry.csv"))
    parts = updating.components(x, time, event, reference_base().coef, reference_base().risk_sets)
    assert parts.observed == R["observed"] and parts.tau == R["tau"]
    assert parts.expected == pytest.approx(R["expected"], rel=1e-9)
    assert parts.lr["baseline_level"] == pytest.approx(R["baseline_level"], rel=1e-7)
    assert parts.lr["slope"] == pytest.approx(R["slope_lr"], rel=1e-6)
    assert parts.lr["coefficients"] == pytest.approx(R["coefficients_lr"], rel=1e-6)
    assert parts.slope == pytest.approx(R["slope"], rel=1e-7)
    assert math.sqrt(parts.slope_var) == pytest.approx(R["slope_se"], rel=1e-6)
    np.testing.assert_allclose(parts.refit_coef, [R[f"refit_{j + 1}"] for j in range(len(TERMS))], rtol=1e-5, atol=1e-7)
    test = updating.closed_test([parts])
    by = {row["comparison"]: row for row in test.tests}
    for method in ("original", "baseline", "recalibration"):
        row = by[f"refit vs {method}"]
        assert row["df"] == R[f"df_refit_{method}"]
        assert row["p_value"] == pytest.approx(R[f"p_refit_{method}"], rel=1e-5)
    # Every comparison rejected here (one term changed by +1): the refit.
    assert test.method == "refit"


def test_updated_baselines_match_survfit_with_an_offset():
    """``baseline``: Breslow at the base linear predictor; ``recalibration``: at slope x lp; R survfit(coxph(Surv ~
    offset(.)), ctype = 1) at every event time, 1e-9 relative."""
    frame = pd.read_csv(DATA / "update_registry.csv")
    x, time, event = reference_data(frame)
    base = reference_base()
    parts = updating.components(x, time, event, base.coef, base.risk_sets)
    for method, coef in (("baseline", base.coef), ("recalibration", parts.slope * base.coef)):
        ours = retrain.shrinkage.risk_sets_at([x], time, event, coef)
        theirs = R_BASELINES[R_BASELINES.method == method]
        np.testing.assert_array_equal(ours.event_times, theirs["time"])
        np.testing.assert_allclose(ours.cum_hazard, theirs["cum_hazard"], rtol=1e-9, err_msg=method)


def test_recalibrated_coefficients_and_covariance():
    """g beta0 with covariance g^2 V0 + Var(g) beta0 beta0' (Var(g): R's coxph(Surv ~ lp)$var)."""
    base = reference_base()
    g, var = R["slope"], R["slope_se"] ** 2
    new = updating.recalibrated(base, g, var)
    np.testing.assert_allclose(new.coef, g * base.coef)
    expected = g**2 * base.covariance + var * np.outer(base.coef, base.coef)
    np.testing.assert_allclose(new.covariance, expected, rtol=1e-12)


def test_d2_and_rubin_over_imputations_match_mitml_and_mice():
    """Composite statistics on 5 completed data sets combined by D2 (mitml's .D2: F, its denominator df and p, 1e-6);
    the pooled recalibration slope and its total variance as mice::pool (with the (1 + 1/M) B term)."""
    completed = pd.read_csv(DATA / "update_completed.csv")
    base = reference_base()
    parts = [
        updating.components(*reference_data(g), base.coef, base.risk_sets) for _, g in completed.groupby("imputation")
    ]
    test = updating.closed_test(parts)
    by = {row["comparison"]: row for row in test.tests}
    for method in ("original", "baseline", "recalibration"):
        row = by[f"refit vs {method}"]
        assert row["statistic"] == pytest.approx(R[f"mi_refit_{method}_F"], rel=1e-6), method
        assert row["df2"] == pytest.approx(R[f"mi_refit_{method}_v"], rel=1e-6), method
        assert row["p_value"] == pytest.approx(R[f"mi_refit_{method}_p"], rel=1e-5), method
    assert test.method == "recalibration"  # the redrawn covariate blurs the one changed coefficient
    slope, var = updating.pool_slopes(parts)
    assert slope == pytest.approx(R["mi_slope"], rel=1e-7)
    assert var == pytest.approx(R["mi_slope_var"], rel=1e-6)


def test_anticipated_r2_is_the_lp_model_rsq_shrunk_for_its_slope():
    """R summary(coxph(Surv ~ lp))$rsq, shrunk by S = 1 + 1 / (n ln(1 - R2)) for its one fitted slope."""
    x, time, event = reference_data(pd.read_csv(DATA / "update_registry.csv"))
    r2 = updating.anticipated_r2_cs(reference_base(), [x], time, event, same_data=False)
    n, rsq = R["n"], R["rsq_lp"]
    assert r2 == pytest.approx((1 + 1 / (n * math.log(1 - rsq))) * rsq, rel=1e-6)


def test_d2_formula_edge_cases():
    """Identical statistics in every imputation (no between-imputation spread): D2 is the chi-square over its df."""
    value, v, p = updating.d2([10.0] * 5, 4)
    assert value == pytest.approx(2.5) and math.isinf(v) and p == pytest.approx(stats.chi2.sf(10.0, 4))


# ---------------------------------------------------------------------------------------------------------------
# The closed test's choice on registries generated for each case

BASE_N, NEW_N = 20_000, 1_500
CHANGED_TERM = "extrahepatic_metastases"


def generate(
    n: int, seed: int, *, coef_factor: float = 1.0, hazard_factor: float = 1.0, changed: float = 0.0
) -> pd.DataFrame:
    """A registry with the synthetic covariate mix and OS/HPFS from exponential PH truths: the published log-HRs times
    ``coef_factor``, ``changed`` added to one term's, baseline hazards times ``hazard_factor``; registry ids."""
    frame = synthetic.synthesize(n, seed)
    frame["patient_id"] = [f"R{i:06d}" for i in range(n)]
    x = design(frame)
    rng = np.random.default_rng(seed + 1)
    for endpoint, rate in (("os", 0.012), ("hpfs", 0.04)):
        beta = np.array([synthetic.published_truth(endpoint)[t] for t in TERMS]) * coef_factor
        beta[TERMS.index(CHANGED_TERM)] += changed
        t = rng.exponential(1.0 / (hazard_factor * rate * np.exp(x @ beta)))
        c = rng.uniform(6.0, 100.0, n)
        days = np.ceil(np.minimum(t, c) / synthetic.DAY_MONTHS) * synthetic.DAY_MONTHS  # whole days, as registries
        frame[f"{endpoint}_months"], frame[f"{endpoint}_event"] = days, (t <= c).astype(int)
    late = frame["hpfs_months"] > frame["os_months"]
    frame.loc[late, "hpfs_months"], frame.loc[late, "hpfs_event"] = frame.loc[late, "os_months"], 0
    return frame


def registry_of(frame: pd.DataFrame, folder: Path, name: str):
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return load_registry(str(path))


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("update-base")
    return pipeline.fit_registry(registry_of(generate(BASE_N, 100), folder, "base"), folder / "base", version="base")


SCENARIOS = {
    # name: (generator arguments, methods the closed test may choose, seed)
    "own truth": ({}, {"original", "baseline"}, 10_001),
    "baseline hazard doubled": ({"hazard_factor": 2.0}, {"baseline"}, 10_002),
    "linear predictor's effect halved": ({"coef_factor": 0.5}, {"recalibration"}, 10_003),
    "one coefficient changed by +1.2": ({"changed": 1.2}, {"refit"}, 10_004),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_auto_chooses_the_method_the_data_call_for(scenario, base_dir, tmp_path):
    """Must show: on data from the base's own truth the model is kept (or only re-baselined); a doubled baseline
    hazard gives ``baseline``, a halved linear predictor ``recalibration``, one coefficient changed ``refit``.
    1,500 new patients against a base fitted on 20,000; both endpoints must choose alike."""
    kwargs, allowed, seed = SCENARIOS[scenario]
    registry = registry_of(generate(NEW_N, seed, **kwargs), tmp_path, "new")
    out = pipeline.update_registry(base_dir, registry, tmp_path / "updated", replicates=50, seed=1)
    card = json.loads((out / "model_card.json").read_text())
    for endpoint in covariates.ENDPOINTS:
        update = card["endpoints"][endpoint]["update"]
        rows = {t["comparison"]: t for t in update["tests"]}
        summary = {k: (round(t["statistic"], 1), t["df"], f"{t['p_value']:.2g}") for k, t in rows.items()}
        assert update["method"] in allowed, (endpoint, summary)
        assert update["base_version"] == "base" and update["selected_by"] == "closed test"
        assert [t["df"] for t in update["tests"]] == [len(TERMS) + 1, len(TERMS), len(TERMS) - 1]
        if scenario == "baseline hazard doubled":
            assert update["observed_expected"] == pytest.approx(2.0, rel=0.15)
        if scenario == "linear predictor's effect halved":
            assert update["calibration_slope"] == pytest.approx(0.5, abs=0.1)


def update_command(base_dir: Path, csv: Path, out: Path, method: str) -> subprocess.CompletedProcess:
    """``python -m training update`` as a user runs it, with no served model to compare against."""
    return subprocess.run(
        [sys.executable, "-m", "training", "update", "--base", str(base_dir), "--data", str(csv), "--out", str(out)]
        + ["--method", method],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CALCULATOR_MODEL_DIR": "/nonexistent/current"},
    )


def test_update_command_writes_a_version_naming_its_base(base_dir, tmp_path):
    """End to end: the recalibrated model (asked for) is g x the base's coefficients with the baseline at them, the
    card names the base in ``update`` and in the changelog, and ``original`` serves the base's arrays unchanged."""
    csv = tmp_path / "new.csv"
    generate(NEW_N, 203, coef_factor=0.5).to_csv(csv, index=False)
    out = tmp_path / "recalibrated"
    done = update_command(base_dir, csv, out, "recalibration")
    assert done.returncode == 0, done.stderr
    assert "refit vs recalibration" in done.stdout and "method: recalibration (asked for (--method))" in done.stdout
    base, model = load_model(base_dir), load_model(out)
    card = model.card
    assert (
        card["changelog"][0]["base_version"] == "base"
        and "Updated from base version base" in card["changelog"][0]["change"]
    )
    assert card["changelog"][1:] == base.card["changelog"]
    assert card["base_model"]["version"] == "base"
    frame = pd.read_csv(csv)
    for endpoint in covariates.ENDPOINTS:
        ep, old = model.endpoints[endpoint], base.endpoints[endpoint]
        update = card["endpoints"][endpoint]["update"]
        g = update["calibration_slope"]
        np.testing.assert_allclose(ep.coef, g * old.coef, rtol=1e-12)
        assert card["endpoints"][endpoint]["shrinkage"] == {
            **card["endpoints"][endpoint]["shrinkage"],
            "method": "none",
            "factor": 1.0,
        }
        np.testing.assert_allclose(ep.risk_sets.cum_hazard, breslow(frame, endpoint, ep), rtol=1e-10)
        rows = card["endpoints"][endpoint]["multivariate"]
        np.testing.assert_allclose([r["se"] for r in rows], np.sqrt(np.diag(ep.covariance)), rtol=1e-12)

    kept = update_command(base_dir, csv, tmp_path / "original", "original")
    assert kept.returncode == 0, kept.stderr
    same = load_model(tmp_path / "original")
    rebased = load_model(pipeline.update_registry(base_dir, load_registry(str(csv)), tmp_path / "b", method="baseline"))
    for endpoint in covariates.ENDPOINTS:
        a, b = same.endpoints[endpoint], base.endpoints[endpoint]
        np.testing.assert_array_equal(a.coef, b.coef)
        np.testing.assert_array_equal(a.covariance, b.covariance)
        np.testing.assert_array_equal(a.risk_sets.cum_hazard, b.risk_sets.cum_hazard)
        # ``baseline``: the base's coefficients and covariance, the baseline re-estimated at them (the offset).
        c = rebased.endpoints[endpoint]
        np.testing.assert_array_equal(c.coef, b.coef)
        np.testing.assert_array_equal(c.covariance, b.covariance)
        np.testing.assert_allclose(c.risk_sets.cum_hazard, breslow(frame, endpoint, c), rtol=1e-10)


def breslow(frame: pd.DataFrame, endpoint: str, model: EndpointModel) -> np.ndarray:
    """The Breslow cumulative baseline hazard at the model's coefficients on ``frame``, by brute force (times as the
    loader parsed them: compared within 1e-9)."""
    spec = covariates.ENDPOINTS[endpoint]
    time, event = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
    risk = np.exp(design(frame) @ model.coef)
    return np.cumsum(
        [event[np.abs(time - t) < 1e-9].sum() / risk[time > t - 1e-9].sum() for t in model.risk_sets.event_times]
    )


def test_update_refuses_data_without_the_base_models_covariates(base_dir, tmp_path):
    frame = generate(300, 5).drop(columns=["biologic"])
    with pytest.raises(updating.UpdateError, match="biologic"):
        pipeline.update_registry(base_dir, registry_of(frame, tmp_path, "lacking"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
