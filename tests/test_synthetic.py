import math

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from prognosis import covariates
from training import synthetic

# The calibrated configuration the brief pins: n = 20,000 at seed 1.
CHECK_N, CHECK_SEED = 20_000, 1
HPFS_MEDIAN_TOLERANCE = 0.20
OS_MEDIAN_TOLERANCE = 0.35
MEAN_FOLLOW_UP_RANGE = (23.0, 33.0)
HR_TOLERANCE = 0.15


def _covariate(name):
    return covariates.MODALITY if name == covariates.MODALITY.name else covariates.BY_NAME[name]


@pytest.fixture(scope="module")
def large():
    return synthetic.synthesize(CHECK_N, CHECK_SEED)


def test_same_seed_same_frame():
    pd.testing.assert_frame_equal(synthetic.synthesize(400, 7), synthetic.synthesize(400, 7))


def test_different_seeds_differ():
    a, b = synthetic.synthesize(400, 7), synthetic.synthesize(400, 8)
    assert not a.drop(columns="patient_id").equals(b.drop(columns="patient_id"))


def test_schema_columns_and_levels(large):
    expected = ["patient_id", *covariates.REQUIRED, "modality", *covariates.OPTIONAL] + [
        c for ep in covariates.ENDPOINTS.values() for c in (ep.time, ep.event)
    ]
    assert list(large.columns) == expected
    assert large["patient_id"].is_unique
    for name in synthetic.DRAWN:
        values = large[name]
        assert all(isinstance(v, str) for v in values), name
        assert set(values) == set(_covariate(name).levels), name


def test_outcomes_valid(large):
    for ep in covariates.ENDPOINTS.values():
        assert large[ep.time].dtype == float
        assert (large[ep.time] > 0).all()
        assert set(large[ep.event].unique()) == {0, 1}
        assert pd.api.types.is_integer_dtype(large[ep.event])
    assert (large["hpfs_months"] <= large["os_months"]).all()
    # A death before hepatic progression censors HPFS at the death.
    died_first = (large["os_event"] == 1) & (large["hpfs_event"] == 0) & (large["hpfs_months"] == large["os_months"])
    assert died_first.any()


def test_covariate_frequencies_within_sampling_error(large):
    probabilities = synthetic.covariate_probabilities()
    n = len(large)
    for name, levels in probabilities.items():
        assert list(levels) == list(_covariate(name).levels)
        assert math.isclose(sum(levels.values()), 1.0)
        observed = large[name].value_counts(normalize=True)
        for level, p in levels.items():
            # 4.5 standard errors: about 1 in 150,000 per level by chance, across ~25 levels.
            assert abs(observed.get(level, 0.0) - p) < 4.5 * math.sqrt(p * (1 - p) / n), (name, level)


def test_frequencies_come_from_the_paper_and_named_sources():
    table1 = synthetic.load_table1()["cohort"]["full_paper"]
    probabilities = synthetic.covariate_probabilities()
    for name, key in [
        ("who_grade", "who_grade_counts"),
        ("modality", "modality_counts"),
        ("tumor_type", "tumor_type_counts"),
    ]:
        counts = table1[key]
        total = sum(counts.values())
        assert probabilities[name] == pytest.approx({k: v / total for k, v in counts.items()})
    for name, entry in synthetic.load_assumptions()["covariate_frequencies"].items():
        assert entry.get("source"), name


def test_assumed_prevalence_must_match_its_cited_figure():
    assumptions = synthetic.load_assumptions()
    assumptions["covariate_frequencies"]["octreotide"]["probability_of_1"] = 0.5
    with pytest.raises(ValueError, match="octreotide"):
        synthetic.covariate_probabilities(assumptions)


@pytest.mark.parametrize("endpoint", list(covariates.ENDPOINTS))
def test_published_truth_is_table1_multivariate(endpoint):
    truth = synthetic.published_truth(endpoint)
    assert list(truth) == covariates.term_ids(covariates.OPTIONAL)
    rows = synthetic.load_table1()["endpoints"][endpoint]["multivariate"]
    for row in rows:
        assert truth[row["term"]] == pytest.approx(math.log(row["hr"]))


def test_published_truth_rejects_unknown_endpoint():
    with pytest.raises(ValueError, match="endpoint"):
        synthetic.published_truth("pfs")


def test_km_median():
    assert synthetic.km_median(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 1, 1])) == 2.0
    assert synthetic.km_median(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 0])) is None


def test_rejects_empty_cohort():
    with pytest.raises(ValueError):
        synthetic.synthesize(0, 1)


def test_calibration_targets(large):
    report = synthetic.calibration_report(large)
    assert report["n"] == CHECK_N
    paper = synthetic.load_table1()["cohort"]["full_paper"]
    for endpoint, tolerance in (("hpfs", HPFS_MEDIAN_TOLERANCE), ("os", OS_MEDIAN_TOLERANCE)):
        assert report[endpoint]["paper_median_by_grade"] == paper[f"median_{endpoint}_months_by_grade"]
        for grade, median in report[endpoint]["median_by_grade"].items():
            assert median is not None, (endpoint, grade)
            assert median == pytest.approx(report[endpoint]["paper_median_by_grade"][grade], rel=tolerance)
            assert report[endpoint]["ratio_by_grade"][grade] == pytest.approx(
                median / report[endpoint]["paper_median_by_grade"][grade]
            )
    low, high = MEAN_FOLLOW_UP_RANGE
    assert low <= report["mean_follow_up_months"]["synthetic"] <= high
    assert (
        report["mean_follow_up_months"]["paper"]
        == (synthetic.load_table1()["cohort"]["seed_abstract"]["mean_follow_up_months"])
    )


@pytest.mark.parametrize("endpoint", list(covariates.ENDPOINTS))
def test_cox_fit_recovers_published_hazard_ratios(large, endpoint):
    ep = covariates.ENDPOINTS[endpoint]
    truth = synthetic.published_truth(endpoint)
    design = covariates.design_matrix(large, list(truth))
    outcome = Surv.from_arrays(large[ep.event].astype(bool), large[ep.time])
    model = CoxPHSurvivalAnalysis(ties="efron").fit(design, outcome)
    ratio = np.exp(model.coef_ - np.array(list(truth.values())))
    off = {term: round(float(r), 3) for term, r in zip(truth, ratio, strict=True) if abs(r - 1) > HR_TOLERANCE}
    assert not off, off
