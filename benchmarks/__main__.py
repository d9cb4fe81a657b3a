"""``make bench``: run every benchmark and write benchmarks/REPORT.md (a timing is reported, never asserted)."""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import (
    api_benchmark,
    batch_benchmark,
    fit_benchmark,
    fuzz_long,
    load_benchmark,
    registry_benchmark,
    scoring_benchmark,
    validation_benchmark,
)

REPORT = Path(__file__).parent / "REPORT.md"
SECTIONS = Path(__file__).parent / "results"
BENCHMARKS = {
    "fit": fit_benchmark.run,
    "scoring": scoring_benchmark.run,
    "validation": validation_benchmark.run,
    "api": api_benchmark.run,
    "load": load_benchmark.run,
    "fuzz": fuzz_long.run,
    "registry": registry_benchmark.run,
    "batch": batch_benchmark.run,
}


def main(names: list[str]) -> None:
    """Run the named benchmarks (default: all); each keeps its own section, REPORT.md joins the sections."""
    chosen = names or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    SECTIONS.mkdir(exist_ok=True)
    for name in chosen:
        lines = [
            f"<!-- {name}: run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
            f"{platform.python_implementation()} {platform.python_version()}, {_cpus()} CPUs -->",
            "",
        ]
        BENCHMARKS[name](lines)
        (SECTIONS / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    header = [
        "# Benchmark report",
        "",
        "Each section was written by its benchmark (the comment above it says when and where). Rerun all: "
        "`make bench`; one: `.venv/bin/python -m benchmarks NAME` with NAME one of "
        + ", ".join(BENCHMARKS)
        + ". Timings are reported, never asserted.",
        "",
    ]
    parts = [(SECTIONS / f"{n}.md").read_text(encoding="utf-8") for n in BENCHMARKS if (SECTIONS / f"{n}.md").exists()]
    REPORT.write_text("\n".join(header) + "\n" + "\n".join(parts), encoding="utf-8")
    print(f"wrote {REPORT}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main(sys.argv[1:])
