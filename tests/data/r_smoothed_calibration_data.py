"""Write tests/data/r_smoothed_calibration_input.csv: data sets (time, event, predicted risk at a horizon) on which
tests/data/r_smoothed_calibration.R computes rms's smoothed calibration. Run from the repository root:
    .venv/bin/python tests/data/r_smoothed_calibration_data.py && Rscript tests/data/r_smoothed_calibration.R

- registry: this project's case at 12 months: a 400-patient synthetic registry (times in whole days, so tied event
  times) scored by a model fitted on another synthetic registry (categorical terms: patients share predicted risks);
- continuous: 300 patients, continuous risks from a deliberately miscalibrated model, times rounded to 0.5 (ties);
- small: 80 patients, continuous risks (fewer than 100 values: rms moves the outer knots to the 5th values);
- tied_low: 250 patients of whom 30% share the lowest predicted risk (rms makes that end a knot of its own).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from prognosis import covariates
from training.smoothed_calibration import cox_predictor
from training.synthetic import synthesize


def registry_case() -> pd.DataFrame:
    terms = covariates.term_ids(covariates.OPTIONAL)
    train, test = synthesize(1500, 11), synthesize(400, 12)
    x_train, x_test = covariates.design_matrix(train, terms), covariates.design_matrix(test, terms)
    # At 12 months: by 24 months the model's highest risks are within 1e-12 of 1, where reading 17 digits back (R's
    # parser is not correctly rounded) changes log(-log(1 - p)) visibly.
    predict = cox_predictor(x_train, train["hpfs_months"].to_numpy(float), train["hpfs_event"].to_numpy(bool), 12.0)
    risk = -np.expm1(-predict(x_test))
    assert risk.max() < 1 - 1e-9
    return pd.DataFrame(
        {"time": test["hpfs_months"], "event": test["hpfs_event"].astype(int), "risk": risk, "horizon": 12.0}
    )


def continuous_case(n: int, seed: int, tied_low: float = 0.0, round_to: float | None = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lp = rng.normal(0.0, 0.6, n)
    t = rng.exponential(1.0 / (0.04 * np.exp(lp)))
    c = rng.uniform(5.0, 60.0, n)
    if round_to:
        t, c = np.ceil(t / round_to) * round_to, np.ceil(c / round_to) * round_to
    # The model's predictions: too extreme (slope 1.25) and shifted, so calibration is visibly off.
    lp_model = 1.25 * lp + 0.2
    if tied_low:
        lp_model[: int(tied_low * n)] = lp_model.min() - 0.5
    risk = 1.0 - np.exp(-0.04 * 24.0 * np.exp(lp_model))
    assert risk.max() < 1 - 1e-9
    return pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int), "risk": risk, "horizon": 24.0})


frames = {
    "registry": registry_case(),
    "continuous": continuous_case(300, 1),
    "small": continuous_case(80, 2),
    "tied_low": continuous_case(250, 3, tied_low=0.3),
}
out = pd.concat([f.assign(dataset=name) for name, f in frames.items()], ignore_index=True)
path = Path(__file__).with_name("r_smoothed_calibration_input.csv")
out[["dataset", "time", "event", "risk", "horizon"]].to_csv(path, index=False, float_format="%.17g")
print(path, out.groupby("dataset").size().to_dict())
