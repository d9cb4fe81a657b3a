"""Reference values from the Python port of pmsampsize (Whittle & Ensor; PyPI ``pmsampsize`` 0.1.0, the port of the
R package pmsampsize 1.1.x) for tests/test_sample_size.py.

pmsampsize declares Python >= 3.12; it runs on 3.11 too. Run it outside the project's venv, e.g.:
    python3 -m venv /tmp/pmvenv && /tmp/pmvenv/bin/pip install numpy pandas scipy statsmodels tabulate
    /tmp/pmvenv/bin/pip install --no-deps --ignore-requires-python pmsampsize==0.1.0
    /tmp/pmvenv/bin/python tests/data/r_sample_size_pmsampsize.py       (writes tests/data/r_sample_size_pmsampsize.csv)
"""

import csv
import itertools
from importlib import metadata
from pathlib import Path

from pmsampsize.pmsampsize import pmsampsize

# The R package's own survival tests (tests/testthat/test_surv.R), the BMJ 2020 example, and a grid in months
# around this project's registries (rates per month, follow-up in months, 12-36 month horizons, 12-19 terms).
CASES = [
    (0.051, 30, 0.065, 2, 2.07),
    (0.051, 25, 0.065, 2, 2.07),
    (0.065, 25, 0.065, 2, 2.07),
    (0.051, 50, 0.065, 2, 2.07),
    (0.051, 25, 0.1, 2, 2.07),
    (0.051, 25, 0.065, 4, 2.07),
    (0.051, 25, 0.065, 2, 4),
    (0.06, 40, 0.08, 3, 5),
    (0.03, 10, 0.09, 3, 3),
    (0.3, 80, 0.03, 1, 5),
]
CASES += list(itertools.product((0.02, 0.08, 0.2), (12, 19), (0.015, 0.04), (12, 36), (20.0, 33.5)))

rows = []
for r2, p, rate, t, fup in CASES:
    out = pmsampsize(type="s", csrsquared=r2, parameters=p, rate=rate, timepoint=t, meanfup=fup, noprint=True)
    table = [row for row in out["results_table"] if isinstance(row, list)]
    rows.append(
        {
            "r2_cs": r2,
            "parameters": p,
            "rate": rate,
            "timepoint": t,
            "meanfup": fup,
            "n_shrinkage": table[0][1],
            "n_optimism": table[1][1],
            "n_final": out["sample_size"],
            "shrinkage_optimism": table[1][2],
            "max_r2": out["max_r2a"],
            "events": out["events"],
            "epp": out["EPP"],
            "lci": out["int_lci"],
            "uci": out["int_uci"],
            "cuminc": out["int_cuminc"],
        }
    )

path = Path(__file__).with_suffix(".csv")
with path.open("w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print("pmsampsize", metadata.version("pmsampsize"), "->", path, len(rows), "rows")
