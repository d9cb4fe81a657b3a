"""Inputs of tests/data/r_update.R (model updating, shrinkage, D2) for tests/test_update.py and tests/test_shrinkage.py.

Run from the repository root:  .venv/bin/python -m tests.data.update_data  then  Rscript tests/data/r_update.R

- update_base.csv, update_base_hazard.csv: a base OS model (coefficients; Breslow cumulative baseline hazard at its
  event times) fitted to a 3,000-patient registry with random true log-HRs (tests.registries.random_registry);
- update_registry.csv: a 500-patient registry whose OS truth is the base's log-HRs times 0.7 with one term changed by
  +1.0, a baseline hazard 1.5 times as high, times rounded up to half months (ties);
- update_completed.csv: 5 "completed" copies of it in which 30% of extrahepatic_metastases were redrawn (column
  imputation): what the D2 rule and Rubin's rules are checked on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prognosis import covariates
from tests.registries import random_registry
from training.fit import breslow_risk_sets, fit_coefficients

DATA = Path(__file__).resolve().parent
TERMS = covariates.term_ids(covariates.OPTIONAL)
CHANGED = "extrahepatic_metastases"


def main() -> None:
    base = random_registry(3000, 71, round_to=0.5)
    x = covariates.design_matrix(base, TERMS)
    time, event = base["os_months"].to_numpy(float), base["os_event"].to_numpy(bool)
    beta0 = fit_coefficients(x, time, event)
    rs = breslow_risk_sets(x, time, event, beta0)
    pd.DataFrame({"term": TERMS, "coef": beta0}).to_csv(DATA / "update_base.csv", index=False, float_format="%.17g")
    pd.DataFrame({"time": rs["event_times"], "cum_hazard": rs["cum_hazard"]}).to_csv(
        DATA / "update_base_hazard.csv", index=False, float_format="%.17g"
    )

    new = random_registry(500, 72, round_to=0.5)
    xn = covariates.design_matrix(new, TERMS)
    truth = 0.7 * beta0
    truth[TERMS.index(CHANGED)] += 1.0
    rng = np.random.default_rng(73)
    # Exponential hazard 1.5 x the base's average rate over its follow-up, same PH form.
    rate = 1.5 * rs["cum_hazard"][-1] / rs["event_times"][-1]
    t = np.ceil(rng.exponential(1.0 / (rate * np.exp(xn @ truth))) / 0.5) * 0.5
    c = np.ceil(rng.uniform(1.0, 100.0, len(new)) / 0.5) * 0.5
    new["os_months"], new["os_event"] = np.minimum(t, c), (t <= c).astype(int)
    late = new["hpfs_months"] > new["os_months"]
    new.loc[late, "hpfs_months"], new.loc[late, "hpfs_event"] = new.loc[late, "os_months"], 0
    new["patient_id"] = [f"U{i:05d}" for i in range(len(new))]
    new.to_csv(DATA / "update_registry.csv", index=False)

    completed = []
    redraw = rng.random(len(new)) < 0.3
    for m in range(5):
        copy = new.copy()
        copy.loc[redraw, CHANGED] = rng.integers(0, 2, int(redraw.sum()))
        copy.insert(0, "imputation", m + 1)
        completed.append(copy)
    pd.concat(completed).to_csv(DATA / "update_completed.csv", index=False)


if __name__ == "__main__":
    main()
