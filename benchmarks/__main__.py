"""``make bench``: run every benchmark and write benchmarks/REPORT.md (a timing is reported, never asserted)."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import fit_benchmark

REPORT = Path(__file__).parent / "REPORT.md"
BENCHMARKS = {"fit": fit_benchmark.run}


def main(names: list[str]) -> None:
    chosen = names or list(BENCHMARKS)
    lines = ["# Benchmark report", "",
             f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
             f"{platform.python_implementation()} {platform.python_version()}, {_cpus()} CPUs. "
             "Rerun: `make bench` (or `python -m benchmarks NAME` for one of: " + ", ".join(BENCHMARKS) + ").", ""]
    for name in chosen:
        BENCHMARKS[name](lines)
    REPORT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {REPORT}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main(sys.argv[1:])
