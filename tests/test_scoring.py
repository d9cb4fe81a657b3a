"""Scoring: curves, intervals, medians, landmarks, averaging over unknowns and contrasts, checked independently."""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prognosis import covariates, medians, mixture, rmst, scoring
from prognosis import prepared as prepared_module
from prognosis.covariates import COMPARISONS
from prognosis.model import Model
from prognosis.prepared import prepared
from prognosis.scoring import predict
from prognosis.store import load_model
from registry import load_registry
from tests import scoring_oracle as oracle
from tests.registries import random_registry
from training.fit import CoxFit, fit_cox
from training.pipeline import fit_registry

DATA = Path(__file__).parent / "data"
R_TIMES = (3.0, 6.0, 12.0, 24.0, 36.0)


@pytest.fixture(scope="module")
def r_model(tmp_path_factory):
    """The R reference registry fitted by our pipeline."""
    out = tmp_path_factory.mktemp("r") / "model"
    return load_model(fit_registry(load_registry(str(DATA / "r_reference_registry.csv")), out, version="r-ref"))


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


def patient_of(row: dict) -> dict:
    return {c.name: str(row[c.name]) for c in covariates.COVARIATES}


def test_curves_and_intervals_match_r_survfit(r_model):
    """R survfit.coxph(ctype=1), log-scale intervals, heavily tied times: 1e-8 relative."""
    ref = pd.read_csv(DATA / "r_reference_curves.csv")
    patients = pd.read_csv(DATA / "r_reference_patients.csv").to_dict("records")
    for i, row in enumerate(patients, start=1):
        result = predict(r_model, patient_of(row), horizons=R_TIMES)
        for endpoint in ("hpfs", "os"):
            ours = result["predictions"][endpoint][row["modality"]]
            theirs = ref[(ref.endpoint == endpoint) & (ref.patient == i)]
            for key, column in (("survival", "surv"), ("ci_lower", "lower"), ("ci_upper", "upper")):
                np.testing.assert_allclose([lm[key] for lm in ours["landmarks"]], theirs[column], rtol=1e-8)
            med = ours["median_months"]
            for key, column in (("estimate", "median"), ("ci_lower", "median_lower"), ("ci_upper", "median_upper")):
                expected = theirs[column].iloc[0]
                assert (med[key] is None) == bool(np.isnan(expected)), (endpoint, i, key)
                if med[key] is not None:
                    assert med[key] == pytest.approx(expected, abs=1e-9)


@dataclass(frozen=True)
class BruteForceCox:
    """One endpoint's Cox fit with its risk-set sums S0 by loops over risk sets, for delta methods by central
    differences: shares no code with prognosis.scoring."""

    x: np.ndarray
    time: np.ndarray
    terms: list[str]
    fit: CoxFit
    ev_times: np.ndarray
    d: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, endpoint: str) -> BruteForceCox:
        spec = covariates.ENDPOINTS[endpoint]
        terms = covariates.term_ids(covariates.OPTIONAL)
        x = covariates.design_matrix(frame, terms)
        time, event = frame[spec.time].to_numpy(float), frame[spec.event].to_numpy(bool)
        ev_times = np.unique(time[event])
        d = np.array([np.sum(event & (time == u)) for u in ev_times])
        return cls(x, time, terms, fit_cox(x, time, event, terms), ev_times, d)

    def s0(self, beta: np.ndarray) -> np.ndarray:
        w = np.exp(self.x @ beta)
        return np.array([w[self.time >= u].sum() for u in self.ev_times])

    def patterns(self, patient: dict, option: str, names: tuple, weights_by_pattern: dict) -> np.ndarray:
        """The patient's terms under ``option`` for each pattern of the unknowns ``names`` (patterns, terms)."""
        rows = []
        for values in weights_by_pattern:
            row = dict(patient, modality=option, **dict(zip(names, values, strict=True)))
            rows.append(covariates.design_matrix({k: [v] for k, v in row.items()}, self.terms)[0])
        return np.array(rows)

    def delta(self, quantity) -> tuple[float, float]:
        """quantity(beta, increments) at the fit and its delta-method variance: beta with its covariance V (also
        through S0), the baseline increments as free parameters with variance d/S0² (independent)."""
        fit, d = self.fit, self.d
        beta = fit.coef
        inc, eye = d / self.s0(beta), np.eye(len(beta))
        grad_b = np.array([(quantity(beta + 1e-6 * e, inc) - quantity(beta - 1e-6 * e, inc)) / 2e-6 for e in eye])
        # The increments depend on beta too: total derivative through S0(beta).
        grad_b += np.array(
            [
                (quantity(beta, d / self.s0(beta + 1e-6 * e)) - quantity(beta, d / self.s0(beta - 1e-6 * e))) / 2e-6
                for e in eye
            ]
        )
        grad_h = np.array(
            [(quantity(beta, inc + 1e-7 * e) - quantity(beta, inc - 1e-7 * e)) / 2e-7 for e in np.eye(len(inc))]
        )
        variance = grad_b @ fit.covariance @ grad_b + np.sum(grad_h**2 * d / self.s0(beta) ** 2)
        return quantity(beta, inc), variance


def brute_force_mixture(frame, endpoint, patient, option, names, weights_by_pattern, t):
    """-log of the averaged survival at t and its delta-method variance, by finite differences over
    (beta, baseline increments) with loops over risk sets (``BruteForceCox``)."""
    cox = BruteForceCox.of(frame, endpoint)
    zs = cox.patterns(patient, option, names, weights_by_pattern)
    w = np.array(list(weights_by_pattern.values()), float)
    w = w / w.sum()
    upto = cox.ev_times <= t
    return cox.delta(lambda beta, inc: -np.log(np.sum(w * np.exp(-np.exp(zs @ beta) * inc[upto].sum()))))


def chain_weights(model, endpoint: str, patient: dict, names: list[str]) -> dict[tuple, float]:
    """P(pattern of the unknowns | known inputs), by hand from the chain's coefficients: a loop over patterns and
    links with each term's indicator read off the patient (no design matrix, no vectorised scoring code)."""

    def term_value(full: dict, term: str) -> float:
        return float(
            all(
                full[part.split("[")[0]] == (part[:-1].split("[")[1] if "[" in part else "1")
                for part in term.split(":")
            )
        )

    out = {}
    for values in itertools.product(*(covariates.BY_NAME[n].levels for n in names)):
        full = dict(patient, **dict(zip(names, values, strict=True)))
        log_p = 0.0
        for link in model.endpoints[endpoint].cohort.unknowns.links:
            x = [1.0] + [term_value(full, t) for t in link.inputs]
            eta = [0.0] + [float(np.dot(row, x)) for row in link.coef]
            log_p += eta[link.levels.index(full[link.name])] - np.log(np.sum(np.exp(eta)))
        out[values] = float(np.exp(log_p))
    return out


@dataclass
class MixtureCase:
    """A model fitted on a small random registry, and a patient with two optional inputs unknown: the registry
    (canonical text columns) and the chain's weights of the unknowns' patterns, for brute-force mixtures."""

    canon: pd.DataFrame
    model: Model
    patient: dict[str, str | None]
    names: list[str]
    pattern_weights: dict

    @property
    def known(self) -> dict[str, str]:
        return {k: v for k, v in self.patient.items() if v is not None}


def mixture_case(tmp_path, version: str) -> MixtureCase:
    frame = random_registry(300, 21, round_to=1.0)
    csv = tmp_path / "r.csv"
    frame.to_csv(csv, index=False)
    model = load_model(fit_registry(load_registry(str(csv)), tmp_path / "m", version=version))
    patient: dict[str, str | None] = {
        "who_grade": "2",
        "tumor_burden": "50-75%",
        "prior_resection_ablation": "1",
        "tumor_type": None,
        "extrahepatic_metastases": "0",
        "octreotide": None,
        "biologic": "1",
        "cytotoxic": "0",
    }
    names = ["tumor_type", "octreotide"]
    canon = frame.astype(dict.fromkeys(covariates.BY_NAME, str) | {"modality": str})
    return MixtureCase(canon, model, patient, names, chain_weights(model, "os", patient, names))


def test_averaging_over_unknowns_matches_brute_force(tmp_path):
    case = mixture_case(tmp_path, "mix")
    result = predict(case.model, case.patient, horizons=(12.0, 24.0))
    for option in covariates.OPTIONS:
        lm = result["predictions"]["os"][option]["landmarks"][1]
        nls, var = brute_force_mixture(case.canon, "os", case.known, option, case.names, case.pattern_weights, 24.0)
        assert lm["survival"] == pytest.approx(np.exp(-nls), rel=1e-10)
        se = np.sqrt(var)
        assert lm["ci_lower"] == pytest.approx(np.exp(-nls) * np.exp(-1.959963984540054 * se), rel=1e-5)


def test_contrast_intervals_agree_with_bootstrap(tmp_path):
    """Delta-method SEs of survival and RMST differences vs a 150-replicate nonparametric bootstrap (within 25%)."""
    frame = random_registry(600, 38)  # smallest grade-by-option cell 34: no bootstrap replicate loses a term
    csv = tmp_path / "r.csv"
    frame.to_csv(csv, index=False)
    registry = load_registry(str(csv))
    model = load_model(fit_registry(registry, tmp_path / "m", version="boot"))
    patient = patient_of(
        {
            "who_grade": 2,
            "tumor_burden": "25-50%",
            "prior_resection_ablation": 0,
            "tumor_type": "gut",
            "extrahepatic_metastases": 0,
            "octreotide": 1,
            "biologic": 0,
            "cytotoxic": 0,
        }
    )
    result = predict(model, patient, horizons=(24.0,))
    rng = np.random.default_rng(5)
    terms = covariates.term_ids(covariates.OPTIONAL)
    canon = registry.frame
    x_all = covariates.design_matrix(canon, terms)
    zs = {
        o: covariates.design_matrix({**{k: [v] for k, v in patient.items()}, "modality": [o]}, terms)[0]
        for o in covariates.OPTIONS
    }
    diffs, rmsts = [], []
    t, e = canon["os_months"].to_numpy(float), canon["os_event"].to_numpy(bool)
    for _ in range(150):
        idx = rng.integers(0, len(canon), len(canon))
        fit = fit_cox(x_all[idx], t[idx], e[idx], terms)
        times = np.unique(t[idx][e[idx]])
        w = np.exp(x_all[idx] @ fit.coef)
        h = np.array([np.sum(e[idx] & (t[idx] == u)) / w[t[idx] >= u].sum() for u in times])
        surv = {o: np.exp(-np.exp(zs[o] @ fit.coef) * np.cumsum(h)) for o in covariates.OPTIONS}
        k = np.searchsorted(times, 24.0, side="right") - 1
        diffs.append(surv["SIRT"][k] - surv["TACE"][k])
        widths = np.diff(np.concatenate([[0.0], times[: k + 1], [24.0]]))
        area = {o: np.concatenate([[1.0], surv[o][: k + 1]]) @ widths for o in covariates.OPTIONS}
        rmsts.append(area["SIRT"] - area["TACE"])
    contrast = next(c for c in result["contrasts"]["os"] if c["comparison"] == "SIRT vs TACE")
    se_diff = (contrast["survival_difference"][0]["ci_upper"] - contrast["survival_difference"][0]["estimate"]) / 1.96
    se_rmst = (contrast["rmst_difference"]["ci_upper"] - contrast["rmst_difference"]["estimate"]) / 1.96
    assert se_diff == pytest.approx(np.std(diffs, ddof=1), rel=0.25)
    assert se_rmst == pytest.approx(np.std(rmsts, ddof=1), rel=0.25)


def test_landmarks_past_last_event_are_not_estimable(model):
    patient = {c.name: c.reference if c.required else None for c in covariates.COVARIATES}
    result = predict(model, patient, horizons=(12.0, 500.0))
    for endpoint in ("hpfs", "os"):
        for option in covariates.OPTIONS:
            late = result["predictions"][endpoint][option]["landmarks"][1]
            assert late == {"months": 500.0, "survival": None, "ci_lower": None, "ci_upper": None}
    assert any("not estimable" in w for w in result["warnings"])


def test_response_stays_small_and_lists_comparisons(model):
    import json

    patient = {c.name: c.reference if c.required else None for c in covariates.COVARIATES}
    result = predict(model, patient)
    assert len(json.dumps(result)) < 80_000
    assert [c["comparison"] for c in result["contrasts"]["hpfs"]] == [f"{a} vs {b}" for a, b in COMPARISONS]


def test_invalid_patient_is_refused(model):
    with pytest.raises(ValueError, match="who_grade"):
        predict(model, {"who_grade": "4", "tumor_burden": "<25%", "prior_resection_ablation": "0"})
    with pytest.raises(ValueError, match="tumor_burden is required"):
        predict(model, {"who_grade": "1", "prior_resection_ablation": "0"})
    with pytest.raises(ValueError, match="unknown inputs"):
        predict(model, {"who_grade": "1", "tumor_burden": "<25%", "prior_resection_ablation": "0", "grade": "1"})


def patients():
    fields = {
        c.name: st.sampled_from(c.levels) if c.required else st.one_of(st.none(), st.sampled_from(c.levels))
        for c in covariates.COVARIATES
    }
    return st.fixed_dictionaries(fields)


def test_properties_of_every_prediction(model):
    """Curves non-increasing in [0, 1], lower <= S <= upper, medians and landmarks read off the curves."""

    # The model is closed over, not a hypothesis argument: hypothesis would print all of it on a failure.
    @settings(max_examples=int(os.environ.get("SCORING_EXAMPLES", 60)), deadline=None)
    @given(patient=patients())
    def check(patient):
        result = predict(model, patient)
        for endpoint in ("hpfs", "os"):
            for p in result["predictions"][endpoint].values():
                s, lo, hi = (np.array(p[k]) for k in ("survival", "ci_lower", "ci_upper"))
                assert np.all((0 <= lo) & (lo <= s + 1e-12) & (s <= hi + 1e-12) & (hi <= 1))
                assert np.all(np.diff(s) <= 1e-12)
                assert np.all(np.diff(p["times_months"]) > 0)
                median = p["median_months"]["estimate"]
                times = np.array(p["times_months"])
                # The returned curve is rounded to 6 decimals: 0.5000003 reads 0.5, so the median (the first time
                # the exact S <= 0.5) lies between the first returned time that may be <= 0.5 and the first surely.
                half = 0.5e-6
                if median is None:
                    assert s[-1] > 0.5 - half
                else:
                    maybe, surely = times[s <= 0.5 + half], times[s < 0.5 - half]
                    assert median in times
                    assert maybe[0] <= median and (surely.size == 0 or median <= surely[0])
                ci = p["median_months"]
                if median is not None and ci["ci_lower"] is not None:
                    assert ci["ci_lower"] <= median
                if median is not None and ci["ci_upper"] is not None:
                    assert ci["ci_upper"] >= median
                for lm in p["landmarks"]:
                    if lm["survival"] is not None:
                        k = np.searchsorted(times, lm["months"], side="right") - 1
                        assert lm["survival"] == pytest.approx(s[k], abs=1e-6)

    check()


# --- the fast path against the full computation (tests/scoring_oracle.py) ------------------------------------------

KINDS = ("known", "some", "unknown")


def random_patient(rng: np.random.Generator, kind: str) -> dict:
    """Required inputs at random; optional ones all known, all unknown, or each known with probability 1/2."""
    patient = {}
    for cov in covariates.COVARIATES:
        known = cov.required or kind == "known" or (kind == "some" and rng.random() < 0.5)
        patient[cov.name] = str(rng.choice(cov.levels)) if known else None
    return patient


def assert_same(fast: object, full: object, path: str = "") -> None:
    """Every number equal to floating-point rounding (1e-12 relative, 1e-13 absolute); the returned curves'
    points are checked apart (their choice differs)."""
    if isinstance(full, dict):
        for key, value in full.items():
            if key in ("times_months", "survival", "ci_lower", "ci_upper") and isinstance(value, list):
                continue  # a returned curve
            assert key in fast, f"{path}.{key} missing"  # type: ignore[operator]
            assert_same(fast[key], value, f"{path}.{key}")  # type: ignore[index]
    elif isinstance(full, list):
        assert len(fast) == len(full), path  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(fast, full, strict=True)):  # type: ignore[call-overload]
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(full, float) and fast is not None:
        assert fast == pytest.approx(full, rel=1e-12, abs=1e-13), path
    else:
        assert fast == full, (path, fast, full)


def assert_curves_exact(model, patient: dict, fast: dict) -> None:
    """Each returned curve point is the full curve's value at that time (rounded to 6 decimals, as returned)."""
    for endpoint in covariates.ENDPOINTS:
        full = oracle.full_curves(model, patient, endpoint)
        for option, curve in full.items():
            got = fast["predictions"][endpoint][option]
            i = np.searchsorted(curve["times"], got["times_months"][1:], side="right") - 1
            assert np.all(curve["times"][i] == got["times_months"][1:])
            for key, ref in (("survival", curve["s"]), ("ci_lower", curve["lower"]), ("ci_upper", curve["upper"])):
                np.testing.assert_allclose(got[key][1:], ref[i], atol=5.01e-7, rtol=0)


def check_against_oracle(
    model, rng: np.random.Generator, n: int, horizons=(12.0, 24.0, 36.0, 60.0), tables=(3.0, 18.0, 48.0)
) -> None:
    for k in range(n):
        patient = random_patient(rng, KINDS[k % 3])
        hz = horizons if k % 4 or len(horizons) < 3 else tuple(sorted(rng.uniform(0.5, 130, 3).round(1)))
        fast = scoring.predict(model, patient, horizons=hz, table_months=tables)
        full = oracle.predict(model, patient, horizons=hz, table_months=tables)
        assert fast["condition"] is None
        assert_same(fast, full)
        assert_curves_exact(model, patient, fast)


def test_fast_path_equals_the_full_computation(model):
    """Fixture model, every patient kind, both endpoints, every option; default and other horizons."""
    check_against_oracle(model, np.random.default_rng(11), 45)


@pytest.mark.parametrize("horizons", [(0.001,), (1000.0,), (0.001, 1000.0)])
def test_horizons_before_the_first_or_after_the_last_event_time(model, horizons):
    """Nothing to read between the first and the last event time (ones, nulls): still the full computation."""
    check_against_oracle(model, np.random.default_rng(13), 6, horizons=horizons, tables=())


def test_without_the_precomputed_tables_the_same_numbers(model_dir, monkeypatch):
    """A model whose grid survival and RMST tables do not fit their budgets computes the same numbers per request
    (the components' survival on the grid, RMST over every event time): still the full computation."""
    monkeypatch.setattr(prepared_module, "GRID_TABLE_BUDGET", 0)
    monkeypatch.setattr(prepared_module, "RMST_TABLE_BUDGET", 0)
    fresh = load_model(model_dir)  # its own constants, built under the budgets above
    prep = prepared_module.prepare(fresh)
    assert all(c.grid_survival is None and c.rmst is None for c in prep.combinations.values())
    assert not prep.every_unknown
    check_against_oracle(fresh, np.random.default_rng(12), 18)


def test_every_unknown_patients_read_their_combination_evaluated_at_load(model_dir, monkeypatch):
    """``prepare`` evaluates, per combination of the required inputs, the mixture of a patient with every optional
    input unknown (grid, gaps, the curve there); scoring such a patient at the default horizons then evaluates no
    mixture and locates no gap, and its numbers are the full computation's (as in every test above); other horizons
    off the grid are evaluated beside the kept gaps."""
    fresh = load_model(model_dir)
    prep = prepared_module.prepare(fresh)
    assert prep.enumerable and set(prep.every_unknown) == set(prep.combinations.values())
    kept = [e for e in prep.every_unknown.values() if e is not None]
    assert len(kept) == len(prep.every_unknown) and prep.table_bytes["grid"] >= sum(e.nbytes for e in kept)
    unknown = {c.name: None for c in covariates.COVARIATES if not c.required}
    rng = np.random.default_rng(21)
    patients = [{**random_patient(rng, "known"), **unknown} for _ in range(4)]
    calls: list[tuple] = []
    evaluate = mixture.evaluate
    monkeypatch.setattr(mixture, "evaluate", lambda *a, **k: calls.append(a) or evaluate(*a, **k))
    for patient in patients:
        fast = scoring.predict(fresh, patient)
        assert not calls, "an every-unknown patient at the default horizons evaluated its mixture per request"
        assert_same(fast, oracle.predict(fresh, patient))
    off_grid = (7.3, 25.9)
    for patient in patients:
        assert_same(
            scoring.predict(fresh, patient, horizons=off_grid), oracle.predict(fresh, patient, horizons=off_grid)
        )
    assert calls, "times off the grid were evaluated per request"


def test_an_every_unknown_table_over_the_budget_is_remembered_and_not_kept(model_dir, monkeypatch):
    """With room for a combination's grid survival but not for its every-unknown table, no table is kept, the
    refusal is remembered (the mixture is not evaluated again only to be refused again), and the patient is scored
    as any other, to the full computation's numbers."""
    fresh = load_model(model_dir)
    prep = prepared(fresh)
    patient = scoring.validate_patient(random_patient(np.random.default_rng(0), "unknown"))
    assert prep.combination(patient).grid_survival is not None
    monkeypatch.setattr(prepared_module, "GRID_TABLE_BUDGET", prep.table_bytes["grid"])  # that survival, no more
    built: list[tuple] = []
    evaluated = scoring.evaluated
    monkeypatch.setattr(scoring, "evaluated", lambda *a: built.append(a) or evaluated(*a))
    for _ in range(2):
        assert_same(scoring.predict(fresh, patient), oracle.predict(fresh, patient))
    assert list(prep.every_unknown.values()) == [None] and len(built) == 1


@pytest.mark.parametrize(
    "seed, coef_scale, optional",
    [
        (31, 0.5, covariates.OPTIONAL),
        (32, 1.5, covariates.OPTIONAL),  # hazard ratios up to e^±20: curves that underflow (the log-weights path)
        (33, 0.7, ("tumor_type", "cytotoxic")),  # a registry that recorded only some optional covariates
    ],
)
def test_fast_path_on_random_registries(tmp_path, seed, coef_scale, optional):
    frame = random_registry(700, seed, optional=optional, coef_scale=coef_scale, round_to=0.5 if seed % 2 else None)
    csv = tmp_path / "r.csv"
    frame.to_csv(csv, index=False)
    model = load_model(fit_registry(load_registry(str(csv)), tmp_path / "m", version=f"rand-{seed}"))
    check_against_oracle(model, np.random.default_rng(seed), 24)


def test_rmst_tables_agree_with_the_exact_path(model):
    """At the default horizon RMST comes from per-combination tables; the exact path over every event time agrees."""
    rng = np.random.default_rng(4)
    prep = prepared(model)
    a, b = np.array([1, 2, 1]), np.array([0, 0, 2])
    for k in range(12):
        patient = scoring.validate_patient(random_patient(rng, KINDS[k % 3]))
        mix = mixture.mixture(prep, patient)
        tau = [ep.rmst_tau for ep in prep.endpoints]
        tables = rmst.rmst(mix, tau)
        assert mix.comb.rmst is not None, "the tables were used"
        parts = [rmst.exact(mix, e, t) for e, t in enumerate(tau)]
        exact = rmst.Rmst(np.array(tau), *(np.stack(x) for x in zip(*parts, strict=True)))
        np.testing.assert_allclose(tables.estimate, exact.estimate, rtol=1e-12)
        for got, want in zip(tables.variances(prep.cov, a, b), exact.variances(prep.cov, a, b), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-9)


def every_event_index(prep) -> np.ndarray:
    """Every event index of every endpoint (endpoints, sentinel), padded with the sentinel: the full evaluation."""
    every = np.full((len(prep.endpoints), prep.sentinel), prep.sentinel)
    for e, ep in enumerate(prep.endpoints):
        every[e, : len(ep.times)] = np.arange(len(ep.times))
    return every


def test_gap_bounds_hold_inside_every_gap(model):
    """The bounds that let scoring skip a gap of the grid contain the true standard deviation of -log S(t|s) at every
    interior event time (unconditional and conditional), for every patient kind, endpoint and option."""
    rng = np.random.default_rng(8)
    prep = prepared(model)
    every = every_event_index(prep)
    for k in range(12):
        patient = scoring.validate_patient(random_patient(rng, KINDS[k % 3]))
        mix = mixture.mixture(prep, patient)
        for months in (None, 14.5):
            index = (
                None
                if months is None
                else np.array([np.searchsorted(ep.times, months, side="right") - 1 for ep in prep.endpoints])
            )
            base = mixture.base_at(mix, index)
            sd = np.sqrt(mixture.curve(mix, mixture.evaluate(mix, every), base).var)
            upper, lower = medians.sd_bounds(mix, mixture.curve(mix, mixture.evaluate(mix), base), base)
            checked = 0
            for e in range(len(prep.endpoints)):
                after = -1 if index is None else index[e]
                for g in np.flatnonzero(prep.gaps.interior[e, 0] & (prep.grid[e, :-1] >= after)):
                    inside = sd[e, :, prep.grid[e, g] + 1 : prep.grid[e, g + 1]]
                    assert np.all(inside <= upper[e, :, g : g + 1] * (1 + 1e-12) + 1e-12), (k, e, g)
                    assert np.all(inside >= lower[e, :, g : g + 1] * (1 - 1e-12) - 1e-12), (k, e, g)
                    checked += 1
            assert checked > 100


def test_the_remainder_bounds_the_distance_from_the_segment(model):
    """Inside every gap q̄ lies within R (``medians.remainder``) of the segment between its values at the gap's ends,
    interpolated linearly in H: the margin the gap bounds rest on, checked apart (the data rarely need it for the bounds
    to hold, so dropping it would not show above)."""
    rng = np.random.default_rng(9)
    prep = prepared(model)
    every = every_event_index(prep)
    for k in range(9):
        mix = mixture.mixture(prep, scoring.validate_patient(random_patient(rng, KINDS[k % 3])))
        reach = medians.remainder(mix, mixture.evaluate(mix))
        v = mixture.evaluate(mix, every)
        # q̄ = A H - r_eff XC at every event time, A = y' basis: (endpoints, options, event times, p).
        xc = prep.columns_at(prep.xc_t, every).transpose(0, 2, 1)[:, None]
        q = (v.y.transpose(0, 1, 3, 2) @ mix.comb.basis) * prep.rows(every)[0][..., None] - v.r_eff[..., None] * xc
        moved = 0.0
        for e, ep in enumerate(prep.endpoints):
            for g in np.flatnonzero(prep.gaps.interior[e, 0]):
                a, b = prep.grid[e, g], prep.grid[e, g + 1]
                lam = ((ep.hc[a + 1 : b] - ep.hc[a]) / (ep.hc[b] - ep.hc[a]))[None, :, None]
                d = q[e, :, a + 1 : b] - ((1 - lam) * q[e, :, a, None] + lam * q[e, :, b, None])
                distance = np.sqrt(np.einsum("omp,pq,omq->om", d, ep.cov, d))
                assert np.all(distance <= reach[e, :, g : g + 1] * (1 + 1e-9) + 1e-12), (k, e, g)
                moved = max(moved, float(distance.max()))
        assert moved > 0


def bent_f(mix: mixture.Mixture, e: int, i: np.ndarray, m: np.ndarray) -> np.ndarray:
    """F = Ã H, Ã = E_a[r (z - m)], of endpoint e at event indices i, by brute force over the components:
    (options, len(i), terms)."""
    hc = mix.prep.endpoints[e].hc[i]
    log_w = np.log(mix.weights[e])[None, :, None] - mix.r[e][..., None] * hc  # (options, K, n)
    a = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    c = mix.r[e][..., None] * (mix.z - m)  # (options, K, terms)
    return np.einsum("okn,okp->onp", a, c) * hc[None, :, None]


def test_the_curvature_term_bounds_how_far_f_bends_inside_a_gap(model):
    """R's first term, (H(b) - H(a))²/8 max ||F''|| with F = Ã H and Ã = E_a[r (z - m)], bounds how far F bends
    away from its chord (linear in H) inside every gap, F computed by brute force from the components at every
    interior event time; R's other terms are set to zero, so the curvature term is checked alone (the data rarely
    need it for the test above). With unknown inputs only: with every input known Ã is constant and F a line."""
    prep = prepared(model)
    flat = dataclasses.replace(prep.gaps, dy=np.zeros_like(prep.gaps.dy), y_a=np.zeros_like(prep.gaps.y_a))
    rng = np.random.default_rng(17)
    bent = 0.0
    for k in range(4):
        mix = mixture.mixture(prep, scoring.validate_patient(random_patient(rng, ("unknown", "some")[k % 2])))
        bound = medians.remainder(
            dataclasses.replace(mix, prep=dataclasses.replace(prep, gaps=flat)), mixture.evaluate(mix)
        )
        for e, ep in enumerate(prep.endpoints):
            for g in np.flatnonzero(prep.gaps.interior[e, 0]):
                a, b = ep.grid[g], ep.grid[g + 1]
                m = (ep.xc[b] - ep.xc[a]) / (ep.hc[b] - ep.hc[a])
                ends, inner = bent_f(mix, e, np.array([a, b]), m), bent_f(mix, e, np.arange(a + 1, b), m)
                lam = ((ep.hc[a + 1 : b] - ep.hc[a]) / (ep.hc[b] - ep.hc[a]))[None, :, None]
                d = inner - ((1 - lam) * ends[:, :1] + lam * ends[:, 1:])
                distance = np.sqrt(np.einsum("onp,pq,onq->on", d, ep.cov, d))
                assert np.all(distance <= bound[e, :, g : g + 1] * (1 + 1e-9) + 1e-12), (k, e, g)
                bent = max(bent, float(distance.max()))
    assert bent > 1e-6, "no patient's F bent: the check above could not fail"


def test_returned_curves_are_smooth_for_the_highest_risk_patient(model):
    """Thinned from the model's grid, consecutive returned points fall by at most 0.01 (within a band of survival)
    plus one step of the grid: at most 0.01 itself, or a single event time's fall."""
    patient = {
        "who_grade": "3",
        "tumor_burden": ">75%",
        "prior_resection_ablation": "1",
        "tumor_type": None,
        "extrahepatic_metastases": "1",
        "octreotide": "0",
        "biologic": None,
        "cytotoxic": "1",
    }
    result = scoring.predict(model, patient)
    for endpoint in covariates.ENDPOINTS:
        full = oracle.full_curves(model, patient, endpoint)
        for option, curve in result["predictions"][endpoint].items():
            s = full[option]["s"]
            i = np.searchsorted(full[option]["times"], curve["times_months"][1:], side="right") - 1
            steps = -np.diff(np.concatenate([[1.0], s]))
            for j in range(len(i)):
                before = i[j - 1] if j else -1
                fall = (s[before] if before >= 0 else 1.0) - s[i[j]]
                assert fall <= 0.01 + max(0.01, steps[before + 1 : i[j] + 1].max()) + 1e-12, (endpoint, option, j)


def test_grid_bounds_the_fall_of_every_curve_between_grid_points(model):
    """Between consecutive grid points no curve exp(-r H) with r in the model's range of hazard ratios falls by more
    than GRID_SURVIVAL_STEP, unless they are adjacent event times (one step that falls by more)."""
    from prognosis.prepared import GRID_SURVIVAL_STEP, lp_range

    prep = prepared(model)
    for ep in prep.endpoints:
        lo, hi = lp_range(model.endpoints[ep.name], prep.pattern_names)
        r = np.exp(np.linspace(lo, hi, 400))[:, None]
        h = np.concatenate([[0.0], ep.hc[ep.grid]])
        fall = np.exp(-r * h[:-1]) - np.exp(-r * h[1:])
        wide = np.diff(np.concatenate([[-1], ep.grid])) > 1
        assert np.all(fall[:, wide] <= GRID_SURVIVAL_STEP + 1e-12), ep.name
