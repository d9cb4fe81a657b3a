"""Conditional survival S(t | T > s) = S(t) / S(s) (issue 12.1): curves, intervals that keep the covariance of S(t)
and S(s), medians, landmarks and differences between options, against the unconditional full computation
(tests/scoring_oracle.py) and a brute-force delta method that shares no code with scoring."""

from __future__ import annotations

import numpy as np
import pytest

from prognosis import covariates
from prognosis.normal import Z_95
from prognosis.scoring import predict
from prognosis.store import load_model
from tests import scoring_oracle as oracle
from tests.test_scoring import KINDS, BruteForceCox, mixture_case, random_patient

HORIZONS = (6.0, 12.0, 24.0, 36.0, 60.0)


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


def conditional_full(full: dict, s: float) -> dict:
    """The conditional curve at every event time after s, written out from the unconditional full computation:
    C = S(t) / S(s), Var(-log C) = Var(t) - 2 Cov(t, s) + Var(s), Cov = r(t) r(s) vc(s) + q(t)' V q(s)."""
    times = full["times"]
    j = int(np.searchsorted(times, s, side="right")) - 1
    after = np.arange(j + 1, len(times))
    if j < 0:
        s_s, r_s, q_s, var_s, vc_s = 1.0, 0.0, np.zeros(full["q"].shape[1]), 0.0, 0.0
    else:
        s_s, r_s, q_s, var_s, vc_s = full["s"][j], full["r_eff"][j], full["q"][j], full["var"][j], full["vc"][j]
    c = full["s"][after] / s_s
    cov = full["r_eff"][after] * r_s * vc_s + full["q"][after] @ full["cov"] @ q_s
    var = np.maximum(full["var"][after] - 2 * cov + var_s, 0.0)
    half = Z_95 * np.sqrt(var)
    with np.errstate(divide="ignore"):
        log_c = np.log(c)
    return {
        "index": after,
        "times": times[after],
        "c": c,
        "lower": np.exp(log_c - half),
        "upper": np.exp(np.minimum(0.0, log_c + half)),
        "var": var,
    }


def first_at_or_below_half(times: np.ndarray, curve: np.ndarray) -> float | None:
    hit = np.flatnonzero(curve <= 0.5)
    return float(times[hit[0]]) if hit.size else None


@pytest.mark.parametrize("s", [0.5, 6.0, 12.5, 30.0])
def test_conditional_curves_are_the_ratio_of_the_unconditional_ones(model, s):
    """Landmarks, curve points and medians: S(t)/S(s) of the unconditional curve (1e-6), intervals containing the
    estimates, medians >= s and equal to the first time the conditional curve (and its bounds) is at or below 0.5."""
    rng = np.random.default_rng(int(s * 10))
    for k in range(9):
        patient = random_patient(rng, KINDS[k % 3])
        result = predict(model, patient, horizons=HORIZONS, conditional_on_months=s)
        assert result["condition"]["hpfs"]["months"] == s
        for endpoint in covariates.ENDPOINTS:
            full = oracle.full_curves(model, patient, endpoint)
            for option, got in result["predictions"][endpoint].items():
                ref = conditional_full(full[option], s)
                times = ref["times"]
                # Landmarks: null at or before s, S(h)/S(s) after.
                for lm in got["landmarks"]:
                    if lm["months"] <= s:
                        assert lm["survival"] is None
                        continue
                    i = int(np.searchsorted(times, lm["months"], side="right")) - 1
                    expected = (ref["c"][i], ref["lower"][i], ref["upper"][i]) if i >= 0 else (1.0, 1.0, 1.0)
                    assert [lm["survival"], lm["ci_lower"], lm["ci_upper"]] == pytest.approx(expected, rel=1e-6)
                    assert lm["ci_lower"] <= lm["survival"] <= lm["ci_upper"]
                # The curve starts at s with S = 1; each point is the ratio (rounded to 6 decimals as returned).
                assert got["times_months"][0] == s and got["survival"][0] == 1.0
                i = np.searchsorted(times, got["times_months"][1:], side="right") - 1
                assert np.all(i >= 0) and np.all(times[i] == got["times_months"][1:])
                for key, arr in (("survival", ref["c"]), ("ci_lower", ref["lower"]), ("ci_upper", ref["upper"])):
                    np.testing.assert_allclose(got[key][1:], arr[i], atol=1e-6)
                assert np.all(np.array(got["ci_lower"]) <= np.array(got["survival"]) + 1e-12)
                assert np.all(np.array(got["survival"]) <= np.array(got["ci_upper"]) + 1e-12)
                # Medians: the first event time after s at or below 0.5, for the curve and each bound.
                med = got["median_months"]
                assert med["estimate"] == first_at_or_below_half(times, ref["c"])
                assert med["ci_lower"] == first_at_or_below_half(times, ref["lower"])
                assert med["ci_upper"] == first_at_or_below_half(times, ref["upper"])
                assert all(v is None or v >= s for v in med.values())
                assert got["rmst"]["estimate"] is None


def test_conditional_differences_are_differences_of_the_ratios(model):
    patient = {
        "who_grade": "2",
        "tumor_burden": "25-50%",
        "prior_resection_ablation": "0",
        "tumor_type": None,
        "extrahepatic_metastases": "0",
        "octreotide": None,
        "biologic": "1",
        "cytotoxic": None,
    }
    s = 9.0
    result = predict(model, patient, horizons=HORIZONS, conditional_on_months=s)
    for endpoint in covariates.ENDPOINTS:
        for contrast in result["contrasts"][endpoint]:
            a = result["predictions"][endpoint][contrast["a"]]["landmarks"]
            b = result["predictions"][endpoint][contrast["b"]]["landmarks"]
            for d, la, lb in zip(contrast["survival_difference"], a, b, strict=True):
                if d["months"] <= s:
                    assert d["estimate"] is None
                    continue
                assert d["estimate"] == pytest.approx(la["survival"] - lb["survival"], abs=1e-12)
                assert d["ci_lower"] <= d["estimate"] <= d["ci_upper"]
            assert contrast["rmst_difference"]["estimate"] is None


def test_conditioning_on_zero_months_is_the_unconditional_prediction(model):
    rng = np.random.default_rng(2)
    for kind in KINDS:
        patient = random_patient(rng, kind)
        assert predict(model, patient, conditional_on_months=0.0) == predict(model, patient)
        assert predict(model, patient, conditional_on_months=0)["condition"] is None


def test_refused_conditions_name_the_endpoint_and_its_last_event_time(model):
    patient = {"who_grade": "1", "tumor_burden": "<25%", "prior_resection_ablation": "0"}
    last = {ep: m.risk_sets.last_event_time for ep, m in model.endpoints.items()}
    first = min(last, key=last.get)  # the endpoint refused first
    with pytest.raises(ValueError, match=rf"past the last observed .* \({first}\) at {last[first]:.1f} months"):
        predict(model, patient, conditional_on_months=last[first] + 1.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="conditional_on_months must be a number of months >= 0"):
            predict(model, patient, conditional_on_months=bad)
    # At the last event time itself: nothing after it, so the curve stays at 1 and no median.
    result = predict(model, patient, conditional_on_months=last[first])
    assert result["predictions"][first]["TACE"]["median_months"]["estimate"] is None


def test_the_response_says_what_changed(model):
    patient = {"who_grade": "2", "tumor_burden": "<25%", "prior_resection_ablation": "0"}
    result = predict(model, patient, horizons=(6.0, 12.0, 24.0), conditional_on_months=12)
    for endpoint, spec in covariates.ENDPOINTS.items():
        assert result["condition"][endpoint] == {
            "months": 12.0,
            "text": f"given the patient is still {spec.free_of} 12 months after the embolotherapy",
        }
    assert result["condition"]["hpfs"]["text"] == (
        "given the patient is still free of hepatic progression 12 months after the embolotherapy"
    )
    assert any("no value is given at 6, 12 months" in w for w in result["warnings"])
    assert any("Restricted mean survival time is not given" in w for w in result["warnings"])


def brute_force_conditional(frame, endpoint, patient, names, weights_by_pattern, options, t, s):
    """C_a(t|s) (one option) or C_a(t|s) - C_b(t|s) (two) and its delta-method variance by central differences
    over beta (also through the risk-set sums S0) and the baseline increments, with loops over risk sets."""
    cox = BruteForceCox.of(frame, endpoint)
    w = np.array(list(weights_by_pattern.values()), float)
    w = w / w.sum()
    zs = {o: cox.patterns(patient, o, names, weights_by_pattern) for o in options}

    def surv(option, upto, beta, inc):
        return np.sum(w * np.exp(-np.exp(zs[option] @ beta) * inc[cox.ev_times <= upto].sum()))

    def quantity(beta, inc):
        c = [surv(o, t, beta, inc) / surv(o, s, beta, inc) for o in options]
        return c[0] - (c[1] if len(c) > 1 else 0.0)

    return cox.delta(quantity)


def test_conditional_standard_errors_match_a_brute_force_delta_method(tmp_path):
    """The SE of log C(t|s) (survival) and of C_a - C_b (differences) against finite differences: both S(t) and S(s)
    move with the shared increments up to s and with beta, so dropping their covariance would fail this."""
    case = mixture_case(tmp_path, "cond")
    canon, known, names, weights = case.canon, case.known, case.names, case.pattern_weights
    s, t = 8.0, 30.0
    result = predict(case.model, case.patient, horizons=(t,), conditional_on_months=s)
    for option in covariates.OPTIONS:
        lm = result["predictions"]["os"][option]["landmarks"][0]
        c, var_c = brute_force_conditional(canon, "os", known, names, weights, [option], t, s)
        assert lm["survival"] == pytest.approx(c, rel=1e-10)
        se_log = np.sqrt(var_c) / c  # delta method: Var(log C) = Var(C) / C²
        assert np.log(lm["survival"] / lm["ci_lower"]) / Z_95 == pytest.approx(se_log, rel=1e-4)
    contrast = next(x for x in result["contrasts"]["os"] if x["comparison"] == "SIRT vs TACE")
    diff, var_d = brute_force_conditional(canon, "os", known, names, weights, ["SIRT", "TACE"], t, s)
    got = contrast["survival_difference"][0]
    assert got["estimate"] == pytest.approx(diff, abs=1e-10)
    assert (got["ci_upper"] - got["estimate"]) / Z_95 == pytest.approx(np.sqrt(var_d), rel=1e-4)
