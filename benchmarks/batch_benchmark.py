"""Batch scoring (issue 12.2): ``python -m calculator score`` on 5,000 patients in one process, every row checked
against the single-patient ``predict``; then on a 1,000,000-row file on a local Dask cluster, with its time and peak
memory (all processes: client, scheduler, workers). Timings are reported, never asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from benchmarks.load_benchmark import run_stamp
from prognosis import batch, covariates
from prognosis.scoring import predict
from prognosis.store import load_model
from training.synthetic import synthesize

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "model_artifacts" / "current"
ROWS = 5_000
BIG_ROWS = int(os.environ.get("BENCH_BATCH_BIG_ROWS", 1_000_000))
HORIZONS = covariates.DEFAULT_HORIZONS_MONTHS


def patients(n: int, seed: int, uniform: bool = False) -> pd.DataFrame:
    """A registry of n patients, each optional input missing with probability 1/2 (mixed unknowns); ``uniform``:
    every input drawn uniformly from its levels (many more distinct patients than the registry's own mix)."""
    frame = synthesize(n, seed)
    rng = np.random.default_rng(seed)
    if uniform:
        for cov in covariates.COVARIATES:
            frame[cov.name] = rng.choice(np.array(cov.levels, dtype=object), n)
    for name in covariates.OPTIONAL:
        frame[name] = frame[name].astype(object).where(rng.random(n) > 0.5, None)
    return frame


class PeakMemory(threading.Thread):
    """The largest total RSS of a process and its descendants, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                root = psutil.Process(self.pid)
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self.done.wait(0.2)


def timed(command: list[str]) -> tuple[float, int, str]:
    """Wall time, peak memory of the process tree, stderr."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    sampler = PeakMemory(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    sampler.done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err}")
    return time.perf_counter() - started, sampler.peak, err


def check_rows(model, frame: pd.DataFrame, out: pd.DataFrame) -> tuple[int, float]:
    """Every row's landmark survival (and interval) against ``predict``: rows checked, largest difference."""
    worst, checked = 0.0, 0
    cache: dict[tuple, dict] = {}
    for i, row in enumerate(frame.itertuples(index=False)):
        patient = {
            c.name: (None if pd.isna(getattr(row, c.name)) else str(getattr(row, c.name)))
            for c in covariates.COVARIATES
        }
        key = tuple(patient.values())
        result = cache.get(key)
        if result is None:
            result = cache[key] = predict(model, patient)
        for endpoint in covariates.ENDPOINTS:
            for option in covariates.OPTIONS:
                for lm in result["predictions"][endpoint][option]["landmarks"]:
                    for key_, col in (("survival", "survival"), ("ci_lower", "ci_lower"), ("ci_upper", "ci_upper")):
                        got = out.at[i, f"{endpoint}_{option}_{col}_{lm['months']:g}"]
                        worst = max(worst, abs(got - lm[key_]))
        checked += 1
    return checked, worst


def run(report: list[str]) -> None:
    model = load_model(SHIPPED)
    stamp = run_stamp()
    with tempfile.TemporaryDirectory() as tmp:
        small_runs = []
        for label, uniform in (("the registry's mix of inputs", False), ("inputs uniform over their levels", True)):
            small = Path(tmp) / "patients5000.csv"
            frame = patients(ROWS, 20, uniform)
            frame.to_csv(small, index=False)
            out = Path(tmp) / "predictions5000.csv"
            command = [sys.executable, "-m", "calculator", "score", "--data", str(small), "--out", str(out)]
            seconds, peak, _ = timed([*command, "--model", str(SHIPPED), "--quiet"])
            got = pd.read_csv(out)
            distinct = batch.score_patients(
                model, {c.name: frame[c.name].tolist() for c in covariates.COVARIATES}, HORIZONS
            ).patients
            checked, worst = check_rows(model, frame, got)
            small_runs.append((label, distinct, seconds, peak, checked, worst))
            print(f"5,000 rows ({label}): {seconds:.1f} s", flush=True)

        big = Path(tmp) / "patients1m.csv"
        base = patients(100_000, 21)
        with open(big, "w", encoding="utf-8") as handle:
            for k in range(BIG_ROWS // len(base)):
                chunk = base.assign(patient_id=[f"P{k:03d}{i:06d}" for i in range(len(base))])
                chunk.to_csv(handle, index=False, header=k == 0)
        size_mb = big.stat().st_size / 2**20
        big_out = Path(tmp) / "predictions1m.parquet"
        big_seconds, big_peak, err = timed(
            [
                sys.executable,
                "-m",
                "calculator",
                "score",
                "--data",
                str(big),
                "--out",
                str(big_out),
                "--model",
                str(SHIPPED),
                "--dask",
                "local",
            ]
        )
        partitions = next(
            (line.split(" in ")[1].split(" partitions")[0] for line in err.splitlines() if line.startswith("Scoring ")),
            "?",
        )
        rows_out = len(pd.read_parquet(big_out, columns=["error"]))
        print(f"1M rows on Dask: {big_seconds:.1f} s, peak {big_peak / 2**30:.2f} GiB", flush=True)

    workers = len(os.sched_getaffinity(0))
    report += [
        "## Batch scoring (`python -m calculator score`)",
        "",
        f"{stamp} Model {model.version}. Patients: the synthetic registry's, each optional input left empty with "
        "probability 1/2 (mixed unknowns). Times are wall-clock for the whole command (start-up, reading, scoring, "
        "writing); memory is the peak total RSS of the command and every process it started.",
        "",
        "| run | rows | distinct patients | time (s) | rows per s | peak memory | check |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| in process, CSV in and out; {label} | {ROWS:,} | {distinct:,} | {seconds:.1f} | "
            f"{ROWS / seconds:,.0f} | {peak / 2**20:.0f} MiB | every row's landmark survival and interval against "
            f"`predict`: {checked:,} rows, largest difference {worst:.1e} (target 1e-9) |"
            for label, distinct, seconds, peak, checked, worst in small_runs
        ),
        f"| `--dask local` ({workers} single-threaded workers), CSV ({size_mb:.0f} MB) in, Parquet out "
        f"| {BIG_ROWS:,} | (per partition) | {big_seconds:.1f} | {BIG_ROWS / big_seconds:,.0f} "
        f"| {big_peak / 2**30:.2f} GiB | {rows_out:,} rows written in {partitions} partitions |",
        "",
        "Identical patients are scored once (a registry has at most 24 x 405 distinct combinations of the inputs "
        "here), with the code the single-patient API uses, so a row costs about what one prediction's medians and "
        "landmarks cost; the Dask run reads, scores and writes partition by partition (at most two per worker in "
        "flight), so memory follows the partition size (`CALCULATOR_DASK_BLOCKSIZE`, default 8MB of CSV), not the "
        f"file. Target: {ROWS:,} patients in <= 10 s. Rerun: `.venv/bin/python -m benchmarks batch` "
        "(`BENCH_BATCH_BIG_ROWS` sets the big file's size).",
        "",
    ]


if __name__ == "__main__":
    lines: list[str] = []
    run(lines)
    print("\n".join(lines))
