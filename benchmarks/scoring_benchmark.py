"""In-process scoring of one patient with the shipped model: before and after, in the same run.

``predict`` for both endpoints and three options (curves, intervals, medians, landmarks, RMST, differences) over
*varied* patients: required inputs at random, optional ones all known, each known with probability 1/2, or all
unknown. Three implementations on the same patients, one BLAS thread (as each gunicorn worker runs):

- the full computation, kept as the tests' oracle (``tests/scoring_oracle.py``: every averaged curve at every event
  time; scoring as it was before issue 11), timed alternately with the current one in this process;
- the previous revision (``prognosis`` at ``BENCH_SCORING_BEFORE``, default ``BEFORE``: the last before a patient
  with every optional input unknown read its mixture's grid evaluation from per-combination tables), read from git
  into a temporary directory and timed in a child process;
- the current one (``prognosis.scoring``: every endpoint and option at once).

Targets (issue 11): every optional input unknown <= 2 ms; aim <= 0.7 ms for every kind.
"""

from __future__ import annotations

import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from benchmarks.load_benchmark import percentile, run_stamp
from prognosis import covariates, scoring
from prognosis.store import load_model
from tests import scoring_oracle

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "model_artifacts" / "current"
PATIENTS = int(os.environ.get("BENCH_SCORING_PATIENTS", 300))  # per kind
# The last revision of prognosis/ before the every-unknown tables (``prognosis.scoring.every_unknown``).
BEFORE = os.environ.get("BENCH_SCORING_BEFORE", "87033b4")
KINDS = {
    "every optional input known": "known",
    "some unknown (each with probability 1/2)": "some",
    "every optional input unknown": "unknown",
}

# Run in a child process with the previous prognosis package first on the path: milliseconds per patient and kind.
_CHILD = r"""
import json, sys, time
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
from prognosis import scoring
from prognosis.store import load_model
args = json.loads(sys.stdin.read())
model = load_model(args["model"])
scoring.prepare(model)
out = {}
with threadpool_limits(1):
    for kind, patients in args["patients"].items():
        for p in patients[:5]:
            scoring.predict(model, p)
        times = []
        for p in patients:
            start = time.perf_counter()
            scoring.predict(model, p)
            times.append((time.perf_counter() - start) * 1000)
        out[kind] = times
print(json.dumps(out))
"""


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


def before(revision: str, patients: dict[str, list[dict]]) -> dict[str, list[float]] | None:
    """The previous implementation's milliseconds per patient (None when the revision cannot be read)."""
    try:
        archive = subprocess.run(["git", "archive", revision, "prognosis"], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        env = {**os.environ, "PYTHONPATH": tmp}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps({"model": str(SHIPPED), "patients": patients}),
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=1800,
        )
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout)


def _row(label: str, *columns: list[float] | None) -> str:
    cells = []
    for times in columns:
        if times is None:
            cells += ["-", "-"]
            continue
        t = sorted(times)
        cells += [f"{statistics.median(t):.2f}", f"{percentile(t, 90):.2f}"]
    return f"| {label} | " + " | ".join(cells) + " |"


def run(report: list[str]) -> None:
    model = load_model(SHIPPED)
    started = time.perf_counter()
    with threadpool_limits(1):
        prep = scoring.prepare(model)
    prepare_s = time.perf_counter() - started
    patients = {kind: varied_patients(kind, PATIENTS, seed) for seed, kind in enumerate(KINDS.values())}
    previous = before(BEFORE, patients)
    full: dict[str, list[float]] = {}
    after: dict[str, list[float]] = {}
    gc.collect()
    with threadpool_limits(1):
        for kind, group in patients.items():
            for p in group[:5]:  # warm both, and check that they agree
                new, old = scoring.predict(model, p), scoring_oracle.predict(model, p)
                for ep in covariates.ENDPOINTS:
                    for o in covariates.OPTIONS:
                        assert new["predictions"][ep][o]["median_months"] == old["predictions"][ep][o]["median_months"]
            full[kind], after[kind] = [], []
            for i, p in enumerate(group):
                if i % 2:
                    after[kind].append(_ms(scoring.predict, model, p))
                    full[kind].append(_ms(scoring_oracle.predict, model, p))
                else:
                    full[kind].append(_ms(scoring_oracle.predict, model, p))
                    after[kind].append(_ms(scoring.predict, model, p))
    report += [
        "## Scoring one patient (in process): before and after",
        "",
        f"{run_stamp()} Model {model.version}: "
        + ", ".join(f"{ep.name.upper()} {len(ep.times):,} event times (grid {len(ep.grid)})" for ep in prep.endpoints)
        + f", {len(prep.pattern_codes)} patterns of the optional inputs. Per-model precomputation "
        f"(`prognosis.scoring.prepare`, at load): {prepare_s:.2f} s, {prep.nbytes() / 2**20:.1f} MB (grids and gap "
        f"constants; per combination of the required inputs ({len(prep.combinations)}) the components, their survival "
        f"on the grid, their RMST tables and the every-unknown mixture evaluated on the grid and where its medians "
        f"can be). One BLAS thread; varied patients ({PATIENTS} per kind, the same for "
        f"each implementation, default horizons). Full computation: `tests/scoring_oracle.py` (before issue 11), timed "
        f"alternately with the current one; previous: `prognosis` at `{BEFORE}` (before the every-unknown "
        "tables), in a child process. Targets: every optional input unknown <= 2 ms; aim <= 0.7 ms for every kind.",
        "",
        "| patients | full median (ms) | full p90 | previous median (ms) | previous p90 | now median (ms) | now p90 "
        "| full / now | previous / now |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, kind in KINDS.items():
        now = statistics.median(after[kind])
        ratio_prev = f"{statistics.median(previous[kind]) / now:.1f}x" if previous else "-"
        report.append(
            _row(label, full[kind], previous[kind] if previous else None, after[kind])
            + f" {statistics.median(full[kind]) / now:.1f}x | {ratio_prev} |"
        )
        print(report[-1], flush=True)
    unknown = statistics.median(after["unknown"])
    slowest = max(statistics.median(after[kind]) for kind in KINDS.values())
    report += [
        "",
        f"Targets in this run: every optional input unknown <= 2 ms: **{'met' if unknown <= 2 else 'not met'}** "
        f"({unknown:.2f} ms); <= 0.7 ms for every kind: **{'met' if slowest <= 0.7 else 'not met'}** (slowest kind "
        f"{slowest:.2f} ms). The machine is shared: compare the columns, measured in the same run. The current "
        "implementation is timed alternately with the full computation, which leaves it colder caches than the "
        "previous one timed alone in its child process: previous / now about 0.9x means no change.",
        "",
        "Every endpoint and option is evaluated at once, in a fixed number of array operations whatever the number "
        "of patterns of the unknowns: on the model's grid (the components' survival there precomputed), then, in one "
        "batched evaluation, the times read off the grid and the event times where a median or its limits can be "
        '(docs/methods.md, "How scoring computes only what the answer needs"). With every optional input unknown '
        "the mixture depends on the required inputs alone, so those evaluations are made once per combination at "
        "load and read per request; the rest of the answer (reads, RMST, differences, the returned curves) is "
        "computed per request. Rerun: `.venv/bin/python -m benchmarks.scoring_benchmark`.",
        "",
    ]


if __name__ == "__main__":
    from benchmarks.api_benchmark import write_section

    out: list[str] = []
    run(out)
    print("\n".join(out))
    print(f"wrote {write_section('scoring', out)}", file=sys.stderr)
