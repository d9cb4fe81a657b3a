"""The test oracle: the full computation scoring did before issue 11, kept unchanged as the reference.

It evaluates every averaged curve at every event time (all patterns of the unknowns, all options) and reads the
medians, landmarks, RMST and differences off those full curves. ``prognosis.scoring`` computes the same numbers
while evaluating the mixture only where the answer needs it; tests/test_scoring.py checks that the two agree to
floating-point rounding. Do not optimise this module: its value is that it is the straightforward computation.

The original module docstring follows.

One patient in, predicted survival for each endpoint under each option out, with intervals. Pure numpy; no Flask.

Curves are the Cox model's Breslow predictions. Pointwise 95% intervals are on the log scale (R ``survfit.coxph``'s
default) and include both the coefficient and the baseline-hazard uncertainty (Tsiatis 1981; Therneau & Grambsch
2000, section 10.2): with h_i = d_i / S0_i the baseline hazard increments at the event times t_i,
x̄_i the risk-weighted mean covariate, V the inverse information and r = exp(z'beta),

    H(t|z) = r sum_{t_i<=t} h_i
    Var H(t|z) = r^2 sum_{t_i<=t} d_i / S0_i^2 + q(t)' V q(t),   q(t) = r sum_{t_i<=t} (z - x̄_i) h_i.

Tied event times are handled as scikit-survival's Breslow estimator does (d_i deaths over one risk set), so with
ties the curve is Breslow's, not R's Efron-adjusted one; without ties the two agree.

When optional inputs are unknown the prediction is the average of the curves over the training cohort's patterns
of those inputs, S̄ = sum_k w_k S_k; its delta-method variance has the same form with r and q replaced by their
averages weighted by a_k(t) = w_k S_k(t) / S̄(t). Differences between options (survival at horizons, restricted
mean survival time) get delta-method intervals that keep the correlation through the shared baseline and
coefficients.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping, Sequence

import numpy as np

from prognosis import covariates, notices, provenance
from prognosis.model import EndpointModel, Model, UnknownsModel
from prognosis.normal import Z_95

# Returned curves keep the first step in each 1-month interval and in each 0.01 band of survival (plus the last);
# the values at the kept times are exact. That bounds a curve to about 250 points, a response to tens of KB.
THIN_SURVIVAL_STEP = 0.01
THIN_MONTHS_STEP = 1.0
# Below this averaged survival the averaging weights w_k S_k / S̄ are computed in logs (S_k near underflow).
TINY = 1e-200


def validate_patient(patient: Mapping[str, str | None]) -> dict[str, str | None]:
    """Canonical patient: every covariate present; a required one known; values among the levels."""
    unknown_keys = set(patient) - set(covariates.BY_NAME)
    if unknown_keys:
        raise ValueError(f"unknown inputs: {', '.join(sorted(unknown_keys))}")
    clean = {}
    for cov in covariates.COVARIATES:
        value = patient.get(cov.name)
        if value is None:
            if cov.required:
                raise ValueError(f"{cov.name} is required")
            clean[cov.name] = None
            continue
        level = cov.canonical(value)
        if level is None:
            raise ValueError(f"{cov.name}: {value!r} is not one of {', '.join(cov.levels)}")
        clean[cov.name] = level
    return clean


# Per-model constants, computed once per loaded model and dropped with it.
_prepared: weakref.WeakKeyDictionary[EndpointModel, dict] = weakref.WeakKeyDictionary()


def _prepare(ep: EndpointModel) -> dict:
    """Per-model constants: B = XC V and G = diag(XC V XC') over the event times."""
    prep = _prepared.get(ep)
    if prep is None:
        rs = ep.risk_sets
        xc, cov = rs.cum_xbar_hazard, ep.covariance
        b = xc @ cov
        prep = _prepared[ep] = {
            "terms": list(ep.terms),
            "coef": ep.coef,
            "cov": cov,
            "times": rs.event_times,
            "hc": rs.cum_hazard,
            "vc": rs.cum_var_hazard,
            "xc": xc,
            "b": b,
            "g": np.einsum("tp,tp->t", b, xc),
            "cohort": ep.cohort,
        }
    return prep


def _mixture(patient: dict[str, str | None], unknowns: UnknownsModel) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Covariate columns for each combination of the unknown inputs, weighted by P(combination | known inputs).

    P comes from the cohort's chain P(o_1 | r) P(o_2 | r, o_1) ...: the joint probability of each completed
    patient, normalised over the combinations (Bayes), so a known input later in the chain informs the unknown ones
    before it as well.
    """
    unknown = [name for name in unknowns.names if patient[name] is None]
    combos = list(itertools.product(*(covariates.BY_NAME[name].levels for name in unknown)))
    k = len(combos)
    columns = {name: np.full(k, value if value is not None else "", dtype=object) for name, value in patient.items()}
    if not unknown:
        return columns, np.ones(1)
    for j, name in enumerate(unknown):
        columns[name] = np.array([combo[j] for combo in combos], dtype=object)
    log_weights = np.zeros(k)
    for link in unknowns.links:
        log_p = link.log_probabilities(
            covariates.design_matrix(columns, list(link.inputs)) if link.inputs else np.zeros((k, 0))
        )
        observed = [link.levels.index(value) for value in columns[link.name]]
        log_weights += log_p[np.arange(k), observed]
    weights = np.exp(log_weights - log_weights.max())
    return columns, weights / weights.sum()


def _designs(prep: dict, columns: dict, k: int) -> dict[str, np.ndarray]:
    """Term rows (K, p) of each option's patterns, built in one pass."""
    stacked = {name: np.tile(values, len(covariates.OPTIONS)) for name, values in columns.items()}
    stacked["modality"] = np.repeat(np.array(covariates.OPTIONS, dtype=object), k)
    z = covariates.design_matrix(stacked, prep["terms"])
    return {option: z[i * k : (i + 1) * k] for i, option in enumerate(covariates.OPTIONS)}


def _option_curve(prep: dict, z: np.ndarray, weights: np.ndarray) -> dict:
    """Averaged survival and the pieces of its variance at every event time, for one option's patterns z.

    With a_k(t) = w_k S_k(t) / S̄(t): r_eff = sum_k a_k r_k and A = sum_k a_k r_k z_k, so that
    q̄(t) = A(t) Hc(t) - r_eff(t) XC(t); both are products of the (T, K) matrix of weights with a vector or a
    (K, p) matrix.
    """
    r = np.exp(z @ prep["coef"])  # (K,)
    hc = prep["hc"]
    rz = r[:, None] * z
    if len(r) == 1:
        ws = np.exp(-r[0] * hc)[:, None]  # (T, 1)
        s = ws[:, 0]
        r_eff, a = np.full(len(hc), r[0]), None
        zvz = float(z[0] @ prep["cov"] @ z[0])
        ava, avx = r_eff**2 * zvz, r_eff * (prep["b"] @ z[0])
    else:
        ws = np.multiply.outer(hc, -r)  # (T, K): w_k S_k(t), built in place
        np.exp(ws, out=ws)
        ws *= weights
        s = ws @ np.ones(len(r))
        with np.errstate(all="ignore"):
            r_eff = (ws @ r) / s
            a = (ws @ rz) / s[:, None]
        low = s < TINY
        if low.any():
            # Where every S_k is near underflow the ratios are taken in logs, shifted by their maximum over k.
            log_ws = np.log(weights) - np.outer(hc[low], r)
            e = np.exp(log_ws - log_ws.max(axis=1, keepdims=True))
            total = e.sum(axis=1)
            r_eff[low] = (e @ r) / total
            a[low] = (e @ rz) / total[:, None]
        ava, avx = np.einsum("tp,tp->t", a @ prep["cov"], a), np.einsum("tp,tp->t", a, prep["b"])
    quad = hc**2 * ava - 2 * hc * r_eff * avx + r_eff**2 * prep["g"]
    var = r_eff**2 * prep["vc"] + np.maximum(quad, 0.0)
    return {"z": z, "r": r, "ws": ws, "s": s, "a": a, "r_eff": r_eff, "var": var}


def _q(prep: dict, curve: dict, idx: int) -> np.ndarray:
    """Averaged gradient q̄(t) of the cumulative hazard with respect to beta at one event index."""
    a = curve["r_eff"][idx] * curve["z"][0] if curve["a"] is None else curve["a"][idx]
    return a * prep["hc"][idx] - curve["r_eff"][idx] * prep["xc"][idx]


def _interval(s: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-type interval S exp(∓ z se), upper bound capped at 1; in logs, so that a tiny S with a wide interval
    (a high-risk patient's tail) neither overflows nor gives 0 × inf."""
    half = Z_95 * np.sqrt(var)
    with np.errstate(divide="ignore"):
        log_s = np.log(s)
    return np.exp(log_s - half), np.exp(np.minimum(0.0, log_s + half))


def _first_below_half(times: np.ndarray, curve: np.ndarray) -> float | None:
    """First time a right-continuous curve is at or below 0.5 (None if it never is: not estimable)."""
    hit = np.flatnonzero(curve <= 0.5)
    return float(times[hit[0]]) if hit.size else None


def _at(times: np.ndarray, t: float) -> int | None:
    """Index of the last event time <= t (-1 before the first); None past the last event time (not estimable)."""
    if t > times[-1]:
        return None
    return int(np.searchsorted(times, t, side="right")) - 1


def _thin(times: np.ndarray, s: np.ndarray, keep: list[int]) -> np.ndarray:
    """Indices of the steps to return: the first step in each (month bucket, survival bucket), the last, and
    ``keep`` (the steps in force at the landmarks, so that the returned curve reads the landmark values exactly)."""
    month = np.floor(times / THIN_MONTHS_STEP)
    level = np.floor((1.0 - s) / THIN_SURVIVAL_STEP)
    change = np.ones(len(times), dtype=bool)
    change[1:] = (month[1:] != month[:-1]) | (level[1:] != level[:-1])
    change[-1] = True
    change[[i for i in keep if i >= 0]] = True
    return np.flatnonzero(change)


def _rmst_pieces(prep: dict, curve: dict, tau: float) -> dict:
    """RMST up to tau of the averaged curve, with its baseline coefficients c_i and beta-gradient g.

    RMST = tau_1 + sum_j S̄(t_j) width_j over the event times t_j <= tau (S = 1 before the first one);
    c_i = sum_k w_k r_k * integral of S_k from t_i to tau; g = d RMST / d beta up to sign.
    """
    times = prep["times"]
    n = int(np.searchsorted(times, tau, side="right"))  # event times <= tau
    widths = np.diff(np.append(times[:n], tau))  # S(t_j) holds on [t_j, t_j+1)
    first = times[0] if n else tau
    ws, r = curve["ws"][:n], curve["r"]
    wrs = ws @ r  # sum_k w_k r_k S_k(t_j)
    area = wrs * widths
    c = np.cumsum(area[::-1])[::-1]
    g = (r * (ws.T @ (prep["hc"][:n] * widths))) @ curve["z"] - area @ prep["xc"][:n]
    return {"estimate": float(first + curve["s"][:n] @ widths), "c": c, "g": g, "n": n, "tau": tau}


def _rmst_variance(prep: dict, c: np.ndarray, g: np.ndarray, n: int) -> float:
    dv = np.diff(np.concatenate([[0.0], prep["vc"][:n]]))  # d_i / S0_i^2
    return float(c**2 @ dv + g @ prep["cov"] @ g)


def _ci(estimate: float, var: float, lo: float = -np.inf, hi: float = np.inf) -> dict:
    se = float(np.sqrt(max(var, 0.0)))
    return {
        "estimate": float(estimate),
        "ci_lower": max(lo, estimate - Z_95 * se),
        "ci_upper": min(hi, estimate + Z_95 * se),
    }


def _none_ci() -> dict:
    return {"estimate": None, "ci_lower": None, "ci_upper": None}


def _read(times: np.ndarray, s: np.ndarray, lower: np.ndarray, upper: np.ndarray, t: float) -> dict:
    """The step function and its interval at time t, exactly (None past the last event time)."""
    i = _at(times, t)
    if i is None:
        return {"months": t, "survival": None, "ci_lower": None, "ci_upper": None}
    if i < 0:
        return {"months": t, "survival": 1.0, "ci_lower": 1.0, "ci_upper": 1.0}
    return {"months": t, "survival": float(s[i]), "ci_lower": float(lower[i]), "ci_upper": float(upper[i])}


def _endpoint(
    prep: dict, patient: dict, horizons: Sequence[float], table_months: Sequence[float] = ()
) -> tuple[dict, list[dict]]:
    columns, weights = _mixture(patient, prep["cohort"].unknowns)
    designs = _designs(prep, columns, len(weights))
    times = prep["times"]
    tau = max((h for h in horizons if h <= times[-1]), default=None)
    at_horizons = [i for i in (_at(times, h) for h in horizons) if i is not None]
    curves, options, rmst = {}, {}, {}
    for option in covariates.OPTIONS:
        curve = _option_curve(prep, designs[option], weights)
        lower, upper = _interval(curve["s"], curve["var"])
        curves[option] = curve
        keep = _thin(times, curve["s"], at_horizons)
        landmarks = [_read(times, curve["s"], lower, upper, h) for h in horizons]
        if tau is not None:
            rmst[option] = _rmst_pieces(prep, curve, tau)
            pieces = rmst[option]
            rmst_out = {
                "horizon_months": tau,
                **_ci(pieces["estimate"], _rmst_variance(prep, pieces["c"], pieces["g"], pieces["n"]), 0.0, tau),
            }
        else:
            rmst_out = {"horizon_months": None, **_none_ci()}
        options[option] = {
            "times_months": [0.0] + times[keep].tolist(),
            "survival": [1.0] + curve["s"][keep].round(6).tolist(),
            "ci_lower": [1.0] + lower[keep].round(6).tolist(),
            "ci_upper": [1.0] + upper[keep].round(6).tolist(),
            "median_months": {
                "estimate": _first_below_half(times, curve["s"]),
                "ci_lower": _first_below_half(times, lower),
                "ci_upper": _first_below_half(times, upper),
            },
            "landmarks": landmarks,
            "rmst": rmst_out,
            **({"table": [_read(times, curve["s"], lower, upper, t) for t in table_months]} if table_months else {}),
        }
    contrasts = [_contrast(prep, curves, rmst, a, b, horizons) for a, b in covariates.COMPARISONS]
    return options, contrasts


def _contrast(prep: dict, curves: dict, rmst: dict, a: str, b: str, horizons: Sequence[float]) -> dict:
    """Survival difference at the horizons and RMST difference, a minus b, with delta-method 95% intervals."""
    times = prep["times"]
    ca, cb = curves[a], curves[b]
    diffs = []
    for h in horizons:
        i = _at(times, h)
        if i is None:
            diffs.append({"months": h, **_none_ci()})
            continue
        if i < 0:
            diffs.append({"months": h, "estimate": 0.0, "ci_lower": 0.0, "ci_upper": 0.0})
            continue
        sa, sb = ca["s"][i], cb["s"][i]
        base = (sa * ca["r_eff"][i] - sb * cb["r_eff"][i]) ** 2 * prep["vc"][i]
        grad = sa * _q(prep, ca, i) - sb * _q(prep, cb, i)
        diffs.append({"months": h, **_ci(float(sa - sb), float(base + grad @ prep["cov"] @ grad), -1.0, 1.0)})
    if rmst:
        ra, rb = rmst[a], rmst[b]
        var = _rmst_variance(prep, ra["c"] - rb["c"], ra["g"] - rb["g"], ra["n"])
        tau = ra["tau"]
        rmst_diff = {"horizon_months": tau, **_ci(ra["estimate"] - rb["estimate"], var, -tau, tau)}
    else:
        rmst_diff = {"horizon_months": None, **_none_ci()}
    return {"comparison": f"{a} vs {b}", "a": a, "b": b, "survival_difference": diffs, "rmst_difference": rmst_diff}


def predict(
    model: Model,
    patient: Mapping[str, str | None],
    horizons: Sequence[float] = covariates.DEFAULT_HORIZONS_MONTHS,
    table_months: Sequence[float] = (),
) -> dict:
    """Predicted HPFS and OS for one patient under each option (the API's response body, and more).

    ``model`` is a :class:`prognosis.model.Model`; ``patient`` maps covariate names to canonical
    levels (None = unknown, optional covariates only). ``table_months`` adds to each option a ``table`` of exact
    values at those times (the returned curves are thinned), for the data tables behind the charts.
    """
    clean = validate_patient(patient)
    horizons = [float(h) for h in horizons]
    grade = clean[covariates.MODALITY_WITHIN.name]
    predictions, contrasts, similar = {}, {}, {}
    warnings = []
    for endpoint, spec in covariates.ENDPOINTS.items():
        prep = _prepare(model.endpoints[endpoint])
        predictions[endpoint], contrasts[endpoint] = _endpoint(prep, clean, horizons, table_months)
        for option in covariates.OPTIONS:
            count = prep["cohort"].grade_modality[grade][option]
            similar[option] = min(similar.get(option, count), count)
        late = [h for h in horizons if h > prep["times"][-1]]
        if late:
            warnings.append(
                f"{spec.label}: not estimable beyond {prep['times'][-1]:.1f} months (the last "
                f"observed {spec.event_label}); no value is given at " + ", ".join(f"{h:g}" for h in late) + " months."
            )
    in_model = next(iter(model.endpoints.values())).cohort.unknowns.names
    unknown = [name for name in in_model if clean[name] is None]
    unused = [name for name in covariates.OPTIONAL if name not in in_model and clean[name] is not None]
    warnings += notices.patient_warnings(
        notice=provenance.provenance(model.card).notice,
        evidence_patients=model.evidence_patients,
        grade=grade,
        similar=similar,
        unknown=unknown,
        unused=unused,
    )
    return {
        "model": {
            "model_version": model.version,
            "sha256": model.sha256,
            "data_source": model.data_source,
            "created_at": model.created_at,
        },
        "inputs": clean,
        "unknown": unknown,
        "predictions": predictions,
        "contrasts": contrasts,
        "similar_patients": similar,
        "warnings": warnings,
    }


# --- for the tests: the full curves behind a prediction ------------------------------------------------------------


def full_curves(model: Model, patient: Mapping[str, str | None], endpoint: str) -> dict[str, dict]:
    """Per option, the averaged curve at every event time as computed above: ``times``, ``s``, ``lower``, ``upper``,
    ``var`` (of -log S̄), ``r_eff``, ``q`` (the averaged beta-gradient, (T, p)), with the model's ``vc`` and ``cov``."""
    clean = validate_patient(patient)
    prep = _prepare(model.endpoints[endpoint])
    columns, weights = _mixture(clean, prep["cohort"].unknowns)
    designs = _designs(prep, columns, len(weights))
    out = {}
    for option in covariates.OPTIONS:
        curve = _option_curve(prep, designs[option], weights)
        lower, upper = _interval(curve["s"], curve["var"])
        a = curve["a"] if curve["a"] is not None else np.outer(curve["r_eff"], curve["z"][0])
        q = a * prep["hc"][:, None] - curve["r_eff"][:, None] * prep["xc"]
        out[option] = {
            "times": prep["times"],
            "s": curve["s"],
            "lower": lower,
            "upper": upper,
            "var": curve["var"],
            "r_eff": curve["r_eff"],
            "q": q,
            "vc": prep["vc"],
            "cov": prep["cov"],
        }
    return out
