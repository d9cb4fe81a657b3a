"""Loading a 1,000,000-row registry CSV: time and peak memory of ``load_registry``, before and after the loader was
vectorised (issue 11), beside ``pandas.read_csv`` of the same file.

Each measurement runs in its own fresh process. The peak is the increase of the process's resident set over what it
held once its imports were done (Linux resets the high-water mark through /proc/self/clear_refs); it is compared with
the loaded frame's own memory, ``frame.memory_usage(deep=True).sum()``. "Before" is the single-module loader as it
was at BASELINE_COMMIT, taken with ``git show`` and imported from a temporary file.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 1_000_000
SEED = 11
REPO = Path(__file__).resolve().parent.parent
# The last commit with the loader in one module (training/registry.py); the package registry/ replaced it.
BASELINE_COMMIT = "651e7fd249eb6ddaefed94ec40830edd6501bdd1"
TARGET_RATIO = 3.0  # issue 11: peak increase <= 3 x the loaded frame's memory


def _status(key: str) -> int:
    """A /proc/self/status memory figure in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _child(kind: str, csv: str, module: str | None) -> None:
    """Runs in the measuring process: load ``csv`` once, print JSON with seconds, memory and the frame's size."""
    import importlib.util

    import pandas as pd

    if kind == "write":
        from training.synthetic import synthesize

        synthesize(ROWS, SEED).to_csv(csv, index=False)
        print("{}")
        return
    if kind == "before":
        spec = importlib.util.spec_from_file_location("registry_before", module)
        before = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = before  # dataclasses look their module up there
        spec.loader.exec_module(before)
        load = before.load_registry
    elif kind == "after":
        from registry import load_registry as load
    else:
        load = None
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")  # reset the peak (VmHWM) to the current resident set
        reset = True
    except OSError:
        reset = False
    start_rss = _status("VmRSS")
    start = time.perf_counter()
    frame = load(csv).frame if load is not None else pd.read_csv(csv)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_increase": peak - start_rss,
                "peak_reset": reset,
                "rows": len(frame),
                "frame_bytes": int(frame.memory_usage(deep=True).sum()),
            }
        )
    )


def _measure(args: list[str]) -> dict:
    """Run one measuring process; its JSON line, plus its peak RSS over its whole life (imports included)."""
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise RuntimeError(f"{args[3]} failed: {err.read()[-2000:]}")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    result["process_peak"] = usage.ru_maxrss * 1024
    return result


def _baseline(folder: Path) -> Path | None:
    """The single-module loader of BASELINE_COMMIT as a file, or None where git or the commit is not at hand."""
    try:
        text = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:training/registry.py"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = folder / "registry_before.py"
    path.write_text(text, encoding="utf-8")
    return path


def run(report: list[str]) -> None:
    report += ["## Loading a registry: 1,000,000 rows", ""]
    rows = []
    command = [sys.executable, "-m", "benchmarks.registry_benchmark"]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "registry.csv"
        # Written by a child: a child's peak RSS counts the parent's resident set at the fork; this one stays small.
        _measure([*command, "write", str(csv), ""])
        size = csv.stat().st_size
        before = _baseline(Path(tmp))
        kinds = [
            ("before", "`load_registry`, before (one module, Python lists)"),
            ("after", "`load_registry`, after (vectorised)"),
            ("pandas", "`pandas.read_csv` (types inferred, no checks)"),
        ]
        for kind, label in kinds:
            if kind == "before" and before is None:
                continue
            result = _measure([*command, kind, str(csv), str(before or "")])
            rows.append((label, result))
            print(label, result, flush=True)
    report += [
        (
            f"A synthetic registry in the canonical schema (`training.synthetic.synthesize({ROWS:_}, {SEED})`, "
            f"every column), written as CSV: {size / 1024**2:.0f} MiB. One fresh process per line. *Peak increase*: "
            "resident memory at its highest during the load, less what the process held after its imports. "
            "*Frame*: the loaded frame's `memory_usage(deep=True)` (each row's text counted in full, even where "
            "rows share one string object). *Process peak*: the whole process's, imports included. Target for "
            f"`load_registry`: peak increase <= {TARGET_RATIO:g} x its frame."
        ),
        "",
        "| reader | time (s) | peak increase (MiB) | frame (MiB) | peak increase / frame | process peak (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        report.append(
            f"| {label} | {r['seconds']:.1f} | {r['peak_increase'] / 1024**2:,.0f} | "
            f"{r['frame_bytes'] / 1024**2:,.0f} | {r['peak_increase'] / r['frame_bytes']:.2f} | "
            f"{r['process_peak'] / 1024**2:,.0f} |"
        )
    if not all(r["peak_reset"] for _, r in rows):
        report += ["", "(/proc/self/clear_refs was not writable: the peak is the process's whole-life peak.)"]
    if len(rows) < 3:
        report += ["", f"(*Before* was not measured: `git show {BASELINE_COMMIT[:7]}:training/registry.py` failed.)"]
    report += [
        "",
        (
            "Before, every cell became a Python object in lists of records, then of columns, then cleaned "
            "copies; after, pandas' C tokenizer reads the file in chunks of rows, each column is factorized, every "
            "*distinct* cell is cleaned and parsed once by the same scalar rules, and results reach the rows by "
            "numpy indexing. Files the fast reader cannot read exactly as the csv module does (a quoted value "
            "spanning lines, an over-long line, a malformed record) still go through the csv module. The frame "
            "holds text columns as objects, as before; `pandas.read_csv` infers numbers instead, so its frame is "
            "smaller."
        ),
        "",
    ]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3] or None)
