"""Bootstrap validation time: 200 replicates, both endpoints, at 184 and 5,000 patients on 2 workers.

Each size runs in its own process, so a measurement includes starting the joblib (loky) workers, as
``python -m training validate`` does; the fit itself is not timed. Target at 184 patients: <= 15 s on 2 cores.
Also timed: the same 184-patient run on a local Dask cluster (2 worker processes) through
``joblib.parallel_config(backend="dask")``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (184, 5_000)
REPLICATES = 200
JOBS = 2
TARGET_184_S = 15.0


def _child(n: int, backend: str) -> None:
    """Runs in the measuring subprocess: fit (untimed), then validate both endpoints; prints JSON timings."""
    from prognosis.store import load_model
    from training.pipeline import fit_registry
    from training.registry import load_registry
    from training.synthetic import synthesize
    from training.validate import validate_model

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "registry.csv"
        synthesize(n, 7).to_csv(csv, index=False)
        registry = load_registry(str(csv))
        model = load_model(fit_registry(registry, Path(tmp) / "model", version=f"bench-{n}"))
        if backend == "dask":
            import joblib
            from distributed import Client, LocalCluster

            with LocalCluster(n_workers=JOBS, threads_per_worker=1, dashboard_address=None) as cluster, \
                    Client(cluster), joblib.parallel_config(backend="dask"):
                start = time.perf_counter()
                block = validate_model(model, registry, replicates=REPLICATES, seed=1, show_progress=False)
                wall = time.perf_counter() - start
        else:
            start = time.perf_counter()
            block = validate_model(model, registry, replicates=REPLICATES, seed=1, n_jobs=JOBS, show_progress=False)
            wall = time.perf_counter() - start
    print(json.dumps({
        "wall_s": wall,
        "events": {ep: block[ep]["events"] for ep in ("hpfs", "os")},
        "c": {ep: [block[ep]["harrell_c"]["apparent"], block[ep]["harrell_c"]["optimism_corrected"]]
              for ep in ("hpfs", "os")},
        "slope": {ep: block[ep]["calibration_slope"]["optimism_corrected"] for ep in ("hpfs", "os")},
        "failed": {ep: block[ep]["bootstrap"]["failed"] for ep in ("hpfs", "os")},
    }))


def _measure(n: int, backend: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.validation_benchmark", str(n), backend],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(report: list[str]) -> None:
    report += ["## Bootstrap validation: both endpoints, 200 replicates, 2 workers", "",
               "Synthetic registries (truth: the published Table 1). Wall-clock seconds of `validate_model` (all "
               "metrics, calibration, PH test and the bootstrap for HPFS and OS), including starting the workers; "
               f"target at 184 patients: ≤ {TARGET_184_S:g} s. Each replicate refits the Cox model by Newton-Raphson "
               "on the Efron likelihood (training/fit.py) and computes three Harrell's C (training/cox_fast.py).", "",
               "| patients | backend | events HPFS / OS | wall (s) | Harrell's C HPFS (corrected) | "
               "Harrell's C OS (corrected) | slope HPFS / OS (corrected) | failed refits |",
               "|---|---|---|---|---|---|---|---|"]
    runs = [(n, "loky") for n in SIZES] + [(SIZES[0], "dask")]
    for n, backend in runs:
        r = _measure(n, backend)
        c = r["c"]
        report.append(f"| {n:,} | {backend} | {r['events']['hpfs']} / {r['events']['os']} | {r['wall_s']:.1f} | "
                      f"{c['hpfs'][0]:.3f} ({c['hpfs'][1]:.3f}) | {c['os'][0]:.3f} ({c['os'][1]:.3f}) | "
                      f"{r['slope']['hpfs']:.3f} / {r['slope']['os']:.3f} | "
                      f"{r['failed']['hpfs']} / {r['failed']['os']} |")
        print(report[-1], flush=True)
    report += ["", "The Dask row runs the same joblib code on a `distributed.LocalCluster` with 2 worker processes "
               "(docs/validation.md); on one machine it only adds scheduling overhead, its use is a cluster.", ""]


if __name__ == "__main__":
    _child(int(sys.argv[1]), sys.argv[2])
