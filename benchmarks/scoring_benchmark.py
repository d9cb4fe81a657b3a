"""In-process scoring of one patient with the shipped model: both endpoints, three options, curves, intervals,
medians, landmarks, RMST and the differences between options (issue 3 target: median <= 2 ms)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from prognosis import covariates
from prognosis.store import load_model
from prognosis.scoring import predict

SHIPPED = Path(__file__).resolve().parent.parent / "model_artifacts" / "current"
REPEATS = 300
KNOWN = {"who_grade": "2", "tumor_burden": "50-75%", "prior_resection_ablation": "0", "tumor_type": "gut",
         "extrahepatic_metastases": "1", "octreotide": "1", "biologic": "0", "cytotoxic": "0"}
CASES = {
    "every input known": KNOWN,
    "tumor type unknown": dict(KNOWN, tumor_type=None),
    "all optional inputs unknown": {k: (v if covariates.BY_NAME[k].required else None) for k, v in KNOWN.items()},
}


def _timings(model, patient) -> list[float]:
    predict(model, patient)  # warm: per-model constants are computed on first use
    out = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        predict(model, patient)
        out.append((time.perf_counter() - start) * 1000)
    return sorted(out)


def run(report: list[str]) -> None:
    model = load_model(SHIPPED)
    times = {ep: len(p["risk_sets"]["event_times"]) for ep, p in model.endpoints.items()}
    patterns = len(model.endpoints["hpfs"].cohort.patterns.counts)
    report += ["## Scoring one patient (in process)", "",
               f"Model {model.version}: {times['hpfs']:,} HPFS and {times['os']:,} OS distinct event times, "
               f"{patterns} distinct patterns of the optional inputs. One BLAS thread (as each gunicorn worker "
               f"runs), {REPEATS} calls per case after one warm-up call. Target: median <= 2 ms.", "",
               "| case | median (ms) | p90 (ms) | p99 (ms) |", "|---|---|---|---|"]
    with threadpool_limits(1):
        for name, patient in CASES.items():
            t = _timings(model, patient)
            report.append(f"| {name} | {statistics.median(t):.2f} | {t[int(0.9 * len(t))]:.2f} | "
                          f"{t[int(0.99 * len(t))]:.2f} |")
            print(report[-1], flush=True)
    report += ["", "Unknown optional inputs are averaged over the training cohort's patterns of them, so the work "
               "grows with the number of patterns averaged (up to all of them when every optional input is "
               "unknown).", ""]
