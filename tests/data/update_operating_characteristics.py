"""How often the closed test chooses each update method, per scenario (the table in docs/retraining.md).

Run from the repository root:  .venv/bin/python -m tests.data.update_operating_characteristics [REPLICATES]
(writes tests/data/update_operating_characteristics.csv). The base model is fitted to 20,000 patients of the
published truth (tests/test_update.py's generator); each replicate draws 1,500 new patients from one scenario's truth
and runs ``training.updating.closed_test`` per endpoint at alpha = 0.05.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from prognosis import covariates
from prognosis.model import RiskSets
from tests.test_update import BASE_N, NEW_N, SCENARIOS, design, generate
from training import updating
from training.fit import breslow_risk_sets, fit_coefficients

OUT = Path(__file__).resolve().parent / "update_operating_characteristics.csv"


def main(replicates: int = 200) -> pd.DataFrame:
    base = generate(BASE_N, 100)
    models = {}
    for endpoint in covariates.ENDPOINTS:
        x = design(base)
        time, event = base[f"{endpoint}_months"].to_numpy(float), base[f"{endpoint}_event"].to_numpy(bool)
        coef = fit_coefficients(x, time, event)
        models[endpoint] = (coef, RiskSets(**breslow_risk_sets(x, time, event, coef)))
    rows = []
    for scenario, (kwargs, _, _) in SCENARIOS.items():
        for r in range(replicates):
            new = generate(NEW_N, 10_000 + r, **kwargs)
            x = design(new)
            for endpoint, (coef, risk_sets) in models.items():
                time, event = new[f"{endpoint}_months"].to_numpy(float), new[f"{endpoint}_event"].to_numpy(bool)
                test = updating.closed_test([updating.components(x, time, event, coef, risk_sets)])
                rows.append({"scenario": scenario, "endpoint": endpoint, "replicate": r, "method": test.method})
    table = (
        pd.DataFrame(rows)
        .groupby(["scenario", "endpoint"])["method"]
        .value_counts(normalize=True)
        .unstack(fill_value=0.0)
        .reindex(columns=list(updating.METHODS), fill_value=0.0)
    )
    table["replicates"] = replicates
    table.round(3).to_csv(OUT)
    return table


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200).round(3).to_string())
