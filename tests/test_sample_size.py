"""Riley et al.'s minimum sample size: the published BMJ example, pmsampsize on a grid, R's Cox-Snell R-squared."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prognosis import covariates
from training import sample_size
from training.fit import fit_coefficients
from training.synthetic import synthesize

DATA = Path(__file__).parent / "data"


def test_published_time_to_event_example():
    """Riley et al. BMJ 2020 (the pmsampsize documentation's survival example): 5143 patients, 692 events."""
    ref = json.loads((DATA / "r_sample_size_published.json").read_text())
    given, published, table = ref["inputs"], ref["published"], ref["pmsampsize_table"]
    result = sample_size.minimum_sample_size(
        parameters=given["parameters"],
        rate=given["rate"],
        mean_follow_up=given["meanfup"],
        horizon=given["timepoint"],
        r2_cs=given["r2_cs"],
    )
    assert result.minimum_patients == published["minimum_patients"]
    assert result.criteria["shrinkage"] == table["criterion_shrinkage"]
    assert result.criteria["optimism"] == table["criterion_optimism"]
    assert result.criteria["precision"] <= result.minimum_patients
    assert result.minimum_events == published["events"]
    assert round(result.events_per_parameter_required, 2) == published["events_per_parameter"]
    assert round(result.minimum_patients * given["meanfup"]) == published["person_time"]
    assert round(result.max_r2_cs, 3) == table["max_r2_cs"]
    assert round(result.nagelkerke_r2, 3) == table["nagelkerke_r2"]
    assert round(result.optimism_shrinkage, 3) == table["optimism_shrinkage"]
    assert round(result.risk_at_horizon, 3) == published["risk_at_timepoint"]
    assert [round(v, 3) for v in result.risk_interval_at_minimum] == published["risk_ci"]


def test_matches_pmsampsize_on_a_grid():
    """pmsampsize 0.1.0 (Python port of the R package 1.1.x; tests/data/r_sample_size_pmsampsize.py): criteria (i)
    and (ii) to the integer, the maximum R-squared exactly, the interval at pmsampsize's n to its 3 digits."""
    ref = pd.read_csv(DATA / "r_sample_size_pmsampsize.csv")
    assert len(ref) > 50
    for _, row in ref.iterrows():
        result = sample_size.minimum_sample_size(
            parameters=int(row.parameters),
            rate=row.rate,
            mean_follow_up=row.meanfup,
            horizon=row.timepoint,
            r2_cs=row.r2_cs,
        )
        case = row.to_dict()
        assert result.criteria["shrinkage"] == row.n_shrinkage, case
        assert result.criteria["optimism"] == row.n_optimism, case
        assert max(result.criteria["shrinkage"], result.criteria["optimism"]) == row.n_final, case
        assert result.minimum_patients >= row.n_final
        assert result.max_r2_cs == pytest.approx(row.max_r2, rel=1e-12), case
        assert result.optimism_shrinkage == pytest.approx(row.shrinkage_optimism, abs=5e-4), case
        # pmsampsize reports the interval at its own final n, with the person-time rounded to 0.1.
        risk, lower, upper = sample_size.risk_interval(row.rate, round(row.meanfup * row.n_final, 1), row.timepoint)
        assert (round(risk, 3), round(lower, 3), round(upper, 3)) == (row.cuminc, row.lci, row.uci), case


def test_precision_criterion_is_the_smallest_n_within_the_margin():
    """Criterion (iii) checked by brute force on the cumulative incidence: every n from it on gives an interval within
    +/- 0.05 on both sides, the n before does not; and it can decide the minimum, which pmsampsize never lets it."""
    rate, fup, horizon = 0.05, 6.0, 12.0
    result = sample_size.minimum_sample_size(parameters=2, rate=rate, mean_follow_up=fup, horizon=horizon, r2_cs=0.3)
    n = result.criteria["precision"]

    def within(k: int) -> bool:
        se = math.sqrt(rate / (k * fup))
        f = [1 - math.exp(-(rate + z * se) * horizon) for z in (-1.96, 0.0, 1.96)]
        return f[1] - f[0] <= 0.05 and f[2] - f[1] <= 0.05

    assert not within(n - 1)
    assert all(within(k) for k in range(n, n + 50))
    assert result.minimum_patients == n > max(result.criteria["shrinkage"], result.criteria["optimism"])


def test_expected_shrinkage_inverts_criterion_one():
    """At the criterion (i) n the expected shrinkage is at least 0.9 and one patient fewer it is below; the van
    Houwelingen shrinkage of the implied apparent R-squared gives back the anticipated one."""
    result = sample_size.minimum_sample_size(parameters=19, rate=0.03, mean_follow_up=30.0, horizon=24.0, r2_cs=0.12)
    n = result.criteria["shrinkage"]
    assert sample_size.expected_shrinkage(n, 19, 0.12) >= 0.9 > sample_size.expected_shrinkage(n - 1, 19, 0.12)
    for patients in (180, 400, 2000):
        s = sample_size.expected_shrinkage(patients, 19, 0.12)
        assert sample_size.shrinkage_adjusted_r2_cs(0.12 / s, patients, 19) == pytest.approx(0.12, rel=1e-9)
    assert sample_size.expected_shrinkage(180, 19, 0.12) < sample_size.expected_shrinkage(2000, 19, 0.12) < 1


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_cox_snell_r2_matches_r(endpoint):
    """R summary.coxph's rsq on the tied-time reference registry (tests/data/r_sample_size.R), 1e-6 relative."""
    frame = pd.read_csv(DATA / "r_reference_registry.csv")
    ref = pd.read_csv(DATA / "r_sample_size_coxph.csv").set_index("endpoint").loc[endpoint]
    spec = covariates.ENDPOINTS[endpoint]
    terms = covariates.term_ids(covariates.OPTIONAL)
    x = covariates.design_matrix(frame.astype({c: str for c in frame.columns if c in covariates.BY_NAME}), terms)
    time, event = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
    r2 = sample_size.model_r2_cs(x, time, event, fit_coefficients(x, time, event))
    assert r2 == pytest.approx(ref.rsq, rel=1e-6)
    assert sample_size.cox_snell_r2(ref.loglik, ref.loglik_null, int(ref.n)) == pytest.approx(ref.rsq, rel=1e-12)


@pytest.mark.parametrize("endpoint", ["hpfs", "os"])
def test_a_180_patient_registry_with_19_parameters_is_too_small(endpoint):
    frame = synthesize(180, 7)
    spec = covariates.ENDPOINTS[endpoint]
    time, event = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
    result = sample_size.assess(time, event, parameters=19, horizon=24.0)
    card = result.to_card()
    assert list(card)[:7] == ["r2_cs", "parameters", "patients", "events", "criteria", "minimum_patients", "adequate"]
    assert card["adequate"] is False and card["patients"] == 180 and card["events"] == int(event.sum())
    assert set(card["criteria"]) == {"shrinkage", "optimism", "precision"}
    assert all(isinstance(v, int) for v in card["criteria"].values())
    assert card["minimum_patients"] > 180
    # The conservative default is a Nagelkerke R-squared of 0.15 (Riley et al. BMJ 2020).
    assert card["nagelkerke_r2"] == pytest.approx(0.15)
    assert card["r2_cs_source"].startswith("conservative")
    assert card["expected_shrinkage"] < 0.9
    json.dumps(card)
    # Even a model explaining twice that would need more patients than the registry has.
    assert sample_size.assess(time, event, 19, 24.0, r2_cs=2 * card["r2_cs"]).adequate is False


def test_a_large_registry_is_adequate():
    frame = synthesize(6000, 3)
    time, event = frame["os_months"].to_numpy(float), frame["os_event"].to_numpy(bool)
    result = sample_size.assess(time, event, parameters=19, horizon=24.0)
    assert result.adequate is True and result.expected_shrinkage > 0.9


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"r2_cs": 0.9}, "largest possible"),
        ({"parameters": 0}, "at least one parameter"),
        ({"rate": 0.0}, "must be positive"),
    ],
)
def test_invalid_inputs(kwargs, message):
    base = {"parameters": 10, "rate": 0.065, "mean_follow_up": 2.07, "horizon": 2.0, "r2_cs": 0.05}
    with pytest.raises(ValueError, match=message):
        sample_size.minimum_sample_size(**{**base, **kwargs})


def test_no_events_cannot_be_assessed():
    with pytest.raises(ValueError, match="no events"):
        sample_size.assess(np.ones(5), np.zeros(5, bool), 3, 1.0)
