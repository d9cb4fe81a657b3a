"""In-process scoring of one patient with the shipped model, before and after issue 11, in the same run.

``predict`` for both endpoints and three options (curves, intervals, medians, landmarks, RMST, differences) over
*varied* patients: required inputs at random, optional ones all known, each known with probability 1/2, or all
unknown. "Before" is the full computation kept as the tests' oracle (``tests/scoring_oracle.py``: every averaged
curve at every event time); "after" is ``prognosis.scoring``. The two are timed alternately on the same patients
(one BLAS thread, as each gunicorn worker runs), and their answers compared. Targets (issue 11): every optional
input unknown <= 2 ms; the whole predict well under 1 ms for a varied patient if possible.
"""

from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.load_benchmark import percentile, run_stamp
from prognosis import covariates, mixture, scoring
from prognosis.store import load_model
from tests import scoring_oracle

SHIPPED = Path(__file__).resolve().parent.parent / "model_artifacts" / "current"
PATIENTS = int(__import__("os").environ.get("BENCH_SCORING_PATIENTS", 300))  # per kind
KINDS = {
    "every optional input known": "known",
    "some unknown (each with probability 1/2)": "some",
    "every optional input unknown": "unknown",
}


def varied_patients(kind: str, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        patient = {}
        for cov in covariates.COVARIATES:
            known = cov.required or kind == "known" or (kind == "some" and rng.random() < 0.5)
            patient[cov.name] = str(rng.choice(cov.levels)) if known else None
        out.append(patient)
    return out


def _ms(f, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    f(*args)
    return (time.perf_counter() - start) * 1000


def run(report: list[str]) -> None:
    model = load_model(SHIPPED)
    started = time.perf_counter()
    with threadpool_limits(1):
        prepared = scoring.prepare(model)
    prepare_s = time.perf_counter() - started
    sizes = {ep: (len(p.times), len(p.grid), p.nbytes()) for ep, p in prepared.items()}
    report += [
        "## Scoring one patient (in process), before and after",
        "",
        f"{run_stamp()} Model {model.version}: "
        + ", ".join(f"{ep.upper()} {t:,} event times (grid {g})" for ep, (t, g, _) in sizes.items())
        + f", {len(prepared['hpfs'].patterns.levels)} patterns of the optional inputs. Per-model precomputation "
        f"(`prognosis.scoring.prepare`, at load): {prepare_s:.2f} s, "
        f"{sum(b for _, _, b in sizes.values()) / 2**20:.1f} MB (grid, gap bounds, components and RMST tables of "
        "both endpoints). One BLAS thread; before and after timed alternately on the same varied patients "
        f"({PATIENTS} per kind, default horizons). Targets: every optional input unknown <= 2 ms; well under 1 ms "
        "if possible.",
        "",
        "| patients | before median (ms) | before p90 | before p99 | after median (ms) | after p90 | after p99 "
        "| median speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    gc.collect()
    for seed, (label, kind) in enumerate(KINDS.items()):
        patients = varied_patients(kind, PATIENTS, seed)
        before, after = [], []
        with threadpool_limits(1):
            for p in patients[:5]:  # warm both (and check they agree)
                new, old = scoring.predict(model, p), scoring_oracle.predict(model, p)
                for ep in covariates.ENDPOINTS:
                    for o in covariates.OPTIONS:
                        a, b = new["predictions"][ep][o]["landmarks"], old["predictions"][ep][o]["landmarks"]
                        assert all(
                            x["survival"] == y["survival"] or abs(x["survival"] - y["survival"]) < 1e-12
                            for x, y in zip(a, b, strict=True)
                            if y["survival"] is not None
                        )
            for i, p in enumerate(patients):
                if i % 2:
                    after.append(_ms(scoring.predict, model, p))
                    before.append(_ms(scoring_oracle.predict, model, p))
                else:
                    before.append(_ms(scoring_oracle.predict, model, p))
                    after.append(_ms(scoring.predict, model, p))
        b, a = sorted(before), sorted(after)
        report.append(
            f"| {label} | {statistics.median(b):.2f} | {percentile(b, 90):.2f} | {percentile(b, 99):.2f} "
            f"| {statistics.median(a):.2f} | {percentile(a, 90):.2f} | {percentile(a, 99):.2f} "
            f"| {statistics.median(b) / statistics.median(a):.1f}x |"
        )
        print(report[-1], flush=True)
    report += [
        "",
        f"With up to {mixture.FULL_EVALUATION_PATTERNS} patterns of the unknowns per option every event time is "
        "evaluated (one exponential per event time and pattern); with more, the mixture is evaluated on the model's "
        'grid and only in the gaps where a median or its limits can fall (docs/methods.md, "Predicted survival"). '
        "Rerun: `.venv/bin/python -m benchmarks scoring`.",
        "",
    ]


if __name__ == "__main__":
    out: list[str] = []
    run(out)
    print("\n".join(out))
