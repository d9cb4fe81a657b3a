"""Synthetic registry whose truth is the published multivariate Cox models (seed abstract, Table 1).

Covariates are drawn with the frequencies in ``data/synthetic_assumptions.json`` (the paper's counts where it gives
them, named assumptions elsewhere). Times to hepatic progression and to death come from Weibull proportional-hazards
models whose log-HRs are the published multivariate HRs of all terms. Follow-up ends at min(administrative,
loss to follow-up). The Weibull baselines and the loss-to-follow-up rate are calibrated once with
``python -m training.synthetic --calibrate`` so that grade-specific Kaplan-Meier medians and the mean follow-up come
near the paper's; the result and how it was obtained are written into the same data file.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sksurv.nonparametric import kaplan_meier_estimator

from prognosis import covariates

DATA_DIR = Path(__file__).resolve().parent / "data"
TABLE1_PATH = DATA_DIR / "table1.json"
ASSUMPTIONS_PATH = DATA_DIR / "synthetic_assumptions.json"

# All terms, optional covariates included: the synthetic registry carries every column.
TERMS: list[str] = covariates.term_ids(covariates.OPTIONAL)
# Draw order from the one generator; a seed fixes the whole frame.
DRAWN: tuple[str, ...] = tuple(c.name for c in covariates.COVARIATES) + (covariates.MODALITY.name,)
COLUMNS: list[str] = ["patient_id", *covariates.REQUIRED, covariates.MODALITY.name, *covariates.OPTIONAL] + [
    col for ep in covariates.ENDPOINTS.values() for col in (ep.time, ep.event)
]
# Registries record dates, so times are whole days (in months of 30.4375 days); the smallest one is one day.
DAY_MONTHS = 1 / 30.4375


def load_table1() -> dict:
    """The published Table 1 and cohort facts (``data/table1.json``)."""
    return json.loads(TABLE1_PATH.read_text(encoding="utf-8"))


def load_assumptions(path: Path = ASSUMPTIONS_PATH) -> dict:
    """Frequencies, baselines, censoring and calibration record (``data/synthetic_assumptions.json``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _covariate(name: str) -> covariates.Covariate:
    return covariates.MODALITY if name == covariates.MODALITY.name else covariates.BY_NAME[name]


def _lookup(tree: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at ``path`` in a parsed JSON document (whatever JSON holds there)."""
    for key in path:
        tree = tree[key]
    return tree


def published_truth(endpoint: str) -> dict[str, float]:
    """Published multivariate log hazard ratios of one endpoint.

    Parameters
    ----------
    endpoint : str
        ``"hpfs"`` or ``"os"``.

    Returns
    -------
    dict
        Term id -> log(HR), in the order of ``covariates.term_ids(covariates.OPTIONAL)``.
    """
    if endpoint not in covariates.ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {sorted(covariates.ENDPOINTS)}")
    rows = load_table1()["endpoints"][endpoint]["multivariate"]
    hrs = {row["term"]: float(row["hr"]) for row in rows}
    missing = [term for term in TERMS if term not in hrs]
    extra = sorted(set(hrs) - set(TERMS))
    if missing or extra:
        raise ValueError(
            f"table1.json {endpoint} multivariate terms do not match the model: missing {missing}, unknown {extra}"
        )
    return {term: math.log(hrs[term]) for term in TERMS}


def covariate_probabilities(assumptions: dict | None = None) -> dict[str, dict[str, float]]:
    """Probability of each level of each drawn column, in the covariate's level order.

    Counts named by ``counts_from`` are read from table1.json; assumed prevalences whose ``value_from`` points into
    table1.json must agree with it, so a figure is never silently copied wrong.
    """
    assumptions = load_assumptions() if assumptions is None else assumptions
    table1 = load_table1()
    spec = assumptions["covariate_frequencies"]
    out: dict[str, dict[str, float]] = {}
    for name in DRAWN:
        cov = _covariate(name)
        entry = spec[name]
        if "counts_from" in entry:
            weights = {str(k): float(v) for k, v in _lookup(table1, entry["counts_from"]).items()}
        elif "probabilities" in entry:
            weights = {str(k): float(v) for k, v in entry["probabilities"].items()}
        elif "probability_of_1" in entry and cov.binary:
            p = float(entry["probability_of_1"])
            if "value_from" in entry and not math.isclose(p, float(_lookup(table1, entry["value_from"]))):
                raise ValueError(f"{name}: probability_of_1 {p} differs from table1.json {entry['value_from']}")
            weights = {"0": 1.0 - p, "1": p}
        else:
            raise ValueError(f"{name}: no usable frequency in synthetic_assumptions.json")
        if set(weights) != set(cov.levels) or min(weights.values()) < 0:
            raise ValueError(f"{name}: frequencies for {sorted(weights)} but levels are {list(cov.levels)}")
        total = sum(weights.values())
        out[name] = {level: weights[level] / total for level in cov.levels}
    return out


@dataclass(frozen=True)
class Parameters:
    """Weibull baselines (reference patient) and censoring of the synthetic registry."""

    hpfs_shape: float
    hpfs_scale: float
    os_shape: float
    os_scale: float
    administrative_max: float
    loss_rate: float

    @classmethod
    def from_assumptions(cls, assumptions: dict) -> Parameters:
        base, cens = assumptions["weibull_baseline"], assumptions["censoring"]
        return cls(
            hpfs_shape=float(base["hpfs"]["shape"]),
            hpfs_scale=float(base["hpfs"]["scale_months"]),
            os_shape=float(base["os"]["shape"]),
            os_scale=float(base["os"]["scale_months"]),
            administrative_max=float(cens["administrative_max_months"]),
            loss_rate=float(cens["loss_to_follow_up_rate_per_month"]),
        )


@dataclass(frozen=True)
class _Draws:
    """Everything random about a cohort, before the baseline and censoring parameters are applied."""

    frame: pd.DataFrame
    linear_predictor: dict[str, np.ndarray]
    u_hpfs: np.ndarray
    u_os: np.ndarray
    u_administrative: np.ndarray
    e_loss: np.ndarray


def _draw(n: int, seed: int, probabilities: dict[str, dict[str, float]]) -> _Draws:
    rng = np.random.default_rng(seed)
    columns = {}
    for name in DRAWN:
        levels = np.array(list(probabilities[name]), dtype=object)
        columns[name] = levels[rng.choice(len(levels), size=n, p=list(probabilities[name].values()))]
    frame = pd.DataFrame(columns)
    design = covariates.design_matrix(frame, TERMS)
    linear_predictor = {ep: design @ np.array(list(published_truth(ep).values())) for ep in covariates.ENDPOINTS}
    # Standardised draws, so calibration can re-use one cohort (common random numbers) for every parameter trial.
    return _Draws(
        frame,
        linear_predictor,
        u_hpfs=rng.random(n),
        u_os=rng.random(n),
        u_administrative=rng.random(n),
        e_loss=rng.standard_exponential(n),
    )


def _weibull_ph_inverse(u: np.ndarray, linear_predictor: np.ndarray, shape: float, scale: float) -> np.ndarray:
    # Inverse transform: S(t | x) = exp(-(t/scale)^shape * exp(x'b)) = 1 - u.
    return scale * (-np.log1p(-u) * np.exp(-linear_predictor)) ** (1.0 / shape)


def _outcomes(draws: _Draws, params: Parameters) -> dict[str, np.ndarray]:
    progression = _weibull_ph_inverse(
        draws.u_hpfs, draws.linear_predictor["hpfs"], params.hpfs_shape, params.hpfs_scale
    )
    death = _weibull_ph_inverse(draws.u_os, draws.linear_predictor["os"], params.os_shape, params.os_scale)
    follow_up = np.minimum(params.administrative_max * draws.u_administrative, draws.e_loss / params.loss_rate)
    os_time = np.minimum(death, follow_up)
    # Death or the end of follow-up before hepatic progression censors HPFS there, so HPFS never exceeds OS.
    hpfs_time = np.minimum(progression, os_time)
    return {
        "hpfs_months": hpfs_time,
        "hpfs_event": (progression <= os_time).astype(int),
        "os_months": os_time,
        "os_event": (death <= follow_up).astype(int),
    }


# Every synthetic patient_id is "SYN" and digits; a registry whose ids all match is taken for a synthetic one.
ID_PREFIX = "SYN"


def evidence_patients() -> int:
    """The size of the study whose estimates a synthetic registry reproduces: the seed abstract's analysis, which
    produced the published hazard ratios (table1.json ``cohort.seed_abstract.cases``)."""
    return int(load_table1()["cohort"]["seed_abstract"]["cases"])


def generator_revision() -> str:
    """A short digest of what determines a synthetic registry besides n and seed: this module's code (its syntax
    tree, so that reformatting does not count) and its data files.

    It goes into the shipped model's version name, so that a version rebuilt from a changed generator gets a new
    name instead of new contents under an old one.
    """
    digest = hashlib.sha256(ast.dump(ast.parse(Path(__file__).read_text(encoding="utf-8"))).encode())
    for path in (TABLE1_PATH, ASSUMPTIONS_PATH):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def version_name(n: int, seed: int) -> str:
    return f"synthetic-n{n}-seed{seed}-g{generator_revision()}"


def data_source(patient_ids: pd.Series) -> str:
    """'synthetic' for a registry made by :func:`synthesize` (every id is ``SYN`` + digits), else 'registry'."""
    return "synthetic" if patient_ids.astype(str).str.fullmatch(rf"{ID_PREFIX}\d+").all() else "registry"


def synthesize(n: int, seed: int) -> pd.DataFrame:
    """Draw a synthetic registry in the canonical schema.

    Parameters
    ----------
    n : int
        Number of patients.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same frame.

    Returns
    -------
    pandas.DataFrame
        Columns ``COLUMNS``: covariates as canonical level strings, months as floats rounded to 0.01 (>= 0.01,
        ``hpfs_months <= os_months``), events as int 0/1.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    assumptions = load_assumptions()
    draws = _draw(n, seed, covariate_probabilities(assumptions))
    outcomes = _outcomes(draws, Parameters.from_assumptions(assumptions))
    frame = draws.frame
    frame.insert(0, "patient_id", [f"{ID_PREFIX}{i:0{len(str(n))}d}" for i in range(1, n + 1)])
    for column, values in outcomes.items():
        # Rounding is monotone, so hpfs <= os survives it.
        frame[column] = (
            np.round(np.maximum(np.round(values / DAY_MONTHS), 1.0) * DAY_MONTHS, 6)
            if column.endswith("_months")
            else values
        )
    return frame[COLUMNS]


def km_median(time: np.ndarray, event: np.ndarray) -> float | None:
    """Kaplan-Meier median: the first time the estimate is at or below 0.5, or None if it never is."""
    if len(time) == 0:
        return None
    times, survival = kaplan_meier_estimator(np.asarray(event).astype(bool), np.asarray(time, dtype=float))
    reached = np.flatnonzero(survival <= 0.5)
    return float(times[reached[0]]) if reached.size else None


def _grade_medians(frame: pd.DataFrame | dict, endpoint: str, grades: np.ndarray) -> dict[str, float | None]:
    ep = covariates.ENDPOINTS[endpoint]
    time, event = np.asarray(frame[ep.time], dtype=float), np.asarray(frame[ep.event])
    return {g: km_median(time[grades == g], event[grades == g]) for g in covariates.WHO_GRADE.levels}


def calibration_report(frame: pd.DataFrame) -> dict:
    """Grade-specific Kaplan-Meier medians and mean follow-up of a registry, beside the paper's.

    Parameters
    ----------
    frame : pandas.DataFrame
        A registry in the canonical schema (for example from ``synthesize``).

    Returns
    -------
    dict
        ``{"n", "hpfs" | "os": {"events", "median_by_grade", "paper_median_by_grade", "ratio_by_grade"},
        "mean_follow_up_months": {"synthetic", "paper"}}``, each ``*_by_grade`` keyed by grade ("1".."3"); a median
        not reached is None. Mean follow-up is the mean observed ``os_months``.
    """
    cohort = load_table1()["cohort"]
    grades = np.asarray(frame[covariates.WHO_GRADE.name]).astype(str)
    report: dict = {"n": int(len(frame))}
    for name, ep in covariates.ENDPOINTS.items():
        paper = {g: float(v) for g, v in cohort["full_paper"][f"median_{name}_months_by_grade"].items()}
        medians = _grade_medians(frame, name, grades)
        report[name] = {
            "events": int(np.asarray(frame[ep.event]).sum()),
            "median_by_grade": medians,
            "paper_median_by_grade": {g: paper[g] for g in medians},
            "ratio_by_grade": {g: None if m is None else m / paper[g] for g, m in medians.items()},
        }
    report["mean_follow_up_months"] = {
        "synthetic": float(np.mean(frame[covariates.ENDPOINTS["os"].time])),
        "paper": float(cohort["seed_abstract"]["mean_follow_up_months"]),
    }
    return report


# A median that is never reached costs as much as being off by a factor e^3.
_UNREACHED_PENALTY = 9.0
# Optimizer start: exponential baselines and a loss to follow-up of 2% a month, generic rather than fitted.
_START = {"hpfs_shape": 1.0, "hpfs_scale": 30.0, "os_shape": 1.0, "os_scale": 150.0, "loss_rate": 0.02}
_MAX_PASSES = 4
# Smallest objective gain that earns another restart (0.01 on one median's log-ratio is about 1e-4).
_RESTART_GAIN = 1e-4


def calibrate(n: int = 200_000, seed: int = 0, follow_up_weight: float = 4.0) -> tuple[Parameters, dict]:
    """Fit the Weibull baselines and the loss-to-follow-up rate to the paper's medians and mean follow-up.

    Minimises, over log(shape) and log(scale) per endpoint and log(loss rate), the sum over endpoints and grades of
    squared log(KM median / paper median) plus ``follow_up_weight`` times squared log(mean follow-up / paper's),
    by Nelder-Mead on one synthetic cohort (common random numbers: the objective changes only through the
    parameters, not through sampling noise). The administrative horizon is held fixed. Takes a few minutes.

    Parameters
    ----------
    n, seed : int
        Size and seed of the calibration cohort.
    follow_up_weight : float
        Weight of the mean follow-up term relative to one median.

    Returns
    -------
    (Parameters, dict)
        The fitted parameters and a record of how they were obtained.
    """
    assumptions = load_assumptions()
    base = Parameters.from_assumptions(assumptions)
    draws = _draw(n, seed, covariate_probabilities(assumptions))
    grades = np.asarray(draws.frame[covariates.WHO_GRADE.name]).astype(str)
    cohort = load_table1()["cohort"]
    targets = {
        ep: {g: float(v) for g, v in cohort["full_paper"][f"median_{ep}_months_by_grade"].items()}
        for ep in covariates.ENDPOINTS
    }
    target_follow_up = float(cohort["seed_abstract"]["mean_follow_up_months"])

    def params_of(x: np.ndarray) -> Parameters:
        shape_h, scale_h, shape_o, scale_o, rate = np.exp(x)
        return replace(base, hpfs_shape=shape_h, hpfs_scale=scale_h, os_shape=shape_o, os_scale=scale_o, loss_rate=rate)

    def objective(x: np.ndarray) -> float:
        outcomes = _outcomes(draws, params_of(x))
        total = follow_up_weight * math.log(np.mean(outcomes["os_months"]) / target_follow_up) ** 2
        for ep in covariates.ENDPOINTS:
            for g, median in _grade_medians(outcomes, ep, grades).items():
                total += _UNREACHED_PENALTY if median is None else math.log(median / targets[ep][g]) ** 2
        return total

    # A fixed, generic start (not the file's current values), so re-running the calibration reproduces it.
    x0 = np.log(
        [_START["hpfs_shape"], _START["hpfs_scale"], _START["os_shape"], _START["os_scale"], _START["loss_rate"]]
    )
    passes = []
    for _ in range(_MAX_PASSES):
        # Nelder-Mead's default simplex is 5% of each start value, i.e. almost nothing for log(shape) = 0, and the
        # KM medians are step functions at that scale: use steps of 0.3 on the log scale, and restart from the
        # optimum with a fresh simplex until that no longer helps (Nelder-Mead can stall on a collapsed simplex).
        simplex = np.vstack([x0, x0 + 0.3 * np.eye(len(x0))])
        result = minimize(
            objective,
            x0,
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-7, "maxiter": 4000, "maxfev": 8000},
        )
        passes.append(result)
        improved = len(passes) == 1 or passes[-2].fun - result.fun > _RESTART_GAIN
        x0 = result.x
        if not improved:
            break
    final = passes[-1]
    # Stored values are rounded; the record describes the rounded parameters actually used.
    fitted = params_of(final.x)
    fitted = replace(
        fitted,
        hpfs_shape=round(fitted.hpfs_shape, 4),
        hpfs_scale=round(fitted.hpfs_scale, 3),
        os_shape=round(fitted.os_shape, 4),
        os_scale=round(fitted.os_scale, 3),
        loss_rate=round(fitted.loss_rate, 6),
    )
    calibration_cohort = draws.frame.assign(**_outcomes(draws, fitted))
    record = {
        "command": f"python -m training.synthetic --calibrate --n {n} --seed {seed}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "method": (
            "Nelder-Mead over log(shape), log(scale) per endpoint and log(loss-to-follow-up rate), on one "
            "synthetic cohort of n patients at seed (common random numbers); objective = sum over endpoints "
            "and grades of squared log(KM median / paper median) + follow_up_weight * squared log(mean "
            "follow-up / paper mean follow-up). Administrative horizon held fixed. One proportional-hazards "
            "baseline cannot match all three OS grade medians under the published HRs, so the OS fit is a "
            "least-squares compromise."
        ),
        "n": n,
        "seed": seed,
        "follow_up_weight": follow_up_weight,
        "objective": objective(
            np.log([fitted.hpfs_shape, fitted.hpfs_scale, fitted.os_shape, fitted.os_scale, fitted.loss_rate])
        ),
        "start": _START,
        "optimizer": {
            "passes": len(passes),
            "objective_by_pass": [float(p.fun) for p in passes],
            "converged": bool(final.success),
            "iterations": sum(int(p.nit) for p in passes),
            "message": str(final.message),
        },
        "report_calibration_cohort": calibration_report(calibration_cohort),
    }
    return fitted, record


def write_calibration(
    params: Parameters, record: dict, path: Path = ASSUMPTIONS_PATH, check_n: int = 20_000, check_seed: int = 1
) -> dict:
    """Store calibrated parameters and their record in the assumptions file; add the report at (check_n, check_seed)."""
    assumptions = load_assumptions(path)
    source = "calibrated: see calibration"
    assumptions["weibull_baseline"]["hpfs"] = {
        "shape": params.hpfs_shape,
        "scale_months": params.hpfs_scale,
        "source": source,
    }
    assumptions["weibull_baseline"]["os"] = {
        "shape": params.os_shape,
        "scale_months": params.os_scale,
        "source": source,
    }
    assumptions["censoring"]["loss_to_follow_up_rate_per_month"] = params.loss_rate
    assumptions["censoring"]["loss_to_follow_up_source"] = source
    assumptions["calibration"] = record
    path.write_text(json.dumps(assumptions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    # The check runs on the file just written, through the same code path users take.
    assumptions["calibration"][f"report_n{check_n}_seed{check_seed}"] = calibration_report(
        synthesize(check_n, check_seed)
    )
    path.write_text(json.dumps(assumptions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return assumptions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit baselines and loss to follow-up, write them into data/synthetic_assumptions.json",
    )
    parser.add_argument("--n", type=int, default=None, help="cohort size (calibration default 200000, report 20000)")
    parser.add_argument("--seed", type=int, default=None, help="seed (calibration default 0, report 1)")
    args = parser.parse_args(argv)
    if args.calibrate:
        params, record = calibrate(n=args.n or 200_000, seed=0 if args.seed is None else args.seed)
        written = write_calibration(params, record)
        print(
            json.dumps(
                {
                    "parameters": written["weibull_baseline"],
                    "censoring": written["censoring"],
                    "calibration": written["calibration"],
                },
                indent=1,
            )
        )
    else:
        n, seed = args.n or 20_000, 1 if args.seed is None else args.seed
        print(json.dumps(calibration_report(synthesize(n, seed)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
